"""Sprites Fréchet distance: how far generated videos are from real sprites videos, without weights.

Sprites are drawn with exact palette colours over static backgrounds, so two cheap statistics say
much about a video: which palette colours it shows, in what proportions (and how much of it is
off-palette noise), and how much of the frame changes from one frame to the next. Each video
becomes a 15-number feature (12 palette shares, the off-palette share, the changed-pixel share,
the share of pixels that change colour class); the score is the Fréchet distance between the
Gaussians fitted to generated and to real features (as FID does with Inception features).

Lower is better; real vs real sprites clips score near 0. A randomly initialised generator
produces off-palette noise and scores high; a generator that learned the world scores low. It is
a toy-scale sanity metric, not a VBench dimension.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from mirai_train.world.vocabulary import PALETTE_RGB

OFF_PALETTE = 48.0  # RGB distance beyond which a pixel belongs to no palette colour
CHANGED = 24.0  # mean absolute RGB change that counts a pixel as changed between frames
EPS = 1e-6
OFF = len(PALETTE_RGB)  # the label of an off-palette pixel


def palette_labels(video: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> int [T, H, W]: the nearest palette colour's index, or `OFF` (12) when
    none is within `OFF_PALETTE`."""
    # Squared distances as |p|^2 - 2 p.c + |c|^2, one matrix product: every term is an integer below
    # 2^24, so float32 holds them exactly and the labels are those of the exact distances.
    pixels = video.reshape(-1, 3).astype(np.float32)
    palette = PALETTE_RGB.astype(np.float32)
    squared = (
        (pixels * pixels).sum(axis=-1)[:, None] - 2 * (pixels @ palette.T) + (palette * palette).sum(axis=-1)
    )
    labels = np.where(squared.min(axis=-1) > OFF_PALETTE**2, OFF, squared.argmin(axis=-1))
    return labels.reshape(video.shape[:-1])


def video_features(video: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> the 15 features of the module docstring."""
    pixels = video.astype(np.float32)
    label = palette_labels(video)
    shares = np.bincount(label.ravel(), minlength=len(PALETTE_RGB) + 1) / label.size
    change = np.abs(np.diff(pixels, axis=0)).mean(axis=-1) > CHANGED
    relabel = label[1:] != label[:-1]
    return np.concatenate([shares, [change.mean(), relabel.mean()]]).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows a [N, D] and b [M, D]."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two videos on each side")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ridge = EPS * np.eye(a.shape[1])  # few videos, unused colours: keep the covariances invertible
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def sprites_fd(generated: list[np.ndarray], real: list[np.ndarray]) -> float:
    """The sprites Fréchet distance between two sets of uint8 [T, H, W, 3] videos."""
    return frechet_distance(
        np.stack([video_features(v) for v in generated]), np.stack([video_features(v) for v in real])
    )
