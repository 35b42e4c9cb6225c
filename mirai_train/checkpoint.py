"""Generator checkpoints: a directory that says what it is, where it came from, and whether it is intact.

    config.json                 the `GeneratorSpec` (everything needed to make a video)
    generator.safetensors       transformer weights, diffusers' Wan key layout
    generator_ema.safetensors   optional EMA weights
    metadata.json               sha256 of every other file, the config hash, a content hash, provenance

A directory is written under a temporary name and renamed into place, so a reader never sees a
half-written checkpoint. Loading checks every hash first, then the config, then every key and shape,
and names the file at fault.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from mirai_train.config_files import Strict
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.convert import (
    ConversionError,
    infer_transformer_kwargs,
    read_generator,
    state_dict_mismatches,
)
from mirai_train.spec import GeneratorSpec

CONFIG = "config.json"
WEIGHTS = "generator.safetensors"
EMA_WEIGHTS = "generator_ema.safetensors"
METADATA = "metadata.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is; the message names the file and what is wrong."""


class Parent(Strict):
    """A file or checkpoint this one was made from, by content."""

    path: str
    sha256: str


class Provenance(Strict):
    """How the weights came about: `source` is e.g. "init", "import", "train:dmd"."""

    source: str
    parents: list[Parent] = []
    step: int | None = None
    notes: list[str] = []


