from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from safetensors.torch import save_file
from torch import Tensor

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.convert import (
    ConversionError,
    detect_layout,
    diffusers_to_original,
    infer_transformer_kwargs,
    original_to_diffusers,
    read_generator,
    state_dict_mismatches,
    strip_wrappers,
)
from tests.conftest import TINY_TRANSFORMER

WAN_1_3B = dict(dim=1536, num_heads=12, ffn_dim=8960, num_layers=30)
WAN_14B = dict(dim=5120, num_heads=40, ffn_dim=13824, num_layers=40)


def original_wan_state_dict(
    *,
    dim: int,
    ffn_dim: int,
    num_layers: int,
    text_dim: int = 4096,
    freq_dim: int = 256,
    in_dim: int = 16,
    out_dim: int = 16,
    device: str = "meta",
    **_: object,
) -> dict[str, Tensor]:
    """Wan2.1's own `WanModel` (t2v) parameters, written out from its architecture, not from diffusers."""
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (dim, in_dim, 1, 2, 2),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (out_dim * 4, dim),
        "head.head.bias": (out_dim * 4,),
        "head.modulation": (1, 2, dim),
    }
    for i in range(num_layers):
        b = f"blocks.{i}."
        shapes[b + "modulation"] = (1, 6, dim)
        for attn in ("self_attn", "cross_attn"):
            for proj in "qkvo":
                shapes[f"{b}{attn}.{proj}.weight"] = (dim, dim)
                shapes[f"{b}{attn}.{proj}.bias"] = (dim,)
            shapes[f"{b}{attn}.norm_q.weight"] = (dim,)
            shapes[f"{b}{attn}.norm_k.weight"] = (dim,)
        shapes[b + "norm3.weight"] = (dim,)
        shapes[b + "norm3.bias"] = (dim,)
        shapes[b + "ffn.0.weight"] = (ffn_dim, dim)
        shapes[b + "ffn.0.bias"] = (ffn_dim,)
        shapes[b + "ffn.2.weight"] = (dim, ffn_dim)
        shapes[b + "ffn.2.bias"] = (dim,)
    generator = torch.Generator().manual_seed(0)
    if device == "meta":
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    return {k: torch.randn(s, generator=generator) for k, s in shapes.items()}


def _diffusers_kwargs(dim: int, num_heads: int, ffn_dim: int, num_layers: int) -> dict[str, object]:
    return dict(
        num_attention_heads=num_heads,
        attention_head_dim=dim // num_heads,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        in_channels=16,
        out_channels=16,
    )


@pytest.mark.parametrize("size", [WAN_1_3B, WAN_14B], ids=["1.3B", "14B"])
def test_full_size_original_layout_maps_onto_diffusers_and_causal_wan(size: dict[str, Any]) -> None:
    converted = original_to_diffusers(original_wan_state_dict(**size))
    kwargs = _diffusers_kwargs(**size)
    with torch.device("meta"):
        reference = WanTransformer3DModel(**kwargs)
        causal = CausalWanTransformer(**kwargs)
    for model in (reference, causal):
        expected = {k: v.shape for k, v in model.state_dict().items()}
        assert state_dict_mismatches(expected, converted) == []
    inferred = infer_transformer_kwargs(converted, attention_head_dim=128)
    assert {k: inferred[k] for k in kwargs} == kwargs
    assert sum(v.numel() for v in converted.values()) == sum(p.numel() for p in reference.parameters())


def test_tiny_round_trip_through_the_original_layout() -> None:
    model = WanTransformer3DModel(**TINY_TRANSFORMER)
    state = model.state_dict()
    original = diffusers_to_original(state)
    # Spot checks against the original names (hand-written, not from the table).
    for key in (
        "blocks.1.self_attn.o.weight",
        "blocks.0.norm3.bias",
        "head.modulation",
        "time_projection.1.bias",
    ):
        assert key in original
    assert original["blocks.1.ffn.0.weight"] is state["blocks.1.ffn.net.0.proj.weight"]
    assert original["head.head.weight"] is state["proj_out.weight"]
    back = original_to_diffusers(original)
    assert back.keys() == state.keys()
    assert all(back[k] is state[k] for k in state)
    assert detect_layout(original) == "original" and detect_layout(state) == "diffusers"


def test_infer_transformer_kwargs_from_tiny_weights() -> None:
    state = WanTransformer3DModel(**TINY_TRANSFORMER).state_dict()
    inferred = infer_transformer_kwargs(state, attention_head_dim=12)
    assert inferred == {k: v for k, v in TINY_TRANSFORMER.items() if k != "rope_max_seq_len"}
    with pytest.raises(ConversionError, match="width 24 is not a multiple of attention_head_dim 128"):
        infer_transformer_kwargs(state, attention_head_dim=128)
    del state["proj_out.weight"]
    with pytest.raises(ConversionError, match=r"missing proj_out\.weight"):
        infer_transformer_kwargs(state, attention_head_dim=12)


