"""Table cells from crafted per-video rows: composites, n/a with reasons, bold, marks, reported numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mirai_eval.scoring.dimensions import DIMENSIONS, QUALITY
from mirai_eval.scoring.final import final_score
from mirai_eval.tables.build import build_table, read_rows
from mirai_eval.tables.rows import ScoreRow, to_frame
from mirai_eval.tables.spec import TableSpec
from mirai_eval.tables.stats import holm, paired_permutation_p

BASE = "Causal-Forcing (chunk-wise)"
MIRAI = "Causal-Forcing (chunk-wise) + Video-Mirai"
Value = Callable[[str, str, int, int, str], float | None]  # model, horizon, prompt, sample, dimension


def make_rows(
    value: Value,
    models: tuple[tuple[str, str | None], ...] = ((BASE, None), (MIRAI, BASE)),
    prompts: int = 6,
    samples: int = 2,
    dimensions: tuple[str, ...] = tuple(DIMENSIONS),
    profile: str = "toy",
) -> pd.DataFrame:
    """One row per (model, horizon, prompt, sample, dimension); `value` None means unavailable."""
    rows = []
    for model, baseline in models:
        for horizon in ("5s", "30s"):
            for p in range(prompts):
                for k in range(samples):
                    for d in dimensions:
                        v = value(model, horizon, p, k, d)
                        rows.append(
                            ScoreRow(
                                model=model,
                                baseline=baseline,
                                group="g",
                                horizon=horizon,
                                prompt=f"prompt {p}",
                                prompt_index=p,
                                sample=k,
                                seed=100 + p * samples + k,
                                dimension=d,
                                value=math.nan if v is None else v,
                                error=f"{d} unavailable in the test" if v is None else None,
                                profile=profile,
                                scorer="test-scorer",
                                video=f"{model}|{horizon}|{p}|{k}",
                            )
                        )
    return to_frame(rows)


def noisy(effect: float, seed: int = 0) -> Value:
    """Per-video noise shared by the two models (same prompt and seed), plus `effect` for Video-Mirai."""
    rng = np.random.default_rng(seed)
    noise = {(p, k, d): rng.normal(0, 0.01) for p in range(20) for k in range(4) for d in DIMENSIONS}

    def value(model: str, horizon: str, p: int, k: int, d: str) -> float:
        return 0.7 + 0.01 * p + noise[p, k, d] + (effect if model == MIRAI else 0.0)

    return value


def spec(**extra: object) -> TableSpec:
    fields: dict[str, object] = {
        "name": "t",
        "kind": "table1",
        "title": "Test",
        "groups": [{"rows": [{"model": BASE}, {"model": MIRAI, "label": "+ Video-Mirai", "baseline": BASE}]}],
    }
    return TableSpec.model_validate(fields | extra)


def test_default_columns_and_strict_schema() -> None:
    table1 = spec()
    assert [(c.metric, c.horizon) for c in table1.columns] == [
        ("quality", "5s"),
        ("semantic", "5s"),
        ("total", "5s"),
        ("subject_consistency", "30s"),
        ("background_consistency", "30s"),
        ("overall_consistency", "30s"),
    ]
    assert [c.metric for c in spec(kind="ablation_window").columns] == ["quality", "semantic", "total"]
    with pytest.raises(ValidationError, match="intervalls"):
        spec(intervalls=True)
    with pytest.raises(ValidationError, match="unknown metric 'totl'"):
        spec(columns=[{"metric": "totl", "horizon": "5s"}])
    with pytest.raises(ValidationError, match="not another row of its group"):
        spec(groups=[{"rows": [{"model": BASE}]}, {"rows": [{"model": MIRAI, "baseline": BASE}]}])
    with pytest.raises(ValidationError, match="needs `reported`"):
        spec(kind="reported_vs_reproduced")


def test_composites_are_per_video_final_scores_averaged_per_prompt_then_over_prompts() -> None:
    rows = make_rows(noisy(0.01), prompts=4, samples=3)
    table = build_table(rows, spec(), scale="toy", scorer_signature="s")
    base = rows[(rows["model"] == BASE) & (rows["horizon"] == "5s")]
    wide = base.pivot_table(index=["prompt_index", "sample"], columns="dimension", values="value")
    per_video = pd.Series(
        [100 * final_score(dict(zip(wide.columns, r, strict=True))).quality for r in wide.to_numpy()],
        index=wide.index,
    )
    expected = per_video.groupby(level="prompt_index").mean().mean()
    cell = table.groups[0][0].cells[0]
    assert cell.value == pytest.approx(expected, abs=1e-9)
    assert cell.n_prompts == 4
    assert cell.low is not None and cell.high is not None and cell.low < cell.value < cell.high


def test_missing_dimension_makes_composites_na_with_the_reason_never_zero() -> None:
    other = noisy(0.01)

    def value(model: str, horizon: str, p: int, k: int, d: str) -> float | None:
        return None if d == "human_action" else other(model, horizon, p, k, d)

    table = build_table(make_rows(value), spec(), scale="toy", scorer_signature="s")
    quality, semantic, total = table.groups[0][0].cells[:3]
    assert quality.value is not None
    assert semantic.value is None and total.value is None
    assert semantic.note == "Semantic needs 1 missing dimension(s)"
    assert "no human_action: human_action unavailable in the test" in table.caption
    assert not semantic.bold and semantic.p_value is None


def test_reweight_policy_states_the_reweighting() -> None:
    def value(model: str, horizon: str, p: int, k: int, d: str) -> float | None:
        return None if d == "human_action" else 0.5

    table = build_table(make_rows(value), spec(missing="reweight"), scale="toy", scorer_signature="s")
    semantic = table.groups[0][0].cells[1]
    normalised = [
        DIMENSIONS[d].normalise(0.5) for d in DIMENSIONS if d not in QUALITY and d != "human_action"
    ]
    assert semantic.value == pytest.approx(100 * sum(normalised) / 8)
    assert semantic.note == "Semantic reweighted over the 8 dimensions present"
    assert "reweighted" in table.caption


def test_a_dimension_missing_for_some_videos_is_na_with_the_count() -> None:
    def value(model: str, horizon: str, p: int, k: int, d: str) -> float | None:
        return None if (model == MIRAI and p == 0 and k == 0) else 0.8

    table = build_table(make_rows(value), spec(), scale="toy", scorer_signature="s")
    subject = table.groups[0][1].cells[3]
    assert subject.value is None
    assert subject.note == "subject_consistency: 1 of 12 videos: subject_consistency unavailable in the test"
    assert table.groups[0][0].cells[3].value == pytest.approx(80.0)
    assert not table.groups[0][0].cells[3].bold  # nothing to compare with


def test_bold_best_in_pair_with_ties_and_significance_marks() -> None:
    other = noisy(0.02)

    def value(model: str, horizon: str, p: int, k: int, d: str) -> float:
        if d == "overall_consistency":  # a tie at display precision: 25.00 vs 25.0001 or 24.9999
            return 0.25 + (1e-6 * (-1) ** p if model == MIRAI else 0.0)
        return other(model, horizon, p, k, d)

    table = build_table(make_rows(value, prompts=8), spec(), scale="toy", scorer_signature="s")
    base, mirai = table.groups[0]
    assert [c.bold for c in mirai.cells] == [True] * 6
    assert [c.bold for c in base.cells] == [False] * 5 + [True]
    assert [c.significant for c in mirai.cells[:5]] == [True] * 5
    assert not mirai.cells[5].significant and mirai.cells[5].p_value > 0.5
    assert all(c.p_value is None and not c.significant for c in base.cells)


def test_p_values_are_holm_adjusted_permutation_p_values_of_per_prompt_differences() -> None:
    value = noisy(0.004, seed=3)
    rows = make_rows(value, prompts=7)
    table = build_table(rows, spec(), scale="toy", scorer_signature="s")
    raw = []
    for column in spec().columns[3:]:
        wide = rows[(rows["dimension"] == column.metric) & (rows["horizon"] == "30s")].pivot_table(
            index=["prompt_index", "seed"], columns="model", values="value"
        )
        per_prompt = (100 * (wide[MIRAI] - wide[BASE])).groupby(level="prompt_index").mean()
        raw.append(paired_permutation_p(per_prompt.to_numpy(), 9999, np.random.default_rng(0)))
    ours = [c.p_value for c in table.groups[0][1].cells]
    assert ours == pytest.approx(holm([*_raw_composites(rows), *raw]))
    assert 0.0 < min(raw) < 1.0


def _raw_composites(rows: pd.DataFrame) -> list[float]:
    out = []
    for name in ("quality", "semantic", "total"):
        values = {}
        for model in (BASE, MIRAI):
            sub = rows[(rows["model"] == model) & (rows["horizon"] == "5s")]
            wide = sub.pivot_table(index=["prompt_index", "seed"], columns="dimension", values="value")
            values[model] = pd.Series(
                [
                    100 * getattr(final_score(dict(zip(wide.columns, r, strict=True))), name)
                    for r in wide.to_numpy()
                ],
                index=wide.index,
            )
        per_prompt = (values[MIRAI] - values[BASE]).groupby(level="prompt_index").mean()
        out.append(paired_permutation_p(per_prompt.to_numpy(), 9999, np.random.default_rng(0)))
    return out


def test_significance_and_intervals_can_be_switched_off_and_results_are_seeded() -> None:
    rows = make_rows(noisy(0.02))
    plain = build_table(rows, spec(intervals=False, significance=False), scale="toy", scorer_signature="s")
    assert all(c.low is None and c.p_value is None for g in plain.groups for line in g for c in line.cells)
    assert "bootstrap" not in plain.caption and "permutation" not in plain.caption
    again = build_table(rows, spec(), scale="toy", scorer_signature="s")
    assert again == build_table(rows, spec(), scale="toy", scorer_signature="s")
    reseeded = build_table(rows, spec(bootstrap={"seed": 1}), scale="toy", scorer_signature="s")
    assert reseeded.groups[0][0].cells[0].low != again.groups[0][0].cells[0].low
    assert "seed 0" in again.caption and "seed 1" in reseeded.caption


def test_unknown_model_label_is_an_error_naming_it() -> None:
    rows = make_rows(noisy(0.0), models=((BASE, None),))
    with pytest.raises(
        ValueError, match=r"no score rows for model\(s\) \['Causal-Forcing \(chunk-wise\) \+ Video"
    ):
        build_table(rows, spec(), scale="toy", scorer_signature="s")


def test_reported_vs_reproduced_at_toy_scale_says_not_comparable() -> None:
    rows = make_rows(noisy(0.01))
    table = build_table(
        rows, spec(kind="reported_vs_reproduced", reported="table1"), scale="toy", scorer_signature="s"
    )
    cell = table.groups[0][0].cells[3]
    assert cell.reported == 84.93  # Causal-Forcing (chunk-wise), SC at 30 s
    assert cell.value is not None and cell.difference == pytest.approx(cell.value - 84.93)
    assert "NOT COMPARABLE" in table.caption and "Toy scale" in table.caption
    wan = build_table(
        rows, spec(kind="reported_vs_reproduced", reported="table1"), scale="wan", scorer_signature="s"
    )
    assert "NOT COMPARABLE" not in wan.caption
    with pytest.raises(FileNotFoundError, match=r"table2\.yaml"):
        build_table(
            rows, spec(kind="reported_vs_reproduced", reported="table2"), scale="wan", scorer_signature="s"
        )


def test_read_rows_round_trips_keys_that_look_like_numbers(tmp_path: Path) -> None:
    rows = make_rows(noisy(0.0), models=((BASE, None),), prompts=2, samples=1, dimensions=("color",))
    rows.loc[0, ["video", "prompt"]] = ["12e4", "1"]
    rows.loc[1, ["value", "error"]] = [math.nan, "decode failed"]
    path = tmp_path / "rows.jsonl"
    path.write_text(rows.to_json(orient="records", lines=True))
    back = read_rows(path)
    assert back.loc[0, "video"] == "12e4" and back.loc[0, "prompt"] == "1"
    assert math.isnan(back.loc[1, "value"]) and back.loc[1, "error"] == "decode failed"
    assert back.loc[2, "baseline"] is None and back["prompt_index"].tolist() == rows["prompt_index"].tolist()
    with pytest.raises(ValueError, match=r"rows\.csv: score rows must be"):
        (tmp_path / "rows.csv").write_text("x")
        read_rows(tmp_path / "rows.csv")
    (tmp_path / "old.jsonl").write_text('{"model": "m"}\n')
    with pytest.raises(ValueError, match=r"old\.jsonl: score rows: missing columns"):
        read_rows(tmp_path / "old.jsonl")


def test_a_video_a_dimension_excludes_takes_the_model_mean_in_composites() -> None:
    """Colour leaves out a video with no detection (as VBench does): the column averages the videos it
    has, and Semantic is VBench's composite of per-dimension means, not n/a."""

    def value(model: str, horizon: str, p: int, k: int, d: str) -> float | None:
        if d == "color":
            return None if p == 0 else 0.2 + 0.1 * p
        return 0.5

    rows = make_rows(value, prompts=4, samples=1)
    rows.loc[rows["dimension"] == "color", "error"] = rows["error"].where(
        rows["value"].notna(), "excluded: no sprite of a named shape is detected"
    )
    columns = [{"metric": "semantic", "horizon": "5s"}, {"metric": "color", "horizon": "5s"}]
    table = build_table(rows, spec(columns=columns), scale="toy", scorer_signature="s")
    semantic, colour = table.groups[0][0].cells
    colour_mean = (0.3 + 0.4 + 0.5) / 3
    assert colour.value == pytest.approx(100 * colour_mean) and colour.n_prompts == 3
    means = {d: 0.5 for d in DIMENSIONS} | {"color": colour_mean}
    assert semantic.value == pytest.approx(100 * final_score(means).semantic)
    assert "color" not in table.caption
