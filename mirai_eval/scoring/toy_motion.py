"""The toy profile's motion smoothness: VBench's formula (motion.py) with any interpolator.

Frames 0, 2, 4, ... are kept, the frame between every two kept frames is interpolated and
truncated to 8 bits, and compared with the real odd frame: the mean absolute difference over
pairs gives (255 - mad) / 255 per video; the dimension is the mean over videos. The toy profile
passes the weightless bilateral block-matching interpolator (`backbones/block_matching.py`) in
AMT-S's place: it needs no padding or minimum size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mirai_eval.scoring.base import Aggregation, VideoScore
from mirai_eval.scoring.preprocess import chunks
from mirai_train.video import Video


@dataclass
class InterpolatorSmoothness:
    interpolate: Callable[[Tensor, Tensor], Tensor]  # float [B, 3, H, W] pixel pairs -> middle frames
    batch_size: int = 16
    name: str = "motion_smoothness"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        kept, odd = video.frames[0::2], video.frames[1::2]
        pairs = kept.shape[0] - 1
        if pairs < 1:
            raise ValueError(f"motion smoothness needs at least 3 frames, got {video.frames.shape[0]}")
        per_frame: list[float] = []
        with torch.inference_mode():
            for start in range(0, pairs, self.batch_size):
                stop = min(start + self.batch_size, pairs)
                first = next(chunks(kept[start:stop], self.batch_size))
                second = next(chunks(kept[start + 1 : stop + 1], self.batch_size))
                middle = self.interpolate(first, second).clamp(0, 255).floor()  # VBench's astype(uint8)
                real = next(chunks(odd[start:stop], self.batch_size))
                per_frame.extend((middle - real).abs().mean(dim=(1, 2, 3)).double().tolist())
        value = (255.0 - sum(per_frame) / len(per_frame)) / 255.0
        return VideoScore(value=value, total=value, count=1, frames=[(255.0 - d) / 255.0 for d in per_frame])