def test_unmapped_keys_are_named() -> None:
    original = diffusers_to_original(WanTransformer3DModel(**TINY_TRANSFORMER).state_dict())
    original["img_emb.proj.0.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"keys with no mapping: img_emb\.proj\.0\.weight"):
        original_to_diffusers(original)


def test_strip_wrappers_finds_the_transformer() -> None:
    original = diffusers_to_original(WanTransformer3DModel(**TINY_TRANSFORMER).state_dict())
    wrapped = {
        f"model._fsdp_wrapped_module.{k}".replace("blocks.0.", "blocks.0._checkpoint_wrapped_module."): v
        for k, v in original.items()
    }
    wrapped["_cls_pred_branch.1.weight"] = torch.zeros(2)
    kept, dropped = strip_wrappers(wrapped)
    assert kept.keys() == original.keys() and dropped == ["_cls_pred_branch.1.weight"]
    comfy, dropped = strip_wrappers({f"model.diffusion_model.{k}": v for k, v in original.items()})
    assert comfy.keys() == original.keys() and dropped == []
    with pytest.raises(ConversionError, match=r"no patch_embedding\.weight"):
        strip_wrappers({"model.foo": torch.zeros(1)})


def _training_file(tmp_path: Path) -> tuple[Path, dict[str, Tensor], dict[str, Tensor]]:
    """A Self-Forcing / Video-Mirai style `model.pt`: several networks, `model.`-prefixed generator keys."""
    generator = WanTransformer3DModel(**TINY_TRANSFORMER).state_dict()
    ema = {k: v + 1 for k, v in generator.items()}
    path = tmp_path / "model.pt"
    torch.save(
        {
            "generator": {f"model.{k}": v for k, v in diffusers_to_original(generator).items()},
            "generator_ema": {f"model.{k}": v for k, v in diffusers_to_original(ema).items()},
            "critic": {"model.patch_embedding.weight": torch.zeros(1)},
            "mirai_projector": {"blocks.0.weight": torch.zeros(1)},
            "foresight_dim_proj": {"weight": torch.zeros(1)},
        },
        path,
    )
    return path, generator, ema


def test_read_generator_from_a_training_file(tmp_path: Path) -> None:
    path, generator, ema = _training_file(tmp_path)
    imported = read_generator(path)
    assert imported.section == "generator"
    assert imported.notes == [
        "kept 'generator'; dropped generator_ema, critic, mirai_projector, foresight_dim_proj"
    ]
    assert imported.state_dict.keys() == generator.keys()
    assert all(torch.equal(imported.state_dict[k], generator[k]) for k in generator)
    imported_ema = read_generator(path, ema=True)
    assert imported_ema.section == "generator_ema"
    assert all(torch.equal(imported_ema.state_dict[k], ema[k]) for k in ema)


def test_read_generator_from_flat_files(tmp_path: Path) -> None:
    original = original_wan_state_dict(dim=24, ffn_dim=32, num_layers=2, text_dim=32, device="cpu")
    flat = tmp_path / "causal_ode.pt"
    torch.save({f"model.{k}": v for k, v in original.items()}, flat)
    imported = read_generator(flat)
    assert imported.section is None and imported.notes == []
    assert all(torch.equal(imported.state_dict[k], v) for k, v in original_to_diffusers(original).items())
    with pytest.raises(ConversionError, match="--ema asks for a 'generator_ema' section"):
        read_generator(flat, ema=True)
    folder = tmp_path / "Wan2.1-T2V-tiny"
    folder.mkdir()
    keys = sorted(original)
    save_file(
        {k: original[k] for k in keys[:10]}, folder / "diffusion_pytorch_model-00001-of-00002.safetensors"
    )
    save_file(
        {k: original[k] for k in keys[10:]}, folder / "diffusion_pytorch_model-00002-of-00002.safetensors"
    )
    assert read_generator(folder).state_dict.keys() == imported.state_dict.keys()
    pipeline = tmp_path / "Wan2.1-T2V-tiny-Diffusers"
    (pipeline / "transformer").mkdir(parents=True)
    save_file(
        original_to_diffusers(original), pipeline / "transformer" / "diffusion_pytorch_model.safetensors"
    )
    assert read_generator(pipeline).state_dict.keys() == imported.state_dict.keys()


def test_read_generator_errors_name_the_file(tmp_path: Path) -> None:
    path, _, _ = _training_file(tmp_path)
    data = torch.load(path)
    del data["generator_ema"]
    no_ema = tmp_path / "no_ema.pt"
    torch.save(data, no_ema)
    with pytest.raises(
        ConversionError, match=rf"{no_ema}: no 'generator_ema' section \(sections present: generator, critic"
    ):
        read_generator(no_ema, ema=True)
    data["generator"]["model.blocks.0.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pt"
    torch.save(data, broken)
    with pytest.raises(ConversionError, match=rf"{broken} \[generator\]: .*blocks\.0\.extra\.weight"):
        read_generator(broken)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ConversionError, match=rf"{text}: not a readable torch checkpoint"):
        read_generator(text)
    with pytest.raises(ConversionError, match="no such file"):
        read_generator(tmp_path / "missing.pt")


def test_state_dict_mismatches_reports_each_kind() -> None:
    expected = {"a": torch.Size([2]), "b": torch.Size([3])}
    actual = {"b": torch.zeros(4), "c": torch.zeros(1)}
    assert state_dict_mismatches(expected, actual) == [
        "shape mismatch: b expected [3], found [4]",
        "missing: a [2]",
        "unexpected: c [1]",
    ]
