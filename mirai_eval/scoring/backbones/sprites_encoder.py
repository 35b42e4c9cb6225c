"""The toy profile's frame encoder: one small conv trunk trained on sprites frames, three heads.

It stands in for three VBench backbones at the toy scale (`mirai_eval/scoring/toy_training.py` trains it
on rendered sprites frames with the world's ground truth):
- `subject`: per palette colour (a sprite's identity is its colour), the trunk's features pooled
  over the pixels of that colour and mapped to a unit vector trained to name the shape of the sprite
  of that colour, scaled by how sure the head is that such a sprite is shown. Concatenated over the
  colours, two frames' cosine is high when they show the same sprites, whatever their positions,
  and drops when one changes shape or colour, vanishes or appears (DINO's role in subject
  consistency: features of the objects). A frame showing no sprite has no subject features.
- `background`: an embedding of the whole frame trained to tell the background layout, its colours
  and the pillar (CLIP's role in background consistency: features of the whole scene).
- `quality`: a separate full-resolution conv branch trained to say how distorted (noise, blur,
  off-palette colour, blockiness) a frame is, on MUSIQ's 0-100 scale (100 = a clean sprites frame),
  for imaging quality.
Frames of any size are resized to `size` x `size`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mirai_train.config_files import Strict
from mirai_train.world.vocabulary import COLOURS, LAYOUTS, PALETTE_RGB, SHAPES

SHAPE_CLASSES = len(SHAPES) + 1  # per colour: the shape of the sprite of that colour, or none
BACKGROUND_CLASSES = len(LAYOUTS) + len(COLOURS) + len(COLOURS) + 1  # layout, colours, pillar (or none)
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0


class SpritesEncoderConfig(Strict):
    size: int = 64  # frames are resized to size x size
    channels: tuple[int, int, int] = (16, 32, 48)  # the trunk's three convs (strides 2, 2, 1)
    quality_channels: tuple[int, int, int] = (8, 16, 16)  # the quality branch (strides 1, 2, 2)
    slot_dim: int = 8  # subject features per colour
    embed_dim: int = 64  # background embedding
    colour_sigma: float = 30.0  # RGB distance scale of the soft assignment of pixels to palette colours


def resized(pixels: Tensor, size: int) -> Tensor:
    """float [B, 3, H, W] pixels in [0, 255] at size x size (antialiased bilinear)."""
    if pixels.shape[-2:] == (size, size):
        return pixels
    return F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def palette_masks(pixels: Tensor, palette: Tensor, sigma: float, grid: Tensor) -> Tensor:
    """[B, 12, h, w]: each pixel's soft assignment to the palette colours, area-pooled to the h x w of `grid`.

    A sprite's identity is its colour, so pooling features under these masks gives one slot per
    colour; the assignment has no weights and takes no gradient.
    """
    with torch.no_grad():
        rgb = pixels.flatten(2)  # [B, 3, HW]
        distance = (
            rgb.square().sum(1, keepdim=True) - 2 * palette @ rgb + palette.square().sum(-1)[:, None]
        )  # [B, 12, HW]
        masks = torch.softmax(distance.div_(-2 * sigma**2), dim=1)
        return F.adaptive_avg_pool2d(masks.unflatten(2, pixels.shape[-2:]), (grid.shape[-2], grid.shape[-1]))


def conv_stack(channels: tuple[int, ...], strides: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out, stride in zip((3, *channels[:-1]), channels, strides, strict=True):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class SpritesEncoder(nn.Module):
    def __init__(self, config: SpritesEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = conv_stack(config.channels, (2, 2, 1))
        self.quality_net = conv_stack(config.quality_channels, (1, 2, 2))
        width, slot, dim = config.channels[-1], config.slot_dim, config.embed_dim
        self.palette: Tensor
        self.register_buffer("palette", torch.tensor(PALETTE_RGB, dtype=torch.float32), persistent=False)
        self.slot_proj = nn.Sequential(nn.Linear(width + 1, 2 * width), nn.ReLU(), nn.Linear(2 * width, slot))
        self.shape_logits = nn.Linear(slot, SHAPE_CLASSES)
        # Background: MLP ending in a batch norm without affine, so embeddings are centred on the
        # training frames and a cosine reflects what differs rather than a shared offset.
        self.background_proj = nn.Sequential(
            nn.Linear(2 * width, 2 * width),
            nn.ReLU(),
            nn.Linear(2 * width, dim),
            nn.BatchNorm1d(dim, affine=False),
        )
        self.background_logits = nn.Linear(dim, BACKGROUND_CLASSES)  # training readout
        quality = config.quality_channels[-1]
        self.quality_head = nn.Sequential(nn.Linear(2 * quality, dim), nn.ReLU(), nn.Linear(dim, 1))

    def encode(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """One trunk pass: per-colour slots [B, 12, slot_dim] (the trunk pooled over the pixels of
        each palette colour, with that colour's area) and mean and max pooled features [B, 2 * C]."""
        pixels = resized(pixels, self.config.size)
        features = self.trunk((pixels - PIXEL_MEAN) / PIXEL_STD)
        masks = palette_masks(pixels, self.palette, self.config.colour_sigma, features)
        mass = masks.sum(dim=(2, 3)).unsqueeze(-1)
        by_colour = torch.einsum("bkhw,bchw->bkc", masks, features) / (mass + 1.0)
        area = torch.log(masks.mean(dim=(2, 3)) + 1e-4).unsqueeze(-1)
        slots = self.slot_proj(torch.cat([by_colour, area], dim=-1))
        return slots, torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)

    def subject_of(self, slots: Tensor) -> Tensor:
        """[B, 12 * slot_dim]: each colour's unit slot vector times P(a sprite of that colour is shown)."""
        shown = 1.0 - torch.softmax(self.shape_logits(slots), dim=-1)[..., -1:]
        return (F.normalize(slots, dim=-1) * shown).flatten(1)

    def embeddings(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Subject and background embeddings from one trunk pass."""
        slots, pooled = self.encode(pixels)
        return self.subject_of(slots), self.background_proj(pooled)

    def subject(self, pixels: Tensor) -> Tensor:
        return self.subject_of(self.encode(pixels)[0])

    def background(self, pixels: Tensor) -> Tensor:
        return self.background_proj(self.encode(pixels)[1])

    def quality_logit(self, pixels: Tensor) -> Tensor:
        features = self.quality_net((resized(pixels, self.config.size) - PIXEL_MEAN) / PIXEL_STD)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.std(dim=(2, 3))], dim=1)
        return self.quality_head(pooled).squeeze(-1)

    def quality(self, pixels: Tensor) -> Tensor:
        """[B] scores on MUSIQ's scale: 100 for a clean sprites frame, lower the more distorted."""
        return 100.0 * torch.sigmoid(self.quality_logit(pixels))


class SpritesQuality(nn.Module):
    """MUSIQ's interface (pixels in [0, 1] -> 0-100 scores) over the encoder's quality head."""

    def __init__(self, encoder: SpritesEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels: Tensor) -> Tensor:
        return self.encoder.quality(pixels * 255.0)
