"""The probe over training replicates (issue 17): does a method's hidden state hold more of the
future than its baseline's, beyond what training noise moves?

Each training replicate k of the probed models is probed on its own (`run_probe`, same prompts and
seeds for every replicate and model). Per model and look-ahead Delta this module reads each held-out
video's PSNR of the readout against the rollout's own segment i + Delta, and its gain over the
collapse baseline (segment i as the prediction, on the same video): the readout's advantage over
copying the present, which does not reward a model for drawing static videos. A model's number is
the mean over replicates of the mean over videos, with the tables' hierarchical bootstrap
(replicates, then videos within each: `stats.replicate_interval`). A method is compared with its
baseline replicate k with replicate k, video j with video j (same prompt and noise seed): the paired
difference of the gains, its interval and its bootstrap p from the same resamples
(`stats.paired_bootstrap`, as the effects table's cells), Holm-adjusted across the look-aheads, as
the effects table does across its columns. Written as `<name>_replicates.{md,tex,png}` beside the
replicates' own probe folders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mirai_eval.probe.spec import ProbeSpec
from mirai_eval.tables.render import Format, environment
from mirai_eval.tables.stats import (
    hierarchical_mean,
    holm,
    paired_bootstrap,
    replicate_interval,
)

EXACT = "a prediction equals its target (MSE 0): its PSNR is infinite"


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval, or None with the reason it could not be computed."""

    value: float | None
    low: float | None = None
    high: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ReplicateRow:
    """One model at one Delta, over its training replicates (dB)."""

    model: str
    baseline: str | None
    delta: int
    readout: Estimate  # PSNR, readout vs the rollout's own segment i + Delta
    gain: Estimate  # readout PSNR minus the collapse baseline's, video by video
    difference: Estimate | None  # method minus baseline of the gain, paired (None: no baseline)
    p_value: float | None
    replicates: int
    videos: int  # held-out videos per replicate


def _psnr(mses: Sequence[float]) -> np.ndarray | None:
    """Per-video PSNR (dB) of pixel MSEs in [0, 1]; None when a prediction is exact (MSE 0)."""
    if any(e == 0 for e in mses):
        return None
    return np.array([10 * math.log10(1 / e) for e in mses])


def _videos(documents: Sequence[Mapping[str, Any]], label: str, delta: int) -> list[dict[str, Any]]:
    """The Delta entries of `label` in each replicate's probe.json, in replicate order."""
    entries = []
    for k, document in enumerate(documents):
        model = document["models"].get(label)
        if model is None:
            raise ValueError(f"replicate {k}'s probe has no model {label!r}: {sorted(document['models'])}")
        entries.append(next(d for d in model["deltas"] if d["delta"] == delta))
    return entries


def _per_replicate(
    documents: Sequence[Mapping[str, Any]], label: str, delta: int, gain: bool
) -> list[np.ndarray] | None:
    """Per replicate, per video: the readout's PSNR, or its gain over the collapse baseline."""
    values = []
    for entry in _videos(documents, label, delta):
        readout = _psnr(entry["readout_future_mses"])
        if readout is None:
            return None
        if gain:
            current = _psnr(entry["current_future_mses"])
            if current is None:
                return None
            readout = readout - current
        values.append(readout)
    return values


def _estimate(values: list[np.ndarray] | None, spec: ProbeSpec, rng: np.random.Generator) -> Estimate:
    if values is None:
        return Estimate(None, reason=EXACT)
    interval = replicate_interval(values, spec.bootstrap.resamples, spec.bootstrap.alpha, rng)
    low, high = interval if interval is not None else (None, None)
    return Estimate(hierarchical_mean(values), low, high)


def summarise(spec: ProbeSpec, documents: Sequence[Mapping[str, Any]]) -> list[ReplicateRow]:
    """Every probed model at every Delta, over the replicates' probe.json documents (replicate order)."""
    if not documents:
        raise ValueError("no replicate probed")
    rng = np.random.default_rng(spec.bootstrap.seed)
    rows: list[ReplicateRow] = []
    for entry in spec.models:
        first = len(rows)
        for delta in spec.deltas:
            gains = _per_replicate(documents, entry.model, delta, gain=True)
            difference, p_value = None, None
            if entry.baseline is not None:
                base = _per_replicate(documents, entry.baseline, delta, gain=True)
                if gains is None or base is None:
                    difference = Estimate(None, reason=EXACT)
                else:
                    paired = paired_bootstrap(
                        [m - b for m, b in zip(gains, base, strict=True)],
                        spec.bootstrap.resamples,
                        spec.bootstrap.alpha,
                        rng,
                    )
                    difference = Estimate(paired.mean, paired.low, paired.high)
                    p_value = paired.p_value
            readouts = _per_replicate(documents, entry.model, delta, gain=False)
            rows.append(
                ReplicateRow(
                    model=entry.model,
                    baseline=entry.baseline,
                    delta=delta,
                    readout=_estimate(readouts, spec, rng),
                    gain=_estimate(gains, spec, rng),
                    difference=difference,
                    p_value=p_value,
                    replicates=len(documents),
                    videos=len(_videos(documents, entry.model, delta)[0]["readout_future_mses"]),
                )
            )
        adjusted = holm([row.p_value for row in rows[first:]])  # across Delta, as tables do across columns
        rows[first:] = [replace(row, p_value=p) for row, p in zip(rows[first:], adjusted, strict=True)]
    return rows


