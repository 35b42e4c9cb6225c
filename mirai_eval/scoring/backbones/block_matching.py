"""Weightless motion for the toy profile: block-matching flow (RAFT's role) and bilateral
motion-compensated interpolation (AMT's role).

Sprites are flat palette colours moving by translation, which exhaustive block matching recovers
exactly at integer displacements; it needs no training and no weights. Every pixel takes the
displacement with the least sum of absolute differences over the block around it (ties and
near-ties go to the shorter displacement, so flat regions and unstructured noise read as still).
A block straddling a sprite's edge carries the sprite's motion, so, as RAFT's smooth flow does,
the moving area is the sprite a little dilated. Frames whose shorter side exceeds `work_side` are
downscaled to it first (the toy profile is meant for sprites-sized videos) and flow is scaled back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

SHORT_MOVE_BONUS = 0.5  # cost per pixel of displacement length, per pixel of the block


def _working(pixels: Tensor, work_side: int) -> tuple[Tensor, float]:
    side = min(pixels.shape[-2:])
    if side <= work_side:
        return pixels, 1.0
    scale = work_side / side
    size = [max(1, round(s * scale)) for s in pixels.shape[-2:]]
    return F.interpolate(pixels, size=size, mode="area"), 1.0 / scale


def _shift(pixels: Tensor, dy: int, dx: int, radius: int) -> Tensor:
    """pixels[..., y + dy, x + dx] with edge replication; `pixels` is padded by `radius` already."""
    height, width = pixels.shape[-2] - 2 * radius, pixels.shape[-1] - 2 * radius
    return pixels[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]


def _block_cost(difference: Tensor, block: int) -> Tensor:
    """Sum over the block around every pixel of a [B, 1, H, W] per-pixel cost (a mean scaled by the full
    block, so border blocks count like inner ones); separable, two 1-D passes instead of one 2-D."""
    half = block // 2
    rows = F.avg_pool2d(difference, (block, 1), stride=1, padding=(half, 0), count_include_pad=False)
    return F.avg_pool2d(rows, (1, block), stride=1, padding=(0, half), count_include_pad=False) * block**2


def _search(
    radius: int, block: int, aligned: Callable[[int, int], tuple[Tensor, Tensor]]
) -> Iterator[tuple[int, int, Tensor, Tensor, Tensor]]:
    """Every displacement (dy, dx) within `radius`, with the two frames it aligns and a [B, 1, H, W]
    mask of the pixels where it beats every displacement before it (least block difference, plus
    the short-move bonus)."""
    best: Tensor | None = None
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            a, b = aligned(dy, dx)
            cost = (
                _block_cost((a - b).abs().sum(dim=1, keepdim=True), block)
                + SHORT_MOVE_BONUS * block**2 * (dx * dx + dy * dy) ** 0.5
            )
            better = cost < best if best is not None else torch.ones_like(cost, dtype=torch.bool)
            best = cost if best is None else torch.where(better, cost, best)
            yield dy, dx, a, b, better


class BlockMatchingFlow:
    """Flow [B, 2, H, W] (x, y) from `first` to `second` (float pixels in [0, 255], [B, 3, H, W])."""

    def __init__(self, radius: int = 5, block: int = 9, work_side: int = 64) -> None:
        # radius 5: the sprites world's fastest sprite moves 3.6 px between the frames dynamic degree
        # compares (0.45 frame widths a second at 64 px, 8 sampled frames a second)
        self.radius, self.block, self.work_side = radius, block, work_side

    def __call__(self, first: Tensor, second: Tensor) -> Tensor:
        size = first.shape[-2:]
        first, scale = _working(first, self.work_side)
        second, _ = _working(second, self.work_side)
        r = self.radius
        padded = F.pad(second, [r, r, r, r], mode="replicate")
        flow = torch.zeros_like(first[:, :2])
        for dy, dx, _, _, better in _search(r, self.block, lambda dy, dx: (first, _shift(padded, dy, dx, r))):
            flow = torch.where(better, torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1), flow)
        if scale != 1.0:
            flow = F.interpolate(flow, size=size, mode="nearest") * scale
        return flow


class BilateralInterpolator:
    """The frame halfway between `first` and `second` (float pixels [B, 3, H, W] in [0, 255]).

    For every pixel of the middle frame, the symmetric displacement d with the least block difference
    between first(x - d) and second(x + d); the pixel is their average.
    """

    def __init__(self, radius: int = 3, block: int = 7, work_side: int = 64) -> None:
        self.radius, self.block, self.work_side = radius, block, work_side

    def __call__(self, first: Tensor, second: Tensor) -> Tensor:
        size = first.shape[-2:]
        first, scale = _working(first, self.work_side)
        second, _ = _working(second, self.work_side)
        r = self.radius
        padded_first = F.pad(first, [r, r, r, r], mode="replicate")
        padded_second = F.pad(second, [r, r, r, r], mode="replicate")

        def aligned(dy: int, dx: int) -> tuple[Tensor, Tensor]:
            return _shift(padded_first, -dy, -dx, r), _shift(padded_second, dy, dx, r)

        middle = (first + second) / 2
        for _, _, before, after, better in _search(r, self.block, aligned):
            middle = torch.where(better, (before + after) / 2, middle)
        if scale != 1.0:
            middle = F.interpolate(middle, size=size, mode="bilinear", align_corners=False)
        return middle
