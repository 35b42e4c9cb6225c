"""Text encoders: prompts -> embeddings [B, max_length, dim], zero past each prompt's tokens.

Wan conditions on UMT5-XXL's last hidden state, padded to 512 tokens and zeroed past each prompt's
own tokens (EOS included); `UMT5TextEncoder` reproduces that from a local directory. `ToyTextEncoder`
gives the toy scale the same interface with no weights: every word maps to a fixed random vector,
mixed with its neighbours' so that word order matters.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5EncoderModel

from mirai_train.spec import TextEncoderSpec


@runtime_checkable
class TextEncoder(Protocol):
    dim: int
    max_length: int

    def encode(self, prompts: Sequence[str]) -> Tensor: ...


def clean_prompt(text: str) -> str:
    """Wan's `whitespace` cleaning (HTML entities unescaped twice, runs of whitespace collapsed)."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class UMT5TextEncoder:
    """transformers' `UMT5EncoderModel` + tokenizer, run as Wan runs its T5 encoder."""

    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dim = int(model.config.d_model)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        max_length: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> UMT5TextEncoder:
        """Load from a diffusers Wan pipeline directory (`text_encoder/`, `tokenizer/`) or one folder with both."""
        root = Path(path)
        if (root / "text_encoder" / "config.json").is_file():
            model_dir, tokenizer_dir = root / "text_encoder", root / "tokenizer"
        elif (root / "config.json").is_file():
            model_dir = tokenizer_dir = root
        else:
            raise FileNotFoundError(
                f"text_encoder.path: no UMT5 encoder found at {root}: expected {root}/config.json with the "
                f"UMT5EncoderModel weights and tokenizer files, or {root}/text_encoder/config.json and "
                f"{root}/tokenizer/ (a diffusers Wan pipeline directory)"
            )
        model = UMT5EncoderModel.from_pretrained(model_dir, dtype=dtype)
        model.to(device)  # type: ignore[arg-type]  # transformers wraps `to` in a decorator mypy misreads
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        return cls(model, tokenizer, max_length)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).to(self.model.device)
        hidden = self.model(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        ).last_hidden_state
        return hidden * tokens.attention_mask.unsqueeze(-1).to(hidden.dtype)


class ToyTextEncoder:
    """Seeded hashed word embeddings, each mixed with its neighbours': a fixed contextual encoder.

    Wan's UMT5 states are contextual, so "a red circle and a blue square" and "a blue circle and a
    red square" condition differently. Per-word vectors alone would make a prompt a bag of words
    (the DiT's cross-attention has no text positions), and no toy model could bind a colour to its
    shape, a floor to its colour or a stripe to its place. So token j is
    (v(w_j) + N v(w_{j+1}) + P v(w_{j-1})) / sqrt(3), with N and P fixed random orthogonal matrices
    (a missing neighbour is zero): the word, what follows it and what precedes it stay linearly
    separable ("red" in "a red circle" carries N v(circle)).

    Words are the lower-cased alphanumeric runs of the cleaned prompt; a vector is a standard normal
    draw seeded by a BLAKE2b digest of the seed and the word (Python's `hash` is salted per process,
    so it cannot be used), and N and P are seeded by the seed alone.
    """

    def __init__(self, dim: int, max_length: int, seed: int, device: str | torch.device = "cpu") -> None:
        self.dim = dim
        self.max_length = max_length
        self.seed = seed
        self.device = torch.device(device)
        self._vectors: dict[str, Tensor] = {}
        self.next_mix, self.previous_mix = (self._orthogonal(role) for role in ("next", "previous"))

    def _orthogonal(self, role: str) -> Tensor:
        """A fixed random orthogonal [dim, dim] matrix (QR of a seeded Gaussian, signs fixed by R's diagonal)."""
        digest = hashlib.blake2b(f"{self.seed}\x00<{role}>".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        q, r = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=generator, dtype=torch.float64))
        return (q * torch.sign(torch.diagonal(r))).float()

    def word_vector(self, word: str) -> Tensor:
        if word not in self._vectors:
            digest = hashlib.blake2b(f"{self.seed}\x00{word}".encode(), digest_size=8).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
            self._vectors[word] = torch.randn(self.dim, generator=generator)
        return self._vectors[word]

    def encode(self, prompts: Sequence[str]) -> Tensor:
        out = torch.zeros(len(prompts), self.max_length, self.dim)
        for i, prompt in enumerate(prompts):
            words = re.findall(r"[a-z0-9]+", clean_prompt(prompt).lower())[: self.max_length]
            if not words:
                continue
            vectors = torch.stack([self.word_vector(word) for word in words])  # [n, dim]
            following = torch.cat([vectors[1:], vectors.new_zeros(1, self.dim)])
            preceding = torch.cat([vectors.new_zeros(1, self.dim), vectors[:-1]])
            mixed = vectors + following @ self.next_mix.T + preceding @ self.previous_mix.T
            out[i, : len(words)] = mixed / 3**0.5
        return out.to(self.device)


def build_text_encoder(
    spec: TextEncoderSpec, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> TextEncoder:
    """The text encoder a `GeneratorSpec.text_encoder` names, checked against the spec's `dim`."""
    if spec.kind == "toy":
        return ToyTextEncoder(spec.dim, spec.max_length, spec.seed, device=device)
    if spec.path is None:
        raise ValueError(
            "text_encoder.path is missing: text_encoder.kind 'umt5' loads UMT5EncoderModel and its tokenizer "
            "from a local directory; set text_encoder.path to a diffusers Wan pipeline directory (with "
            "text_encoder/ and tokenizer/) or to a folder holding config.json, the weights and the tokenizer"
        )
    encoder = UMT5TextEncoder.from_pretrained(
        spec.path, max_length=spec.max_length, device=device, dtype=dtype
    )
    if encoder.dim != spec.dim:
        raise ValueError(
            f"text_encoder.dim is {spec.dim} but the UMT5 model at {spec.path} has d_model {encoder.dim}; "
            f"set text_encoder.dim: {encoder.dim}"
        )
    return encoder
