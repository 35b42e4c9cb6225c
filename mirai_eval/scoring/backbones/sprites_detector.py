"""The toy profile's object detector (GRiT's role): which sprite, if any, each palette colour shows.

A sprite's identity is its colour (no two things in a scene share one), so detection is a
classification per palette colour: the shape of the sprite of that colour, or none. A small
fully convolutional net reads shape evidence around every pixel (7 logits: a shape, or no
sprite there); each colour's logits are those averaged under the colour's soft pixel mask, then
calibrated with the colour's area by one linear layer, so an absent colour, a background band
or the pillar come out as none. Trained on rendered sprites frames with the world's ground truth
(`mirai_eval/scoring/toy_training.py`), per colour only: no pixel labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mirai_eval.scoring.backbones.sprites_encoder import (
    PIXEL_MEAN,
    PIXEL_STD,
    SHAPE_CLASSES,
    conv_stack,
    palette_masks,
    resized,
)
from mirai_train.config_files import Strict
from mirai_train.world.vocabulary import COLOURS, PALETTE_RGB, SHAPES

NONE = len(SHAPES)  # the class "no sprite of this colour"


class SpritesDetectorConfig(Strict):
    size: int = 64  # frames are resized to size x size
    channels: tuple[int, ...] = (16, 32, 48, 48)  # the trunk's 3x3 convs, strides 1, 2, 1, 1
    colour_sigma: float = 15.0  # RGB distance scale of the soft assignment of pixels to palette colours


class SpritesDetector(nn.Module):
    def __init__(self, config: SpritesDetectorConfig) -> None:
        super().__init__()
        self.config = config
        strides = (1, 2) + (1,) * (len(config.channels) - 2)
        self.trunk = nn.Sequential(
            conv_stack(config.channels, strides), nn.Conv2d(config.channels[-1], SHAPE_CLASSES, 1)
        )
        self.palette: Tensor
        self.register_buffer("palette", torch.tensor(PALETTE_RGB, dtype=torch.float32), persistent=False)
        self.calibrate = nn.Linear(SHAPE_CLASSES + 1, SHAPE_CLASSES)

    def forward(self, pixels: Tensor) -> Tensor:
        """float [B, 3, H, W] pixels in [0, 255] -> [B, 12, 7] logits: per colour, its sprite's shape or none."""
        pixels = resized(pixels, self.config.size)
        evidence = self.trunk((pixels - PIXEL_MEAN) / PIXEL_STD)  # [B, 7, h, w]
        masks = palette_masks(pixels, self.palette, self.config.colour_sigma, evidence)
        mass = masks.sum(dim=(2, 3)).unsqueeze(-1)
        pooled = torch.einsum("bkhw,bchw->bkc", masks, evidence) / (mass + 1.0)
        area = torch.log(masks.mean(dim=(2, 3)) + 1e-4).unsqueeze(-1)
        return self.calibrate(torch.cat([pooled, area], dim=-1))

    def detect(self, pixels: Tensor) -> list[list[tuple[str, str]]]:
        """Per frame, the (colour, shape) of every sprite it shows (the most likely class per colour)."""
        classes = self(pixels).argmax(dim=-1).tolist()
        return [[(COLOURS[k], SHAPES[c]) for k, c in enumerate(frame) if c != NONE] for frame in classes]
