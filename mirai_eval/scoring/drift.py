"""Long-video measures beyond VBench: how a rollout degrades, not only how good it is.

VBench's dimensions average over a video and reward over-exposed, degraded frames (Self-Forcing++,
arXiv 2510.02283, shows rollouts brightening and stalling past their training horizon). These
measures name the failure modes directly. They are scored, stored and tabled like dimensions
(`MEASURES` in dimensions.py), never enter VBench's final score, and under `protocol: windows`
give per-window curves like any dimension.

- luminance: mean Rec. 601 luma, (0.299 R + 0.587 G + 0.114 B) / 255, over every pixel;
- clipped: the share of pixels whose luma is at least 250/255 or at most 5/255 (blown highlights,
  crushed shadows);
- saturation: mean HSV saturation, (max - min) / max of each pixel's RGB (0 for black);
- identity_decay: the subject-consistency backbone's features (DINO under the vbench profile, the
  sprites encoder under the toy one), normalised. The reference is the mean feature of the first
  second; at each offset of `OFFSETS` that has a whole second of video after it, the curve's value
  is the mean cosine similarity of that second's frames to the reference. The video's value is the
  curve's area over its span of offsets divided by that span (its mean height, trapezoid rule), or
  the single point; the curve is kept as the score's per-offset values. Excluded when the video has
  no second after the first offset. The long-horizon coherence curve asked for in VBench's issue 206;
- repetition: the video cut into `REPEAT_SECONDS` windows; for every two windows that are not
  neighbours, the mean cosine similarity of their frames, frame k against frame k; the value is
  the largest. A loop that replays a stretch of video gives 1; so does a frozen video, which
  dynamic degree per window tells apart. Excluded with fewer than three windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mirai_eval.scoring.base import Aggregation, Excluded, VideoScore
from mirai_train.video import Video

OFFSETS = (1.0, 2.0, 5.0, 10.0, 20.0)  # seconds, from issue 18 (1, 2, 5, 10, 20 s)
REPEAT_SECONDS = 2.0  # VBench-Long's clip length
CLIPPED_LOW, CLIPPED_HIGH = 5.0 / 255.0, 250.0 / 255.0
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def luma(frames: torch.Tensor) -> torch.Tensor:
    """[T, H, W] luma in [0, 1] of uint8 [T, H, W, 3] frames."""
    return (frames.float() @ torch.tensor(LUMA)) / 255.0


def _exposure(name: str, frames: torch.Tensor) -> float:
    if name == "luminance":
        return float(luma(frames).mean())
    if name == "clipped":
        values = luma(frames)
        return float(((values <= CLIPPED_LOW) | (values >= CLIPPED_HIGH)).float().mean())
    pixels = frames.float()
    high, low = pixels.max(dim=-1).values, pixels.min(dim=-1).values
    return float(torch.where(high > 0, (high - low) / high.clamp(min=1.0), torch.zeros_like(high)).mean())


@dataclass
class Exposure:
    """luminance, clipped or saturation (module docstring): weightless, per pixel."""

    name: str
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        value = _exposure(self.name, video.frames)
        return VideoScore(value=value, total=value, count=1)


Features = Callable[[Video], torch.Tensor]  # [T, D] features of every frame


@dataclass
class IdentityDecay:
    """Similarity to the first second at growing offsets (module docstring)."""

    features: Features
    name: str = "identity_decay"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        second = max(1, round(video.fps))
        total = int(video.frames.shape[0])
        reached = [o for o in OFFSETS if round(o * video.fps) + second <= total]
        if not reached:
            raise Excluded(f"identity decay needs {OFFSETS[0] + 1:g} s of video or more")
        features = F.normalize(self.features(video).double(), dim=-1)
        reference = F.normalize(features[:second].mean(dim=0), dim=0)
        curve = [
            float((features[round(o * video.fps) : round(o * video.fps) + second] @ reference).mean())
            for o in reached
        ]
        if len(curve) == 1:
            value = curve[0]
        else:  # the trapezoid rule by hand: numpy 1 (the vbench environment) has no np.trapezoid
            steps = range(len(curve) - 1)
            area = sum((reached[i + 1] - reached[i]) * (curve[i] + curve[i + 1]) / 2 for i in steps)
            value = area / (reached[-1] - reached[0])
        return VideoScore(value=value, total=value, count=1, frames=curve)


@dataclass
class Repetition:
    """The largest frame-aligned similarity of two non-neighbouring windows (module docstring)."""

    features: Features
    name: str = "repetition"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        length = max(1, round(REPEAT_SECONDS * video.fps))
        count = int(video.frames.shape[0]) // length
        if count < 3:
            raise Excluded(f"repetition needs three {REPEAT_SECONDS:g} s windows or more")
        features = F.normalize(self.features(video).double(), dim=-1)[: count * length]
        windows = features.reshape(count, length, -1)
        similarity = torch.einsum("ikd,jkd->ij", windows, windows) / length
        apart = torch.ones(count, count).triu(diagonal=2).bool()
        value = float(similarity[apart].max())
        return VideoScore(value=value, total=value, count=1)
