"""The flow-matching denoising loss (toy teacher, AR teacher forcing, the DMD critic).

Wan predicts the flow `noise - x0` of x_t = (1 - sigma) x0 + sigma * noise. The loss is the MSE
between that prediction and the true flow: plain (as the Self-Forcing critic computes it), or per
frame weighted by its timestep (Causal-Forcing stage 1, `timestep_weights`). The loss is a pure
function of tensors; the caller runs the model on the noisy input that `draw_flow_matching` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mirai_train.sampling import FlowMatchSchedule


@dataclass(frozen=True)
class FlowMatchingDraw:
    """One training draw: the model sees `noisy` at `timestep` ([B] or [B, F]) and should predict `noise - x0`."""

    timestep: Tensor
    noise: Tensor
    noisy: Tensor


def flow_matching_loss(flow_pred: Tensor, x0: Tensor, noise: Tensor, weight: Tensor | None = None) -> Tensor:
    """MSE (float32) between a flow prediction and the true flow `noise - x0`: the mean over all
    elements, or with per-frame `weight` [B, F], the mean over frames of weight x the frame's MSE
    (Causal-Forcing's `model/diffusion.py`)."""
    if weight is None:
        return F.mse_loss(flow_pred.float(), (noise - x0).float())
    per_frame = F.mse_loss(flow_pred.float(), (noise - x0).float(), reduction="none").mean(dim=(1, 3, 4))
    return (per_frame * weight.to(per_frame)).mean()


def timestep_weights(timestep: Tensor, schedule: FlowMatchSchedule) -> Tensor:
    """Causal-Forcing's per-timestep loss weight (`FlowMatchScheduler.training_weight` in its
    `utils/scheduler.py`, set up with 1000 training steps, sigma_min 0 and `extra_one_step`): on the
    grid of 1000 shifted timesteps, a Gaussian bell exp(-2 ((t - 500) / 1000)^2), minus its minimum,
    scaled to mean 1; each timestep takes the weight of its nearest grid point. Same shape as `timestep`.
    """
    steps = schedule.num_train_timesteps
    grid = schedule.shifted(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]) * steps
    bell = torch.exp(-2 * ((grid - steps / 2) / steps) ** 2)
    bell = bell - bell.min()
    table = bell * (steps / bell.sum())
    nearest = (grid[None, :] - timestep.double().reshape(-1, 1)).abs().argmin(dim=1)
    return table[nearest].reshape(timestep.shape).to(timestep.device, torch.float32)


def draw_flow_matching(
    x0: Tensor,
    schedule: FlowMatchSchedule,
    *,
    block_frames: int | None = None,
    timestep: Tensor | None = None,
    generator: torch.Generator | None = None,
    terminal_share: float = 0.0,
) -> FlowMatchingDraw:
    """Draw timesteps and noise for clean latents `x0` [B, C, F, H, W].

    Timesteps follow the shifted schedule (s ~ U[0, 1), shifted, as `sample_timesteps`):
    `block_frames=None` draws one per sample ([B]); `block_frames=k` draws one per block of k
    frames, repeated over the block's frames ([B, F]), so teacher forcing trains every block at
    its own noise level. A given `timestep` is used as is (the DMD critic passes the DMD draw).
    `terminal_share`: that share of the draws is pure noise (timestep 1000), where sampling starts
    and only the prompt can say what to draw; the shifted draw comes close but never gets there, so
    a model can lean on the faint signal of the noisy input instead (Lin et al., "Common diffusion
    noise schedules and sample steps are flawed", WACV 2024: train at the terminal level too).
    Everything is drawn on `x0`'s device, where `generator` must live.
    """
    batch, _, frames = x0.shape[:3]
    if timestep is None:
        draws = batch if block_frames is None else batch * _blocks(frames, block_frames)
        s = torch.rand(draws, generator=generator, device=x0.device)
        if terminal_share > 0:
            terminal = torch.rand(draws, generator=generator, device=x0.device) < terminal_share
            s = torch.where(terminal, torch.ones_like(s), s)
        timestep = schedule.shifted(s) * schedule.num_train_timesteps
        if block_frames is not None:
            timestep = timestep.view(batch, -1).repeat_interleave(block_frames, dim=1)
    timestep = timestep.to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return FlowMatchingDraw(timestep, noise, schedule.add_noise(x0, noise, timestep))


def _blocks(frames: int, block_frames: int) -> int:
    if block_frames < 1 or frames % block_frames:
        raise ValueError(f"{frames} frames do not split into blocks of {block_frames}")
    return frames // block_frames
