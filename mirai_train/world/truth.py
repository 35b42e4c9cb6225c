"""Ground-truth fidelity: does a video show what its prompt's scene says, measured without weights.

Sprites are flat palette colours with exact shapes, so a video can be read back directly: every
pixel takes its nearest palette colour (or none, when it is farther than `OFF_PALETTE`), and in each
frame the largest connected blob of a named sprite's colour is fitted with every shape's template
(`shapes.inside`) over a grid of radii around the blob's centroid. The sprite is visible with its
colour and its shape when the named shape fits best and its intersection over union is at least
`SHAPE_IOU`. A sprite half behind the pillar or half out of the frame does not count, so real clips
score below 1 and a generator is judged against the real clips' score, not against 1.

The measures (all shares in [0, 1]), per video:
- visible: mean over the named sprites of the share of frames showing it with colour and shape;
- colour_visible: the same with the colour only (a blob of at least `min_area` pixels);
- unnamed: the share of frames with a blob of a palette colour the scene does not use anywhere;
- off_palette: the share of pixels near no palette colour;
- background: the share of pixels whose most frequent colour over the video is the scene's
  background (or pillar) colour there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from mirai_train.world.config import SpritesConfig
from mirai_train.world.fidelity import OFF, palette_labels
from mirai_train.world.render import band_of_pixel, pillar_columns
from mirai_train.world.scene import Scene
from mirai_train.world.shapes import inside
from mirai_train.world.vocabulary import COLOURS, SHAPES

SHAPE_IOU = 0.6  # a clean render of a whole sprite fits its own template at IoU >= 0.9
PER_FRAME = np.zeros((3, 3, 3), dtype=bool)
PER_FRAME[1] = True  # 8-connected blobs within a frame, never across frames


@dataclass(frozen=True)
class Fidelity:
    visible: float
    colour_visible: float
    unnamed: float
    off_palette: float
    background: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def background_truth(scene: Scene) -> np.ndarray:
    """[H, W] palette index of what is behind the sprites: background bands, and the pillar."""
    bands = np.array([COLOURS.index(c) for c in scene.background.colours])
    truth = bands[band_of_pixel(scene)].copy()
    if scene.pillar is not None:
        truth[:, pillar_columns(scene)] = COLOURS.index(scene.pillar.colour)
    return truth


def fit_radii(config: SpritesConfig) -> np.ndarray:
    """Radii (pixels) the shape templates are fitted over: the world's range, widened by 40% each way."""
    side = min(config.height, config.width)
    return np.arange(0.6 * config.min_radius * side, 1.4 * config.max_radius * side + 0.25, 0.25)


def shape_fit(blob: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """[len(SHAPES)] best IoU of a boolean [H, W] blob with each shape centred at its centroid.

    Templates run past the frame's edges, so a blob cut by an edge fits worse than a whole one.
    """
    ys, xs = np.nonzero(blob)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    half = int(np.ceil(radii[-1])) + 1
    x0, y0 = int(cx) - half, int(cy) - half
    size = 2 * half + 1
    window = np.zeros((size, size), dtype=bool)
    height, width = blob.shape
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + size, height), min(x0 + size, width)
    window[top - y0 : bottom - y0, left - x0 : right - x0] = blob[top:bottom, left:right]
    grid = np.arange(size, dtype=np.float64) + 0.5
    dx, dy, r = (grid + x0 - cx)[None, None, :], (grid + y0 - cy)[None, :, None], radii[:, None, None]
    area = window.sum()
    best = np.empty(len(SHAPES))
    for k, shape in enumerate(SHAPES):
        template = inside(shape, dx, dy, r)  # [R, size, size]
        overlap = (template & window).sum(axis=(1, 2))
        best[k] = (overlap / (template.sum(axis=(1, 2)) + area - overlap)).max()
    return best


def min_area(config: SpritesConfig) -> float:
    """Pixels a blob needs to count as a sprite: half the smallest sprite's bounding-circle area / pi."""
    return 0.5 * (config.min_radius * min(config.height, config.width)) ** 2


def colour_blobs(
    labels: np.ndarray, colour: int, smallest: float
) -> Iterator[tuple[int, np.ndarray, float, tuple[slice, slice]]]:
    """Each blob of palette colour `colour` in palette labels [T, H, W] with at least `smallest`
    pixels, in label order: (frame, its mask [H, W], its area, its bounding box in the frame)."""
    components, count = ndimage.label(labels == colour, structure=PER_FRAME)
    if count == 0:
        return
    areas = np.bincount(components.ravel(), minlength=count + 1)[1:]
    for index, (where, area) in enumerate(zip(ndimage.find_objects(components), areas, strict=True), start=1):
        if where is not None and area >= smallest:
            t = int(where[0].start)
            yield t, components[t] == index, float(area), (where[1], where[2])


def measure(video: np.ndarray, scene: Scene, config: SpritesConfig) -> Fidelity:
    """The measures of the module docstring for uint8 [T, H, W, 3] `video` against `scene`."""
    labels = palette_labels(video)
    frames = labels.shape[0]
    smallest, radii = min_area(config), fit_radii(config)

    def largest(colour: int) -> dict[int, np.ndarray]:
        """frame -> the mask of that frame's largest blob of `colour` (the first of equal ones)."""
        found: dict[int, tuple[np.ndarray, float]] = {}
        for t, mask, area, _ in colour_blobs(labels, colour, smallest):
            if area > found.get(t, (mask, 0.0))[1]:
                found[t] = (mask, area)
        return {t: mask for t, (mask, _) in found.items()}

    visible, colour_visible = [], []
    for sprite in scene.objects:
        masks = largest(COLOURS.index(sprite.colour))
        shape = SHAPES.index(sprite.shape)
        hits = 0
        for mask in masks.values():
            fit = shape_fit(mask, radii)
            hits += int(fit.argmax() == shape and fit[shape] >= SHAPE_IOU)
        visible.append(hits / frames)
        colour_visible.append(len(masks) / frames)

    used = {sprite.colour for sprite in scene.objects} | set(scene.background.colours)
    if scene.pillar is not None:
        used.add(scene.pillar.colour)
    unnamed = np.zeros(frames, dtype=bool)
    for colour in sorted(set(COLOURS) - used):
        for t, _, _, _ in colour_blobs(labels, COLOURS.index(colour), smallest):
            unnamed[t] = True

    counts = np.stack([(labels == k).sum(axis=0) for k in range(OFF + 1)])  # [13, H, W]
    background = float((counts.argmax(axis=0) == background_truth(scene)).mean())
    return Fidelity(
        visible=float(np.mean(visible)),
        colour_visible=float(np.mean(colour_visible)),
        unnamed=float(unnamed.mean()),
        off_palette=float((labels == OFF).mean()),
        background=background,
    )
