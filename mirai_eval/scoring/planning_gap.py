"""Planning-gap measures on sprites videos: does a rollout keep what its prompt named, over time?

Video-Mirai's claim is that foresight keeps in a causal generator's state what later segments need:
identity, layout, motion. The sprites world is built to test it: sprites leave the frame and come
back and pass behind the pillar, and every prompt names exactly which sprites a video must keep
(`named_objects`). These measures read that back from pixels, without weights, the way
`mirai_train.world.truth` does for the fidelity report: every pixel takes its nearest palette
colour, each frame's connected blobs of a colour of at least a sprite's area (`min_area`) are
fitted with every shape's template, and a blob *shows* a shape when that shape fits best with
intersection over union at least `SHAPE_IOU`. A blob is *whole* when it is clear of the frame's
edge and every palette pixel around it has one colour: a sprite cut by the edge, half behind the
pillar or overlapping another sprite is not, and its outline may fit any shape, so only whole
blobs can swap, duplicate or hallucinate a shape. Only blobs of the named sprites' colours are
read for shapes (the background's own colour forms blobs too, such as a ring's hole).

Over a span of frames (one window, or the whole video), shares in [0, 1]:
- persistence: mean over the named sprites of the share of frames with a blob of its colour that
  shows its shape;
- swaps: the share of frames in which a whole blob of a named sprite's colour shows another shape
  than that sprite's (a sprite that changed shape, or two that exchanged colours: both show it);
- duplicates: the share of frames with two whole blobs of one named sprite's colour;
- vanished: the share of named sprites whose colour is nowhere in the span;
- reentry: of the named sprites' re-entries (the colour back after at least `REENTRY_GAP` seconds
  without it, having been seen before), the share whose first whole blob that shows a shape shows
  its own shape; NaN when the span has no re-entry whose shape could be read before the colour left again;
- hallucinated: the share of frames with a sprite-size blob of a palette colour the prompt does not
  name, or a whole blob of a named sprite's colour showing a shape the prompt names for no sprite.

Real clips are the reference, not 1 or 0: a real sprite is hidden by the pillar or out of the
frame for part of a clip, so real persistence is below 1 and real vanishing above 0.

The toy profile scores them like dimensions (`PlanningGapMeasure`; `MEASURES` in dimensions.py),
through the store, whole or per window; the vbench profile has no sprites truth and reports them
unavailable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from mirai_eval.scoring.base import Aggregation, Excluded, VideoScore
from mirai_train.video import Video
from mirai_train.world.config import SpritesConfig
from mirai_train.world.fidelity import OFF, palette_labels
from mirai_train.world.truth import SHAPE_IOU, colour_blobs, fit_radii, min_area, shape_fit
from mirai_train.world.vocabulary import COLOURS, SHAPES, named_objects

REENTRY_GAP = 0.5  # seconds a colour must be gone for its return to count as a re-entry


@dataclass(frozen=True)
class Blob:
    colour: str
    area: int
    shape: str | None  # the best-fitting shape if it fits with IoU >= SHAPE_IOU, else None
    whole: bool  # clear of the frame's edge, one palette colour all around


def read_blobs(video: np.ndarray, config: SpritesConfig) -> list[list[Blob]]:
    """Per frame of a uint8 [T, H, W, 3] video, its sprite-size blobs of every palette colour."""
    labels = palette_labels(video)
    smallest, radii = min_area(config), fit_radii(config)
    frames: list[list[Blob]] = [[] for _ in range(len(video))]
    for index, colour in enumerate(COLOURS):
        for t, mask, area, box in colour_blobs(labels, index, smallest):
            fit = shape_fit(mask, radii)
            best = int(fit.argmax())
            shape = SHAPES[best] if fit[best] >= SHAPE_IOU else None
            frames[t].append(Blob(colour, int(area), shape, is_whole(mask, labels[t], box)))
    return frames


def is_whole(mask: np.ndarray, labels: np.ndarray, box: tuple[slice, slice]) -> bool:
    """A blob [H, W] clear of the frame's edge whose surrounding pixels take one palette colour."""
    rows, columns = box
    height, width = mask.shape
    if rows.start == 0 or columns.start == 0 or rows.stop == height or columns.stop == width:
        return False
    window = (slice(rows.start - 1, rows.stop + 1), slice(columns.start - 1, columns.stop + 1))
    ring = ndimage.binary_dilation(mask[window]) & ~mask[window]
    around = labels[window][ring]
    return len(np.unique(around[around != OFF])) <= 1


