"""Scores in the vbench package's own layout, `{name}_eval_results.json`, written beside ours.

vbench 0.1.5 (`VBench.evaluate`, vbench/__init__.py) writes one JSON object per evaluation: each
dimension maps to `[aggregate, [{"video_path": ..., "video_results": ...}, ...]]`. The per-video
value is in the dimension's per-video units, which differ from the aggregate's for imaging quality
(MUSIQ's 0-100 per video, divided by 100 once aggregated: vbench/imaging_quality.py). VBench's
leaderboard scripts (scripts/cal_final_score.py in Vchitect/VBench) read `value[0]` of every
dimension of such files, so a user can compare these numbers with VBench's or submit them.

The aggregate is VBench's, not the tables' mean over prompts: frame-weighted dimensions pool frames
over videos (`scoring.base.aggregate`). A dimension whose pooling cannot be redone from what is
stored is left out of the file, with the reason returned to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirai_eval.scoring.dimensions import DIMENSIONS
from mirai_train.atomic import atomic_write_text

PER_VIDEO_SCALE = {"imaging_quality": 100.0}  # vbench's per-video units over its aggregate's


@dataclass(frozen=True)
class VideoValue:
    """One video's value of one dimension; `total`/`count`: its frame weighting, None if not known."""

    video_path: str
    value: float
    total: float | None = None
    count: int | None = None


def pooled(values: Sequence[VideoValue]) -> float | None:
    """VBench's aggregate from per-video totals and counts (a video-mean dimension counts each video
    once, so this is its mean too); None when a video lacks them."""
    totals = [v.total for v in values if v.total is not None]
    counts = [v.count for v in values if v.count is not None]
    if not values or len(totals) < len(values) or len(counts) < len(values):
        return None
    return sum(totals) / sum(counts)


def eval_results(
    per_video: Mapping[str, Sequence[VideoValue]], aggregates: Mapping[str, float]
) -> dict[str, list[Any]]:
    """{dimension: [aggregate, [{"video_path", "video_results"}, ...]]} for every VBench dimension in
    `aggregates` (our long-video measures have no place in VBench's files), videos in the given order."""
    return {
        dimension: [
            aggregate,
            [
                {"video_path": v.video_path, "video_results": v.value * PER_VIDEO_SCALE.get(dimension, 1.0)}
                for v in per_video[dimension]
            ],
        ]
        for dimension, aggregate in aggregates.items()
        if dimension in DIMENSIONS
    }


def write_eval_results(folder: Path, name: str, document: Mapping[str, list[Any]]) -> Path:
    """`folder/{name}_eval_results.json`, as vbench names it; atomic."""
    path = folder / f"{name}_eval_results.json"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(document, indent=4) + "\n")
    return path
