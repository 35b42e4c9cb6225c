"""Training replicates (issue 17): the reseeded recipe, the plan's keys, the hierarchical bootstrap,
variance components and minimum detectable effects, the effects table and the probe over replicates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mirai_eval.probe.replicates import render_summary, summarise
from mirai_eval.probe.spec import ProbeSpec
from mirai_eval.tables.build import build_table
from mirai_eval.tables.render import render
from mirai_eval.tables.rows import ScoreRow, to_frame
from mirai_eval.tables.spec import TableSpec
from mirai_eval.tables.stats import (
    Variance,
    bootstrap_p,
    hierarchical_mean,
    hierarchical_means,
    paired_bootstrap,
    percentile_interval,
)
from mirai_train.recipe import load_recipe, replicate, replicate_name

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "mirai_train" / "configs" / "toy"
BASE, MIRAI = "Baseline", "Baseline + Video-Mirai"


def test_replicate_reseeds_noise_and_data_and_keeps_pairs() -> None:
    base, method = (
        load_recipe(TOY / "dmd_cf_chunkwise.yaml"),
        load_recipe(TOY / "dmd_cf_chunkwise_mirai.yaml"),
    )
    assert replicate(base, 0) is base
    one, two = replicate(base, 1), replicate(base, 2)
    assert one.optim.seed == base.optim.seed + 1 and two.optim.seed == base.optim.seed + 2
    # new clips, none shared with the recipe's own: the data start past the first replicate's clips
    assert one.data.base_seed == base.data.base_seed + base.data.num_clips
    assert one.model_copy(update={"optim": base.optim, "data": base.data}) == base
    # a method and its baseline share seeds, so replicate k of each is a pair
    assert replicate(method, 1).optim.seed == one.optim.seed
    assert replicate(method, 1).data == one.data
    assert replicate_name("dmd", 0) == "dmd" and replicate_name("dmd", 2) == "dmd-replicate2"
    with pytest.raises(ValueError, match="count from 0"):
        replicate(base, -1)


def test_plan_has_one_model_per_replicate(tmp_path: Path) -> None:
    from mirai_eval.manifest import load_manifest
    from mirai_eval.pipeline.plan import build_plan, model_key

    file = load_manifest(ROOT / "manifests" / "toy" / "planning_gap.yaml")
    manifest = file.manifest.model_copy(update={"store": tmp_path})
    plan = build_plan(file, manifest)
    label = "Causal-Forcing (chunk-wise)"
    keys = [model_key(label, k) for k in range(3)]
    assert keys == [label, f"{label} [replicate 1]", f"{label} [replicate 2]"]
    sources = [plan.models[k] for k in keys]
    assert [s.replicate for s in sources] == [0, 1, 2]
    assert [s.checkpoint.parent.name for s in sources] == [
        "dmd_cf_chunkwise",
        "dmd_cf_chunkwise-replicate1",
        "dmd_cf_chunkwise-replicate2",
    ]
    assert len(plan.models) == 9 * 3
    assert not plan.jobs  # nothing trained in an empty store


def test_hierarchical_bootstrap_is_the_prompt_bootstrap_with_one_replicate() -> None:
    prompts = np.array([0.1, 0.5, 0.2, 0.9, 0.4])
    means = hierarchical_means([prompts], 4000, np.random.default_rng(0))
    assert hierarchical_mean([prompts]) == pytest.approx(prompts.mean())
    assert means.std() == pytest.approx(prompts.std() / math.sqrt(len(prompts)), rel=0.05)


def test_hierarchical_bootstrap_widens_with_replicate_noise() -> None:
    """Replicates that disagree (training noise) give a wider interval than one pooled replicate."""
    rng = np.random.default_rng(1)
    shifts = (-1.0, 0.0, 1.0)
    replicates = [shift + rng.normal(0, 0.1, 8) for shift in shifts]
    pooled = np.concatenate(replicates) - np.repeat(shifts, 8)  # the same prompts, no training noise
    low, high = percentile_interval(hierarchical_means(replicates, 2000, np.random.default_rng(2)), 0.05)
    plow, phigh = percentile_interval(hierarchical_means([pooled], 2000, np.random.default_rng(2)), 0.05)
    assert high - low > 5 * (phigh - plow)
    assert low < 0 < high


def test_bootstrap_p_inverts_the_interval() -> None:
    rng = np.random.default_rng(3)
    clear = [0.5 + rng.normal(0, 0.05, 8) for _ in range(3)]
    assert bootstrap_p(hierarchical_means(clear, 2000, rng)) == pytest.approx(2 / 2001)
    null = [rng.normal(0, 1, 8) for _ in range(3)]
    assert bootstrap_p(hierarchical_means(null, 2000, rng)) > 0.05
    assert bootstrap_p(np.zeros(10)) == 1.0


def test_paired_bootstrap_p_agrees_with_its_own_interval() -> None:
    """One set of resamples gives both: p < alpha exactly where the interval leaves 0 out (checked
    away from the boundary, where the +1 correction and quantile interpolation may split them)."""
    rng = np.random.default_rng(5)
    outcomes = set()
    for shift in np.linspace(0.0, 1.0, 11):
        differences = [shift + rng.normal(0, 0.3) + rng.normal(0, 0.5, 8) for _ in range(3)]
        paired = paired_bootstrap(differences, 2000, 0.05, np.random.default_rng(6))
        assert paired.mean == pytest.approx(hierarchical_mean(differences))
        assert paired.low is not None and paired.high is not None and paired.low < paired.mean < paired.high
        if abs(paired.p_value - 0.05) > 0.01:
            excludes = paired.low > 0 or paired.high < 0
            assert (paired.p_value < 0.05) == excludes
            outcomes.add(excludes)
    assert outcomes == {True, False}
    single = paired_bootstrap([np.array([0.3])], 100, 0.05, rng)
    assert single.low is None and single.high is None and single.mean == pytest.approx(0.3)


def test_variance_components_recover_known_ones() -> None:
    """Simulated differences with between-replicate sd 2 and within-replicate sd 3."""
    rng = np.random.default_rng(4)
    replicates = [rng.normal(0, 2) + rng.normal(0, 3, 50) for _ in range(400)]
    variance = Variance.of(replicates)
    assert variance is not None and variance.between is not None
    assert variance.within == pytest.approx(9, rel=0.05)
    assert variance.between == pytest.approx(4, rel=0.2)
    # SE^2 = 4 / S + 9 / (S P); MDE = (1.960 + 0.842) * SE
    assert variance.detectable(0.05, 0.8, 3, 8) == pytest.approx(2.8016 * math.sqrt(4 / 3 + 9 / 24), rel=0.1)


def test_needed_design_detects_the_target() -> None:
    variance = Variance(between=1.0, within=16.0, replicates=3, prompts=8)
    replicates, prompts = variance.needed(2.0, 0.05, 0.8) or (0, 0)
    assert replicates == 3  # more prompts suffice: the between part alone is 1/3 < (2 / 2.8)^2
    assert variance.detectable(0.05, 0.8, replicates, prompts) <= 2.0
    assert variance.detectable(0.05, 0.8, replicates, prompts - 1) > 2.0
    # a target below the between-replicate floor at 3 replicates needs more replicates
    replicates, prompts = variance.needed(1.0, 0.05, 0.8) or (0, 0)
    assert prompts == 8 and replicates > 3
    assert variance.detectable(0.05, 0.8, replicates, prompts) <= 1.0
    assert Variance.of([np.array([1.0])]) is None  # one prompt: nothing to measure
    assert Variance.of([np.array([1.0, 2.0])]).between is None  # type: ignore[union-attr]


def _rows(effect: float, replicates: int, prompts: int = 8, training_sd: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for k in range(replicates):
        offsets = {BASE: rng.normal(0, training_sd), MIRAI: rng.normal(0, training_sd)}
        for p in range(prompts):
            prompt = 0.5 + 0.02 * p
            for model, baseline in ((BASE, None), (MIRAI, BASE)):
                value = prompt + offsets[model] + (effect if model == MIRAI else 0.0) + rng.normal(0, 0.005)
                rows.append(
                    ScoreRow(
                        model=model,
                        baseline=baseline,
                        group="g",
                        horizon="30s",
                        prompt=f"p{p}",
                        prompt_index=p,
                        sample=0,
                        seed=p,
                        dimension="subject_consistency",
                        value=value,
                        error=None,
                        profile="toy",
                        scorer="s",
                        video=f"{model}|{k}|{p}",
                        replicate=k,
                    )
                )
    return to_frame(rows)


def _effects_spec() -> TableSpec:
    return TableSpec.model_validate(
        {
            "name": "effects",
            "kind": "effects",
            "title": "Effects",
            "columns": [{"metric": "subject_consistency", "horizon": "30s"}],
            "groups": [{"rows": [{"model": BASE}, {"model": MIRAI, "label": "+ VM", "baseline": BASE}]}],
        }
    )


def test_effects_table_reports_difference_interval_and_detectable_effect() -> None:
    table = build_table(_rows(0.03, 3), _effects_spec(), scale="toy", scorer_signature="toy:x")
    method = table.groups[0][1].cells[0]
    effect = method.effect
    assert effect is not None and effect.replicates == 3 and effect.prompts == 8
    assert effect.difference == pytest.approx(3.0, abs=0.1)  # points
    assert effect.low is not None and effect.high is not None and effect.low < 3.0 < effect.high
    assert effect.detectable is not None and effect.detectable < 1.0
    assert method.significant and method.p_value is not None and method.p_value < 0.01
    assert table.groups[0][0].cells[0].effect is None  # the baseline has none
    markdown = render(table, "md")
    assert "Baseline vs + VM" in markdown and "3 x 8" in markdown and "hierarchical bootstrap" in markdown
    assert "\\*" in markdown
    latex = render(table, "tex")
    assert "Baseline vs + VM" in latex and "textsuperscript{*}" in latex


def test_training_noise_hides_an_effect_the_prompts_alone_would_show() -> None:
    """The same 1-point effect: clear with no training noise, not with it; one replicate cannot tell."""
    spec = _effects_spec()
    quiet = build_table(_rows(0.01, 3), spec, scale="toy", scorer_signature="toy:x").groups[0][1].cells[0]
    noisy = build_table(_rows(0.01, 3, training_sd=0.03), spec, scale="toy", scorer_signature="toy:x")
    loud = noisy.groups[0][1].cells[0]
    assert quiet.significant and not loud.significant
    assert loud.effect is not None and quiet.effect is not None
    assert loud.effect.detectable is not None and quiet.effect.detectable is not None
    assert loud.effect.detectable > 3 * quiet.effect.detectable
    single = build_table(_rows(0.01, 1, training_sd=0.03), spec, scale="toy", scorer_signature="toy:x")
    effect = single.groups[0][1].cells[0].effect
    assert effect is not None and effect.replicates == 1 and effect.variance is not None
    assert effect.variance.between is None
    assert "between-replicate variance is unmeasured" in single.caption


def test_single_replicate_tables_are_unchanged_by_the_replicate_level() -> None:
    """A table1 cell with one replicate equals the prompt-bootstrap cell (the committed tables' numbers)."""
    from mirai_eval.tables.stats import bootstrap_interval

    frame = _rows(0.02, 1)
    spec = _effects_spec().model_copy(update={"kind": "table1"})
    cell = build_table(frame, spec, scale="toy", scorer_signature="toy:x").groups[0][0].cells[0]
    values = frame[frame["model"] == BASE].sort_values("prompt_index")["value"].to_numpy() * 100
    low, high = bootstrap_interval(values, 2000, 0.05, np.random.default_rng([0, 0, 0, 0, 0]))
    assert cell.value == pytest.approx(values.mean()) and (cell.low, cell.high) == (low, high)
    assert (
        "cluster-bootstrap percentile interval over prompts"
        in build_table(frame, spec, scale="toy", scorer_signature="toy:x").caption
    )


def _probe_documents(gains: dict[str, list[float]], videos: int = 4) -> list[dict[str, Any]]:
    """probe.json documents, one per replicate: every video's collapse PSNR 15 dB, readout 15 + gain."""
    rng = np.random.default_rng(3)
    documents = []
    for k in range(len(next(iter(gains.values())))):
        models = {}
        for label, per_replicate in gains.items():
            jitter = rng.normal(0, 0.5, videos)  # video to video, the same for both PSNRs of a video
            readout = 15 + per_replicate[k] + jitter
            models[label] = {
                "deltas": [
                    {
                        "delta": 1,
                        "readout_future_mses": list(10 ** (-readout / 10)),
                        "current_future_mses": list(10 ** (-(15 + jitter) / 10)),
                    }
                ]
            }
        documents.append({"models": models})
    return documents


def _probe_spec() -> ProbeSpec:
    return ProbeSpec.model_validate(
        {"models": [{"model": BASE}, {"model": MIRAI, "baseline": BASE}], "max_delta": 1}
    )


def test_probe_over_replicates_pairs_replicates_and_videos() -> None:
    # The method gains 2 dB more than its baseline in every replicate, though replicates move both by 3 dB.
    documents = _probe_documents({BASE: [1.0, 4.0, 7.0], MIRAI: [3.0, 6.0, 9.0]})
    base, method = summarise(_probe_spec(), documents)
    assert base.gain.value == pytest.approx(4.0, abs=0.3) and base.difference is None
    assert base.gain.low is not None and base.gain.high is not None and base.gain.high - base.gain.low > 3
    assert method.difference is not None and method.difference.value == pytest.approx(2.0, abs=0.4)
    assert method.difference.low is not None and method.difference.low > 0.5  # pairing removes the 3 dB
    assert method.p_value is not None and method.p_value < 0.01
    assert (method.replicates, method.videos) == (3, 4)
    assert method.readout.value == pytest.approx(15 + 6.0, abs=0.5)  # PSNR, not its gain
    markdown = render_summary(_probe_spec(), [base, method], "md")
    assert f"| {MIRAI} | 1 |" in markdown and "over 3 training replicates" in markdown

    # No difference: replicates disagree in sign, so the interval straddles 0 and p is large.
    documents = _probe_documents({BASE: [2.0, 2.0, 2.0], MIRAI: [4.0, 0.0, 2.0]})
    _, method = summarise(_probe_spec(), documents)
    assert method.difference is not None and method.difference.low is not None
    assert method.difference.high is not None and method.difference.low < 0 < method.difference.high
    assert method.p_value is not None and method.p_value > 0.2


def test_probe_over_replicates_reports_an_exact_prediction_as_unavailable() -> None:
    documents = _probe_documents({BASE: [1.0, 2.0], MIRAI: [2.0, 3.0]})
    documents[1]["models"][MIRAI]["deltas"][0]["readout_future_mses"][0] = 0.0
    base, method = summarise(_probe_spec(), documents)
    assert base.gain.value is not None
    assert method.gain.value is None and method.gain.reason is not None and "MSE 0" in method.gain.reason
    assert method.difference is not None and method.difference.value is None
    assert "n/a: " in render_summary(_probe_spec(), [base, method], "md")
