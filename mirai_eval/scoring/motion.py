"""Motion smoothness: how well AMT-S predicts each odd frame from its two even neighbours.

As VBench computes it: frames 0, 2, 4, ... in [0, 1], replicate-padded (centred) to multiples
of 16, go through AMT-S in consecutive pairs at t = 0.5; each prediction, cropped back and
truncated to uint8 (VBench's `astype(np.uint8)`), is compared with the real odd frame between
the pair; the mean absolute difference over pairs gives (255 - mad) / 255 per video, and the
dimension is the mean over videos. The last frame of an even-length video has no right
neighbour and is not compared. VBench downscales large frames only when its device is the
string 'cuda', which its launcher never passes (it passes torch.device), so frames always go
through at full resolution. Pairs are batched under inference mode; VBench runs them one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mirai_eval.scoring.backbones.amt import AmtS
from mirai_eval.scoring.base import Aggregation, VideoScore
from mirai_train.video import Video

PAD_MULTIPLE = 16


def centred_padding(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding up to multiples of `multiple`, the odd pixel after."""
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


@dataclass
class MotionSmoothness:
    """`batch_size` pairs per forward: AMT-S holds an all-pairs correlation volume per pair, like RAFT."""

    model: AmtS
    batch_size: int = 2
    device: str = "cpu"
    name: str = "motion_smoothness"
    aggregation: Aggregation = "video_mean"

    def pair_differences(self, video: Video) -> list[float]:
        """Mean |interpolated - real| (0-255, over pixels and channels) for each interpolated odd frame."""
        frames = video.frames
        even = frames[0::2]
        if even.shape[0] < 2:
            raise ValueError(f"motion smoothness needs at least 3 frames, got {frames.shape[0]}")
        height, width = video.size
        left, right, top, bottom = centred_padding(height, width)
        smallest = self.model.config.min_padded_side
        if min(height + top + bottom, width + left + right) < smallest:
            raise ValueError(
                f"motion smoothness needs frames whose sides pad to at least {smallest} px, got "
                f"{height}x{width}: smaller ones make AMT-S predict NaN (VBench scores that garbage)"
            )
        pairs = even.shape[0] - 1
        differences: list[float] = []
        with torch.inference_mode():
            for start in range(0, pairs, self.batch_size):
                stop = min(start + self.batch_size, pairs)
                pixels = even[start : stop + 1].to(self.device).permute(0, 3, 1, 2).float() / 255.0
                pixels = F.pad(pixels, [left, right, top, bottom], mode="replicate")
                predicted = self.model(pixels[:-1], pixels[1:])[..., top : top + height, left : left + width]
                predicted = (predicted * 255.0).to(torch.uint8).permute(0, 2, 3, 1)
                real = frames[2 * start + 1 : 2 * stop : 2].to(self.device)
                sums = (predicted.to(torch.int16) - real.to(torch.int16)).abs().sum(dim=(1, 2, 3))
                differences.extend(s / real[0].numel() for s in sums.cpu().tolist())
        return differences

    def score(self, video: Video, prompt: str) -> VideoScore:
        differences = self.pair_differences(video)
        value = (255.0 - sum(differences) / len(differences)) / 255.0
        return VideoScore(
            value=value, total=value, count=1, frames=[(255.0 - d) / 255.0 for d in differences]
        )
