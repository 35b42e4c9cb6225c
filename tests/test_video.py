"""Decoding once and the per-file errors that let a scoring run go on past a bad video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mirai_train.video import VideoError, decode, write_mp4


def _smooth_frames(count: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """A moving gradient: compresses well, so decoding is close to the input."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    frames = [((x + 3 * t) * 3 + y * 2) % 256 for t in range(count)]
    return torch.stack([torch.stack([f, f.flip(1), 255 - f], dim=-1) for f in frames]).to(torch.uint8)


def test_round_trip_keeps_shape_fps_and_content(tmp_path: Path) -> None:
    frames = _smooth_frames(9)
    write_mp4(tmp_path / "a-0.mp4", frames, fps=8)
    video = decode(tmp_path / "a-0.mp4")
    assert video.frames.shape == (9, 48, 64, 3) and video.frames.dtype == torch.uint8
    assert video.fps == 8.0 and video.size == (48, 64)
    assert (video.frames.float() - frames.float()).abs().mean() < 6.0


def test_truncated_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(12):
            frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    for name, cut in [("head.mp4", 300), ("half.mp4", len(data) // 2)]:
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(VideoError, match=rf"{name[:-4]}\.mp4: cannot be decoded"):
            decode(tmp_path / name)


@pytest.mark.parametrize("problem", ["missing", "empty", "garbage"])
def test_unreadable_files(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "v.mp4"
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "garbage":
        path.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match=r"v\.mp4"):
        decode(path)


def test_a_video_without_frames_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "none.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # the header, then no frame
        container.mux(stream.encode())
    assert path.stat().st_size > 0
    with pytest.raises(VideoError, match=r"none\.mp4: cannot be decoded .* regenerate"):
        decode(path)


def test_one_frame_and_unexpected_size_are_errors(tmp_path: Path) -> None:
    write_mp4(tmp_path / "one.mp4", _smooth_frames(1), fps=8)
    with pytest.raises(VideoError, match="has 1 frame"):
        decode(tmp_path / "one.mp4")
    write_mp4(tmp_path / "ok.mp4", _smooth_frames(3), fps=8)
    with pytest.raises(VideoError, match="48x64 \\(HxW\\), expected 480x832"):
        decode(tmp_path / "ok.mp4", expected_size=(480, 832))
    write_mp4(tmp_path / "tiny.mp4", _smooth_frames(3, 8, 64), fps=8)
    with pytest.raises(VideoError, match="below 16 px"):
        decode(tmp_path / "tiny.mp4")


def test_write_rejects_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "x.mp4", torch.zeros(2, 8, 8, 3), fps=8)
    with pytest.raises(ValueError, match="even height and width"):
        write_mp4(tmp_path / "x.mp4", torch.zeros(2, 9, 8, 3, dtype=torch.uint8), fps=8)


def test_the_same_frames_always_give_the_same_file(tmp_path: Path) -> None:
    """Stored videos are keyed by what decides their frames, so the file must follow from the frames.
    libx264's macroblock tree changed the bytes of such noisy small frames now and then (a few per
    cent of encodes in one process); the encoder's own record of its options shows it off."""
    frames = np.random.default_rng(0).integers(0, 256, (33, 32, 32, 3), dtype=np.uint8)
    files = set()
    for i in range(40):
        write_mp4(tmp_path / f"{i}.mp4", frames, fps=16)
        files.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(files) == 1
    options = files.pop().split(b"options: ")[1].split(b"\x00")[0].decode().split()
    assert "mbtree=0" in options and "threads=1" in options
