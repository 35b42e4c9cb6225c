"""ViCLIP ViT-L/14 (InternVid), the video-text model of VBench's temporal style and overall consistency.

Parameter names follow the `model` entry of `ViClip-InternVid-10M-FLT.pth` (vision_encoder.*,
text_encoder.*, temp), so the official file loads unchanged. The vision tower is CLIP's ViT with
a frame-wise patch embedding, a learned embedding per frame, and one attention sequence over all
8 frames' patches; the text tower is CLIP's, with a 32-token context.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", _QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VideoTower(nn.Module):
    """[B, T, 3, 224, 224] normalised frames -> [B, 768] video embedding."""

    def __init__(self, width: int = 1024, layers: int = 24, heads: int = 16, out: int = 768, frames: int = 8):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (1, 14, 14), (1, 14, 14), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((224 // 14) ** 2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, frames, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv1(video.permute(0, 2, 1, 3, 4))  # [B, C, T, h, w]
        batch, width, frames = x.shape[:3]
        x = x.permute(0, 2, 3, 4, 1).reshape(batch * frames, -1, width)
        cls = self.class_embedding.expand(x.shape[0], 1, width)
        x = torch.cat((cls, x), dim=1) + self.positional_embedding
        cls_first = x[:batch, :1]  # ViCLIP keeps the CLS token of the first `batch` frames
        patches = x[:, 1:].reshape(batch, frames, -1, width).transpose(1, 2)  # [B, n, T, C]
        temporal = self.temporal_positional_embedding
        patches = patches + (temporal.mean(1) if frames == 1 else temporal)
        x = torch.cat((cls_first, patches.reshape(batch, -1, width)), dim=1)
        x = self.transformer(self.ln_pre(x).transpose(0, 1))
        return self.ln_post(x)[0] @ self.proj


class TextTower(nn.Module):
    """Token ids [B, 32] -> [B, 768] text embedding (causal mask, EOT token pooled)."""

    def __init__(
        self, width: int = 768, layers: int = 12, heads: int = 12, context: int = 32, vocab: int = 49408
    ):
        super().__init__()
        self.transformer = _Transformer(width, layers, heads)
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, width))
        self.register_buffer("mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x.transpose(0, 1), self.mask).transpose(0, 1))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


class ViClip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vision_encoder = VideoTower()
        self.text_encoder = TextTower()
        self.temp = nn.Parameter(torch.tensor(0.01))

    def tokenize(self, text: str, context: int = 32) -> torch.Tensor:
        """CLIP's BPE; too long -> cut to `context` with the end token kept last."""
        from clip.simple_tokenizer import SimpleTokenizer

        tokenizer = SimpleTokenizer()
        start, end = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
        ids = [start, *tokenizer.encode(text), end]
        if len(ids) > context:
            ids = [*ids[: context - 1], end]
        return F.pad(torch.tensor(ids), (0, context - len(ids))).unsqueeze(0)


def load_viclip(path: str | None) -> ViClip:
    """ViCLIP with the official checkpoint (its `model` entry), random if path is None."""
    model = ViClip()
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    return model.eval()