def _cell(estimate: Estimate | None, sign: str = "+") -> str:
    """The cell "value [low, high]" in dB ("+" signs differences); "" without an estimate, n/a without a value."""
    if estimate is None:
        return ""
    if estimate.value is None:
        return "n/a"
    if estimate.low is None or estimate.high is None:
        return f"{estimate.value:{sign}.2f}"
    return f"{estimate.value:{sign}.2f} [{estimate.low:{sign}.2f}, {estimate.high:{sign}.2f}]"


def render_summary(spec: ProbeSpec, rows: Sequence[ReplicateRow], fmt: Format) -> str:
    """The replicate table; wording in `tables/templates/probe_replicates.*.j2`."""
    lines = [
        {
            "model": row.model if n == 0 or rows[n - 1].model != row.model else "",
            "delta": row.delta,
            "readout": _cell(row.readout, sign=""),
            "gain": _cell(row.gain),
            "difference": _cell(row.difference),
            "p": "" if row.p_value is None else f"{row.p_value:.3f}",
        }
        for n, row in enumerate(rows)
    ]
    reasons = sorted({e.reason for r in rows for e in (r.readout, r.gain, r.difference) if e and e.reason})
    return (
        environment(fmt)
        .get_template(f"probe_replicates.{fmt}.j2")
        .render(
            spec=spec,
            label=spec.name.replace("_", "-") + "-replicates",
            lines=lines,
            replicates=rows[0].replicates,
            videos=rows[0].videos,
            reasons=reasons,
        )
    )


def plot_summary(spec: ProbeSpec, rows: Sequence[ReplicateRow], path: Path) -> Path:
    """Per baseline and its methods: readout PSNR and gain over collapse against Delta, 95% bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for entry in spec.models:
        groups.setdefault(entry.baseline or entry.model, [])
        if entry.baseline is not None:
            groups[entry.baseline].append(entry.model)
    figure, axes = plt.subplots(len(groups), 2, figsize=(10, 3.2 * len(groups)), squeeze=False)
    for g, (baseline, methods) in enumerate(groups.items()):
        for c, what in enumerate(("readout", "gain")):
            axis = axes[g][c]
            for n, label in enumerate([baseline, *methods]):
                estimates = [(r.delta, getattr(r, what)) for r in rows if r.model == label]
                shown = [(d, e) for d, e in estimates if e.value is not None]
                if not shown:
                    continue
                x = np.array([d for d, _ in shown]) + 0.08 * (n - len(methods) / 2)
                y = np.array([e.value for _, e in shown])
                bars = np.array(
                    [[e.value - e.low, e.high - e.value] if e.low is not None else [0, 0] for _, e in shown]
                ).T
                axis.errorbar(x, y, yerr=bars, marker="o", capsize=3, label=label)
            if what == "gain":
                axis.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            axis.set_xticks(spec.deltas)
            axis.set_xlim(0.5, spec.max_delta + 0.5)
            axis.set_xlabel("look-ahead Δ (segments)")
            axis.set_ylabel("dB")
            axis.set_title(
                "PSNR, readout vs own future"
                if what == "readout"
                else "PSNR gain over the collapse baseline",
                fontsize=9,
            )
            axis.legend(fontsize=7)
    figure.suptitle(
        f"{spec.title}: mean over {rows[0].replicates} training replicates, 95% bars", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_summary(spec: ProbeSpec, documents: Sequence[Mapping[str, Any]], out_dir: Path) -> dict[str, Path]:
    """`<name>_replicates.{md,tex,png}` in `out_dir`; format -> file."""
    rows = summarise(spec, documents)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{spec.name}_replicates"
    written: dict[str, Path] = {}
    for fmt in ("md", "tex"):
        path = stem.with_suffix(f".{fmt}")
        path.write_text(render_summary(spec, rows, fmt), encoding="utf-8")
        written[fmt] = path
    written["png"] = plot_summary(spec, rows, stem.with_suffix(".png"))
    return written
