"""Temporal flickering, and the static filter VBench requires before it.

Temporal flickering is (255 - mean |frame_t - frame_{t-1}|) / 255 over all frames at full
resolution. It only means something on static videos: VBench keeps, per prompt, the first
five videos that its RAFT-based static filter accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mirai_eval.scoring.backbones.raft import RaftFlow
from mirai_eval.scoring.base import Aggregation, VideoScore, video_mean_score
from mirai_eval.scoring.preprocess import chunks
from mirai_eval.video import Video

STATIC_KEEP_PER_PROMPT = 5


def flicker_score(frames: torch.Tensor) -> float:
    """Mean over consecutive pairs of the per-pair mean absolute difference, mapped to [0, 1]."""
    # Exact integer differences one pair at a time (no float copy of the whole video), in numpy:
    # max - min stays in uint8, ~5x faster than through int16 and far faster than torch's per-pair
    # ops, which stalled on a busy 2-thread pool (up to 100x).
    array = frames.numpy()
    per_pixel = array[0].size
    sums = [
        int((np.maximum(array[t], array[t - 1]) - np.minimum(array[t], array[t - 1])).sum(dtype=np.int64))
        for t in range(1, len(array))
    ]
    return (255.0 - sum(s / per_pixel for s in sums) / len(sums)) / 255.0


@dataclass
class TemporalFlickering:
    name: str = "temporal_flickering"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        return video_mean_score(flicker_score(video.frames))


def top_mean(flow: torch.Tensor, fraction: float) -> float:
    """Mean of the largest `fraction` of flow magnitudes of one [2, H, W] flow field."""
    magnitude = flow.double().pow(2).sum(dim=0).sqrt().flatten()
    keep = int(magnitude.numel() * fraction)
    return magnitude.topk(keep).values.mean().item()


@dataclass
class StaticFilter:
    """VBench's static test: RAFT on every consecutive pair plus (first, last) and (last, first)."""

    flow: RaftFlow
    batch_size: int = 4
    device: str = "cpu"

    def pair_scores(self, video: Video) -> list[float]:
        frames = video.frames
        index = list(range(frames.shape[0]))
        firsts = [*index[:-1], 0, index[-1]]
        seconds = [*index[1:], index[-1], 0]
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(firsts), self.batch_size):
                a = next(chunks(frames[firsts[start : start + self.batch_size]], self.batch_size))
                b = next(chunks(frames[seconds[start : start + self.batch_size]], self.batch_size))
                flows = self.flow(a.to(self.device), b.to(self.device)).cpu()
                scores.extend(top_mean(f, 0.02) for f in flows)
        return scores

    def is_static(self, video: Video) -> bool:
        threshold = 3.0 * min(video.size) / 256.0
        allowed = round(2 * video.frames.shape[0] / 16.0)
        scores = self.pair_scores(video)
        count = 0
        for score in scores[:-2]:
            count += score > threshold
            if count > allowed:
                return False
        return all(score <= threshold * allowed * 2 for score in scores[-2:])
