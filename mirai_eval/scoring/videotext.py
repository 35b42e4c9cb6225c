"""Temporal style and overall consistency: ViCLIP video-text cosine on 8 middle-sampled frames.

Both dimensions embed the same 8 frames with the same model against the prompt, so the video
embedding is computed once per video and shared (VBench computes it once per dimension).
Frames: the middle frame of 8 equal intervals; resized as uint8 (bicubic, no antialias, hence
rounded and clamped), centre-cropped to 224, CLIP statistics.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mirai_eval.scoring.backbones.viclip import ViClip
from mirai_eval.scoring.base import Aggregation, VideoScore, video_mean_score
from mirai_eval.scoring.preprocess import CLIP_MEAN, CLIP_STD
from mirai_train.video import Video

if TYPE_CHECKING:  # the toy models load with the toy profile only (profiles.toy_dimensions)
    from mirai_eval.scoring.backbones.sprites_scorers import SpritesScorers

FRAMES = 8


def middle_indices(count: int, frame_count: int = FRAMES) -> list[int]:
    """Middle of each of `frame_count` equal intervals; short videos repeat their last index."""
    taken = min(frame_count, count)
    edges = np.linspace(0, count, taken + 1).astype(int)
    picked = [int((a + b - 1) // 2) for a, b in itertools.pairwise(edges)]
    return picked + [picked[-1]] * (frame_count - len(picked))


class VideoTextModel(Protocol):
    """Unit video and text embeddings [1, D] whose product is the dimension's value."""

    def video(self, video: Video) -> torch.Tensor: ...

    def text(self, prompt: str) -> torch.Tensor: ...


@dataclass
class VideoTextEmbedder:
    """One ViCLIP, its video embedding cached for the last video and its text embeddings per prompt."""

    model: ViClip
    device: str = "cpu"
    _video_key: tuple[str, int] | None = None
    _video: torch.Tensor | None = None
    _texts: dict[str, torch.Tensor] = field(default_factory=dict)

    def video(self, video: Video) -> torch.Tensor:
        key = (video.path, video.frames.data_ptr())
        if self._video_key != key or self._video is None:
            frames = video.frames[middle_indices(video.frames.shape[0])].permute(0, 3, 1, 2)
            frames = TF.resize(frames, [224], interpolation=InterpolationMode.BICUBIC, antialias=False)
            frames = TF.normalize(TF.center_crop(frames, [224]).float() / 255.0, CLIP_MEAN, CLIP_STD)
            with torch.inference_mode():
                embedding = self.model.vision_encoder(frames.unsqueeze(0).to(self.device)).float()
            self._video, self._video_key = F.normalize(embedding, dim=-1).cpu(), key
        return self._video

    def text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._texts:
            with torch.inference_mode():
                embedding = self.model.text_encoder(self.model.tokenize(prompt).to(self.device)).float()
            self._texts[prompt] = F.normalize(embedding, dim=-1).cpu()
        return self._texts[prompt]


@dataclass
class SpritesVideoTextEmbedder:
    """The toy profile's ViCLIP stand-in: the same 8 middle-sampled frames, the sprites video-text model."""

    scorers: SpritesScorers
    device: str = "cpu"

    def video(self, video: Video) -> torch.Tensor:
        frames = video.frames[middle_indices(video.frames.shape[0])].permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            features = self.scorers.videotext.frame_features(self.scorers.encoder, frames.to(self.device))
            return self.scorers.videotext.encode_video(features.unsqueeze(0)).float().cpu()

    def text(self, prompt: str) -> torch.Tensor:
        model = self.scorers.videotext
        with torch.inference_mode():
            return model.encode_words(model.word_vectors([prompt])).float().cpu()


@dataclass
class VideoTextConsistency:
    """`temporal_style` or `overall_consistency`: the same measure on different prompt sets."""

    name: str
    embedder: VideoTextModel
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        return video_mean_score(float((self.embedder.video(video) @ self.embedder.text(prompt).T).item()))
