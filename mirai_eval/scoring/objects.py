"""Object class, multiple objects and colour in the toy profile: VBench's detection counting, with
the sprites detector in GRiT's place.

VBench detects objects in 16 middle-sampled frames and counts frames. Its prompts for these
dimensions name one object (two for multiple objects); a sprites prompt names one to three
sprites, each a (colour, shape), so every named sprite is a query and a one-sprite prompt counts
exactly as VBench does:
- object class: the share of (frame, named sprite) pairs in which a sprite of that shape is
  detected, whatever its colour; frame-weighted.
- multiple objects: the share of frames showing every named sprite's shape at once (two named
  rings need two detected rings); a prompt naming one sprite has no value (excluded, as VBench
  gives this dimension two-object prompts only); frame-weighted.
- colour: among the (frame, named sprite) pairs where a sprite of that shape is detected, the
  share where one has the named colour; per video, and a video where no named shape is ever
  detected has no value (VBench leaves it out too); the mean over videos.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from mirai_eval.scoring.backbones.sprites_detector import SpritesDetector
from mirai_eval.scoring.base import Aggregation, Excluded, VideoScore, video_mean_score
from mirai_eval.scoring.videotext import middle_indices
from mirai_train.video import Video
from mirai_train.world.vocabulary import named_objects

FRAMES = 16  # VBench's detection dimensions read 16 middle-sampled frames

Detections = list[list[tuple[str, str]]]  # per frame, (colour, shape) of every detected sprite


@dataclass
class SpriteDetections:
    """The detector's findings on a video's 16 middle-sampled frames, kept for the last video so the
    three dimensions share one detection pass."""

    detector: SpritesDetector
    device: str = "cpu"
    _key: tuple[str, int, int] | None = None
    _found: Detections | None = None

    def of(self, video: Video) -> Detections:
        key = (video.path, video.frames.data_ptr(), video.frames.shape[0])
        if self._key != key or self._found is None:
            frames = video.frames[middle_indices(video.frames.shape[0], FRAMES)].permute(0, 3, 1, 2)
            with torch.inference_mode():
                self._found = self.detector.detect(frames.float().to(self.device))
            self._key = key
        return self._found


def _shapes(frame: list[tuple[str, str]]) -> Counter[str]:
    return Counter(shape for _, shape in frame)


@dataclass
class ObjectClass:
    detections: SpriteDetections
    name: str = "object_class"
    aggregation: Aggregation = "frame_weighted"

    def score(self, video: Video, prompt: str) -> VideoScore:
        named = named_objects(prompt)
        hits = [float(shape in _shapes(frame)) for frame in self.detections.of(video) for _, shape in named]
        return VideoScore(value=sum(hits) / len(hits), total=sum(hits), count=len(hits))


@dataclass
class MultipleObjects:
    detections: SpriteDetections
    name: str = "multiple_objects"
    aggregation: Aggregation = "frame_weighted"

    def score(self, video: Video, prompt: str) -> VideoScore:
        named = named_objects(prompt)
        if len(named) < 2:
            raise Excluded("the prompt names one sprite; multiple objects needs two or more")
        wanted = Counter(shape for _, shape in named)
        hits = [float(not wanted - _shapes(frame)) for frame in self.detections.of(video)]
        return VideoScore(value=sum(hits) / len(hits), total=sum(hits), count=len(hits))


@dataclass
class Colour:
    detections: SpriteDetections
    name: str = "color"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        named = named_objects(prompt)
        seen = matched = 0
        for frame in self.detections.of(video):
            for colour, shape in named:
                if shape in _shapes(frame):
                    seen += 1
                    matched += (colour, shape) in frame
        if seen == 0:
            raise Excluded("no sprite of a named shape is detected in any sampled frame")
        return video_mean_score(matched / seen)


OBJECT_DIMENSIONS: dict[str, type[ObjectClass | MultipleObjects | Colour]] = {
    "object_class": ObjectClass,
    "multiple_objects": MultipleObjects,
    "color": Colour,
}