@dataclass(frozen=True)
class PlanningGap:
    persistence: float
    swaps: float
    duplicates: float
    vanished: float
    reentry: float  # NaN: no re-entry in the span
    hallucinated: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure_span(blobs: list[list[Blob]], prompt: str, start: int, stop: int, fps: float) -> PlanningGap:
    """The measures of the module docstring over frames [start, stop) of a video read by `read_blobs`
    (re-entries need the frames before `start` too, so the whole video's blobs are passed)."""
    named = named_objects(prompt)
    shape_of = dict(named)
    words = set(prompt.replace(",", " ").split())
    named_colours = {c for c in COLOURS if c in words}
    named_shapes = set(shape_of.values())
    span = blobs[start:stop]
    frames = len(span)

    shown = [sum(any(b.colour == c and b.shape == s for b in f) for f in span) / frames for c, s in named]
    whole = [[b for b in f if b.whole and b.colour in shape_of] for f in span]  # named sprites' colours
    swaps = sum(any(b.shape not in (None, shape_of[b.colour]) for b in f) for f in whole)
    duplicates = sum(any(sum(b.colour == c for b in f) >= 2 for c in shape_of) for f in whole)
    vanished = [not any(b.colour == c for f in span for b in f) for c, _ in named]
    hallucinated = sum(
        any(b.colour not in named_colours for b in f) or any(b.shape not in (None, *named_shapes) for b in w)
        for f, w in zip(span, whole, strict=True)
    )
    returns = [
        r for c, s in named for r in reentries(blobs, c, s, round(REENTRY_GAP * fps)) if start <= r[0] < stop
    ]
    judged = [right for _, right in returns if right is not None]
    return PlanningGap(
        persistence=float(np.mean(shown)),
        swaps=swaps / frames,
        duplicates=duplicates / frames,
        vanished=float(np.mean(vanished)),
        reentry=float(np.mean(judged)) if judged else math.nan,
        hallucinated=hallucinated / frames,
    )


def reentries(blobs: list[list[Blob]], colour: str, shape: str, gap: int) -> list[tuple[int, bool | None]]:
    """(frame, right) for each time `colour` comes back after at least `gap` frames without it, having
    been seen before: right is whether its first whole blob that shows a shape, before the colour is gone
    again, shows `shape`; None when none does."""
    found: list[tuple[int, bool | None]] = []
    last_seen: int | None = None
    for t, frame in enumerate(blobs):
        if not any(b.colour == colour for b in frame):
            continue
        if last_seen is not None and t - last_seen > gap:
            first = first_shape(blobs, colour, t)
            found.append((t, None if first is None else first == shape))
        last_seen = t
    return found


def first_shape(blobs: list[list[Blob]], colour: str, start: int) -> str | None:
    """The first shape a whole blob of `colour` shows from frame `start` on, while the colour stays in
    view (a sprite coming back in from the edge or from behind the pillar is cut at first)."""
    for frame in blobs[start:]:
        mine = [b for b in frame if b.colour == colour]
        if not mine:
            return None
        for blob in sorted(mine, key=lambda b: -b.area):
            if blob.whole and blob.shape is not None:
                return blob.shape
    return None


PLANNING_GAP = ("persistence", "swaps", "duplicates", "vanished", "reentry", "hallucinated")


@dataclass
class SpriteBlobs:
    """`read_blobs` of the last video, kept so the six measures share one reading (as
    `objects.SpriteDetections` does for the detector); the sprites world's default configuration
    gives the sprite size the blobs are judged by."""

    config: SpritesConfig = field(default_factory=SpritesConfig)
    _key: tuple[str, int, int] | None = None
    _blobs: list[list[Blob]] | None = None

    def of(self, video: Video) -> list[list[Blob]]:
        key = (video.path, video.frames.data_ptr(), video.frames.shape[0])
        if self._key != key or self._blobs is None:
            self._blobs = read_blobs(video.frames.numpy(), self.config)
            self._key = key
        return self._blobs


@dataclass
class PlanningGapMeasure:
    """One measure of the module docstring as a scoring dimension (toy profile). Scored on a whole
    video, or per window under `protocol: windows`, where a re-entry counts in the window that holds
    both its absence and its return. A prompt that is not a sprites prompt, or a span with no
    re-entry (for `reentry`), excludes the video."""

    blobs: SpriteBlobs
    name: str
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        try:
            named_objects(prompt)
        except ValueError as error:
            raise Excluded(str(error)) from None
        blobs = self.blobs.of(video)
        value = getattr(measure_span(blobs, prompt, 0, len(blobs), video.fps), self.name)
        if math.isnan(value):
            raise Excluded("no sprite left and came back with its shape readable")
        return VideoScore(value=value, total=value, count=1)
