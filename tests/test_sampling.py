"""The flow-matching schedule, the timestep warp and the seeded causal rollout."""

from __future__ import annotations

import pytest
import torch

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.sampling import (
    FlowMatchSchedule,
    RolloutConfig,
    denoising_steps,
    ode_grid,
    ode_trajectory,
    rollout,
)
from mirai_train.spec import SamplerSpec
from tests.conftest import TINY_TRANSFORMER


def test_warp_matches_self_forcing_steps() -> None:
    warped = FlowMatchSchedule(shift=5.0).warp([1000, 750, 500, 250])
    assert warped == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)
    assert denoising_steps(SamplerSpec()) == pytest.approx(warped)
    assert denoising_steps(SamplerSpec(warp_denoising_step=False)) == [1000, 750, 500, 250]


def test_noise_and_x0_round_trip() -> None:
    schedule = FlowMatchSchedule()
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([[900.0, 500.0, 0.0], [250.0, 1000.0, 10.0]])
    xt = schedule.add_noise(x0, noise, t)
    assert torch.allclose(xt[:, :, 2][0], x0[:, :, 2][0])  # t = 0 is clean
    assert torch.allclose(xt[1, :, 1], noise[1, :, 1])  # t = 1000 is pure noise
    flow = noise - x0  # what a perfect Wan predicts
    assert torch.allclose(schedule.flow_to_x0(flow, xt, t), x0, atol=1e-5)


