from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click
import pytest
import torch
import typer
import yaml
from click.testing import CliRunner, Result
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from safetensors.torch import save_file
from torch import Tensor

from mirai_train.checkpoint import (
    CONFIG,
    EMA_WEIGHTS,
    METADATA,
    WEIGHTS,
    CheckpointError,
    Parent,
    Provenance,
    _content_sha256,
    config_sha256,
    content_sha256,
    file_sha256,
    load_checkpoint,
    load_spec,
    read_metadata,
    save_checkpoint,
)
from mirai_train.cli import app
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.convert import diffusers_to_original
from mirai_train.spec import CodecSpec, GeneratorSpec, TextEncoderSpec, TransformerSpec
from tests.conftest import TINY_TRANSFORMER

PROVENANCE = Provenance(source="test", parents=[Parent(path="parent.pt", sha256="0" * 64)], step=7)


def tiny_spec(**transformer: object) -> GeneratorSpec:
    return GeneratorSpec(
        transformer=TransformerSpec(**{**TINY_TRANSFORMER, "num_frame_per_block": 3, **transformer}),
        codec=CodecSpec(kind="pixel", spatial_factor=2, latent_channels=48),
        text_encoder=TextEncoderSpec(kind="toy", dim=32, max_length=8),
    )


def tiny_weights(spec: GeneratorSpec) -> dict[str, Tensor]:
    return CausalWanTransformer(**spec.transformer_kwargs()).state_dict()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]]:
    spec = tiny_spec()
    weights = tiny_weights(spec)
    ema = {k: v * 0.5 for k, v in weights.items()}
    out = tmp_path / "ckpt"
    save_checkpoint(out, spec, weights, ema_state_dict=ema, provenance=PROVENANCE)
    return out, spec, weights, ema


def test_round_trip(saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]]) -> None:
    out, spec, weights, ema = saved
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG, WEIGHTS, EMA_WEIGHTS, METADATA])
    loaded_spec, model = load_checkpoint(out)
    assert loaded_spec == spec and isinstance(model, CausalWanTransformer) and not model.training
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)
    assert all(p.device.type == "cpu" for p in model.parameters())
    _, ema_model = load_checkpoint(out, use_ema=True)
    assert all(torch.equal(ema_model.state_dict()[k], ema[k]) for k in ema)
    # The loaded model runs and matches the one the weights came from.
    reference = CausalWanTransformer(**spec.transformer_kwargs())
    reference.load_state_dict(weights)
    x, t, text = torch.randn(1, 16, 3, 4, 4), torch.full((1,), 500.0), torch.randn(1, 8, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, text).sample, reference.eval()(x, t, text).sample)


def test_metadata_records_hashes_and_provenance(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    out, spec, _, _ = saved
    meta = read_metadata(out)
    assert meta.files == {name: file_sha256(out / name) for name in (CONFIG, WEIGHTS, EMA_WEIGHTS)}
    assert meta.config_sha256 == config_sha256(spec) == config_sha256(load_spec(out))
    assert meta.provenance == PROVENANCE and meta.created
    other = save_checkpoint(
        out.parent / "other", tiny_spec(num_frame_per_block=1), tiny_weights(spec), provenance=PROVENANCE
    )
    assert other.config_sha256 != meta.config_sha256 and other.content_sha256 != meta.content_sha256


def test_load_with_dtype(saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]]) -> None:
    _, model = load_checkpoint(saved[0], dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_save_is_atomic_and_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny_spec()
    weights = tiny_weights(spec)
    out = tmp_path / "ckpt"
    save_checkpoint(out, spec, weights, provenance=PROVENANCE)
    with pytest.raises(FileExistsError, match=f"{out} already exists"):
        save_checkpoint(out, spec, weights, provenance=PROVENANCE)

    def interrupted() -> str:
        raise KeyboardInterrupt

    # Fail after the weights are written, before the rename: nothing may be left behind.
    monkeypatch.setattr("mirai_train.checkpoint.git_revision", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "interrupted", spec, weights, provenance=PROVENANCE)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_save_refuses_weights_that_do_not_fit_the_spec(tmp_path: Path) -> None:
    weights = tiny_weights(tiny_spec())
    with pytest.raises(
        CheckpointError, match=r"(?s)generator state dict does not match.*shape mismatch: blocks\.0\.ffn"
    ):
        save_checkpoint(tmp_path / "c", tiny_spec(ffn_dim=64), weights, provenance=PROVENANCE)
    assert not (tmp_path / "c").exists()


def test_missing_files(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]], tmp_path: Path
) -> None:
    out = saved[0]
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "nowhere")
    (out / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=rf"{out / WEIGHTS}: missing \(listed in metadata\.json\)"):
        load_checkpoint(out)
    (out / METADATA).unlink()
    with pytest.raises(CheckpointError, match=rf"{out / METADATA}: missing"):
        load_checkpoint(out)


