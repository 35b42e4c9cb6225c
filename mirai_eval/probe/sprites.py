"""Sprite positions read back from pixels, for the probe's ground-truth check at toy scale.

Every sprite in a scene has a palette colour nothing else in that scene has (mirai_train/world),
so its position in any image, a readout's included, is the centroid of the pixels close to that
colour. Compared with the tracked centres at the future frames this turns "how much of the future
does the hidden state hold" into pixels of position error. A readout that blurs a sprite away
matches no palette colour; that counts as not detected (reported as a detection rate), never as an
error of zero. A colour mask is first cleaned by a 3x3 majority filter: a noisy image has about 1.6%
of its pixels within the tolerance of any colour by chance, scattered, and would otherwise "find"
every sprite near the image centre; a sprite is a solid blob at least 2 px wide, which the filter keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirai_train.world.vocabulary import PALETTE

COLOUR_TOLERANCE = 40.0  # RGB distance (0..255) to the colour; < half the closest pair (orange-yellow, 80.8)
MIN_PIXELS = 3  # fewer matching pixels than this (after the majority filter): not detected
MIN_VISIBLE = 0.9  # a sprite is scored in a frame where the tracks show at least this share of it


def sprite_positions(
    frames: np.ndarray,
    colours: list[str],
    tolerance: float = COLOUR_TOLERANCE,
    min_pixels: int = MIN_PIXELS,
) -> np.ndarray:
    """[T, N, 2] centroid (x, y) in pixels (pixel (i, j) centred at (j + 0.5, i + 0.5)), NaN when not found.

    `frames` [T, H, W, 3] uint8; `colours` the palette names of the scene's sprites.
    """
    t, h, w, _ = frames.shape
    rgb = frames.astype(np.float32)
    xs = np.arange(w, dtype=np.float32) + 0.5
    ys = np.arange(h, dtype=np.float32) + 0.5
    out = np.full((t, len(colours), 2), np.nan, dtype=np.float32)
    for k, name in enumerate(colours):
        target = np.asarray(PALETTE[name], dtype=np.float32)
        mask = majority(np.linalg.norm(rgb - target, axis=-1) <= tolerance)  # [T, H, W]
        count = mask.sum(axis=(1, 2))
        found = count >= min_pixels
        safe = np.maximum(count, 1)
        out[found, k, 0] = (mask.sum(axis=1) * xs).sum(axis=1)[found] / safe[found]
        out[found, k, 1] = (mask.sum(axis=2) * ys).sum(axis=1)[found] / safe[found]
    return out


def majority(mask: np.ndarray) -> np.ndarray:
    """Keep a pixel of [T, H, W] masks where at least 5 of its 3x3 neighbourhood (itself included) are set."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
    h, w = mask.shape[1:]
    count = sum(padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3))
    return mask & (count >= 5)


@dataclass(frozen=True)
class PositionTally:
    """Position errors summed over (frame, sprite) pairs where the tracks show the sprite."""

    error_sum: float = 0.0
    detected: int = 0
    eligible: int = 0

    def __add__(self, other: PositionTally) -> PositionTally:
        return PositionTally(
            self.error_sum + other.error_sum, self.detected + other.detected, self.eligible + other.eligible
        )

    @property
    def mean_error(self) -> float | None:
        return self.error_sum / self.detected if self.detected else None

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.eligible if self.eligible else None


def tally_positions(
    frames: np.ndarray, centres: np.ndarray, visible: np.ndarray, colours: list[str]
) -> PositionTally:
    """Distance between decoded and tracked centres over the frames where a sprite is visible.

    `frames` [T, H, W, 3] uint8 and the tracks of the same frames: `centres` [T, N, 2], `visible` [T, N].
    """
    found = sprite_positions(frames, colours)
    eligible = visible >= MIN_VISIBLE
    distance = np.linalg.norm(found - centres, axis=-1)  # NaN where not found
    hit = eligible & ~np.isnan(distance)
    return PositionTally(float(distance[hit].sum()), int(hit.sum()), int(eligible.sum()))
