"""A sprites clip as an mp4, for eyes and for the future `mirai-train world preview` command."""

from __future__ import annotations

from pathlib import Path

from mirai_train.video import write_mp4
from mirai_train.world.config import SpritesConfig
from mirai_train.world.render import render
from mirai_train.world.scene import sample_scene


def write_preview(
    seed: int, out_path: str | Path, config: SpritesConfig, num_frames: int | None = None
) -> Path:
    """Render the scene of `seed` (config.num_frames frames unless given) at config.fps to `out_path`."""
    out_path = Path(out_path)
    frames = config.num_frames if num_frames is None else num_frames
    write_mp4(out_path, render(sample_scene(seed, config), frames), fps=config.fps)
    return out_path
