"""Pixels of a scene: a label per pixel (which thing is in front), then one palette lookup.

Vectorised over frames and pixels: each sprite is one broadcast mask over [T, H, W], painted back
to front; the background is computed once and shared by all frames.
"""

from __future__ import annotations

import numpy as np
import torch

from mirai_train.world.scene import Scene
from mirai_train.world.shapes import inside
from mirai_train.world.vocabulary import PALETTE


def pixel_centres(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.float32) + 0.5


def band_of_pixel(scene: Scene) -> np.ndarray:
    """[H, W] index of the background band every pixel belongs to."""
    background = scene.background
    along_rows = background.layout != "vertical_stripes"
    coords = pixel_centres(scene.height if along_rows else scene.width)
    band = np.searchsorted(np.asarray(background.edges, dtype=np.float32), coords, side="right")
    return np.broadcast_to(band[:, None] if along_rows else band[None, :], (scene.height, scene.width))


def pillar_columns(scene: Scene) -> np.ndarray:
    """[W] bool: the columns the pillar covers (none without a pillar)."""
    xs = pixel_centres(scene.width)
    if scene.pillar is None:
        return np.zeros(scene.width, dtype=bool)
    return (xs >= scene.pillar.left) & (xs < scene.pillar.right)


def paint(scene: Scene, num_frames: int) -> np.ndarray:
    """[T, H, W] uint8 labels: sprite k -> k, the pillar -> N, background band b -> N + 1 + b."""
    n = len(scene.objects)
    labels = np.empty((num_frames, scene.height, scene.width), dtype=np.uint8)
    labels[:] = band_of_pixel(scene) + n + 1
    xs, ys = pixel_centres(scene.width), pixel_centres(scene.height)
    centres = scene.centres(num_frames).astype(np.float32)
    for k, sprite in enumerate(scene.objects):
        dx = xs[None, None, :] - centres[:, k, 0, None, None]
        dy = ys[None, :, None] - centres[:, k, 1, None, None]
        labels[inside(sprite.shape, dx, dy, sprite.radius)] = k
    labels[:, :, pillar_columns(scene)] = n
    return labels


def label_colours(scene: Scene) -> np.ndarray:
    """[N + 1 + bands, 3] uint8 RGB of every label `paint` uses (black for an absent pillar)."""
    names = [sprite.colour for sprite in scene.objects]
    names.append("black" if scene.pillar is None else scene.pillar.colour)
    names.extend(scene.background.colours)
    return np.array([PALETTE[name] for name in names], dtype=np.uint8)


def render(scene: Scene, num_frames: int) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB video of the first `num_frames` frames."""
    return np.take(label_colours(scene), paint(scene, num_frames), axis=0)  # 3x faster than lut[labels]


def to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [3, T, H, W] in [-1, 1], the layout the codecs take."""
    return torch.from_numpy(video).permute(3, 0, 1, 2).contiguous().float().div_(127.5).sub_(1.0)
