"""DINO ViT-B/16 (the `dino_vitb16` hub model VBench's subject consistency uses), written for batching.

Parameter names follow the official `dino_vitbase16_pretrain.pth`, so that file (or any state
dict of the hub model) loads unchanged. The positional embedding is resized exactly as DINO
does it (bicubic with a scale factor of (n + 0.1) / sqrt(N)), which matters because VBench
feeds non-square frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mirai_eval.scoring.backbones import Mlp


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class DinoViT(nn.Module):
    """ViT whose forward returns the final-norm CLS token, like DINO's `VisionTransformer`."""

    def __init__(self, patch: int = 16, dim: int = 768, depth: int = 12, heads: int = 12, grid: int = 14):
        super().__init__()
        self.patch = patch
        self.patch_embed = _PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _positions(self, rows: int, cols: int) -> torch.Tensor:
        grid_size = self.pos_embed.shape[1] - 1
        if rows * cols == grid_size and rows == cols:
            return self.pos_embed
        side = math.sqrt(grid_size)
        patch_pos = self.pos_embed[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic"
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((self.pos_embed[:, :1], patch_pos), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] normalised -> CLS features [B, dim]."""
        rows, cols = images.shape[-2] // self.patch, images.shape[-1] // self.patch
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self._positions(rows, cols)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]