class CheckpointMetadata(Strict):
    format_version: int
    files: dict[str, str]
    config_sha256: str
    content_sha256: str
    provenance: Provenance
    code_version: str | None
    git_revision: str | None
    created: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def source_version(paths: Sequence[Path]) -> str:
    """sha256 over the named source files (name and bytes), so a version follows the code itself."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def config_sha256(spec: GeneratorSpec) -> str:
    """Hash of the spec's canonical JSON (sorted keys), independent of how config.json is laid out."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _content_sha256(files: Mapping[str, str]) -> str:
    """One hash for config + weights: what decides a checkpoint's videos."""
    lines = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _code_version() -> str | None:
    try:
        return package_metadata.version("video-mirai-harness")
    except package_metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """`<commit>` or `<commit>-dirty` of the checkout this code runs from; None outside git."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _save_weights(state_dict: Mapping[str, Tensor], path: Path) -> None:
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}, path)


def save_checkpoint(
    out_dir: str | Path,
    spec: GeneratorSpec,
    state_dict: Mapping[str, Tensor],
    *,
    provenance: Provenance,
    ema_state_dict: Mapping[str, Tensor] | None = None,
) -> CheckpointMetadata:
    """Write a checkpoint directory atomically; refuses to replace one or to store weights the spec cannot load."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another output directory or remove it first")
    check_weights(spec, state_dict, "the generator state dict")
    if ema_state_dict is not None:
        check_weights(spec, ema_state_dict, "the EMA state dict")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (staging / CONFIG).write_text(spec.model_dump_json(indent=2) + "\n")
        _save_weights(state_dict, staging / WEIGHTS)
        if ema_state_dict is not None:
            _save_weights(ema_state_dict, staging / EMA_WEIGHTS)
        files = {p.name: file_sha256(p) for p in sorted(staging.iterdir())}
        meta = CheckpointMetadata(
            format_version=FORMAT_VERSION,
            files=files,
            config_sha256=config_sha256(spec),
            content_sha256=_content_sha256(files),
            provenance=provenance,
            code_version=_code_version(),
            git_revision=git_revision(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (staging / METADATA).write_text(meta.model_dump_json(indent=2) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta


def read_metadata(checkpoint_dir: str | Path) -> CheckpointMetadata:
    path = Path(checkpoint_dir) / METADATA
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; a checkpoint directory holds {CONFIG}, {WEIGHTS} and {METADATA}"
        )
    try:
        return CheckpointMetadata.model_validate_json(path.read_text())
    except ValidationError as error:
        raise CheckpointError(f"{path}: invalid checkpoint metadata\n{error}") from error


def verify_checkpoint(checkpoint_dir: str | Path) -> CheckpointMetadata:
    """Check that config and weights exist, match the sha256 recorded in metadata.json, and that the
    recorded content sha256 is the hash of those files (so it can key cached videos). Errors name
    files by absolute path: a manifest's relative path means nothing to a reader in another folder."""
    root = Path(checkpoint_dir).absolute()
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a checkpoint directory (it does not exist or is a file)")
    meta = read_metadata(root)
    for required in (CONFIG, WEIGHTS):
        if required not in meta.files:
            raise CheckpointError(f"{root / METADATA}: lists no {required}; the checkpoint is incomplete")
    for name, expected in meta.files.items():
        path = root / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {METADATA})")
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(
                f"{path}: sha256 {actual} does not match {expected} recorded in {METADATA}; "
                "the file is corrupted or was changed after saving"
            )
    content = _content_sha256(meta.files)
    if meta.content_sha256 != content:
        raise CheckpointError(
            f"{root / METADATA}: content_sha256 {meta.content_sha256} is not the hash of the files it lists "
            f"({content}); the metadata was edited after saving: restore it, or re-save the checkpoint"
        )
    return meta


_VERIFIED: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def content_sha256(checkpoint_dir: str | Path) -> str:
    """The checkpoint's content sha256, computed from its files (never read on trust from metadata.json),
    after checking that its config and weights can be loaded; cached by path, size and mtime.

    This is what keys a checkpoint's videos in the store, so a checkpoint must be what it claims.
    """
    root = Path(checkpoint_dir)
    files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else []  # none: verify says why
    stats = tuple((p.name, (stat := p.stat()).st_size, stat.st_mtime_ns) for p in files)
    key = (str(root.resolve()), stats)
    if key not in _VERIFIED:
        meta = verify_checkpoint(root)
        spec = load_spec(root)
        for name in (WEIGHTS, EMA_WEIGHTS):
            if name in meta.files:
                check_weights(spec, weight_shapes(root / name), f"{root / name} (config {root / CONFIG})")
        _VERIFIED[key] = _content_sha256(meta.files)
    return _VERIFIED[key]


def weight_shapes(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file as an empty tensor of its shape on the meta device, from the
    header alone; a truncated or unreadable file is a `CheckpointError` naming it."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = handle.keys()  # a safe_open handle is not a mapping
            return {k: torch.empty(handle.get_slice(k).get_shape(), device="meta") for k in names}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{path}: unreadable weights ({error}); the file is truncated or not safetensors"
        ) from error


def load_spec(checkpoint_dir: str | Path) -> GeneratorSpec:
    path = Path(checkpoint_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return GeneratorSpec.model_validate_json(path.read_text())
    except ValidationError as error:
        raise CheckpointError(f"{path}: invalid generator config\n{error}") from error


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Build modules without allocating or initialising parameters (buffers stay real).

    Loading then assigns the stored tensors, so a 1.3B model is not randomly initialised first.
    """

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        return None if param is None else nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    # torch types the hook as returning None, but documents that a returned Parameter replaces the new one.
    handle = register_module_parameter_registration_hook(to_meta)  # type: ignore[arg-type]
    try:
        yield
    finally:
        handle.remove()


def expected_shapes(spec: GeneratorSpec) -> dict[str, torch.Size]:
    """Keys and shapes of the transformer a spec describes, computed on the meta device."""
    with torch.device("meta"):
        model = CausalWanTransformer(**spec.transformer_kwargs())
    return {k: v.shape for k, v in model.state_dict().items()}


def check_weights(spec: GeneratorSpec, state_dict: Mapping[str, Tensor], where: str) -> None:
    """Raise a `CheckpointError` listing every missing, unexpected or mis-shaped key."""
    problems = state_dict_mismatches(expected_shapes(spec), state_dict)
    if problems:
        counts = ", ".join(
            f"{sum(p.startswith(kind) for p in problems)} {kind}"
            for kind in ("shape mismatch", "missing", "unexpected")
        )
        shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
        raise CheckpointError(
            f"{where} does not match the transformer section of the config ({counts}):\n  {shown}"
        )


def load_checkpoint(
    checkpoint_dir: str | Path,
    *,
    use_ema: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    verify: bool = True,
) -> tuple[GeneratorSpec, CausalWanTransformer]:
    """The checkpoint's spec and its generator in eval mode; `dtype` None keeps the stored dtype."""
    root = Path(checkpoint_dir)
    if verify:
        content_sha256(root)  # cached: a checkpoint already planned by its content is not hashed again
    meta = read_metadata(root)
    spec = load_spec(root)
    weights = root / (EMA_WEIGHTS if use_ema else WEIGHTS)
    if use_ema and EMA_WEIGHTS not in meta.files:
        raise CheckpointError(f"{weights}: this checkpoint has no EMA weights; load it without use_ema")
    try:
        state_dict = load_file(weights, device=str(device))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{weights}: unreadable weights ({error}); the file is truncated or not safetensors"
        ) from error
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    check_weights(spec, state_dict, f"{weights} (config {root / CONFIG})")
    with _parameters_on_meta():
        model = CausalWanTransformer(**spec.transformer_kwargs())
    model.load_state_dict(state_dict, strict=True, assign=True)
    return spec, model.to(device).eval()


def _source_sha256(source: Path) -> str:
    """sha256 of a file; for a folder of weight files, the hash of their names and hashes."""
    if source.is_file():
        return file_sha256(source)
    files = {p.name: file_sha256(p) for p in sorted(source.glob("*.safetensors"))}
    return _content_sha256(files)


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CheckpointError(f"{path}: not valid YAML/JSON\n{error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("transformer", {}), dict):
        raise CheckpointError(
            f"{path}: expected a GeneratorSpec mapping (transformer, codec, text_encoder, ...)"
        )
    return data


def spec_for_weights(
    config_path: Path, state_dict: Mapping[str, Tensor], *, source: Path, attention_head_dim: int
) -> GeneratorSpec:
    """The config file's spec, its transformer section completed (and checked) from the weight shapes.

    The weights fix every shape field; the config supplies what shapes cannot show (the causal
    `num_frame_per_block`, `eps`, `rope_max_seq_len`; the head count if not the default width) and
    the codec and text-encoder sections, which are required.
    """
    data = _read_config_file(config_path)
    given = dict(data.get("transformer") or {})
    if "attention_head_dim" in given:
        attention_head_dim = int(given["attention_head_dim"])
    elif "num_attention_heads" in given and "patch_embedding.weight" in state_dict:
        attention_head_dim = state_dict["patch_embedding.weight"].shape[0] // int(
            given["num_attention_heads"]
        )
    try:
        inferred = infer_transformer_kwargs(state_dict, attention_head_dim=attention_head_dim)
    except ConversionError as error:
        raise CheckpointError(f"{source}: {error}") from error
    for key in given.keys() & inferred.keys():
        value = tuple(given[key]) if isinstance(given[key], list) else given[key]
        if value != inferred[key]:
            raise CheckpointError(
                f"{config_path}: transformer.{key} is {given[key]} but the weights in {source} have "
                f"{inferred[key]}; fix the value or leave it out to take it from the weights"
            )
    try:
        return GeneratorSpec.model_validate({**data, "transformer": {**given, **inferred}})
    except ValidationError as error:
        raise CheckpointError(f"{config_path}: invalid generator config\n{error}") from error


def import_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    config_path: str | Path,
    ema: bool = False,
    attention_head_dim: int = 128,
) -> CheckpointMetadata:
    """Convert a Wan-family checkpoint (original or diffusers layout) into a checkpoint directory."""
    source = Path(source)
    try:
        imported = read_generator(source, ema=ema)
    except ConversionError as error:
        raise CheckpointError(str(error)) from error
    spec = spec_for_weights(
        Path(config_path), imported.state_dict, source=source, attention_head_dim=attention_head_dim
    )
    notes = [f"imported from section '{imported.section}'"] if imported.section else []
    provenance = Provenance(
        source="import",
        parents=[Parent(path=str(source.resolve()), sha256=_source_sha256(source))],
        notes=notes + imported.notes,
    )
    return save_checkpoint(out_dir, spec, imported.state_dict, provenance=provenance)
