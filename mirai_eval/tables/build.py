"""Per-video rows -> table cells (values, intervals, bold, significance marks) for a `TableSpec`.

Cells: every column, including the composites Quality / Semantic / Total (computed per video
from that video's dimensions with the VBench constants; where a dimension's own rule excludes a
video, as colour does one with no detection, the video takes the model's mean of that dimension,
so the mean of composites is VBench's composite of per-dimension means), is a per-video value ->
per-prompt mean -> mean over prompts (prompts whose videos are all excluded drop out), with a
cluster bootstrap over prompts and a sign-flip permutation test of the per-prompt paired
differences (same prompt and seed) against the baseline, Holm across the columns of a row.
A column with a `summary` takes that summary of each video's per-window values (tables/windows.py)
in place of its value, and then goes the same way. Values are shown in percent, as the paper does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mirai_eval.scoring.dimensions import EXCLUDED, METRICS
from mirai_eval.scoring.final import final_score
from mirai_eval.tables.rows import check_frame
from mirai_eval.tables.spec import (
    COMPOSITES,
    LABELS,
    Column,
    ReportedFile,
    TableSpec,
    column_key,
    load_reported,
)
from mirai_eval.tables.stats import (
    MAX_EXACT_PROMPTS,
    Variance,
    hierarchical_mean,
    holm,
    paired_bootstrap,
    paired_permutation_p,
    replicate_interval,
    replicate_prompt_means,
)
from mirai_eval.tables.windows import SUMMARY_LABELS, Summary, summarise


@dataclass(frozen=True)
class Effect:
    """Method minus baseline in points over the (replicate, prompt, seed) videos both have: the mean
    over replicates of the mean over prompts, its 95% interval (hierarchical bootstrap with several
    replicates, prompts only with one), and the minimum detectable difference at 80% power of a
    two-sided test at the table's alpha with this many replicates and prompts (`stats.Variance`)."""

    difference: float
    low: float | None
    high: float | None
    detectable: float | None  # None with one prompt
    replicates: int
    prompts: int
    variance: Variance | None  # its `between` is None with one replicate: training noise unmeasured


