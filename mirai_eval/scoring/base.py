"""What every dimension returns, and how per-video values become VBench's aggregate.

VBench aggregates three dimensions frame-weighted (sum of per-frame-pair values over all videos
divided by their count) and the others as the mean over videos; keeping the per-video sum and
count lets us reproduce either exactly, and aggregate shards or clips later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mirai_train.video import Video

Aggregation = Literal["frame_weighted", "video_mean"]


@dataclass(frozen=True)
class VideoScore:
    """One video's value of one dimension; `total`/`count` carry the frame weighting."""

    value: float
    total: float
    count: int
    frames: list[float] = field(default_factory=list)


class Excluded(Exception):
    """This video has no value for the dimension by the dimension's own rule (VBench leaves such
    videos out, as colour does with a video where the object is never detected); says why."""


class Dimension(Protocol):
    """A natively computed dimension: scores one decoded video (with its prompt)."""

    name: str
    aggregation: Aggregation

    def score(self, video: Video, prompt: str) -> VideoScore: ...


def video_mean_score(value: float) -> VideoScore:
    return VideoScore(value=value, total=value, count=1)


def aggregate(scores: Sequence[VideoScore], aggregation: Aggregation) -> float:
    """VBench's single-process aggregate of per-video scores."""
    if not scores:
        raise ValueError("no video scores to aggregate")
    if aggregation == "frame_weighted":
        return sum(s.total for s in scores) / sum(s.count for s in scores)
    return sum(s.value for s in scores) / len(scores)
