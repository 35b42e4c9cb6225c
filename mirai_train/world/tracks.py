"""Ground truth for probes and tests: where every sprite is, how much of it is seen, which pixels.

`visible` is the share of a sprite's full pixel footprint that the rendered frame shows; it
drops when the sprite leaves the frame (`in_frame` drops too) or hides behind another sprite or
the pillar (`in_frame` stays). The full footprint is counted on the frame's own pixel grid
extended past its edges, so a sprite fully in view and unoccluded has visible == in_frame == 1
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirai_train.world.render import paint
from mirai_train.world.scene import Scene, Sprite
from mirai_train.world.shapes import inside


@dataclass(frozen=True)
class Tracks:
    identities: tuple[str, ...]  # "red circle" per sprite, back to front as in scene.objects
    centres: np.ndarray  # [T, N, 2] float32 centre (x, y) in pixels, continued outside the frame
    in_frame: np.ndarray  # [T, N] share of the sprite's pixels inside the frame
    visible: np.ndarray  # [T, N] share of the sprite's pixels shown (inside and not occluded)
    instances: np.ndarray  # [T, H, W] int8: sprite index shown at the pixel, -1 background, -2 pillar


def footprint(sprite: Sprite, centres: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels a sprite covers per frame ([T] each): in all, and inside the frame.

    Evaluated on a patch of the frame's pixel grid around the centre with the same float32
    arithmetic as `paint`, so the counts match the rendered masks pixel for pixel.
    """
    reach = int(np.ceil(sprite.radius)) + 1
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    cols = np.floor(centres[:, 0:1]) + offsets  # [T, P] pixel indices
    rows = np.floor(centres[:, 1:2]) + offsets
    dx = (cols + np.float32(0.5)) - centres[:, 0:1]
    dy = (rows + np.float32(0.5)) - centres[:, 1:2]
    covered = inside(sprite.shape, dx[:, None, :], dy[:, :, None], sprite.radius)
    in_frame = ((cols >= 0) & (cols < width))[:, None, :] & ((rows >= 0) & (rows < height))[:, :, None]
    return covered.sum(axis=(1, 2)), (covered & in_frame).sum(axis=(1, 2))


def tracks(scene: Scene, num_frames: int) -> Tracks:
    """Tracks of the first `num_frames` frames, consistent with `render(scene, num_frames)`."""
    n = len(scene.objects)
    labels = paint(scene, num_frames)
    centres = scene.centres(num_frames).astype(np.float32)
    total, inside_frame, shown = (np.zeros((num_frames, n), dtype=np.float32) for _ in range(3))
    for k, sprite in enumerate(scene.objects):
        total[:, k], inside_frame[:, k] = footprint(sprite, centres[:, k], scene.height, scene.width)
        shown[:, k] = (labels == k).sum(axis=(1, 2))
    some = total > 0  # a sprite smaller than a pixel can fall between pixel centres
    in_frame = np.divide(inside_frame, total, out=np.zeros_like(total), where=some)
    visible = np.divide(shown, total, out=np.zeros_like(total), where=some)
    instances = np.where(labels < n, labels.astype(np.int8), np.int8(-1))
    instances[labels == n] = -2
    identities = tuple(sprite.name for sprite in scene.objects)
    return Tracks(identities, centres, in_frame, visible, instances)
