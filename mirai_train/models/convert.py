"""Foreign Wan checkpoints -> state dicts in diffusers' `WanTransformer3DModel` key layout.

Sources: the original Wan layout (Wan2.1 releases; Self-Forcing, Causal-Forcing and Video-Mirai
generators, whose keys carry the wrapper's `model.` prefix and sometimes FSDP / activation
checkpointing / torch.compile segments), and training files holding several networks
(`generator`, `generator_ema`, `critic`, `mirai_projector`, `foresight_dim_proj`). The key
mapping is one table read in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import Tensor

# Original Wan name -> diffusers name, for a module (its `.weight` / `.bias` follow) or a bare
# parameter. `{i}` is a block index. Original norm3 (the affine cross-attention norm) is diffusers'
# norm2; the original norm1, norm2 and head.norm have no parameters.
WAN_TO_DIFFUSERS: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("blocks.{i}.modulation", "blocks.{i}.scale_shift_table"),
    ("blocks.{i}.self_attn.q", "blocks.{i}.attn1.to_q"),
    ("blocks.{i}.self_attn.k", "blocks.{i}.attn1.to_k"),
    ("blocks.{i}.self_attn.v", "blocks.{i}.attn1.to_v"),
    ("blocks.{i}.self_attn.o", "blocks.{i}.attn1.to_out.0"),
    ("blocks.{i}.self_attn.norm_q", "blocks.{i}.attn1.norm_q"),
    ("blocks.{i}.self_attn.norm_k", "blocks.{i}.attn1.norm_k"),
    ("blocks.{i}.norm3", "blocks.{i}.norm2"),
    ("blocks.{i}.cross_attn.q", "blocks.{i}.attn2.to_q"),
    ("blocks.{i}.cross_attn.k", "blocks.{i}.attn2.to_k"),
    ("blocks.{i}.cross_attn.v", "blocks.{i}.attn2.to_v"),
    ("blocks.{i}.cross_attn.o", "blocks.{i}.attn2.to_out.0"),
    ("blocks.{i}.cross_attn.norm_q", "blocks.{i}.attn2.norm_q"),
    ("blocks.{i}.cross_attn.norm_k", "blocks.{i}.attn2.norm_k"),
    ("blocks.{i}.ffn.0", "blocks.{i}.ffn.net.0.proj"),
    ("blocks.{i}.ffn.2", "blocks.{i}.ffn.net.2"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
)

# Name segments that FSDP, activation checkpointing and torch.compile insert into parameter names.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

# Where the transformer sits inside the file: bare, in Self-Forcing's `WanDiffusionWrapper.model`,
# or in ComfyUI-style `model.diffusion_model`.
TRANSFORMER_PREFIXES = ("", "model.", "model.diffusion_model.")

# The networks of a Self-Forcing / Causal-Forcing / Video-Mirai training file.
GENERATOR_SECTIONS = ("generator", "generator_ema")
OTHER_SECTIONS = ("critic", "mirai_projector", "foresight_dim_proj")

Layout = Literal["original", "diffusers"]


class ConversionError(ValueError):
    """A source file whose keys do not form a Wan transformer; the message names the file."""


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    match = re.match(r"blocks\.(\d+)\.", key)
    generic = "blocks.{i}." + key[match.end() :] if match else key
    for src, dst in table:
        if generic == src or generic.startswith(src + "."):
            renamed = dst + generic[len(src) :]
            return renamed.replace("{i}", match.group(1)) if match else renamed
    return None


def _convert(
    state_dict: Mapping[str, Tensor], table: tuple[tuple[str, str], ...], what: str
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        new = _rename(key, table)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 8 else "")
        raise ConversionError(f"{what}: keys with no mapping: {shown}")
    return out


def original_to_diffusers(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename original-layout Wan keys to diffusers' names (tensors are shared, not copied)."""
    return _convert(state_dict, WAN_TO_DIFFUSERS, "original Wan layout")


def diffusers_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of `original_to_diffusers` (to hand a checkpoint back to the original code bases)."""
    inverse = tuple((dst, src) for src, dst in WAN_TO_DIFFUSERS)
    return _convert(state_dict, inverse, "diffusers Wan layout")


def detect_layout(state_dict: Mapping[str, Tensor]) -> Layout:
    if "condition_embedder.time_proj.weight" in state_dict:
        return "diffusers"
    if "time_projection.1.weight" in state_dict:
        return "original"
    raise ConversionError(
        "not a Wan transformer: neither time_projection.1.weight (original layout) nor "
        "condition_embedder.time_proj.weight (diffusers layout) is present"
    )


def to_diffusers_layout(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if detect_layout(state_dict) == "diffusers":
        return dict(state_dict)
    return original_to_diffusers(state_dict)


def strip_wrappers(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Remove wrapper segments and the transformer's prefix; returns (transformer keys, dropped keys).

    Keys outside the transformer's prefix (e.g. the GAN heads Self-Forcing's wrapper can carry)
    are dropped and returned so the caller can say so.
    """
    clean = {}
    for key, value in state_dict.items():
        for segment in WRAPPER_SEGMENTS:
            key = key.replace(segment, "")
        clean[key] = value
    for prefix in reversed(TRANSFORMER_PREFIXES):
        if prefix + "patch_embedding.weight" in clean:
            kept = {k[len(prefix) :]: v for k, v in clean.items() if k.startswith(prefix)}
            return kept, sorted(k for k in clean if not k.startswith(prefix))
    raise ConversionError("not a Wan transformer: no patch_embedding.weight under any known prefix")


