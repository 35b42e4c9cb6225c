"""A sprites clip as an mp4, for eyes and for the future `mirai-train world preview` command."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from mirai_train.world.config import SpritesConfig
from mirai_train.world.render import render
from mirai_train.world.scene import sample_scene


def write_mp4(video: np.ndarray, path: str | Path, fps: int) -> None:
    """uint8 [T, H, W, 3] RGB -> H.264 yuv420p mp4 (even H and W)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = video.shape[1], video.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def write_preview(
    seed: int, out_path: str | Path, config: SpritesConfig, num_frames: int | None = None
) -> Path:
    """Render the scene of `seed` (config.num_frames frames unless given) at config.fps to `out_path`."""
    out_path = Path(out_path)
    frames = config.num_frames if num_frames is None else num_frames
    write_mp4(render(sample_scene(seed, config), frames), out_path, config.fps)
    return out_path
