"""The HTML report: tables, baseline vs Video-Mirai videos side by side, drift curves, probe images.

A reader judges a method by looking, so every method is shown next to its baseline for the same
prompt and seed, at 5 s and at 30 s. Drift curves plot every dimension a horizon scores per window
(`protocol: windows` or `clips`), one panel per dimension and horizon and one line per model of a
group, baseline beside method: the mean over prompts (each prompt's mean over its seeds) with a 95%
cluster-bootstrap band over prompts, as the tables' intervals; a model trained as several replicates
(issue 17) is the mean over them, with a hierarchical band over replicates, then prompts. The report directory is self-contained: videos, plots and
probe images are copied next to `index.html`, so it can be zipped or served as is.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mirai_eval.tables.build import Table
from mirai_eval.tables.render import TEMPLATES, layout
from mirai_eval.tables.rows import check_frame
from mirai_eval.tables.stats import hierarchical_mean, replicate_interval, replicate_prompt_means

CURVE_COLUMNS = ["model", "horizon", "dimension", "replicate", "prompt_index", "seed", "seconds", "value"]


@dataclass(frozen=True)
class Clip:
    horizon: str
    model: str
    src: str | None  # relative to the report; None when the video file is missing
    key: str


@dataclass(frozen=True)
class Pair:
    """A method and its baseline on one prompt and seed: one row of clips per horizon."""

    group: str
    baseline: str
    method: str
    prompt: str
    seed: int
    rows: list[tuple[Clip, Clip]]


def _seconds(horizon: str) -> float:
    """Order horizons by length ("5s" before "30s"); a name that is not a length goes last."""
    try:
        return float(horizon.removesuffix("s"))
    except ValueError:
        return float("inf")


def _file_name(key: str) -> str:
    """Store keys are hex digests; anything else is hashed so it cannot escape the report directory."""
    return (
        key if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", key) else hashlib.sha256(key.encode()).hexdigest()[:32]
    )


def _copy(source: Path, out_dir: Path, sub: str, name: str) -> str:
    target = out_dir / sub / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"{sub}/{name}"


def side_by_side(
    rows: pd.DataFrame, videos: Mapping[str, Path], out_dir: Path, per_pair: int = 2
) -> list[Pair]:
    """Up to `per_pair` (prompt, seed) for every method/baseline pair that both have at every horizon.

    A video is shown once: a horizon that only rescores another's videos (e.g. per clip) adds no row.
    """
    keys = rows.drop_duplicates(["model", "horizon", "prompt_index", "seed"]).drop_duplicates(
        ["model", "video"]
    )
    horizons = sorted(set(keys["horizon"]), key=_seconds)
    pairs: list[Pair] = []
    methods = keys[keys["baseline"].notna()].drop_duplicates("model")
    for method in methods.itertuples():
        both = keys[keys["model"].isin([method.model, method.baseline])]
        complete = both.groupby(["prompt_index", "seed"]).filter(lambda k: len(k) == 2 * len(horizons))
        for (_, seed), clips in list(complete.groupby(["prompt_index", "seed"]))[:per_pair]:
            by = {(r.model, r.horizon): r for r in clips.itertuples()}
            pair_rows = []
            for horizon in horizons:
                shown = []
                for model in (method.baseline, method.model):
                    key = str(by[model, horizon].video)
                    path = videos.get(key)
                    src = (
                        _copy(Path(path), out_dir, "videos", f"{_file_name(key)}.mp4")
                        if path and Path(path).is_file()
                        else None
                    )
                    shown.append(Clip(horizon, str(model), src, key))
                pair_rows.append((shown[0], shown[1]))
            first = clips.iloc[0]
            pairs.append(
                Pair(
                    str(method.group),
                    str(method.baseline),
                    str(method.model),
                    str(first["prompt"]),
                    int(seed),
                    pair_rows,
                )
            )
    return pairs


def window_values(rows: pd.DataFrame) -> pd.DataFrame:
    """Every per-window value of the rows (CURVE_COLUMNS; `seconds` is the window's start)."""
    windowed = rows[rows["windows"].notna() & rows["error"].isna()]
    return pd.DataFrame(
        [
            (
                r.model,
                r.horizon,
                r.dimension,
                r.replicate,
                r.prompt_index,
                r.seed,
                i * float(r.window_seconds),
                value,
            )
            for r in windowed.itertuples()
            for i, value in enumerate(r.windows)
        ],
        columns=CURVE_COLUMNS,
    )


def _curve(
    values: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window starts, mean over prompts (and training replicates) and the 95% bootstrap band: over
    prompts, or hierarchical over replicates then prompts when the model has several (NaN with one prompt)."""
    starts, means, lows, highs = [], [], [], []
    for start, window in values.groupby("seconds"):
        per_replicate = replicate_prompt_means(
            window.set_index(["replicate", "prompt_index"])["value"] * 100.0
        )
        if not per_replicate:  # no value in this window (a measure's rule excluded every video)
            continue
        low, high = replicate_interval(per_replicate, 1000, 0.05, rng) or (np.nan, np.nan)
        starts.append(float(start))
        means.append(hierarchical_mean(per_replicate))
        lows.append(low)
        highs.append(high)
    return np.array(starts), np.array(means), np.array(lows), np.array(highs)


def drift_plots(rows: pd.DataFrame, out_dir: Path) -> list[tuple[str, str]]:
    """One PNG per group: a panel per windowed (horizon, dimension), a line and band per model; (group, src)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = window_values(rows)
    groups = rows.drop_duplicates("model").set_index("model")["group"]
    plots: list[tuple[str, str]] = []
    for group, models in groups.groupby(groups, sort=False):
        sub = values[values["model"].isin(models.index)]
        panels = sorted(set(zip(sub["horizon"], sub["dimension"], strict=True)), key=lambda p: (p[1], p[0]))
        if not panels:
            continue
        columns = min(3, len(panels))
        lines = -(-len(panels) // columns)
        figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines), squeeze=False)
        for axis, (horizon, dimension) in zip(axes.flat, panels, strict=False):
            for model in models.index:  # the manifest's order: the baseline before its method
                curve = sub[
                    (sub["model"] == model) & (sub["horizon"] == horizon) & (sub["dimension"] == dimension)
                ]
                if curve.empty:
                    continue
                starts, mean, low, high = _curve(curve, np.random.default_rng(0))
                (line,) = axis.plot(starts, mean, marker="o", markersize=3, label=model)
                axis.fill_between(starts, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            axis.set_title(f"{dimension.replace('_', ' ')} ({horizon})", fontsize=9)
            axis.set_xlabel("window start (s)")
            axis.set_ylabel("percent")
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(panels) :]:
            axis.set_visible(False)
        axes.flat[0].legend(fontsize=7)
        figure.tight_layout()
        name = f"drift-{len(plots)}.png"
        (out_dir / "plots").mkdir(parents=True, exist_ok=True)
        figure.savefig(out_dir / "plots" / name, dpi=100)
        plt.close(figure)
        plots.append((str(group), f"plots/{name}"))
    return plots


def fidelity_rows(folder: Path, out_dir: Path) -> list[dict[str, object]]:
    """The rows of a fidelity report (fidelity.json), their frame grids copied next to the report."""
    document = json.loads((folder / "fidelity.json").read_text(encoding="utf-8"))
    rows = []
    for row in document["rows"]:
        grid = row["grid"] and _copy(folder / row["grid"], out_dir, "fidelity", Path(row["grid"]).name)
        rows.append(row | {"grid": grid})
    return rows


def write_report(
    out_dir: Path,
    tables: Sequence[Table],
    rows: pd.DataFrame,
    videos: Mapping[str, Path],
    probe_images: Mapping[str, Path] | None = None,
    fidelity: Path | None = None,
    title: str = "Video-Mirai harness report",
    per_pair: int = 2,
    templates: Path = TEMPLATES,
) -> Path:
    """Write `out_dir/index.html`; `videos` maps a row's video key to its mp4, `probe_images` caption -> png,
    `fidelity` is a `mirai-eval fidelity` folder (its table and frame grids are shown)."""
    rows = check_frame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    probes = [
        (caption, _copy(Path(path), out_dir, "probes", f"probe-{i}{Path(path).suffix}"))
        for i, (caption, path) in enumerate((probe_images or {}).items())
    ]
    environment = Environment(
        loader=FileSystemLoader(templates),
        autoescape=select_autoescape(["html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = environment.get_template("report.html.j2").render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        scales=sorted({t.scale for t in tables}),
        tables=[layout(t) for t in tables],
        pairs=side_by_side(rows, videos, out_dir, per_pair),
        drift=drift_plots(rows, out_dir),
        probes=probes,
        fidelity=fidelity_rows(fidelity, out_dir) if fidelity is not None else [],
    )
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