@dataclass
class ImportedWeights:
    """A generator state dict in diffusers layout, and what was left out of the source."""

    state_dict: dict[str, Tensor]
    section: str | None
    notes: list[str] = field(default_factory=list)


def _load_tensors(path: Path) -> Any:
    if (path / "transformer").is_dir():  # a diffusers Wan pipeline folder
        path = path / "transformer"
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ConversionError(
                f"{path}: a directory source must hold *.safetensors weight files; none found"
            )
        merged: dict[str, Tensor] = {}
        for file in files:
            merged.update(load_file(file))
        return merged
    if not path.is_file():
        raise ConversionError(f"{path}: no such file or directory")
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises several types for a non-checkpoint file
        raise ConversionError(f"{path}: not a readable torch checkpoint ({error})") from error


def read_generator(path: str | Path, *, ema: bool = False) -> ImportedWeights:
    """The generator of a Wan-family checkpoint file or folder, in diffusers layout.

    Training files keep `generator` (or `generator_ema` when `ema`); the other networks are dropped
    and listed in `notes`. A flat file is the generator itself; a folder holds its *.safetensors
    shards (a diffusers Wan pipeline folder: those of `transformer/`).
    """
    path = Path(path)
    loaded = _load_tensors(path)
    if not isinstance(loaded, Mapping):
        raise ConversionError(f"{path}: expected a dict of tensors, found {type(loaded).__name__}")
    notes = []
    section = None
    if any(name in loaded for name in GENERATOR_SECTIONS):
        section = "generator_ema" if ema else "generator"
        if section not in loaded:
            present = ", ".join(map(str, loaded))
            hint = "; this file keeps one generator: import it without --ema" if ema else ""
            raise ConversionError(f"{path}: no '{section}' section (sections present: {present}){hint}")
        dropped = [k for k in loaded if k != section]
        if dropped:
            notes.append(f"kept '{section}'; dropped {', '.join(dropped)}")
        weights = loaded[section]
    elif ema:
        raise ConversionError(
            f"{path}: --ema asks for a 'generator_ema' section, but this is a flat state dict"
        )
    else:
        weights = loaded
    bad = [k for k, v in weights.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConversionError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:8]))}")
    try:
        transformer, outside = strip_wrappers(weights)
        converted = to_diffusers_layout(transformer)
    except ConversionError as error:
        raise ConversionError(f"{path}{f' [{section}]' if section else ''}: {error}") from error
    if outside:
        notes.append(f"dropped {len(outside)} keys outside the transformer: {', '.join(outside[:8])}")
    return ImportedWeights(converted, section, notes)


def infer_transformer_kwargs(state_dict: Mapping[str, Tensor], *, attention_head_dim: int) -> dict[str, Any]:
    """The `TransformerSpec` fields that a diffusers-layout state dict determines.

    The head count is not visible in the shapes (q/k norms span all heads), so the head width is
    given; Wan2.1 uses 128 at every size.
    """
    required = [
        "patch_embedding.weight",
        "proj_out.weight",
        "condition_embedder.text_embedder.linear_1.weight",
        "condition_embedder.time_embedder.linear_1.weight",
        "blocks.0.ffn.net.0.proj.weight",
    ]
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise ConversionError(f"cannot infer the transformer's shape: missing {', '.join(missing)}")
    dim, in_channels, *patch_size = state_dict["patch_embedding.weight"].shape
    if dim % attention_head_dim:
        raise ConversionError(
            f"model width {dim} is not a multiple of attention_head_dim {attention_head_dim}"
        )
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    return dict(
        patch_size=tuple(patch_size),
        num_attention_heads=dim // attention_head_dim,
        attention_head_dim=attention_head_dim,
        in_channels=in_channels,
        out_channels=state_dict["proj_out.weight"].shape[0]
        // (patch_size[0] * patch_size[1] * patch_size[2]),
        text_dim=state_dict["condition_embedder.text_embedder.linear_1.weight"].shape[1],
        freq_dim=state_dict["condition_embedder.time_embedder.linear_1.weight"].shape[1],
        ffn_dim=state_dict["blocks.0.ffn.net.0.proj.weight"].shape[0],
        num_layers=len(blocks),
        cross_attn_norm="blocks.0.norm2.weight" in state_dict,
        qk_norm="rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in state_dict else None,
    )


def state_dict_mismatches(expected: Mapping[str, torch.Size], actual: Mapping[str, Tensor]) -> list[str]:
    """One line per shape mismatch, missing key and unexpected key, in that order (empty when they agree)."""
    lines = [
        f"shape mismatch: {k} expected {list(expected[k])}, found {list(actual[k].shape)}"
        for k in expected
        if k in actual and actual[k].shape != expected[k]
    ]
    lines += [f"missing: {k} {list(expected[k])}" for k in expected if k not in actual]
    lines += [f"unexpected: {k} {list(actual[k].shape)}" for k in actual if k not in expected]
    return lines
