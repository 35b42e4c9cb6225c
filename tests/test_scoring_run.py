"""A scoring run over a folder: bad videos are recorded and skipped, outputs say what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mirai_eval.cli import app
from mirai_eval.scoring.longvideo import Protocol, split_clips
from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
from mirai_eval.scoring.runner import ScoreRequest, score_folder
from mirai_eval.scoring.videos import list_videos
from mirai_eval.scoring.weights import MissingWeightsError, resolve_weights
from mirai_train.video import Video, write_mp4


def _frames(count: int, height: int = 32, width: int = 64, step: int = 4) -> torch.Tensor:
    x = torch.arange(width).expand(height, width)
    return torch.stack(
        [((x * 5 + step * t) % 256).unsqueeze(-1).expand(height, width, 3) for t in range(count)]
    ).to(torch.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    videos = tmp_path / "videos"
    write_mp4(videos / "a red ball-0.mp4", _frames(8), fps=8)
    write_mp4(videos / "a red ball-1.mp4", _frames(8, step=0), fps=8)
    write_mp4(videos / "tall-0.mp4", _frames(8, height=64), fps=8)
    write_mp4(videos / "single-0.mp4", _frames(1), fps=8)
    data = (videos / "a red ball-0.mp4").read_bytes()
    (videos / "cut-0.mp4").write_bytes(data[: len(data) // 2])
    return videos


def test_names_give_prompts(folder: Path) -> None:
    entries = {e.name: (e.prompt, e.index) for e in list_videos(folder)}
    assert entries["a red ball-1.mp4"] == ("a red ball", 1)
    with pytest.raises(FileNotFoundError, match=r"no \*\.mp4"):
        list_videos(folder.parent)


def test_bad_videos_are_recorded_and_the_run_goes_on(folder: Path) -> None:
    request = ScoreRequest(folder, "toy", ["temporal_flickering", "scene"], expected_size=(32, 64))
    results = score_folder(request)
    failed = results["failed_videos"]
    assert set(failed) == {"tall-0.mp4", "single-0.mp4", "cut-0.mp4"}
    assert "expected 32x64" in failed["tall-0.mp4"] and "1 frame(s)" in failed["single-0.mp4"]
    assert "corrupt or truncated" in failed["cut-0.mp4"]
    static = results["videos"]["a red ball-1.mp4"]["scores"]["temporal_flickering"]
    moving = results["videos"]["a red ball-0.mp4"]["scores"]["temporal_flickering"]
    assert static > 0.99 > moving
    assert results["aggregate"]["temporal_flickering"] == pytest.approx((static + moving) / 2)
    assert "no meaning on sprites" in results["unavailable"]["scene"]
    assert "refused" in results["final"]


def test_reweighted_final_states_what_is_missing(folder: Path) -> None:
    results = score_folder(ScoreRequest(folder, "toy", ["temporal_flickering"], missing="reweight"))
    final = results["final"]
    expected = (results["aggregate"]["temporal_flickering"] - 0.6293) / (1 - 0.6293)
    assert final["quality"] == pytest.approx(expected) and final["total"] is None
    assert "Quality over weight 1 of 6.5" in final["note"]


def test_clips_keep_per_clip_values(folder: Path) -> None:
    video = Video("v", _frames(20), fps=8.0)
    assert [c.frames.shape[0] for c in split_clips(video, 1.0)] == [8, 8, 4]  # half a clip stands alone
    # Less than half a clip joins the one before: no 1-frame "last window".
    assert [c.frames.shape[0] for c in split_clips(Video("v", _frames(17), 8.0), 1.0)] == [8, 9]
    assert [c.frames.shape[0] for c in split_clips(Video("v", _frames(3), 8.0), 1.0)] == [3]
    results = score_folder(
        ScoreRequest(folder, "toy", ["temporal_flickering"], protocol=Protocol("clips", 0.5))
    )
    clips = results["videos"]["a red ball-0.mp4"]["clips"]["temporal_flickering"]
    assert len(clips) == 2 and results["videos"]["a red ball-0.mp4"]["scores"]["temporal_flickering"] == (
        pytest.approx(sum(clips) / 2)
    )


def test_missing_weights_list_every_expected_path(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "VBENCH_CACHE_DIR": str(tmp_path / "vb")}
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(["dino_vitb16", "clip_vitb32", "raft_things"], {"raft_things": "/nope.pth"}, env)
    message = str(error.value)
    for expected in (
        f"{tmp_path}/vb/dino_model/dino_vitbase16_pretrain.pth",
        f"{tmp_path}/.cache/torch/hub/checkpoints/dino_vitbase16_pretrain.pth",
        f"{tmp_path}/.cache/clip/ViT-B-32.pt",
        "given path does not exist: /nope.pth",
        "DINO ViT-B/16",
    ):
        assert expected in message
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / "ViT-B-32.pt").write_bytes(b"x")
    assert resolve_weights(["clip_vitb32"], env=env)["clip_vitb32"].name == "ViT-B-32.pt"


def test_vbench_profile_fails_before_reading_videos_without_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=r"raft-things\.pth"):
        load_dimensions("vbench", ["subject_consistency", "dynamic_degree"], ScoringOptions())


def test_cli_writes_json_and_exits_1_on_failed_videos(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    args = ["--videos", str(folder), "--profile", "toy", "--dims", "temporal_flickering", "--out", str(out)]
    if len(app.registered_commands) > 1:  # typer runs a lone command without its name
        args = ["score", *args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "2 video(s) failed" in result.output and "cut-0.mp4" in result.output
    saved = json.loads(out.read_text())
    assert set(saved["failed_videos"]) == {"single-0.mp4", "cut-0.mp4"}
    assert saved["aggregate"]["temporal_flickering"] > 0.5


def test_batch_sizes_follow_the_device_unless_given() -> None:
    cpu = ScoringOptions.for_device("cpu", None, None)
    gpu = ScoringOptions.for_device("cuda:1", None, None, static_filter=True)
    assert (cpu.batch_size, cpu.flow_batch_size) == (16, 1) == (ScoringOptions().batch_size, 1)
    assert (gpu.batch_size, gpu.flow_batch_size, gpu.static_filter) == (64, 8, True)
    given = ScoringOptions.for_device("cuda", 4, 1)
    assert (given.batch_size, given.flow_batch_size) == (4, 1)
