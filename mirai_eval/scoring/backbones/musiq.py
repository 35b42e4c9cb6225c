"""MUSIQ (multi-scale image quality transformer) as pyiqa builds it for VBench's imaging quality.

Parameter names follow pyiqa's `MUSIQ`, so `musiq_spaq_ckpt-358bb6af.pth` loads unchanged. The
input is cut into 32x32 patches at three scales (longer side 224, 384, native), each patch
tagged with a hashed grid position, its scale and a padding mask; a ResNet stem embeds each
patch and a transformer reads the CLS token. Frames of one video share their size, so a whole
chunk of frames goes through in one batch (pyiqa runs VBench's frames one by one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mirai_eval.scoring.backbones import Mlp

PATCH = 32
SCALES = (224, 384)
GRID = 10


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' zero padding (the extra pixel goes after)."""
    height, width = x.shape[-2:]
    pad_h = (math.ceil(height / stride) - 1) * stride + kernel - height
    pad_w = (math.ceil(width / stride) - 1) * stride + kernel - width
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class StdConv(nn.Conv2d):
    """Weight-standardised convolution with SAME padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        weight = weight / (weight.std((1, 2, 3), keepdim=True) + 1e-5)
        x = same_padding(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, weight, self.bias, self.stride)


class _Bottleneck(nn.Module):
    def __init__(self, inplanes: int, outplanes: int) -> None:
        super().__init__()
        self.conv1 = StdConv(inplanes, inplanes, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv2 = StdConv(inplanes, inplanes, 3, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv3 = StdConv(inplanes, outplanes, 1, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, outplanes, eps=1e-4)
        self.conv_proj = StdConv(inplanes, outplanes, 1, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, outplanes, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + identity)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (
            f(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
            for f in (self.query, self.key, self.value)
        )
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(attn.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, mlp: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class _PositionEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, GRID * GRID, dim))


class _ScaleEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(len(SCALES) + 1, dim))


class _Encoder(nn.Module):
    def __init__(self, dim: int, mlp: int, heads: int, depth: int) -> None:
        super().__init__()
        self.posembed_input = _PositionEmbedding(dim)
        self.scaleembed_input = _ScaleEmbedding(dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": _Block(dim, mlp, heads) for i in range(depth)})

    def forward(
        self, x: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.posembed_input.position_emb[0][grid] + self.scaleembed_input.scale_emb[scale]
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1)
        keep = torch.cat((torch.ones_like(mask[:, :1]), mask), dim=1)
        pair = keep[:, None, :, None] & keep[:, None, None, :]
        # Padding keys get -1000 (pyiqa's fill value); what padding queries compute never reaches CLS.
        bias = torch.zeros(pair.shape, dtype=x.dtype, device=x.device).masked_fill(~pair, -1e3)
        for block in self.transformer.values():
            x = block(x, bias)
        return self.encoder_norm(x)


def hashed_grid(count_h: int, count_w: int) -> torch.Tensor:
    """Each patch's cell of a GRID x GRID position table (nearest-neighbour hashing of its row/column)."""
    grid = torch.arange(GRID, dtype=torch.float32).reshape(1, 1, GRID)
    cols = F.interpolate(grid, count_w, mode="nearest")[0, 0]
    rows = F.interpolate(grid, count_h, mode="nearest")[0, 0]
    return (rows[:, None] * GRID + cols[None, :]).reshape(-1).long()


def _patches(images: torch.Tensor, scale_id: int, length: int | None) -> tuple[torch.Tensor, ...]:
    """32x32 patches of one scale, padded with masked zeros (or cut) to `length`; None keeps all."""
    height, width = images.shape[-2:]
    patches = F.unfold(same_padding(images, PATCH, PATCH), PATCH, stride=PATCH).transpose(1, 2)
    grid = hashed_grid(math.ceil(height / PATCH), math.ceil(width / PATCH))
    count = patches.shape[1]
    length = count if length is None else length
    kept = min(count, length)
    padded = patches.new_zeros(patches.shape[0], length, patches.shape[2])
    padded[:, :kept] = patches[:, :kept]
    grid_full = torch.zeros(length, dtype=torch.long)
    grid_full[:kept] = grid[:kept]
    mask = torch.zeros(length, dtype=torch.bool)
    mask[:kept] = True
    return padded, grid_full, torch.where(mask, scale_id, 0), mask


def multiscale_patches(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """images [B, 3, H, W] in [-1, 1] -> patches [B, L, 3*32*32], grid cells, scale ids, mask.

    Scales: longer side 224 and 384 (bicubic; 49 and 144 slots), then every patch of the image at
    its own resolution, as pyiqa's default MUSIQ does.
    """
    height, width = images.shape[-2:]
    pieces = []
    for scale_id, longer in enumerate(SCALES):
        ratio = longer / max(height, width)
        size = (round(height * ratio), round(width * ratio))
        resized = F.interpolate(images, size, mode="bicubic", align_corners=False)
        pieces.append(_patches(resized, scale_id, math.ceil(longer / PATCH) ** 2))
    pieces.append(_patches(images, len(SCALES), None))
    batch = images.shape[0]
    patches = torch.cat([p[0] for p in pieces], dim=1)
    grid, scale, mask = (
        torch.cat([p[i] for p in pieces]).to(images.device).expand(batch, -1) for i in (1, 2, 3)
    )
    return patches, grid, scale, mask


class Musiq(nn.Module):
    """MUSIQ with a single-output head (the SPAQ checkpoint): one quality score per image, 0-100."""

    def __init__(self, dim: int = 384, mlp: int = 1152, heads: int = 6, depth: int = 14) -> None:
        super().__init__()
        self.conv_root = StdConv(3, 64, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, 64, eps=1e-6)
        self.block1 = _Bottleneck(64, 256)
        self.embedding = nn.Linear(256 * (PATCH // 4) ** 2, dim)
        self.transformer_encoder = _Encoder(dim, mlp, heads, depth)
        self.head = nn.Linear(dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> scores [B]."""
        patches, grid, scale, mask = multiscale_patches((images - 0.5) * 2)
        batch, length, _ = patches.shape
        x = patches.reshape(-1, 3, PATCH, PATCH)
        x = F.relu(self.gn_root(self.conv_root(x)))
        x = F.max_pool2d(same_padding(x, 3, 2), 3, 2)
        x = self.block1(x).permute(0, 2, 3, 1).reshape(batch, length, -1)
        x = self.transformer_encoder(self.embedding(x), grid, scale, mask)
        return self.head(x[:, 0]).squeeze(-1)
