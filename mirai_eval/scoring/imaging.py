"""Imaging quality: MUSIQ (SPAQ checkpoint; the toy profile's sprites quality regressor) on every
frame, longer side capped at 512.

VBench averages the frame scores (0-100) per video and divides the mean over videos by 100; we
report per-video values on that same 0-1 scale. Frames go through MUSIQ in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mirai_eval.scoring.backbones.musiq import Musiq
from mirai_eval.scoring.base import Aggregation, VideoScore
from mirai_eval.scoring.preprocess import chunks, musiq_input
from mirai_train.video import Video


def musiq_batch(device: str, batch: int) -> int:
    """Frames per MUSIQ forward: one on a CPU, the frames batch elsewhere.

    A frame is ~350 patches through MUSIQ's ResNet stem (~90 MB of activations at 512 px); on a CPU
    two frames a forward already leave the caches. On a quiet 2-core EPYC, 8 frames of 295x512 took
    1.74 s one frame a forward, 2.43 s two frames a forward, 2.07 s in pyiqa one by one (as vbench
    runs it).
    """
    return 1 if device == "cpu" else batch


def load_musiq(path: str | None) -> Musiq:
    """MUSIQ with pyiqa's `musiq_spaq_ckpt-358bb6af.pth` (random if path is None)."""
    model = Musiq()
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()


@dataclass
class ImagingQuality:
    model: nn.Module  # pixels [B, 3, H, W] in [0, 1] -> [B] scores on MUSIQ's 0-100 scale
    batch_size: int = 8
    device: str = "cpu"
    name: str = "imaging_quality"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        per_frame: list[float] = []
        with torch.inference_mode():
            for pixels in chunks(video.frames, self.batch_size, self.device):
                per_frame.extend(self.model(musiq_input(pixels)).double().cpu().tolist())
        value = sum(per_frame) / len(per_frame) / 100.0
        return VideoScore(value=value, total=value, count=1, frames=[f / 100.0 for f in per_frame])
