"""Decode a video once into memory (decord) and write mp4 files (PyAV).

All scoring dimensions share one decoded copy of each video; VBench decodes every video again
for every dimension. Problems with a file become a `VideoError` naming the file and the fix,
so a scoring run can record it for that video and go on with the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.dlpack import from_dlpack

from mirai_train.atomic import atomic_write

MIN_FRAMES = 2  # every temporal dimension compares consecutive frames
MIN_SIDE = 16  # smaller frames cannot go through the backbones' patch embeddings


class VideoError(ValueError):
    """A video that cannot be scored; the message names the file, the problem and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}; {fix}")


@dataclass(frozen=True)
class Video:
    """Decoded RGB frames [T, H, W, 3] uint8 and the container's frame rate."""

    path: str
    frames: torch.Tensor
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def decode(
    path: Path | str, expected_size: tuple[int, int] | None = None, min_frames: int = MIN_FRAMES
) -> Video:
    """Decode every frame of `path` with decord, as VBench's loaders do, and check it is scorable."""
    import decord

    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "no such file", "check the --videos folder and the file name")
    if path.stat().st_size == 0:
        raise VideoError(path, "the file is empty (0 bytes)", "regenerate or re-copy the video")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        count = len(reader)
        fps = float(reader.get_avg_fps())
        batch = reader.get_batch(list(range(count))) if count else np.zeros((0, 0, 0, 3), np.uint8)
        # Shared, not copied (a copy of an 81-frame 480p video costs ~15 ms). decord's bridge is
        # process-global (vbench switches it to torch): accept its native array or a tensor.
        frames = from_dlpack(batch.to_dlpack()) if hasattr(batch, "to_dlpack") else torch.as_tensor(batch)
    except Exception as exc:  # decord raises its own DECORDError and RuntimeErrors alike
        raise VideoError(
            path,
            f"cannot be decoded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            "the file is corrupt or truncated; regenerate or re-copy it",
        ) from exc
    if count < min_frames:
        raise VideoError(
            path, f"has {count} frame(s), at least {min_frames} are needed", "score a longer video"
        )
    height, width = int(frames.shape[1]), int(frames.shape[2])
    if min(height, width) < MIN_SIDE:
        raise VideoError(path, f"frames are {height}x{width}, below {MIN_SIDE} px", "score a larger video")
    if expected_size is not None and (height, width) != tuple(expected_size):
        raise VideoError(
            path,
            f"frames are {height}x{width} (HxW), expected {expected_size[0]}x{expected_size[1]}",
            "regenerate it at the expected size or change the expected size (--size)",
        )
    if not np.isfinite(fps) or fps <= 0:
        raise VideoError(path, f"frame rate {fps} is not positive", "rewrite the file with a valid fps")
    return Video(path=str(path), frames=frames.contiguous(), fps=fps)


def write_mp4(path: Path | str, frames: torch.Tensor | np.ndarray, fps: float, crf: int = 18) -> None:
    """Write RGB uint8 frames [T, H, W, 3] as an H.264 mp4 (even sides, yuv420p, as players expect).

    The same frames give the same bytes: the store keys a video by what decides its frames, and its
    scores are computed from this file. libx264's macroblock-tree rate control broke that (in one
    process, about one encode in twenty of the same noisy 32x32 or 64x64 frames gave another
    bitstream, up to 20 levels apart once decoded), so it is off; one thread keeps the bytes
    independent of the machine's core count.
    """
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {array.dtype} {array.shape}")
    if array.shape[1] % 2 or array.shape[2] % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even height and width, got {array.shape[1:3]}")

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.height, stream.width = int(array.shape[1]), int(array.shape[2])
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
            for frame in array:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    atomic_write(Path(path), encode)
