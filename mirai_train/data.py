"""Training batches as a pure function of (step, micro-step, rank): resuming needs no loader state.

Rank r of n takes the clips ((step * accumulation + micro) * n + r) * batch + j, cycling over the
dataset, so ranks see disjoint clips and a resumed run sees exactly the clips it would have seen.
A latents dataset (data.kind: latents) is read in a new order every epoch, a permutation seeded by
(data.base_seed, epoch), as the release's shuffling sampler does: its clips come in the order they
were listed, often grouped by source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mirai_train.latents import LatentClips, open_latents
from mirai_train.models.codecs import VideoCodec
from mirai_train.models.text_encoders import TextEncoder
from mirai_train.recipe import DataSpec
from mirai_train.spec import CodecSpec, VideoSpec
from mirai_train.world import SpritesConfig, SpritesDataset


@dataclass
class Batch:
    prompts: list[str]
    text: Tensor  # [B, L, D]
    latents: Tensor | None  # [B, C, F, h, w] for video data; None for prompt-only data


class TrainingData:
    def __init__(
        self,
        spec: DataSpec,
        video: VideoSpec,
        codec: VideoCodec,
        text_encoder: TextEncoder,
        *,
        batch_size: int,
        accumulation: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        codec_spec: CodecSpec | None = None,
    ) -> None:
        """`codec_spec`, when given, is checked against the codec a latents dataset was encoded with."""
        self.spec, self.codec, self.text_encoder = spec, codec, text_encoder
        self.batch_size, self.accumulation = batch_size, accumulation
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.sprites: SpritesDataset | None = None
        self.latents: LatentClips | None = None
        self.prompts: list[str] = []
        self._order: tuple[int, Tensor] | None = None  # (epoch, its permutation) of the latents dataset
        if spec.kind == "sprites":
            world = SpritesConfig(
                height=video.height, width=video.width, fps=video.fps, num_frames=spec.num_frames
            )
            self.sprites = SpritesDataset(spec.num_clips, world, base_seed=spec.base_seed)
        elif spec.kind == "latents":
            assert spec.path is not None  # the recipe validator requires it
            s = codec.spatial_factor
            shape = (
                codec.latent_channels,
                codec.latent_frames(spec.num_frames),
                video.height // s,
                video.width // s,
            )
            self.latents = open_latents(Path(spec.path), shape, codec_spec)
        else:
            assert spec.prompts is not None
            path = Path(spec.prompts)
            if not path.is_file():
                raise FileNotFoundError(
                    f"data.prompts: {path} not found; give a text file, one prompt per line"
                )
            self.prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not self.prompts:
                raise ValueError(f"data.prompts: {path} has no prompts")

    def __len__(self) -> int:
        if self.sprites is not None:
            return len(self.sprites)
        return len(self.latents) if self.latents is not None else len(self.prompts)

    def prompt(self, index: int) -> str:
        """The prompt of item `index` (cycling), without rendering or reading its video."""
        if self.sprites is not None:
            return self.sprites.prompt(index % len(self.sprites))
        if self.latents is not None:
            return self.latents.prompt(index % len(self.latents))
        return self.prompts[index % len(self.prompts)]

    def indices(self, step: int, micro: int) -> list[int]:
        """The dataset items of this rank's micro-batch `micro` of `step`."""
        first = ((step * self.accumulation + micro) * self.world_size + self.rank) * self.batch_size
        size = len(self)
        if self.latents is None:
            return [(first + j) % size for j in range(self.batch_size)]
        return [self._shuffled(first + j, size) for j in range(self.batch_size)]

    def _shuffled(self, position: int, size: int) -> int:
        epoch = position // size
        if self._order is None or self._order[0] != epoch:
            seed = int(np.random.SeedSequence([self.spec.base_seed, epoch]).generate_state(1)[0])
            self._order = (epoch, torch.randperm(size, generator=torch.Generator().manual_seed(seed)))
        return int(self._order[1][position % size])

    def clean_latents(self, index: list[int]) -> Tensor:
        """Clean latents [B, C, F, h, w] of dataset items (cycling): the stored latents, or the
        sprites clips encoded by the codec in one call."""
        if self.latents is not None:
            return torch.stack([self.latents.latents(i % len(self)) for i in index]).to(self.device)
        if self.sprites is None:
            raise ValueError("this stage trains on videos: set data.kind: sprites or latents, not prompts")
        video = torch.stack([self.sprites[i % len(self)][0] for i in index]).to(self.device)
        with torch.no_grad():
            return self.codec.encode(video)

    def batch(self, step: int, micro: int = 0, with_video: bool = True) -> Batch:
        index = self.indices(step, micro)
        prompts = [self.prompt(i) for i in index]
        video = with_video and (self.sprites is not None or self.latents is not None)
        latents = self.clean_latents(index) if video else None
        return Batch(prompts, self.text_encoder.encode(prompts).to(self.device), latents)
