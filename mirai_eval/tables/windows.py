"""Per-window summaries of a long video's scores: how a rollout degrades, not only how good it is on average.

Under `protocol: windows` (and VBench-Long's `clips`) each dimension is scored on consecutive pieces of
W seconds; a whole-video average hides whether a 30 s rollout starts well and decays. Following the
long-video literature (VBench-Long's per-clip scores; Self-Forcing++'s plots of dynamic degree over
time), a table column can show, per video:

- `first`, `last`: the first and last window's value;
- `last_minus_first`: the drift over the rollout (negative when it degrades);
- `slope_per_10s`: the least-squares slope of the values against the windows' start times, per 10 s,
  which uses every window and so is less noisy than last minus first.

Values are in the dimension's units (the tables show percent and percentage points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from rich.console import Console
from rich.table import Table

Summary = Literal["first", "last", "last_minus_first", "slope_per_10s"]
SUMMARIES: tuple[Summary, ...] = get_args(Summary)
SUMMARY_LABELS: dict[Summary, str] = {
    "first": "first window",
    "last": "last window",
    "last_minus_first": "last - first",
    "slope_per_10s": "slope per 10 s",
}


def summarise(values: Sequence[float], window_seconds: float, summary: Summary) -> float:
    """One summary of a video's per-window values (in time order); NaN for a slope over one window."""
    if not values:
        raise ValueError("no per-window values to summarise")
    if summary == "first":
        return float(values[0])
    if summary == "last":
        return float(values[-1])
    if summary == "last_minus_first":
        return float(values[-1] - values[0])
    if len(values) < 2:
        return float("nan")
    starts = np.arange(len(values), dtype=float) * window_seconds
    slope = np.polyfit(starts, np.asarray(values, dtype=float), 1)[0]  # per second
    return float(slope * 10.0)


def summaries(values: Sequence[float], window_seconds: float) -> dict[str, float]:
    """Every summary of one video's windows, by name."""
    return {name: summarise(values, window_seconds, name) for name in SUMMARIES}


def folder_summaries(videos: dict[str, dict[str, Any]], window_seconds: float) -> dict[str, Any]:
    """`mirai-eval score --protocol windows`: per video and dimension every summary, and their means over
    the videos (NaN slopes, from one window, left out of the means)."""
    per_video = {
        name: {dimension: summaries(values, window_seconds) for dimension, values in record["clips"].items()}
        for name, record in videos.items()
    }
    dimensions = sorted({dimension for by_dimension in per_video.values() for dimension in by_dimension})
    means: dict[str, dict[str, float | None]] = {dimension: {} for dimension in dimensions}
    for dimension in dimensions:
        for name in SUMMARIES:
            values = [v[dimension][name] for v in per_video.values() if dimension in v]
            finite = [x for x in values if not math.isnan(x)]
            means[dimension][name] = sum(finite) / len(finite) if finite else None
    return {"window_seconds": window_seconds, "mean": means, "per_video": per_video}


def print_windows(found: dict[str, Any], console: Console | None = None) -> None:
    """The means of `folder_summaries` as a terminal table."""
    table = Table(title=f"Per-window summaries ({found['window_seconds']:g} s windows, mean over videos)")
    table.add_column("dimension")
    for name in SUMMARIES:
        table.add_column(SUMMARY_LABELS[name], justify="right")
    for dimension, means in found["mean"].items():
        table.add_row(dimension, *("n/a" if means[n] is None else f"{means[n]:.4f}" for n in SUMMARIES))
    (console or Console()).print(table)
