"""The wan-scale recipes: they validate, carry the official values, and build the 1.3B / 14B models.

Official values are those of the release's configs/video_mirai_dmd_chunkwise.yaml (y0urOy/Video-Mirai)
and Self-Forcing's DMD; the models are built on the meta device, so no weights or memory are needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from mirai_train.config_files import ConfigError, load_model
from mirai_train.data import TrainingData
from mirai_train.losses import official_layer_to_tap
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import CausalFrameRule
from mirai_train.models.predictor import ForesightPredictor
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.parallel import is_sharded
from mirai_train.recipe import Recipe, load_recipe
from mirai_train.sampling import denoising_steps
from mirai_train.spec import GeneratorSpec, TextEncoderSpec
from mirai_train.stages.base import Context
from mirai_train.stages.common import require_same

WAN = Path(__file__).parents[1] / "mirai_train/configs/wan"
TEACHER = "imported/wan2.1-t2v-14b"
BLOCK = {"chunkwise": 3, "framewise": 1}
DMD = {  # recipe: (block, warm start, window Delta or None without Video-Mirai)
    "dmd_sf_chunkwise": ("chunkwise", "sf_ode_init_chunkwise/generator", None),
    "dmd_sf_chunkwise_mirai": ("chunkwise", "sf_ode_init_chunkwise/generator", [0, 1]),
    "dmd_cf_framewise": ("framewise", "cf_causal_ode_framewise/generator", None),
    "dmd_cf_framewise_mirai": ("framewise", "cf_causal_ode_framewise/generator", [0, 1]),
    "dmd_cf_chunkwise": ("chunkwise", "cf_causal_ode_chunkwise/generator", None),
    "dmd_cf_chunkwise_mirai": ("chunkwise", "cf_causal_ode_chunkwise/generator", [0, 1]),
    "dmd_cf_chunkwise_mirai_d0": ("chunkwise", "cf_causal_ode_chunkwise/generator", [0]),
    "dmd_cf_chunkwise_mirai_d1": ("chunkwise", "cf_causal_ode_chunkwise/generator", [1]),
    "dmd_cf_chunkwise_mirai_d012": ("chunkwise", "cf_causal_ode_chunkwise/generator", [0, 1, 2]),
}
EARLIER = {  # the stages before DMD: recipe -> (stage, block, init, teacher)
    "sf_ode_init_chunkwise": ("ode_init", "chunkwise", "imported/wan2.1-t2v-1.3b", "imported/wan2.1-t2v-1.3b"),
    "cf_ar_chunkwise": ("ar_teacher_forcing", "chunkwise", "imported/wan2.1-t2v-1.3b", None),
    "cf_ar_framewise": ("ar_teacher_forcing", "framewise", "imported/wan2.1-t2v-1.3b", None),
    "cf_causal_ode_chunkwise": ("causal_ode", "chunkwise", "cf_ar_chunkwise/generator", "cf_ar_chunkwise/generator"),
    "cf_causal_ode_framewise": ("causal_ode", "framewise", "cf_ar_framewise/generator", "cf_ar_framewise/generator"),
}  # fmt: skip
SPECS = {"generator_chunkwise", "generator_framewise", "teacher_generator"}


def recipe(name: str) -> Recipe:
    return load_recipe(WAN / f"{name}.yaml")


def block_of(name: str) -> str:
    return DMD[name][0] if name in DMD else EARLIER[name][1]


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_directory_holds_these_recipes_and_specs() -> None:
    assert {p.stem for p in WAN.glob("*.yaml")} == set(DMD) | set(EARLIER) | SPECS


@pytest.mark.parametrize("name", sorted(set(DMD) | set(EARLIER)))
def test_generator_and_sampler_are_wan_1_3b_with_self_forcing_steps(name: str) -> None:
    spec = recipe(name).generator
    t = spec.transformer
    assert (t.num_layers, t.num_attention_heads, t.attention_head_dim, t.ffn_dim) == (30, 12, 128, 8960)
    assert t.num_frame_per_block == BLOCK[block_of(name)]
    assert spec.sampler.denoising_step_list == [1000, 750, 500, 250] and spec.sampler.warp_denoising_step
    assert spec.sampler.timestep_shift == 5.0
    assert denoising_steps(spec.sampler) == pytest.approx([1000, 937.5, 833.333, 625], abs=1e-3)
    assert (spec.video.height, spec.video.width, spec.video.fps) == (480, 832, 16)
    assert recipe(name).data.num_frames == 81  # 21 latent frames
    data = recipe(name).data
    if name.startswith(("cf_ar_", "cf_causal_ode_")):  # stages 1 and 2 read the release's clean latents
        assert (data.kind, data.path) == ("latents", "dataset/clean_data")
    else:
        assert data.kind == "prompts" and data.prompts


@pytest.mark.parametrize("name", sorted(DMD))
def test_dmd_recipes_carry_the_official_values(name: str) -> None:
    _, init, window = DMD[name]
    r = recipe(name)
    o, d = r.optim, r.dmd
    assert d is not None
    assert (r.stage, r.init, r.teacher, r.critic) == ("dmd", init, TEACHER, "imported/wan2.1-t2v-1.3b")
    assert (o.lr, o.lr_critic, o.lr_foresight) == (2e-6, 4e-7, 2e-6)
    assert (o.beta1, o.beta2, o.weight_decay, o.grad_clip) == (0.0, 0.999, 0.01, 10.0)
    assert (o.batch_size, o.gradient_accumulation_steps, o.max_steps, o.seed) == (1, 8, 100, 3384764)
    assert (o.ema_weight, o.ema_start_step) == (0.99, 200)
    assert (d.guidance_scale, d.dfake_gen_update_ratio, d.min_step, d.max_step) == (3.0, 5, 20, 980)
    assert not d.last_step_only and d.negative_prompt.startswith("色调艳丽")
    f = r.foresight
    if window is None:
        assert f is None
        return
    assert f is not None
    assert (f.foresight_weight, f.foresight_deltas) == (0.2, window)
    assert (f.foresight_student_layer, f.foresight_teacher_layer, f.predictor_depth, f.replay) == (
        15,
        20,
        3,
        True,
    )


@pytest.mark.parametrize("name", sorted(EARLIER))
def test_earlier_stages_chain_into_each_other(name: str) -> None:
    stage, _, init, teacher = EARLIER[name]
    r = recipe(name)
    assert (r.stage, r.init, r.teacher) == (stage, init, teacher)
    assert r.optim.lr == 2e-6
    if r.ode is not None:  # the releases' ODE pairs: 48 steps, CFG 6
        assert (r.ode.teacher_steps, r.ode.guidance_scale) == (48, 6.0)


def test_models_have_the_1_3b_and_14b_shapes() -> None:
    """The student, the 14B teacher and the predictor that the DMD stage builds from these recipes."""
    r = recipe("dmd_cf_chunkwise_mirai")
    teacher_spec = load_model(WAN / "teacher_generator.yaml", GeneratorSpec)
    require_same(teacher_spec, r.generator, TEACHER)  # what DMDStage checks before it loads the teacher
    assert r.foresight is not None
    with torch.device("meta"):
        student = CausalWanTransformer(**r.generator.transformer_kwargs())
        teacher = CausalWanTransformer(**teacher_spec.transformer_kwargs())
        predictor = ForesightPredictor(
            dim=student.hidden_dim,
            teacher_dim=teacher.hidden_dim,
            num_heads=student.num_heads,
            depth=r.foresight.predictor_depth,
        )
    assert (len(student.blocks), student.hidden_dim, student.num_heads) == (30, 1536, 12)
    assert (len(teacher.blocks), teacher.hidden_dim, teacher.num_heads) == (40, 5120, 40)
    assert 1.3e9 <= parameters(student) < 1.5e9  # Wan2.1-T2V-1.3B: 1.42e9
    assert 1.4e10 <= parameters(teacher) < 1.5e10  # Wan2.1-T2V-14B: 1.43e10
    assert len(predictor.blocks) == 3 and predictor.proj.weight.shape == (5120, 1536)
    assert 1.2e8 <= parameters(predictor) < 1.5e8  # 3 DiT layers at width 1536 + Linear(1536 -> 5120)
    assert official_layer_to_tap(r.foresight.foresight_student_layer) < len(student.blocks)
    assert official_layer_to_tap(r.foresight.foresight_teacher_layer) < len(teacher.blocks)
    t = teacher_spec.transformer
    assert (t.ffn_dim, t.text_dim, t.freq_dim, t.attention_head_dim) == (13824, 4096, 256, 128)


def test_fsdp2_shards_the_wan_models_per_block(one_rank_group: None, tmp_path: Path) -> None:
    """The wan recipes' strategy (fsdp, the default) through `Context.parallel`, as the DMD stage calls it:
    the 1.3B student, the 14B real score and the predictor, built on the meta device, one FSDP2 unit
    per transformer block and the root (and, in bf16, the float32 condition embedder); the parameter
    count is kept (world size 2 pretended, one rank)."""
    r = recipe("dmd_cf_chunkwise_mirai")
    assert r.distributed.strategy == "fsdp"
    assert r.foresight is not None
    teacher_spec = load_model(WAN / "teacher_generator.yaml", GeneratorSpec)
    ctx = Context(r, tmp_path, tmp_path, cast(TrainingData, None), torch.device("cpu"), world_size=2)
    with torch.device("meta"):
        student = CausalWanTransformer(**r.generator.transformer_kwargs())
        teacher = CausalWanTransformer(**teacher_spec.transformer_kwargs())
        predictor = ForesightPredictor(
            dim=student.hidden_dim, teacher_dim=teacher.hidden_dim, num_heads=student.num_heads, depth=3
        )
    assert r.precision.mixed_precision and r.precision.gradient_checkpointing
    for model, blocks in ((student, 30), (teacher, 40), (predictor, 3)):
        count = parameters(model)
        ctx.parallel(model)
        units = [m for m in model.modules() if is_sharded(m)]
        # Under bf16, the condition embedder (kept in float32) is a unit of its own.
        embedder = getattr(model, "condition_embedder", None)
        assert len(units) == blocks + 1 + (embedder is not None) and units[0] is model
        assert embedder is None or is_sharded(embedder)
        assert getattr(model, "gradient_checkpointing", True)
        assert parameters(model) == count


def test_fsdp2_bf16_keeps_float32_masters_and_the_timestep(one_rank_group: None) -> None:
    """FSDP2 under the bf16 policy plus autocast: a bf16 forward close to float32's, float32 gradients
    on the float32 sharded parameters, and an unrounded timestep (bf16 would make 937.5 into 936)."""
    from mirai_train.parallel import shard

    kwargs = {
        "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 16, "out_channels": 16,
        "text_dim": 16, "freq_dim": 32, "ffn_dim": 32, "num_layers": 2, "rope_max_seq_len": 32,
        "num_frame_per_block": 3,
    }  # fmt: skip
    torch.manual_seed(0)
    reference = CausalWanTransformer(**kwargs)
    model = CausalWanTransformer(**kwargs)
    model.load_state_dict(reference.state_dict())
    shard(model, torch.device("cpu"), mixed_precision=True)
    x, text = torch.randn(1, 16, 6, 4, 4), torch.randn(1, 8, 16)
    seen = []
    model.condition_embedder.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.full((1,), 937.5), text).sample
    assert out is not None and out.dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    expected = reference(x, torch.full((1,), 937.5), text).sample
    assert expected is not None
    assert 0 < ((out.float() - expected).norm() / expected.norm()).item() < 0.02
    assert seen[0].dtype == torch.float32 and seen[0].eq(937.5).all()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}


def test_a_mistyped_key_names_the_key_the_line_and_the_file(tmp_path: Path) -> None:
    source = (WAN / "dmd_cf_chunkwise_mirai.yaml").read_text()
    (tmp_path / "generator_chunkwise.yaml").write_text((WAN / "generator_chunkwise.yaml").read_text())
    typo = tmp_path / "typo.yaml"
    typo.write_text(source.replace("  foresight_weight: 0.2", "  foresight_wieght: 0.2"))
    line = 1 + typo.read_text().splitlines().index("  foresight_wieght: 0.2")
    with pytest.raises(ConfigError) as error:
        load_recipe(typo)
    assert f"{typo}:{line}: foresight.foresight_wieght: unknown key" in str(error.value)

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(source + "generator_ckpt: checkpoints/chunkwise/causal_ode.pt\n")
    with pytest.raises(
        ConfigError, match=f"{unknown}:{len(unknown.read_text().splitlines())}: generator_ckpt: unknown"
    ):
        load_recipe(unknown)


def test_causal_ode_needs_clean_clips_to_force_its_teacher_on(tmp_path: Path) -> None:
    source = (WAN / "cf_causal_ode_chunkwise.yaml").read_text()
    (tmp_path / "generator_chunkwise.yaml").write_text((WAN / "generator_chunkwise.yaml").read_text())
    prompts = tmp_path / "prompts.yaml"
    data = "  kind: latents\n  path: dataset/clean_data"
    assert data in source
    prompts.write_text(source.replace(data, "  kind: prompts\n  prompts: prompts.txt"))
    with pytest.raises(ConfigError, match="stage 'causal_ode' forces its teacher on clean training clips"):
        load_recipe(prompts)


def test_a_mistyped_key_in_the_named_generator_spec_names_that_file(tmp_path: Path) -> None:
    spec = tmp_path / "generator_chunkwise.yaml"
    spec.write_text(
        (WAN / "generator_chunkwise.yaml").read_text().replace("  num_layers: 30", "  num_layer: 30")
    )
    (tmp_path / "dmd.yaml").write_text((WAN / "dmd_cf_chunkwise.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"{spec}:\d+: transformer\.num_layer: unknown key"):
        load_recipe(tmp_path / "dmd.yaml")


class WanShapes(CausalFrameRule):
    """Wan's VAE factors without its weights: what TrainingData checks a latents dataset against."""

    spatial_factor, temporal_factor, latent_channels = 8, 4, 16


@pytest.mark.parametrize("name", ["cf_ar_chunkwise", "cf_ar_framewise"])
def test_stage_1_reads_the_release_clean_data_layout(name: str, tmp_path: Path) -> None:
    """One clip in Causal-Forcing's merged clean_data layout: [N, 1, F, C, h, w] float16, frames first."""
    lmdb = pytest.importorskip("lmdb")
    row = np.random.default_rng(0).standard_normal((1, 21, 16, 60, 104)).astype(np.float16)
    env = lmdb.open(str(tmp_path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"latents_0_data", row.tobytes())
        txn.put(b"prompts_0_data", b"a prompt")
        txn.put(b"latents_shape", b"1 1 21 16 60 104")
    env.close()
    r = recipe(name)
    spec = r.data.model_copy(update={"path": str(tmp_path)})
    text = build_text_encoder(TextEncoderSpec(kind="toy", dim=8, max_length=4))
    data = TrainingData(spec, r.generator.video, WanShapes(), text, batch_size=1, accumulation=1)
    batch = data.batch(0)
    assert batch.latents is not None and batch.prompts == ["a prompt"]
    assert torch.equal(batch.latents[0], torch.from_numpy(row[0].astype(np.float32)).permute(1, 0, 2, 3))
