"""The vbench package's results layout (`tables.vbench_format`): its aggregates and per-video units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirai_eval.tables.vbench_format import VideoValue, eval_results, pooled, write_eval_results


def test_pooled_weights_frames_like_vbench() -> None:
    # 3 frame pairs at 0.9 mean and 1 at 0.5: VBench pools frames, (2.7 + 0.5) / 4, not (0.9 + 0.5) / 2.
    videos = [VideoValue("a.mp4", 0.9, 2.7, 3), VideoValue("b.mp4", 0.5, 0.5, 1)]
    assert pooled(videos) == pytest.approx(0.8)
    assert pooled([VideoValue("a.mp4", 0.9, 2.7, 3), VideoValue("b.mp4", 0.5)]) is None
    assert pooled([]) is None


def test_layout_and_per_video_units(tmp_path: Path) -> None:
    per_video = {
        "imaging_quality": [VideoValue("/v/a-0.mp4", 0.61, 0.61, 1)],
        "subject_consistency": [VideoValue("/v/a-0.mp4", 0.97, 1.94, 2)],
    }
    document = eval_results(per_video, {"imaging_quality": 0.61, "subject_consistency": 0.97})
    path = write_eval_results(tmp_path, "run", document)
    assert path.name == "run_eval_results.json"
    read = json.loads(path.read_text())
    # vbench keeps MUSIQ's 0-100 per video and 0-1 aggregated (vbench/imaging_quality.py).
    assert read["imaging_quality"] == [
        0.61,
        [{"video_path": "/v/a-0.mp4", "video_results": pytest.approx(61.0)}],
    ]
    assert read["subject_consistency"] == [0.97, [{"video_path": "/v/a-0.mp4", "video_results": 0.97}]]
