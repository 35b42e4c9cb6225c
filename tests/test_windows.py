"""The windows protocol: per-window summaries with known answers, in tables and manifests."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mirai_eval.manifest import load_manifest
from mirai_eval.pipeline.run import write_rows
from mirai_eval.pipeline.score import make_scorer
from mirai_eval.tables.build import build_table, read_rows
from mirai_eval.tables.rows import ScoreRow, to_frame
from mirai_eval.tables.spec import Column, TableSpec, column_key
from mirai_eval.tables.windows import folder_summaries, summaries, summarise
from mirai_train.config_files import ConfigError
from tests.test_manifest import GOOD, write
from tests.test_tables import BASE, MIRAI


def test_summaries_of_a_known_decay() -> None:
    """Windows of 5 s falling 0.02 per window: last - first = -0.1 over 6 windows, slope -0.04 per 10 s."""
    values = [0.9 - 0.02 * i for i in range(6)]
    found = summaries(values, 5.0)
    assert found["first"] == pytest.approx(0.9) and found["last"] == pytest.approx(0.8)
    assert found["last_minus_first"] == pytest.approx(-0.1)
    assert found["slope_per_10s"] == pytest.approx(-0.04)
    # The slope uses every window: a dip in the middle moves it, not last - first.
    dipped = [0.9, 0.9, 0.5, 0.5, 0.9, 0.9]
    assert summarise(dipped, 5.0, "last_minus_first") == 0.0
    assert summarise(dipped, 5.0, "slope_per_10s") == pytest.approx(0.0)
    assert math.isnan(summarise([0.7], 5.0, "slope_per_10s"))
    with pytest.raises(ValueError, match="no per-window values"):
        summarise([], 5.0, "first")


def _rows(prompts: int = 4) -> pd.DataFrame:
    """Subject consistency per 5 s window: the baseline decays 0.03 a window, Video-Mirai 0.01."""
    rows = []
    for model, baseline, decay in ((BASE, None, 0.03), (MIRAI, BASE, 0.01)):
        for p in range(prompts):
            windows = [0.95 - decay * i + 0.001 * p for i in range(6)]
            rows.append(
                ScoreRow(
                    model=model,
                    baseline=baseline,
                    group="g",
                    horizon="30s_windows",
                    prompt=f"prompt {p}",
                    prompt_index=p,
                    sample=0,
                    seed=p,
                    dimension="subject_consistency",
                    value=sum(windows) / 6,
                    error=None,
                    profile="toy",
                    scorer="s",
                    video=f"{model}|{p}",
                    windows=windows,
                    window_seconds=5.0,
                )
            )
    return to_frame(rows)


def _spec(summary: str | None) -> TableSpec:
    return TableSpec(
        name="w",
        kind="table1",
        title="windows",
        groups=[{"rows": [{"model": BASE}, {"model": MIRAI, "baseline": BASE}]}],  # type: ignore[list-item]
        columns=[Column(metric="subject_consistency", horizon="30s_windows", summary=summary)],  # type: ignore[arg-type]
        bootstrap={"resamples": 200, "permutations": 99},  # type: ignore[arg-type]
    )


def test_a_table_shows_the_drift_of_each_model_in_points() -> None:
    table = build_table(_rows(), _spec("last_minus_first"), scale="toy", scorer_signature="s")
    base, mirai = (line.cells[0] for line in table.groups[0])
    assert base.value == pytest.approx(-15.0) and mirai.value == pytest.approx(-5.0)
    slope = build_table(_rows(), _spec("slope_per_10s"), scale="toy", scorer_signature="s")
    assert [line.cells[0].value for line in slope.groups[0]] == [pytest.approx(-6.0), pytest.approx(-2.0)]
    mean = build_table(_rows(), _spec(None), scale="toy", scorer_signature="s").groups[0][0].cells[0]
    assert mean.value == pytest.approx(100 * (0.95 - 0.03 * 2.5) + 0.15)
    assert table.spec.columns[0].header == "Subject cons. (last - first)"
    assert column_key(table.spec.columns[0]) == "subject_consistency@30s_windows:last_minus_first"


def test_rows_without_windows_give_na_with_the_reason(tmp_path: Path) -> None:
    whole = _rows().assign(windows=None, window_seconds=None)
    cell = build_table(whole, _spec("first"), scale="toy", scorer_signature="s").groups[0][0].cells[0]
    assert cell.value is None and "not scored per window" in str(cell.note)
    # The windows survive the rows file (null where a video has none).
    frame = _rows()
    back = read_rows(write_rows(tmp_path, [ScoreRow(**r) for r in frame.to_dict("records")]))
    assert back["windows"].tolist() == frame["windows"].tolist()
    assert back["window_seconds"].tolist() == [5.0] * len(frame)


def test_manifests_refuse_a_summary_they_cannot_compute(tmp_path: Path) -> None:
    text = GOOD.format(sha="ab" * 32) + (
        "tables:\n  - {name: t, kind: table1, title: T, groups: [{rows: [{model: A}]}],\n"
        "     columns: [{metric: temporal_flickering, horizon: 5s, summary: last}]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_manifest(write(tmp_path, text))
    assert "scores whole videos, which have no windows" in info.value.problems[0]
    with pytest.raises(ValueError, match="summaries are per dimension"):
        Column(metric="total", horizon="30s", summary="last")
    windowed = text.replace(
        "dimensions: [temporal_flickering]}", "dimensions: [temporal_flickering], protocol: windows}"
    )
    assert load_manifest(write(tmp_path, windowed)).manifest.horizons["5s"].piece_seconds == 5.0


def test_windows_are_scored_as_clips_of_their_length(tmp_path: Path) -> None:
    """One computation, one signature: a windows horizon reuses a clips horizon's stored scores."""
    text = GOOD.format(sha="ab" * 32).replace(
        "  5s: {seconds: 1, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering]}",
        "  a: {seconds: 1, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering],\n"
        "      protocol: windows, window_seconds: 0.5}\n"
        "  b: {seconds: 1, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering],\n"
        "      protocol: clips, clip_seconds: 0.5}\n"
        "  c: {seconds: 1, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering],\n"
        "      protocol: windows}",
    )
    manifest = load_manifest(write(tmp_path, text)).manifest
    signatures = make_scorer(manifest, "cpu").signatures
    assert signatures["a"] == signatures["b"] != signatures["c"]


def test_score_summaries_of_a_folder() -> None:
    videos = {
        "a-0.mp4": {"clips": {"subject_consistency": [0.9, 0.8, 0.7]}},
        "b-0.mp4": {"clips": {"subject_consistency": [0.6]}},
    }
    found = folder_summaries(videos, 5.0)
    assert found["per_video"]["a-0.mp4"]["subject_consistency"]["last_minus_first"] == pytest.approx(-0.2)
    means = found["mean"]["subject_consistency"]
    assert means["first"] == pytest.approx(0.75) and means["last_minus_first"] == pytest.approx(-0.1)
    assert means["slope_per_10s"] == pytest.approx(-0.2)  # b's one window has no slope: left out