def test_training_timesteps_are_shifted_uniform() -> None:
    t = FlowMatchSchedule(shift=5.0).sample_timesteps((20000,), torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0 and float(t.max()) < 1000
    # P(t < 1000 * shifted(0.5)) = 0.5 under the shifted draw.
    assert float((t < 1000 * 5 * 0.5 / (1 + 4 * 0.5)).float().mean()) == pytest.approx(0.5, abs=0.02)


def _model(nfpb: int) -> CausalWanTransformer:
    torch.manual_seed(3)
    return CausalWanTransformer(**TINY_TRANSFORMER, num_frame_per_block=nfpb).eval()


def _config(frames: int, **sampler: float) -> RolloutConfig:
    return RolloutConfig(frames, 16, 4, 4, SamplerSpec(**sampler))


@pytest.mark.parametrize("nfpb", [1, 3])
def test_same_seed_same_video_and_prefix(nfpb: int) -> None:
    model, text = _model(nfpb), torch.randn(1, 5, 32)
    with torch.no_grad():
        a = rollout(model, text, _config(6), generator=torch.Generator().manual_seed(7)).latents
        b = rollout(model, text, _config(6), generator=torch.Generator().manual_seed(7)).latents
        c = rollout(model, text, _config(6), generator=torch.Generator().manual_seed(8)).latents
        short = rollout(model, text, _config(3), generator=torch.Generator().manual_seed(7)).latents
    assert a.shape == (1, 16, 6, 4, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.allclose(short, a[:, :, :3], atol=1e-6)


def test_rollout_equals_manual_denoising_with_block_causal_forward() -> None:
    """One block, by hand: the rollout's first block is the plain few-step sampler."""
    model, text = _model(1), torch.randn(1, 5, 32)
    steps = denoising_steps(SamplerSpec())
    schedule = FlowMatchSchedule()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = rollout(model, text, _config(1), generator=torch.Generator().manual_seed(1)).latents
        x = torch.randn(1, 16, 1, 4, 4, generator=gen)
        for i, t in enumerate(steps):
            tt = torch.full((1, 1), t)
            x0 = schedule.flow_to_x0(model(x, tt, text).sample, x, tt)
            if i + 1 < len(steps):
                x = schedule.add_noise(
                    x0, torch.randn(1, 16, 1, 4, 4, generator=gen), torch.tensor([steps[i + 1]])
                )
    assert torch.allclose(out, x0, atol=1e-6)


def test_guidance_needs_a_negative_prompt_and_changes_the_video() -> None:
    model, text, negative = _model(1), torch.randn(1, 5, 32), torch.zeros(1, 5, 32)
    with torch.no_grad():
        with pytest.raises(ValueError, match="negative prompt"):
            rollout(model, text, _config(2, guidance_scale=3.0), generator=torch.Generator().manual_seed(0))
        plain = rollout(model, text, _config(2), generator=torch.Generator().manual_seed(0)).latents
        guided = rollout(
            model,
            text,
            _config(2, guidance_scale=3.0),
            generator=torch.Generator().manual_seed(0),
            negative_text=negative,
        ).latents
        unit = rollout(
            model,
            text,
            _config(2, guidance_scale=1.0),
            generator=torch.Generator().manual_seed(0),
            negative_text=negative,
        ).latents
    assert torch.equal(plain, unit)
    assert not torch.allclose(plain, guided)


def test_block_size_must_divide_frames() -> None:
    with pytest.raises(ValueError, match="multiple of the block size 3"):
        rollout(_model(3), torch.randn(1, 5, 32), _config(4), generator=torch.Generator())


def test_training_rollout_taps_equal_the_inference_rollout() -> None:
    """Exit at the last step with gradients on: the same latents and hidden states as inference."""
    model, text = _model(3), torch.randn(1, 5, 32)
    with torch.no_grad():
        inference = rollout(model, text, _config(6), generator=torch.Generator().manual_seed(2), tap_layer=1)
    training = rollout(
        model, text, _config(6), generator=torch.Generator().manual_seed(2), exit_step=3, tap_layer=1
    )
    assert training.latents.requires_grad and len(training.taps) == 2
    assert torch.allclose(training.latents, inference.latents, atol=1e-6)
    for a, b in zip(training.taps, inference.taps, strict=True):
        assert a.shape == (1, 3 * 2 * 2, 24)
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("exit_step", [0, 2])
def test_only_the_exit_step_carries_gradients(exit_step: int) -> None:
    model, text = _model(3), torch.randn(1, 5, 32)
    grad_modes: list[bool] = []
    handle = model.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    out = rollout(model, text, _config(6), generator=torch.Generator().manual_seed(0), exit_step=exit_step)
    handle.remove()
    per_block = exit_step + 2  # the steps up to the exit, then the context pass
    expected = ([False] * exit_step + [True] + [False]) * 2
    assert grad_modes == expected and len(grad_modes) == 2 * per_block
    out.latents.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="exit_step 4"):
        rollout(model, text, _config(3), generator=torch.Generator(), exit_step=4)


def test_one_generator_per_sample_draws_each_sample_its_batch_one_noise() -> None:
    """Batched generation: sample i of a batch rolls out what a batch of one with generator i does,
    to the rounding of batched kernels (oneDNN's convolution and small GEMMs depend on the batch)."""
    model, text = _model(3), torch.randn(3, 5, 32)
    seeds = (4, 5, 6)
    with torch.no_grad():
        batched = rollout(
            model, text, _config(6), generator=[torch.Generator().manual_seed(s) for s in seeds]
        ).latents
        for i, seed in enumerate(seeds):
            one = rollout(model, text[i : i + 1], _config(6), generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(batched[i : i + 1], one.latents, rtol=0, atol=1e-5)
        assert not torch.allclose(batched[0], batched[1], atol=1e-2)
        with pytest.raises(ValueError, match="2 generators for a batch of 3"):
            rollout(model, text, _config(3), generator=[torch.Generator(), torch.Generator()])


@pytest.mark.parametrize("nfpb", [1, 3])
def test_teacher_forced_trajectories_see_the_given_clean_past(nfpb: int) -> None:
    """Causal-Forcing's causal ODE data: forced on the AR model's own free rollout, the teacher-forced
    trajectory is that rollout; each block's states follow the clean frames before it, not its own."""
    model, text, negative = _model(nfpb), torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    schedule = FlowMatchSchedule()
    record = schedule.warp([1000, 750, 500, 250])
    grid = ode_grid(schedule, 8, record)
    noise = torch.randn(1, 16, 6, 4, 4, generator=torch.Generator().manual_seed(1))

    def trajectory(clean: torch.Tensor | None) -> torch.Tensor:
        return ode_trajectory(
            model, text, noise, grid, record, causal=True, clean_context=clean, guidance_scale=3.0,
            negative_text=negative, schedule=schedule,
        )  # fmt: skip

    free = trajectory(None)  # block by block on its own samples
    assert free.shape == (1, 5, 16, 6, 4, 4)
    forced = trajectory(free[:, -1])
    assert (forced - free).abs().max() < 1e-4
    other = free[:, -1].clone()
    other[:, :, :nfpb] += 1.0  # the first block's clean frames
    moved = (trajectory(other) - forced).abs().amax(dim=(0, 1, 2, 4, 5))  # per frame
    assert moved[:nfpb].max() == 0  # the first block never sees its own clean frames
    assert moved[nfpb:].min() > 1e-3  # every later block does
    with pytest.raises(ValueError, match="causal=True"):
        ode_trajectory(model, text, noise, grid, record, causal=False, clean_context=other)
