"""CLIP-based dimensions: aesthetic quality (ViT-L/14 + LAION linear head) and appearance style.

Aesthetic quality: the LAION predictor on L2-normalised CLIP image features of every frame,
divided by 10, averaged per video, and the dimension is the mean over videos. Appearance style:
CLIP's frame-text logit (its learned scale included) / 100 for the prompt's style text, averaged
over frames; the aggregate is frame-weighted. Both run frames in batches under inference mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mirai_eval.scoring.base import Aggregation, VideoScore, video_mean_score
from mirai_eval.scoring.preprocess import chunks, clip_dtype, clip_input, clip_pil_input
from mirai_train.video import Video


def aesthetic_head(path: str | None) -> nn.Linear:
    """The LAION `sa_0_4_vit_l_14_linear.pth` head (random if path is None)."""
    head = nn.Linear(768, 1)
    if path is not None:
        head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return head.eval()


@dataclass
class AestheticQuality:
    clip_model: nn.Module
    head: nn.Linear
    batch_size: int = 32
    device: str = "cpu"
    name: str = "aesthetic_quality"
    aggregation: Aggregation = "video_mean"

    def score(self, video: Video, prompt: str) -> VideoScore:
        dtype = clip_dtype(self.clip_model)
        values = []
        with torch.inference_mode():
            for pixels in chunks(video.frames, self.batch_size):
                features = self.clip_model.encode_image(clip_input(pixels.to(self.device)).to(dtype))  # type: ignore[operator]
                features = F.normalize(features.float(), dim=-1, p=2)
                values.append(self.head(features).squeeze(-1).cpu())
        return video_mean_score((torch.cat(values) / 10).mean().item())


@dataclass
class AppearanceStyle:
    """Needs each prompt's style text, which VBench keeps in VBench_full_info.json."""

    clip_model: nn.Module
    styles: Mapping[str, str]
    batch_size: int = 32
    device: str = "cpu"
    name: str = "appearance_style"
    aggregation: Aggregation = "frame_weighted"

    def score(self, video: Video, prompt: str) -> VideoScore:
        import clip

        if prompt not in self.styles:
            raise ValueError(f"no appearance-style text for prompt {prompt!r} in the full-info JSON")
        model = self.clip_model
        dtype = clip_dtype(model)
        with torch.inference_mode():
            text = model.encode_text(clip.tokenize([self.styles[prompt]]).to(self.device))  # type: ignore[operator]
            text = text / text.norm(dim=1, keepdim=True)
            scale = model.logit_scale.exp()  # type: ignore[operator]
            per_frame: list[float] = []
            for start in range(0, video.frames.shape[0], self.batch_size):
                pixels = clip_pil_input(video.frames[start : start + self.batch_size]).to(self.device, dtype)
                image = model.encode_image(pixels)  # type: ignore[operator]
                image = image / image.norm(dim=1, keepdim=True)
                per_frame.extend((scale * image @ text.t()).squeeze(-1).float().div(100).tolist())
        total = sum(per_frame)
        return VideoScore(value=total / len(per_frame), total=total, count=len(per_frame), frames=per_frame)
