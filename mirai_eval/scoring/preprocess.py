"""The image preprocessing of VBench's backbones, applied in chunks to frames decoded once.

VBench converts whole videos to float at full resolution before resizing (and, for background
consistency, keeps autograd on); resizing each chunk of frames gives identical values with a
fraction of the memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype `clip.load` left the model in (fp16 on GPUs, fp32 on CPU); inputs must match it."""
    return cast(torch.dtype, model.dtype)


def chunks(frames: torch.Tensor, size: int, device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """uint8 [T, H, W, 3] -> float [t, 3, H, W] pixel chunks in [0, 255] on `device`.

    The uint8 frames move before the float conversion: a quarter of the bytes to copy to a GPU.
    """
    for start in range(0, frames.shape[0], size):
        yield frames[start : start + size].to(device).permute(0, 3, 1, 2).float()


def dino_input(pixels: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Shorter side to `size` (bilinear, no antialias, no crop), /255, ImageNet statistics."""
    resized = TF.resize(pixels, [size], antialias=False)
    return TF.normalize(resized / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_input(pixels: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Shorter side to `size` (bicubic, no antialias), centre crop, /255, CLIP statistics."""
    resized = TF.resize(pixels, [size], interpolation=InterpolationMode.BICUBIC, antialias=False)
    return TF.normalize(TF.center_crop(resized, [size]) / 255.0, CLIP_MEAN, CLIP_STD)


def clip_pil_input(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """CLIP preprocessing through PIL (antialiased bicubic), as VBench's appearance style does it."""
    images = []
    for frame in frames.numpy():
        image = TF.resize(Image.fromarray(frame), [size], interpolation=InterpolationMode.BICUBIC)
        image = TF.center_crop(image, [size])
        images.append(TF.normalize(TF.to_tensor(image), CLIP_MEAN, CLIP_STD))
    return torch.stack(images)


def musiq_input(pixels: torch.Tensor, longest: int = 512) -> torch.Tensor:
    """Longer side capped at `longest` (bilinear, no antialias, truncated sizes), /255."""
    height, width = pixels.shape[-2:]
    if max(height, width) > longest:
        scale = longest / max(height, width)
        pixels = TF.resize(pixels, [int(scale * height), int(scale * width)], antialias=False)
    return pixels / 255.0
