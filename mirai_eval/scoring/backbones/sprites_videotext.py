"""The toy profile's video-text model (ViCLIP's role): sprites clips and their prompts in one space.

Video tower: the frozen sprites encoder's subject and background embeddings of the 8 middle-sampled
frames, averaged over frames, through an MLP. Text tower: the toy text encoder's fixed word vectors
(`ToyTextEncoder`), a width-3 convolution over the words (so "red circle" binds the colour to its
shape) and a pooled projection. Trained contrastively on sprites clips and their generated prompts
(`mirai_eval/scoring/toy_training.py`); the score is the cosine of the two unit embeddings, as ViCLIP's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mirai_eval.scoring.backbones.sprites_encoder import SpritesEncoder
from mirai_train.config_files import Strict
from mirai_train.models.text_encoders import ToyTextEncoder


class SpritesVideoTextConfig(Strict):
    word_dim: int = 32  # the toy text encoder's word vectors
    max_words: int = 48
    word_seed: int = 0
    hidden: int = 128
    embed_dim: int = 64


class SpritesVideoText(nn.Module):
    def __init__(self, config: SpritesVideoTextConfig, frame_dim: int) -> None:
        """`frame_dim`: the width of `frame_features`."""
        super().__init__()
        self.config = config
        self.words = ToyTextEncoder(config.word_dim, config.max_words, config.word_seed)
        self.video_proj = nn.Sequential(
            nn.Linear(frame_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.embed_dim)
        )
        self.text_conv = nn.Conv1d(config.word_dim, config.hidden, kernel_size=3, padding=1)
        self.text_proj = nn.Linear(2 * config.hidden, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))  # log of the contrastive temperature's inverse

    @staticmethod
    def frame_features(encoder: SpritesEncoder, pixels: Tensor) -> Tensor:
        """[F, 3, H, W] pixels in [0, 255] -> [F, frame_dim]: what the video tower reads per frame."""
        return torch.cat(encoder.embeddings(pixels), dim=1)

    def encode_video(self, frame_features: Tensor) -> Tensor:
        """[B, F, D] per-frame features -> [B, embed_dim] unit embeddings."""
        return F.normalize(self.video_proj(frame_features.mean(dim=1)), dim=-1)

    def word_vectors(self, prompts: list[str]) -> Tensor:
        return self.words.encode(prompts).to(self.text_conv.weight.device)

    def encode_words(self, words: Tensor) -> Tensor:
        """[B, L, word_dim] word vectors (zero past each prompt) -> [B, embed_dim] unit embeddings."""
        present = (words.abs().sum(dim=-1) > 0).unsqueeze(1)  # [B, 1, L]
        hidden = F.relu(self.text_conv(words.transpose(1, 2)))  # [B, hidden, L]
        mean = (hidden * present).sum(dim=2) / present.sum(dim=2).clamp(min=1)
        peak = hidden.masked_fill(~present, 0.0).amax(dim=2)
        return F.normalize(self.text_proj(torch.cat([mean, peak], dim=1)), dim=-1)