@dataclass(frozen=True)
class Cell:
    """One value in percent (None = n/a, with the reason in `note`) and its statistics."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n_prompts: int = 0
    bold: bool = False
    p_value: float | None = None  # Holm-adjusted p of the paired test against the row's baseline
    significant: bool = False
    note: str | None = None
    reported: float | None = None
    effect: Effect | None = None  # a method's paired difference from its row's baseline

    @property
    def difference(self) -> float | None:
        """Reproduced minus reported."""
        if self.value is None or self.reported is None:
            return None
        return self.value - self.reported


@dataclass(frozen=True)
class Line:
    model: str
    label: str
    baseline: str | None
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    spec: TableSpec
    groups: tuple[tuple[Line, ...], ...]
    caption: str
    scale: str
    scorer_signature: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> list[Column]:
        return self.spec.columns


@dataclass(frozen=True)
class _Metric:
    """Per-video values of one column for one model (percent), or why there are none."""

    values: pd.Series | None  # indexed by (replicate, prompt_index, seed)
    note: str | None = None  # for the cell: why n/a, or how it was reweighted
    reasons: tuple[str, ...] = ()  # per missing dimension, for the caption


@dataclass(frozen=True)
class _Wide:
    """One model at one horizon, one row per video and one column per dimension."""

    values: pd.DataFrame
    errors: pd.DataFrame
    windows: pd.DataFrame  # (per-window values, window seconds), or None for a whole-video score


def _wide(rows: pd.DataFrame, model: str, horizon: str) -> _Wide:
    sub = rows[(rows["model"] == model) & (rows["horizon"] == horizon)]
    index = ["replicate", "prompt_index", "seed", "video", "dimension"]
    duplicated = sub.duplicated(index)
    if duplicated.any():
        first = sub[duplicated].iloc[0]
        raise ValueError(
            f"score rows: {int(duplicated.sum())} duplicate rows for model {model!r} at {horizon}, e.g. video "
            f"{first['video']} dimension {first['dimension']}; write each (video, dimension) once"
        )
    keyed = sub.set_index(index)
    pieces = pd.Series(
        [
            None if w is None else (w, s)
            for w, s in zip(keyed["windows"], keyed["window_seconds"], strict=True)
        ],
        index=keyed.index,
        dtype=object,
    )

    def wide(column: pd.Series) -> pd.DataFrame:
        return column.unstack("dimension").droplevel("video")

    return _Wide(wide(keyed["value"].astype(float)), wide(keyed["error"]), wide(pieces))


def _why(dimension: str, values: pd.DataFrame, errors: pd.DataFrame) -> str | None:
    """None when every video has the dimension or is excluded from it by its rule (and one has it),
    else the reason (the rows' errors) it is missing."""
    if dimension not in values.columns:
        return f"{dimension}: not scored"
    excluded = errors[dimension].astype(str).str.startswith(EXCLUDED).to_numpy()
    missing = values[dimension].isna().to_numpy() & ~excluded
    if not missing.any() and not excluded.all():
        return None
    if not missing.any():
        return f"{dimension}: every video excluded ({'; '.join(sorted(set(errors[dimension])))})"
    reasons = sorted({str(e) for e in errors.loc[missing, dimension].dropna()})
    share = "" if missing.all() else f"{int(missing.sum())} of {len(missing)} videos: "
    return f"{dimension}: {share}{'; '.join(reasons)}"


def _metric(column: Column, wide: _Wide, policy: str) -> _Metric:
    values, errors = wide.values, wide.errors
    if values.empty:
        return _Metric(None, f"not run at {column.horizon}")
    if column.metric in METRICS:
        why = _why(column.metric, values, errors)
        if why:
            return _Metric(None, why, (why,))
        if column.summary is not None:
            return _summary(column, column.summary, values[column.metric], wide.windows[column.metric])
        return _Metric(values[column.metric] * 100.0)
    name = LABELS[column.metric]
    needed = COMPOSITES[column.metric]
    reasons = tuple(r for r in (_why(d, values, errors) for d in needed) if r)
    if reasons and policy == "na":
        return _Metric(None, f"{name} needs {len(reasons)} missing dimension(s)", reasons)
    present = [d for d in needed if _why(d, values, errors) is None]
    # A video a dimension excludes takes the model's mean of that dimension over the videos it has:
    # the mean of per-video composites is then VBench's composite of per-dimension aggregates.
    filled = values[present].fillna(values[present].mean())
    scores = [
        getattr(final_score(dict(zip(present, video, strict=True)), "reweight"), column.metric)
        for video in filled.itertuples(index=False)
    ]
    if not present or any(s is None for s in scores):
        return _Metric(None, f"{name}: a group has no dimension with a value", reasons)
    note = f"{name} reweighted over the {len(present)} dimensions present" if reasons else None
    return _Metric(pd.Series(scores, index=values.index, dtype=float) * 100.0, note, reasons)


def _summary(column: Column, summary: Summary, values: pd.Series, pieces: pd.Series) -> _Metric:
    """A per-window summary (tables/windows.py) of each video the dimension scored, in percent."""
    shown = f"{column.metric} {SUMMARY_LABELS[summary]} at {column.horizon}"
    summarised = []
    for value, piece in zip(values, pieces, strict=True):
        if math.isnan(value):  # excluded by the dimension's rule
            summarised.append(math.nan)
        elif piece is None or (isinstance(piece, float) and math.isnan(piece)):
            return _Metric(None, f"{shown}: not scored per window (give the horizon `protocol: windows`)")
        else:
            summarised.append(summarise(piece[0], piece[1], summary) * 100.0)
    if summary == "slope_per_10s" and all(math.isnan(v) for v in summarised):
        return _Metric(None, f"{shown}: a slope needs two windows or more")
    return _Metric(pd.Series(summarised, index=values.index, dtype=float))


def _cell(metric: _Metric, spec: TableSpec, rng: np.random.Generator) -> Cell:
    if metric.values is None:
        return Cell(value=None, note=metric.note)
    per_replicate = replicate_prompt_means(metric.values)  # excluded videos (NaN) left out
    prompts = len(set(metric.values.dropna().index.get_level_values("prompt_index")))
    value = hierarchical_mean(per_replicate) if per_replicate else math.nan
    interval = (
        replicate_interval(per_replicate, spec.bootstrap.resamples, spec.bootstrap.alpha, rng)
        if spec.intervals
        else None
    )
    low, high = interval or (None, None)
    return Cell(value, low, high, prompts, note=metric.note)


def _differences(method: _Metric, baseline: _Metric) -> list[np.ndarray] | None:
    """Per replicate, the per-prompt mean differences over the (replicate, prompt, seed) videos both
    models have; None when they share none."""
    if method.values is None or baseline.values is None:
        return None
    joined = pd.concat([method.values, baseline.values], axis=1, join="inner", keys=["m", "b"]).dropna()
    if joined.empty:
        return None
    return replicate_prompt_means(joined["m"] - joined["b"])


def _paired_p(
    differences: list[np.ndarray] | None, spec: TableSpec, rng: np.random.Generator
) -> float | None:
    """With one replicate, the sign-flip permutation p of the per-prompt differences; with several,
    the p that inverts their hierarchical bootstrap interval (`stats.paired_bootstrap`)."""
    if differences is None:
        return None
    if len(differences) > 1:
        return paired_bootstrap(differences, spec.bootstrap.resamples, spec.bootstrap.alpha, rng).p_value
    return paired_permutation_p(differences[0], spec.bootstrap.permutations, rng)


POWER = 0.8  # of the minimum detectable differences


def _effect(differences: list[np.ndarray] | None, spec: TableSpec, rng: np.random.Generator) -> Effect | None:
    if differences is None:
        return None
    paired = paired_bootstrap(differences, spec.bootstrap.resamples, spec.bootstrap.alpha, rng)
    variance = Variance.of(differences)
    prompts = max(len(p) for p in differences)
    detectable = (
        None
        if variance is None
        else variance.detectable(spec.bootstrap.alpha, POWER, variance.replicates, variance.prompts)
    )
    return Effect(
        paired.mean,
        paired.low,
        paired.high,
        detectable,
        len(differences),
        prompts,
        variance,
    )


def _bold(values: Sequence[float | None], decimals: int, best_is: str = "higher") -> list[bool]:
    """Best (highest, or lowest) as displayed; every tie is bold; nothing is bold with fewer than two
    values, or for a column with no better direction."""
    shown = [None if v is None else float(f"{v:.{decimals}f}") for v in values]
    present = [v for v in shown if v is not None]
    if len(present) < 2 or best_is == "none":
        return [False] * len(values)
    best = max(present) if best_is == "higher" else min(present)
    return [v == best for v in shown]


def _rng(spec: TableSpec, *where: int) -> np.random.Generator:
    """One stream per cell and purpose (0: the cell's interval, 1: its paired difference from the
    baseline, p and effect alike), so a cell's numbers do not depend on the other cells."""
    return np.random.default_rng([spec.bootstrap.seed, *where])


def build_table(rows: pd.DataFrame, spec: TableSpec, *, scale: str, scorer_signature: str) -> Table:
    """Per-video score rows (mirai_eval.tables.rows) -> a table of cells with intervals, bold and marks."""
    rows = check_frame(rows)
    known = set(rows["model"])
    absent = [r.model for g in spec.groups for r in g.rows if r.model not in known]
    if absent:
        raise ValueError(
            f"table {spec.name}: no score rows for model(s) {absent}; the rows have {sorted(known)}; "
            "make the table's `model` labels match the manifest's model labels"
        )
    reported = load_reported(spec.reported) if spec.reported else None
    models = {r.model for g in spec.groups for r in g.rows}
    wide = {(model, h): _wide(rows, model, h) for model in models for h in {c.horizon for c in spec.columns}}
    groups: list[tuple[Line, ...]] = []
    reasons: dict[str, None] = {}
    for g, group in enumerate(spec.groups):
        metrics = {
            row.model: [_metric(c, wide[row.model, c.horizon], spec.missing) for c in spec.columns]
            for row in group.rows
        }
        cells: dict[str, list[Cell]] = {}
        for r, row in enumerate(group.rows):
            cells[row.model] = [
                _cell(m, spec, _rng(spec, g, r, c, 0)) for c, m in enumerate(metrics[row.model])
            ]
            for m in metrics[row.model]:
                reasons.update(dict.fromkeys(m.reasons))
            if row.baseline is not None:
                differences = [
                    _differences(m, b) for m, b in zip(metrics[row.model], metrics[row.baseline], strict=True)
                ]
                if spec.kind == "effects":  # the p's stream: with replicates, p inverts this very interval
                    cells[row.model] = [
                        replace(cell, effect=_effect(d, spec, _rng(spec, g, r, c, 1)))
                        for c, (cell, d) in enumerate(zip(cells[row.model], differences, strict=True))
                    ]
                if spec.significance:
                    raw = [_paired_p(d, spec, _rng(spec, g, r, c, 1)) for c, d in enumerate(differences)]
                    cells[row.model] = [
                        replace(cell, p_value=p, significant=p is not None and p < spec.bootstrap.alpha)
                        for cell, p in zip(cells[row.model], holm(raw), strict=True)
                    ]
            if reported is not None:
                numbers = reported.values.get(row.reported or row.model, {})
                cells[row.model] = [
                    replace(cell, reported=numbers.get(column_key(column)))
                    for cell, column in zip(cells[row.model], spec.columns, strict=True)
                ]
        for c in range(len(spec.columns)):
            values = [cells[row.model][c].value for row in group.rows]
            flags = _bold(values, spec.decimals, spec.columns[c].best)
            for row, flag in zip(group.rows, flags, strict=True):
                cells[row.model][c] = replace(cells[row.model][c], bold=flag)
        groups.append(
            tuple(Line(row.model, row.shown, row.baseline, tuple(cells[row.model])) for row in group.rows)
        )
    profiles = sorted(set(rows["profile"]))
    replicates = int(rows[rows["model"].isin(models)].groupby("model")["replicate"].nunique().max())
    caption = _caption(spec, scale, scorer_signature, profiles, groups, reported, list(reasons), replicates)
    return Table(spec, tuple(groups), caption, scale, scorer_signature, tuple(reasons))


SCALE_TEXT = {
    "wan": "Wan scale",
    "toy": (
        "Toy scale: tiny models on the procedural sprites world, scored with the toy profile; these numbers "
        "check the pipeline and are not comparable with the paper's"
    ),
}


def _caption(
    spec: TableSpec,
    scale: str,
    signature: str,
    profiles: list[str],
    groups: list[tuple[Line, ...]],
    reported: ReportedFile | None,
    reasons: list[str],
    replicates: int = 1,
) -> str:
    """Everything a reader needs to interpret the numbers, in plain text (the renderers escape it)."""
    if scale not in SCALE_TEXT:
        raise ValueError(f"scale {scale!r}: use one of {sorted(SCALE_TEXT)}")
    prompts = sorted({c.n_prompts for g in groups for line in g for c in line.cells if c.value is not None})
    counts = "/".join(str(n) for n in prompts) or "0"
    confidence = round(100 * (1 - spec.bootstrap.alpha))
    over = f"{replicates} training replicates of the mean over " if replicates > 1 else ""
    parts = [
        spec.title,
        f"{SCALE_TEXT[scale]} (scoring profile {', '.join(profiles)}; scorer {signature})",
        f"VBench scores in percent: mean over {over}{counts} prompts of per-prompt means",
    ]
    if spec.kind == "effects":
        parts.append(
            "difference: method - baseline in points, replicate k of one against replicate k of the other "
            "(same warm start, data and noise seeds) on the same prompts and seeds; MDE: the minimum "
            f"detectable difference at {round(100 * POWER)}% power of a two-sided test at alpha "
            f"{spec.bootstrap.alpha:g}, (z_{{1-alpha/2}} + z_power) x SE with SE^2 = between-replicate "
            "variance / replicates + within-replicate (prompt) variance / (replicates x prompts) of the "
            "paired differences (method of moments, normal approximation); paper: the paper's reported "
            "difference where it reports the column, and the replicates x prompts at which it would be the MDE"
            + (
                ""
                if replicates > 1
                else "; with one training replicate the between-replicate variance is unmeasured and left "
                "out, so the MDE is too small"
            )
        )
    windowed = [
        f"{c.header} = {c.metric}, {SUMMARY_LABELS[c.summary]}, at {c.horizon}"
        for c in spec.columns
        if c.summary
    ]
    if windowed:
        parts.append("per-window columns (differences and slopes in points): " + "; ".join(windowed))
    if reported is not None and spec.kind == "effects":
        parts.append(f"The paper's differences: {reported.source}")
    elif reported is not None:
        parts.append(f"Reported: {reported.source}; difference = reproduced - reported")
        if scale == "toy":
            parts.append(
                "NOT COMPARABLE: the reproduced numbers are toy-scale and the differences say nothing about "
                "the paper's claims"
            )
    if spec.intervals and replicates > 1:
        parts.append(
            f"brackets: {confidence}% hierarchical bootstrap percentile interval, resampling training "
            f"replicates and then prompts within each ({spec.bootstrap.resamples} resamples, seed "
            f"{spec.bootstrap.seed}); with this few replicates it is narrower than it should be"
        )
    elif spec.intervals:
        parts.append(
            f"brackets: {confidence}% cluster-bootstrap percentile interval over prompts "
            f"({spec.bootstrap.resamples} resamples, seed {spec.bootstrap.seed})"
        )
    if spec.significance and replicates > 1:
        parts.append(
            "*: paired test against the group's baseline, replicate by replicate on the same prompts and "
            "seeds: the p-value inverts the hierarchical bootstrap of the differences (the smallest alpha "
            "whose interval excludes 0"
            + ("; the same resamples as the difference's interval" if spec.kind == "effects" else "")
            + f"), Holm-adjusted across the row's columns, p < {spec.bootstrap.alpha:g}"
        )
    elif spec.significance:
        parts.append(
            f"*: paired sign-flip permutation test against the group's baseline on the same prompts and "
            f"seeds, Holm-adjusted across the row's columns, p < {spec.bootstrap.alpha:g} "
            f"({spec.bootstrap.permutations} random sign flips, or all of them for up to "
            f"{min(MAX_EXACT_PROMPTS, int(np.log2(spec.bootstrap.permutations)))} prompts; seed {spec.bootstrap.seed})"
        )
    if spec.kind != "effects":  # an effects table marks no best row
        parts.append(
            "bold: best within each group"
            + "".join(f"; {c.header}: lower is better" for c in spec.columns if c.best == "lower")
            + "".join(
                f"; {c.header}: not marked (no better direction)" for c in spec.columns if c.best == "none"
            )
        )
    notes = sorted({c.note for g in groups for line in g for c in line.cells if c.note})
    if notes:
        parts.append("n/a or reweighted: " + "; ".join(notes))
    by_reason: dict[str, list[str]] = {}
    for reason in reasons:
        dimension, _, why = reason.partition(": ")
        by_reason.setdefault(why, []).append(dimension)
    parts.extend(f"no {', '.join(dims)}: {why}" for why, dims in by_reason.items())
    return ". ".join(parts) + "."


def read_rows(path: Path) -> pd.DataFrame:
    """Score rows from `mirai-eval run` (rows.jsonl, or .parquet when pyarrow is installed)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no score rows; run `mirai-eval run --manifest ...` first, or pass --rows"
        )
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".jsonl":
        # No type guessing: a hex video key such as "12e4" or a prompt "1" must stay a string; floats
        # parsed exactly, as written (pandas rounds the last digit otherwise).
        frame = pd.read_json(path, lines=True, dtype=False, precise_float=True)
    else:
        raise ValueError(f"{path}: score rows must be a .jsonl or .parquet file")
    try:
        frame = check_frame(frame).astype({"value": float})
    except (ValueError, KeyError) as error:
        raise ValueError(f"{path}: {error}") from None
    for column in ("baseline", "error", "windows", "window_seconds"):  # null, as in ScoreRow, not NaN
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def scorer_summary(rows: pd.DataFrame) -> str:
    """One caption signature: the profile(s) and a hash of every (horizon, dimension) scorer signature."""
    signatures: dict[str, dict[str, str]] = {}
    for horizon, dimension, scorer in (
        rows[["horizon", "dimension", "scorer"]].drop_duplicates().itertuples(index=False)
    ):
        signatures.setdefault(str(horizon), {})[str(dimension)] = str(scorer)
    text = json.dumps(signatures, sort_keys=True, separators=(",", ":"))
    profiles = "+".join(sorted(set(rows["profile"])))
    return f"{profiles}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
