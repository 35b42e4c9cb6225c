from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from mirai_train.models.text_encoders import (
    TextEncoder,
    ToyTextEncoder,
    UMT5TextEncoder,
    build_text_encoder,
    clean_prompt,
)
from mirai_train.spec import TextEncoderSpec

WORDS = ["a", "red", "blue", "green", "circle", "square", "moves", "left", "right", "over", "the", "grass"]


@pytest.fixture(scope="module")
def tiny_umt5_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers-pipeline-shaped folder with a tiny random UMT5 encoder and a word-piece T5 tokenizer."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("wan_pipeline")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(root / "tokenizer")
    config = UMT5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    UMT5EncoderModel(config).save_pretrained(root / "text_encoder")
    return root


def test_umt5_encoder_pads_with_zeros_past_each_prompt(tiny_umt5_pipeline: Path) -> None:
    spec = TextEncoderSpec(kind="umt5", path=str(tiny_umt5_pipeline), dim=16, max_length=8)
    encoder = build_text_encoder(spec)
    assert isinstance(encoder, UMT5TextEncoder) and isinstance(encoder, TextEncoder)
    out = encoder.encode(["a red  circle", "blue square moves left over the grass"])
    assert out.shape == (2, 8, 16) and out.dtype == torch.float32
    # "a red circle" is 3 tokens + EOS; everything after is zero, everything before is not.
    assert out[0, :4].abs().sum(-1).gt(0).all() and out[0, 4:].eq(0).all()
    # The second prompt fills all 8 slots (7 words truncated + EOS).
    assert out[1].abs().sum(-1).gt(0).all()
    # The kept positions equal the encoder's own output under the attention mask.
    ids = encoder.tokenizer(["a red circle"], return_tensors="pt").input_ids
    direct = encoder.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out[0, :4], direct[0])


def test_umt5_loads_from_one_folder(tiny_umt5_pipeline: Path, tmp_path: Path) -> None:
    model = UMT5EncoderModel.from_pretrained(tiny_umt5_pipeline / "text_encoder")
    model.save_pretrained(tmp_path)
    T5Tokenizer.from_pretrained(tiny_umt5_pipeline / "tokenizer").save_pretrained(tmp_path)
    encoder = UMT5TextEncoder.from_pretrained(tmp_path, max_length=6)
    pipeline = UMT5TextEncoder.from_pretrained(tiny_umt5_pipeline, max_length=6)
    torch.testing.assert_close(encoder.encode(["green square"]), pipeline.encode(["green square"]))


def test_umt5_errors_name_the_field_and_the_files(tiny_umt5_pipeline: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"text_encoder\.path is missing"):
        build_text_encoder(TextEncoderSpec(kind="umt5"))
    with pytest.raises(
        FileNotFoundError, match=rf"{tmp_path}/config\.json.*{tmp_path}/text_encoder/config\.json"
    ):
        build_text_encoder(TextEncoderSpec(kind="umt5", path=str(tmp_path)))
    with pytest.raises(ValueError, match=r"text_encoder\.dim is 4096 .* set text_encoder\.dim: 16"):
        build_text_encoder(TextEncoderSpec(kind="umt5", path=str(tiny_umt5_pipeline)))


def test_clean_prompt_matches_wan_whitespace_cleaning() -> None:
    assert clean_prompt("  a &amp;amp; b\n\tc  ") == "a & b c"


def test_toy_encoder_mixes_each_word_with_its_neighbours() -> None:
    encoder = build_text_encoder(TextEncoderSpec(kind="toy", dim=8, max_length=4, seed=3))
    assert isinstance(encoder, ToyTextEncoder)
    out = encoder.encode(["Red circle, red!", "", "a b c d e f", "red"])
    assert out.shape == (4, 4, 8)
    assert out[0, 3].eq(0).all() and out[1].eq(0).all()  # zero past the prompt's words
    assert out[2].abs().sum(-1).gt(0).all()  # truncated to max_length
    v, n, p = encoder.word_vector, encoder.next_mix, encoder.previous_mix
    torch.testing.assert_close(out[3, 0], v("red") / 3**0.5)  # case and punctuation do not matter
    torch.testing.assert_close(out[0, 0], (v("red") + n @ v("circle")) / 3**0.5)
    torch.testing.assert_close(out[0, 1], (v("circle") + n @ v("red") + p @ v("red")) / 3**0.5)
    torch.testing.assert_close(n @ n.T, torch.eye(8), atol=1e-5, rtol=0)
    # Word order matters: a bag of words could not bind a colour to its shape.
    swapped = encoder.encode(["a red circle and a blue square", "a blue circle and a red square"])
    assert not torch.allclose(swapped[0].sum(0), swapped[1].sum(0), atol=1e-3)
    other_seed = ToyTextEncoder(dim=8, max_length=4, seed=4)
    assert not torch.equal(other_seed.encode(["red"])[0, 0], out[3, 0])


def test_toy_encoder_is_stable_across_processes() -> None:
    """Same word, same seed -> same vector in a fresh interpreter with another hash salt."""
    code = (
        "from mirai_train.models.text_encoders import ToyTextEncoder;"
        "print(ToyTextEncoder(dim=4, max_length=2, seed=7).word_vector('sprite').tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = ToyTextEncoder(dim=4, max_length=2, seed=7).word_vector("sprite")
    assert torch.equal(torch.tensor(json.loads(result.stdout)), here)
