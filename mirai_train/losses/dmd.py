"""Distribution Matching Distillation as Self-Forcing computes it (Self-Forcing's model/dmd.py).

The generator's clean output x0 is re-noised at a random DMD timestep; a frozen real score
(the teacher, with classifier-free guidance) and the trained fake score (the critic) each predict
x0 from that noisy sample. Their difference, normalised per sample, is the gradient the generator
follows; `dmd_loss` is the surrogate whose autograd gradient w.r.t. x0 is exactly that (/ numel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mirai_train.sampling import FlowMatchSchedule


def dmd_timesteps(
    batch: int,
    *,
    schedule: FlowMatchSchedule | None = None,
    min_step: float = 20.0,
    max_step: float = 980.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """One DMD timestep per sample [B] (float), shared by all its frames.

    An integer t ~ U{0..999} is shifted (t <- 1000 * shifted(t / 1000), shift 5 by default) and
    clamped to [min_step, max_step] = [0.02, 0.98] x 1000 as in DMD2: at the very ends of the
    schedule the real and fake x0 predictions barely differ, so the gradient would be noise.
    """
    schedule = schedule or FlowMatchSchedule()
    steps = schedule.num_train_timesteps
    t = torch.randint(0, steps, (batch,), generator=generator, device=device).double() / steps
    return (schedule.shifted(t) * steps).clamp(min_step, max_step).float()


def cfg(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Real-score guidance as Self-Forcing writes it: cond + scale * (cond - uncond).

    Note the convention: scale 3 here is the usual `uncond + 4 * (cond - uncond)`.
    """
    return cond + scale * (cond - uncond)


@torch.no_grad()
def dmd_gradient(x0: Tensor, real_x0: Tensor, fake_x0: Tensor) -> Tensor:
    """(fake_x0 - real_x0) / mean|x0 - real_x0|, the normaliser per sample over all non-batch dims.

    The normaliser makes the step size independent of how far the sample is from the teacher's
    prediction. A 0/0 (x0 equal to both predictions) gives 0, as `nan_to_num` does in the release.
    """
    x0, real_x0, fake_x0 = x0.float(), real_x0.float(), fake_x0.float()
    dims = tuple(range(1, x0.ndim))
    normaliser = (x0 - real_x0).abs().mean(dim=dims, keepdim=True)
    return torch.nan_to_num((fake_x0 - real_x0) / normaliser)


def dmd_loss(x0: Tensor, grad: Tensor) -> Tensor:
    """0.5 * MSE(x0, stopgrad(x0 - grad)) in float64: d loss / d x0 = grad / x0.numel().

    The value itself (0.5 * mean(grad^2)) is only a log line; what matters is its gradient, which
    pushes x0 along -grad. Float64 keeps x0 - (x0 - grad) from cancelling for small gradients.
    """
    x = x0.double()
    return 0.5 * F.mse_loss(x, (x - grad.double()).detach())
