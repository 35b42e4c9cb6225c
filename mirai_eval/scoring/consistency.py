"""Subject consistency (DINO) and background consistency (CLIP): VBench's frame-similarity formula.

For frames t >= 2: (max(0, cos(f_{t-1}, f_t)) + max(0, cos(f_1, f_t))) / 2; the video value is
the sum over t divided by T - 1, and the aggregate is frame-weighted. Features come from one
batched forward per chunk under inference mode (VBench runs DINO one frame at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mirai_eval.scoring.base import Aggregation, VideoScore
from mirai_eval.scoring.preprocess import chunks, clip_dtype, clip_input, dino_input
from mirai_train.video import Video


def frame_consistency(features: torch.Tensor) -> VideoScore:
    """VBench's consistency of a [T, D] feature sequence (any scale; normalised here)."""
    if features.shape[0] < 2:
        raise ValueError(f"consistency needs at least 2 frames, got {features.shape[0]}")
    features = F.normalize(features.float(), dim=-1, p=2)
    previous = F.cosine_similarity(features[:-1], features[1:]).clamp(min=0.0)
    first = F.cosine_similarity(features[:1].expand_as(features[1:]), features[1:]).clamp(min=0.0)
    per_frame = ((previous + first) / 2).double().tolist()
    total = sum(per_frame)
    return VideoScore(value=total / len(per_frame), total=total, count=len(per_frame), frames=per_frame)


@dataclass
class FeatureConsistency:
    """A consistency dimension defined by a backbone and its preprocessing."""

    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    prepare: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int = 16
    device: str = "cpu"
    aggregation: Aggregation = "frame_weighted"

    def features(self, video: Video) -> torch.Tensor:
        parts = []
        with torch.inference_mode():
            for pixels in chunks(video.frames, self.batch_size, self.device):
                parts.append(self.encode(self.prepare(pixels)).float().cpu())
        return torch.cat(parts)

    def score(self, video: Video, prompt: str) -> VideoScore:
        return frame_consistency(self.features(video))


def subject_consistency(
    dino: torch.nn.Module, batch_size: int = 16, device: str = "cpu"
) -> FeatureConsistency:
    return FeatureConsistency("subject_consistency", dino, dino_input, batch_size, device)


def background_consistency(
    clip_model: torch.nn.Module, batch_size: int = 16, device: str = "cpu"
) -> FeatureConsistency:
    dtype = clip_dtype(clip_model)
    return FeatureConsistency(
        "background_consistency",
        clip_model.encode_image,  # type: ignore[arg-type]
        lambda pixels: clip_input(pixels).to(dtype),
        batch_size,
        device,
    )
