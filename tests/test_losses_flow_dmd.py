"""Flow-matching and DMD losses on hand-built tensors (Self-Forcing's model/dmd.py)."""

from __future__ import annotations

import pytest
import torch

from mirai_train.losses import (
    cfg,
    dmd_gradient,
    dmd_loss,
    dmd_timesteps,
    draw_flow_matching,
    flow_matching_loss,
    timestep_weights,
)
from mirai_train.sampling import FlowMatchSchedule


def test_flow_matching_loss_is_mse_against_noise_minus_x0() -> None:
    x0 = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 4, 1, 1)
    noise = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 4, 1, 1)
    flow = noise - x0  # [-1, -2, -2, -3]
    assert float(flow_matching_loss(flow, x0, noise)) == 0.0
    pred = flow + torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 1, 4, 1, 1)
    assert float(flow_matching_loss(pred, x0, noise)) == pytest.approx((1 + 1 + 4 + 0) / 4)
    # The opposite sign convention (x0 - noise) is a different loss.
    assert float(flow_matching_loss(-flow, x0, noise)) > 0


def test_draw_is_consistent_with_the_schedule() -> None:
    schedule = FlowMatchSchedule(shift=5.0)
    x0 = torch.randn(3, 4, 6, 2, 2)
    draw = draw_flow_matching(x0, schedule, generator=torch.Generator().manual_seed(0))
    assert draw.timestep.shape == (3,)
    sigma = (draw.timestep / 1000).view(3, 1, 1, 1, 1)
    assert torch.allclose(draw.noisy, (1 - sigma) * x0 + sigma * draw.noise)
    # The flow target turns the noisy input back into x0 through the schedule.
    recovered = schedule.flow_to_x0(draw.noise - x0, draw.noisy, draw.timestep)
    assert torch.allclose(recovered, x0, atol=1e-5)


def test_draw_per_block_shares_a_timestep_within_each_block() -> None:
    x0 = torch.randn(2, 4, 6, 2, 2)
    draw = draw_flow_matching(
        x0, FlowMatchSchedule(), block_frames=3, generator=torch.Generator().manual_seed(1)
    )
    t = draw.timestep
    assert t.shape == (2, 6)
    assert torch.equal(t[:, :3], t[:, :1].expand(2, 3)) and torch.equal(t[:, 3:], t[:, 3:4].expand(2, 3))
    assert not torch.equal(t[:, 0], t[:, 3])
    frame_wise = draw_flow_matching(x0, FlowMatchSchedule(), block_frames=1).timestep
    assert frame_wise.shape == (2, 6) and len(set(frame_wise.flatten().tolist())) == 12
    with pytest.raises(ValueError, match="blocks of 4"):
        draw_flow_matching(x0, FlowMatchSchedule(), block_frames=4)


def test_draw_uses_the_shifted_schedule_and_the_seed() -> None:
    x0 = torch.zeros(20000, 1, 1, 1, 1)
    a = draw_flow_matching(x0, FlowMatchSchedule(shift=5.0), generator=torch.Generator().manual_seed(2))
    b = draw_flow_matching(x0, FlowMatchSchedule(shift=5.0), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.timestep, b.timestep) and torch.equal(a.noise, b.noise)
    # Shift 5 puts the median at 1000 * shifted(0.5) = 833.3 (unshifted: 500).
    assert float(a.timestep.median()) == pytest.approx(833.3, abs=10)


def test_a_terminal_share_of_draws_is_pure_noise() -> None:
    """terminal_share: that share of draws at timestep 1000 (noisy = noise exactly), the rest shifted;
    per block, whole blocks are terminal; 0 draws exactly what the plain draw does."""
    x0 = torch.randn(4000, 1, 1, 1, 1)
    draw = draw_flow_matching(
        x0, FlowMatchSchedule(shift=5.0), generator=torch.Generator().manual_seed(3), terminal_share=0.25
    )
    terminal = draw.timestep == 1000
    assert 0.22 < float(terminal.float().mean()) < 0.28
    assert torch.equal(draw.noisy[terminal], draw.noise[terminal])
    assert float(draw.timestep[~terminal].max()) < 1000
    plain = draw_flow_matching(x0, FlowMatchSchedule(shift=5.0), generator=torch.Generator().manual_seed(3))
    none = draw_flow_matching(
        x0, FlowMatchSchedule(shift=5.0), generator=torch.Generator().manual_seed(3), terminal_share=0.0
    )
    assert torch.equal(plain.timestep, none.timestep) and torch.equal(plain.noise, none.noise)
    blocks = draw_flow_matching(
        torch.randn(400, 1, 6, 1, 1), FlowMatchSchedule(), block_frames=3, terminal_share=0.5,
        generator=torch.Generator().manual_seed(4),
    ).timestep  # fmt: skip
    per_block = blocks.view(400, 2, 3) == 1000
    assert torch.equal(per_block.all(-1), per_block.any(-1)) and 0.4 < float(per_block.float().mean()) < 0.6


