"""The probe's readout: from one hidden token to the codec latents of its patch Delta segments ahead.

Token <-> pixels. The generator patchifies latents [B, C, F, H, W] with patch (p_t, p_h, p_w) and
orders tokens frame-major, then row-major over the (H / p_h, W / p_w) grid; a tap (`tap_layer=k`)
keeps that order. Token n of a segment (a block of `num_frame_per_block` latent frames) therefore
stands for one latent patch of C * p_t * p_h * p_w values, and the readout of that token for
Delta = d predicts the *same* patch (same frame within the block, same grid cell) of the segment d
blocks later. At toy scale, patch (1, 2, 2) of the 8x8x4 pixel codec is a 16x16 pixel square over 4
video frames (1 frame for latent frame 0).

Why latents, then decode: the readout regresses the codec latents of the patch and the probe
decodes the assembled latents with the generator's own codec to RGB. For the toy pixel codec the
latents are a permutation of the pixels (so this *is* an RGB readout); for the Wan VAE it is the
only target with a one-to-one token correspondence, and decoding gives the RGB the metrics compare.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mirai_eval.probe.spec import FitReport, ReadoutSpec


def latent_patches(latents: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """[B, C, F, H, W] -> [B, tokens, C * p_t * p_h * p_w] in the generator's token order."""
    b, c, f, h, w = latents.shape
    pt, ph, pw = patch
    x = latents.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # b, f', h', w', c, pt, ph, pw
    return x.reshape(b, (f // pt) * (h // ph) * (w // pw), c * pt * ph * pw)


def patches_to_latents(
    patches: Tensor, channels: int, frames: int, height: int, width: int, patch: tuple[int, int, int]
) -> Tensor:
    """Inverse of `latent_patches`: [B, tokens, C * p_t * p_h * p_w] -> [B, C, F, H, W]."""
    pt, ph, pw = patch
    b = patches.shape[0]
    x = patches.reshape(b, frames // pt, height // ph, width // pw, channels, pt, ph, pw)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, channels, frames, height, width)


class Readout(nn.Module):
    """token [D] -> patch [P]: standardise, Linear-GELU-Linear, un-standardise.

    Inputs are standardised per dimension; targets by their mean and one global scale, so the
    training loss stays proportional to the latent MSE (a per-dimension scale would reweight it).
    """

    in_mean: Tensor
    in_std: Tensor
    out_mean: Tensor
    out_scale: Tensor

    def __init__(self, inputs: Tensor, targets: Tensor, hidden: int) -> None:
        super().__init__()
        self.register_buffer("in_mean", inputs.mean(0))
        self.register_buffer("in_std", inputs.std(0).clamp_min(1e-6))
        self.register_buffer("out_mean", targets.mean(0))
        self.register_buffer("out_scale", (targets - targets.mean(0)).std().clamp_min(1e-6))
        self.net = nn.Sequential(
            nn.Linear(inputs.shape[1], hidden), nn.GELU(), nn.Linear(hidden, targets.shape[1])
        )

    def normalised(self, tokens: Tensor) -> Tensor:
        return self.net((tokens - self.in_mean) / self.in_std)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.normalised(tokens) * self.out_scale + self.out_mean


def fit_readout(inputs: Tensor, targets: Tensor, spec: ReadoutSpec, seed: int) -> tuple[Readout, FitReport]:
    """Train a readout on (token, patch) pairs [N, D], [N, P] with AdamW on minibatches.

    Initialisation and minibatch order come from `seed` alone (the global RNG is left as it was), so
    the same data and seed give the same readout.
    """
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] < 2:
        raise ValueError(
            f"need at least 2 paired rows; got {inputs.shape[0]} tokens, {targets.shape[0]} targets"
        )
    inputs, targets = inputs.float(), targets.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        readout = Readout(inputs, targets, spec.hidden)
    order = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(readout.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    scaled = (targets - readout.out_mean) / readout.out_scale
    losses = []
    with torch.enable_grad():
        for _ in range(spec.steps):
            rows = torch.randint(
                0, inputs.shape[0], (min(spec.batch_size, inputs.shape[0]),), generator=order
            )
            loss = nn.functional.mse_loss(readout.normalised(inputs[rows]), scaled[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item() * float(readout.out_scale) ** 2)
    tenth = max(1, len(losses) // 10)
    report = FitReport(sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth)
    return readout.eval().requires_grad_(False), report
