"""The flow-matching denoising loss (toy teacher, AR teacher forcing, the DMD critic).

Wan predicts the flow `noise - x0` of x_t = (1 - sigma) x0 + sigma * noise. The loss is the plain
MSE between that prediction and the true flow, with no per-timestep weight (as the Self-Forcing
critic computes it). The loss is a pure function of tensors; the caller runs the model on the
noisy input that `draw_flow_matching` returns.
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


def flow_matching_loss(flow_pred: Tensor, x0: Tensor, noise: Tensor) -> Tensor:
    """MSE (float32, mean over all elements) between a flow prediction and the true flow `noise - x0`."""
    return F.mse_loss(flow_pred.float(), (noise - x0).float())


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
