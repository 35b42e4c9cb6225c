"""Clips for training and prompts for evaluation, each a pure function of an index and a seed.

Clip i of a dataset is the scene of `clip_seed(base_seed, i)`; rank r of n takes the global
indices r, r + n, r + 2n, ... so ranks see disjoint clips that together cover the dataset, and any
clip can be regenerated from (base_seed, index) alone. The held-out evaluation prompts come from
their own base seed, which training datasets refuse, so evaluation scenes are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mirai_train.world.config import SpritesConfig
from mirai_train.world.render import render, to_tensor
from mirai_train.world.scene import sample_scene

HELDOUT_BASE_SEED = 20260603


def clip_seed(base_seed: int, index: int) -> int:
    """Scene seed of clip `index`: mixed (not added) so nearby base seeds share no clips; 63 bits."""
    state = np.random.SeedSequence([base_seed, index]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def shard_indices(length: int, rank: int, world_size: int) -> range:
    """Global clip indices of `rank` out of `world_size` (strided, so shards differ by at most one)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return range(rank, length, world_size)


class SpritesDataset(Dataset[tuple[torch.Tensor, str, int]]):
    """Items are (video [3, T, H, W] float32 in [-1, 1], prompt, scene seed), rendered on access."""

    def __init__(
        self,
        length: int,
        config: SpritesConfig,
        base_seed: int = 0,
        num_frames: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if base_seed == HELDOUT_BASE_SEED:
            raise ValueError(f"base seed {HELDOUT_BASE_SEED} is reserved for the held-out prompts")
        self.config = config
        self.base_seed = base_seed
        self.num_frames = config.num_frames if num_frames is None else num_frames
        self.indices = shard_indices(length, rank, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, int]:
        seed = clip_seed(self.base_seed, self.indices[i])
        scene = sample_scene(seed, self.config)
        return to_tensor(render(scene, self.num_frames)), scene.prompt, seed

    def prompt(self, i: int) -> str:
        """Item i's prompt without rendering it (text-only stages)."""
        return sample_scene(clip_seed(self.base_seed, self.indices[i]), self.config).prompt


@dataclass(frozen=True)
class HeldoutPrompt:
    prompt: str
    seed: int  # sample_scene(seed, config) is the scene the prompt describes


def heldout_prompts(n: int, config: SpritesConfig) -> list[HeldoutPrompt]:
    """The fixed evaluation set: the first `n` held-out scenes whose prompts are new (each prompt
    once, so per-prompt statistics see n distinct prompts)."""
    chosen: dict[str, int] = {}
    for index in range(100 * n):
        seed = clip_seed(HELDOUT_BASE_SEED, index)
        chosen.setdefault(sample_scene(seed, config).prompt, seed)
        if len(chosen) == n:
            return [HeldoutPrompt(prompt, seed) for prompt, seed in chosen.items()]
    raise ValueError(f"this config has fewer than {n} distinct prompts")


def write_prompt_file(prompts: list[HeldoutPrompt], path: str | Path) -> Path:
    """One prompt per line (the format of VBench's prompt lists); line i is prompts[i]."""
    path = Path(path)
    path.write_text("".join(item.prompt + "\n" for item in prompts), encoding="utf-8")
    return path
