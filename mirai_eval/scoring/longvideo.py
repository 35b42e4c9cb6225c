"""The 30 s protocol: VBench-Long style clips, or the whole video, selectable.

VBench-Long cuts a long video into clips of a fixed duration, scores each clip as a video and
averages the clips per video. We cut the already decoded frames (no re-encoding), keep every
clip's value for drift curves, and add up the frame weights so aggregates stay VBench's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mirai_eval.scoring.base import Dimension, Excluded, VideoScore
from mirai_eval.scoring.dimensions import ProtocolMode
from mirai_train.video import MIN_FRAMES, Video


@dataclass(frozen=True)
class Protocol:
    """`whole` scores each video as one; `clips` cuts it into `clip_seconds` pieces."""

    mode: ProtocolMode = "whole"
    clip_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "clips"):
            raise ValueError(f"protocol must be 'whole' or 'clips', got {self.mode!r}")
        if self.clip_seconds <= 0:
            raise ValueError(f"clip length must be positive seconds, got {self.clip_seconds}")


def split_clips(video: Video, clip_seconds: float) -> list[Video]:
    """Consecutive clips of round(clip_seconds * fps) frames. A last piece shorter than half a clip
    joins the clip before it: a rollout of 30 s and half a block must not end on a 0.5 s "last
    window" that the drift summaries would read as its last 5 s."""
    length = max(MIN_FRAMES, round(clip_seconds * video.fps))
    total = video.frames.shape[0]
    starts = list(range(0, total, length))
    if len(starts) > 1 and total - starts[-1] < length / 2:
        starts.pop()
    stops = [*starts[1:], total]
    return [
        replace(video, frames=video.frames[start:stop])
        for start, stop in zip(starts, stops, strict=True)
        if stop - start >= MIN_FRAMES
    ]


def score_clips(
    dimension: Dimension, video: Video, prompt: str, clip_seconds: float
) -> tuple[VideoScore, list[float]]:
    """Per-video score as the mean of its clips' values, plus those values in order.

    A clip the dimension excludes excludes the video (the drift curves need every clip).
    """
    scores = []
    for index, clip in enumerate(split_clips(video, clip_seconds)):
        try:
            scores.append(dimension.score(clip, prompt))
        except Excluded as reason:
            raise Excluded(f"clip {index + 1}: {reason}") from None
    values = [s.value for s in scores]
    combined = VideoScore(
        value=sum(values) / len(values),
        total=sum(s.total for s in scores),
        count=sum(s.count for s in scores),
    )
    return combined, values