def test_ema_requested_but_absent(tmp_path: Path) -> None:
    spec = tiny_spec()
    save_checkpoint(tmp_path / "c", spec, tiny_weights(spec), provenance=PROVENANCE)
    with pytest.raises(
        CheckpointError, match=rf"{tmp_path / 'c' / EMA_WEIGHTS}: this checkpoint has no EMA weights"
    ):
        load_checkpoint(tmp_path / "c", use_ema=True)


def test_corrupted_file_fails_its_hash(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    out = saved[0]
    data = bytearray((out / EMA_WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (out / EMA_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=rf"{out / EMA_WEIGHTS}: sha256 \w+ does not match \w+ recorded"
    ):
        load_checkpoint(out)


def _rehash(out: Path) -> None:
    """Recompute metadata.json's file hashes and content hash, as a hand fix after an edit would."""
    meta = json.loads((out / METADATA).read_text())
    meta["files"] = {name: file_sha256(out / name) for name in meta["files"]}
    meta["content_sha256"] = _content_sha256(meta["files"])
    (out / METADATA).write_text(json.dumps(meta))


def _rewrite_config(out: Path, config: dict[str, object]) -> None:
    """Change config.json and re-hash it, as a hand edit followed by a metadata fix would."""
    (out / CONFIG).write_text(json.dumps(config))
    _rehash(out)


def test_a_forged_content_hash_is_caught(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    """content_sha256 keys cached videos: one copied from another checkpoint must not be believed."""
    out = saved[0]
    meta = json.loads((out / METADATA).read_text())
    meta["content_sha256"] = "ab" * 32
    (out / METADATA).write_text(json.dumps(meta))
    for check in (load_checkpoint, content_sha256):
        with pytest.raises(CheckpointError, match=rf"{out / METADATA}: content_sha256 (ab)+ is not the hash"):
            check(out)


def test_truncated_weights_with_matching_metadata_name_the_file(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    out = saved[0]
    data = (out / WEIGHTS).read_bytes()
    (out / WEIGHTS).write_bytes(data[: len(data) // 2])
    _rehash(out)
    for check in (load_checkpoint, content_sha256):
        with pytest.raises(CheckpointError, match=rf"{out / WEIGHTS}: unreadable weights"):
            check(out)


def test_content_hash_is_computed_from_the_files(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    out = saved[0]
    files = {name: file_sha256(out / name) for name in (CONFIG, WEIGHTS, EMA_WEIGHTS)}
    assert content_sha256(out) == _content_sha256(files) == read_metadata(out).content_sha256


def test_config_that_does_not_match_the_weights(
    saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]],
) -> None:
    out, spec, _, _ = saved
    config = spec.model_dump(mode="json")
    config["transformer"]["num_layers"] = 3
    config["transformer"]["ffn_dim"] = 48
    _rewrite_config(out, config)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(out)
    message = str(error.value)
    assert f"{out / WEIGHTS} (config {out / CONFIG}) does not match" in message
    assert "(6 shape mismatch, 27 missing, 0 unexpected)" in message
    assert "missing: blocks.2.attn1.to_q.weight [24, 24]" in message
    assert "shape mismatch: blocks.0.ffn.net.0.proj.weight expected [48, 24], found [32, 24]" in message
    config["transformer"]["num_layers"] = 1
    config["transformer"]["ffn_dim"] = 32
    _rewrite_config(out, config)
    with pytest.raises(CheckpointError, match=r"unexpected: blocks\.1\.attn1\.to_q\.weight \[24, 24\]"):
        load_checkpoint(out)


def test_invalid_config_json(saved: tuple[Path, GeneratorSpec, dict[str, Tensor], dict[str, Tensor]]) -> None:
    out, spec, _, _ = saved
    config = spec.model_dump(mode="json")
    config["transformer"]["num_layer"] = 2
    _rewrite_config(out, config)
    with pytest.raises(
        CheckpointError, match=rf"(?s){out / CONFIG}: invalid generator config\n.*transformer\.num_layer\n"
    ):
        load_checkpoint(out)
    (out / CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"{out / CONFIG}: invalid generator config"):
        load_checkpoint(out, verify=False)


def _video_mirai_model_pt(tmp_path: Path) -> tuple[Path, dict[str, Tensor], dict[str, Tensor]]:
    """The authors' `model.pt` layout: original-layout generators under the wrapper's `model.` prefix."""
    generator = WanTransformer3DModel(**TINY_TRANSFORMER).state_dict()
    ema = {k: v * 2 for k, v in generator.items()}
    path = tmp_path / "model.pt"
    torch.save(
        {
            "generator": {f"model.{k}": v for k, v in diffusers_to_original(generator).items()},
            "generator_ema": {
                f"model._fsdp_wrapped_module.{k}": v for k, v in diffusers_to_original(ema).items()
            },
            "mirai_projector": {"blocks.0.scale_shift_table": torch.zeros(1, 6, 24)},
            "foresight_dim_proj": {"weight": torch.zeros(48, 24)},
        },
        path,
    )
    return path, generator, ema


def _config_file(tmp_path: Path, transformer: dict[str, object] | None) -> Path:
    spec = tiny_spec().model_dump(mode="json")
    data = {"codec": spec["codec"], "text_encoder": spec["text_encoder"]}
    if transformer is not None:
        data["transformer"] = transformer
    path = tmp_path / "generator.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _import(*args: object) -> Result:
    # As a group, the way `mirai-train import` runs once the app has more than one command.
    return CliRunner().invoke(cast(click.Command, typer.main.get_group(app)), ["import", *map(str, args)])


def test_import_video_mirai_model_pt(tmp_path: Path) -> None:
    source, generator, ema = _video_mirai_model_pt(tmp_path)
    config = _config_file(
        tmp_path, {"num_frame_per_block": 3, "attention_head_dim": 12, "rope_max_seq_len": 32}
    )
    result = _import(source, "--out", tmp_path / "raw", "--config", config)
    assert result.exit_code == 0, result.output
    assert (
        "note: kept 'generator'; dropped generator_ema, mirai_projector, foresight_dim_proj" in result.output
    )
    spec, model = load_checkpoint(tmp_path / "raw")
    assert spec.transformer == tiny_spec().transformer
    assert all(torch.equal(model.state_dict()[k], v) for k, v in generator.items())
    meta = read_metadata(tmp_path / "raw")
    assert meta.provenance.source == "import"
    assert meta.provenance.parents == [Parent(path=str(source.resolve()), sha256=file_sha256(source))]

    result = _import(source, "--out", tmp_path / "ema", "--config", config, "--ema")
    assert result.exit_code == 0, result.output
    _, model = load_checkpoint(tmp_path / "ema")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.items())


def test_import_infers_heads_from_the_head_width_option(tmp_path: Path) -> None:
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(WanTransformer3DModel(**TINY_TRANSFORMER).state_dict(), path)
    config = _config_file(tmp_path, None)
    result = _import(path, "--out", tmp_path / "c", "--config", config, "--attention-head-dim", "12")
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "c")
    assert (spec.transformer.num_attention_heads, spec.transformer.num_frame_per_block) == (2, 1)


def test_import_errors_name_the_file_and_field(tmp_path: Path) -> None:
    source, _, _ = _video_mirai_model_pt(tmp_path)
    config = _config_file(tmp_path, {"attention_head_dim": 12, "ffn_dim": 64})
    result = _import(source, "--out", tmp_path / "c", "--config", config)
    assert result.exit_code == 1
    assert f"{config}: transformer.ffn_dim is 64 but the weights in {source} have 32" in result.output
    config.write_text(yaml.safe_dump({"transformer": {"attention_head_dim": 12}}))
    result = _import(source, "--out", tmp_path / "c", "--config", config)
    assert result.exit_code == 1
    assert (
        f"{config}: invalid generator config" in result.output and "codec\n  Field required" in result.output
    )
    assert not (tmp_path / "c").exists()


RELEASES = {  # file -> what its networks are (the authors' inference runs --use_ema or not)
    "self_forcing_dmd.pt": ("generator", "generator_ema", "critic"),
    "framewise/causal_forcing.pt": ("generator", "generator_ema"),
    "chunkwise/causal_forcing.pt": ("generator", "generator_ema"),
    "model.pt": ("generator", "mirai_projector", "foresight_dim_proj"),  # Video-Mirai: no EMA, no critic
}


def documented_imports() -> dict[str, list[str]]:
    """manifests/table1.yaml's `mirai-train import` lines, by the release file they import."""
    lines = (Path(__file__).parents[1] / "manifests" / "table1.yaml").read_text().splitlines()
    commands = [
        line.lstrip("# ").split() for line in lines if line.lstrip("# ").startswith("mirai-train import")
    ]
    return {command[2].removeprefix("checkpoints/"): command[3:] for command in commands}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_table1_import_commands_work_on_each_release_layout(release: str, tmp_path: Path) -> None:
    """Each documented command, run on a tiny file with that release's sections, imports it; `--ema`
    where the authors use the EMA (and the file has it), none for Causal-Forcing chunk-wise and model.pt."""
    arguments = documented_imports()[release]
    generator = CausalWanTransformer(**tiny_spec().transformer_kwargs()).state_dict()
    sections = {
        name: {f"model.{k}": v + i for k, v in diffusers_to_original(generator).items()}
        for i, name in enumerate(RELEASES[release])
    }
    path = tmp_path / "checkpoints" / release
    path.parent.mkdir(parents=True)
    torch.save(sections, path)
    config = _config_file(
        tmp_path, {"num_frame_per_block": 3, "attention_head_dim": 12, "rope_max_seq_len": 32}
    )
    flags = ["--ema"] if "--ema" in arguments else []
    assert arguments[arguments.index("--out") + 1].startswith("runs/wan/")
    result = _import(path, "--config", config, *flags, "--out", tmp_path / "imported")
    assert result.exit_code == 0, result.output
    assert ("--ema" in arguments) == (
        "generator_ema" in RELEASES[release] and release != "chunkwise/causal_forcing.pt"
    )
    if release == "model.pt":  # --ema on it names the sections it has, and how to import it
        again = _import(path, "--config", config, "--ema", "--out", tmp_path / "x")
        assert again.exit_code == 1
        assert "no 'generator_ema' section" in again.output and "without --ema" in again.output
