"""Dynamic degree: is the video moving, by optical flow (RAFT; block matching in the toy profile) on
frames sampled at about 8 fps.

Per pair: mean of the top 5% flow magnitudes (on the padded flow, as VBench computes it);
the video is dynamic when at least round(4 n / 16) of its n sampled frames' pairs exceed
6 * min(H, W) / 256. The dimension is the fraction of dynamic videos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mirai_eval.scoring.base import Aggregation, VideoScore, video_mean_score
from mirai_eval.scoring.flicker import top_mean
from mirai_eval.scoring.preprocess import chunks
from mirai_train.video import Video

RAFT_MIN_SIDE = 128  # torchvision's RAFT needs 1/8-resolution feature maps of at least 16


def sampled_indices(frame_count: int, fps: float) -> list[int]:
    return list(range(0, frame_count, max(1, round(fps / 8))))


def is_dynamic(pair_scores: list[float], height: int, width: int, frame_count: int) -> bool:
    threshold = 6.0 * min(height, width) / 256.0
    needed = round(4 * frame_count / 16.0)
    # VBench counts inside its loop over pairs, so a video with no pair is never dynamic.
    return bool(pair_scores) and sum(score > threshold for score in pair_scores) >= needed


@dataclass
class DynamicDegree:
    flow: Callable[[Tensor, Tensor], Tensor]  # float [B, 3, H, W] pixel pairs -> [B, 2, H, W] flow
    batch_size: int = 4
    device: str = "cpu"
    min_side: int = RAFT_MIN_SIDE
    name: str = "dynamic_degree"
    aggregation: Aggregation = "video_mean"

    def pair_scores(self, video: Video) -> list[float]:
        if min(video.size) < self.min_side:
            raise ValueError(f"dynamic degree needs frames of at least {self.min_side} px, got {video.size}")
        frames = video.frames[sampled_indices(video.frames.shape[0], video.fps)]
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, frames.shape[0] - 1, self.batch_size):
                stop = min(start + self.batch_size, frames.shape[0] - 1)
                # The pairs' frames converted once: a batch's second frames are its first ones shifted.
                pixels = next(chunks(frames[start : stop + 1], stop + 1 - start, self.device))
                scores.extend(top_mean(f, 0.05) for f in self.flow(pixels[:-1], pixels[1:]).cpu())
        return scores

    def score(self, video: Video, prompt: str) -> VideoScore:
        count = len(sampled_indices(video.frames.shape[0], video.fps))
        height, width = video.size
        return video_mean_score(float(is_dynamic(self.pair_scores(video), height, width, count)))