def test_draw_keeps_a_given_timestep() -> None:
    x0 = torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([20.0, 980.0])
    draw = draw_flow_matching(x0, FlowMatchSchedule(), timestep=t)
    assert torch.equal(draw.timestep, t)
    assert torch.allclose(draw.noisy[1], 0.02 * x0[1] + 0.98 * draw.noise[1])


def test_dmd_timesteps_are_shifted_integers_clamped() -> None:
    t = dmd_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert float(t.min()) == 20.0 and float(t.max()) == 980.0
    # Every value is 1000 * shifted(k / 1000) of an integer k in 0..999 (or a clamp bound).
    grid = FlowMatchSchedule(shift=5.0).shifted(torch.arange(1000, dtype=torch.float64) / 1000) * 1000
    inside = t[(t > 20) & (t < 980)].double()
    assert (inside[:, None] - grid[None]).abs().min(dim=1).values.max() < 1e-3
    # Shifted, k >= 908 lands at the upper clamp: P = 92/1000 (unshifted it would be 20/1000);
    # k <= 4 lands at the lower clamp: P = 5/1000.
    assert float((t == 980).float().mean()) == pytest.approx(0.092, abs=0.01)
    assert float((t == 20).float().mean()) == pytest.approx(0.005, abs=0.002)


def test_cfg_follows_self_forcing_convention() -> None:
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 3.0])
    assert torch.equal(cfg(cond, uncond, 3.0), torch.tensor([4.0, -1.0]))
    assert torch.equal(cfg(cond, uncond, 0.0), cond)


def test_dmd_gradient_normalises_per_sample() -> None:
    x0 = torch.zeros(2, 1, 2, 1, 1)
    real = torch.tensor([[1.0, 3.0], [0.5, -0.5]]).view(2, 1, 2, 1, 1)  # mean|x0 - real|: 2 and 0.5
    fake = torch.tensor([[2.0, 2.0], [1.5, 0.5]]).view(2, 1, 2, 1, 1)  # fake - real: [1, -1], [1, 1]
    grad = dmd_gradient(x0, real, fake)
    expected = torch.tensor([[0.5, -0.5], [2.0, 2.0]]).view(2, 1, 2, 1, 1)
    assert torch.equal(grad, expected)
    assert not grad.requires_grad


def test_dmd_gradient_is_zero_where_everything_agrees() -> None:
    x0 = torch.ones(2, 1, 2, 1, 1)
    real = x0.clone()
    real[1] += 1.0
    grad = dmd_gradient(x0, real, real.clone())
    assert torch.equal(grad, torch.zeros_like(grad))  # sample 0 is 0/0, not nan


def test_dmd_loss_value_and_autograd_gradient() -> None:
    x0 = torch.randn(2, 3, 4, 2, 2, requires_grad=True)
    grad = torch.randn(2, 3, 4, 2, 2)
    loss = dmd_loss(x0, grad)
    assert loss.dtype == torch.float64
    assert float(loss.detach()) == pytest.approx(0.5 * float((grad.double() ** 2).mean()), rel=1e-12)
    loss.backward()
    assert x0.grad is not None
    assert torch.allclose(x0.grad, grad / x0.numel(), atol=1e-12)


def test_timestep_weights_are_causal_forcings_bell() -> None:
    """On its 1000-point shifted grid the weight is exp(-2 ((t - 500) / 1000)^2) - min, scaled to mean
    1: 0 at pure noise (the grid's 1000, where the bell is lowest), highest at the grid point nearest
    500, and a timestep between grid points takes its nearest one's weight."""
    schedule = FlowMatchSchedule(shift=5.0)
    grid = schedule.shifted(torch.linspace(1, 0, 1001, dtype=torch.float64)[:-1]) * 1000
    weights = timestep_weights(grid.float(), schedule)
    assert float(weights.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights[0]) == 0.0 and float(grid[0]) == 1000.0
    peak = int((grid - 500).abs().argmin())
    assert int(weights.argmax()) == peak
    bell = torch.exp(-2 * ((grid - 500) / 1000) ** 2)
    expected = (bell - bell.min()) * 1000 / (bell - bell.min()).sum()
    torch.testing.assert_close(weights, expected.float())
    between = torch.tensor([[float(grid[peak]) + 1e-3, 999.99]])
    torch.testing.assert_close(
        timestep_weights(between, schedule), torch.stack([weights[peak], weights[0]])[None]
    )


def test_weighted_flow_matching_loss_weights_each_frame() -> None:
    """Per frame: the frame's MSE times its weight, then the mean over frames (Causal-Forcing stage 1)."""
    x0, noise = torch.zeros(1, 2, 2, 1, 1), torch.zeros(1, 2, 2, 1, 1)
    pred = torch.tensor([1.0, 3.0, 2.0, 0.0]).view(1, 2, 2, 1, 1)  # channel-major: frame 0 gets 1 and 2
    weight = torch.tensor([[2.0, 0.5]])
    frame_mse = torch.tensor([(1 + 4) / 2, (9 + 0) / 2])
    assert float(flow_matching_loss(pred, x0, noise, weight)) == pytest.approx(
        float((frame_mse * weight).mean())
    )
    assert float(flow_matching_loss(pred, x0, noise)) == pytest.approx(float(frame_mse.mean()))
