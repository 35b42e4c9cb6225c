"""Final scores against values worked out by hand from VBench's constants (VBench's scripts/constant.py)."""

from __future__ import annotations

import pytest

from mirai_eval.scoring.dimensions import DIMENSIONS
from mirai_eval.scoring.final import MissingDimensionsError, final_score

RAW = {
    "subject_consistency": 0.95,
    "background_consistency": 0.96,
    "temporal_flickering": 0.97,
    "motion_smoothness": 0.98,
    "dynamic_degree": 0.6,
    "aesthetic_quality": 0.55,
    "imaging_quality": 0.65,
    "object_class": 0.8,
    "multiple_objects": 0.4,
    "human_action": 0.9,
    "color": 0.85,
    "spatial_relationship": 0.5,
    "scene": 0.45,
    "appearance_style": 0.2,
    "temporal_style": 0.24,
    "overall_consistency": 0.26,
}
# Each term written out from the published Min/Max and weights, not from the module.
Q_TERMS = [
    (0.95 - 0.1462) / (1.0 - 0.1462),
    (0.96 - 0.2615) / (1.0 - 0.2615),
    (0.97 - 0.6293) / (1.0 - 0.6293),
    (0.98 - 0.706) / (0.9975 - 0.706),
    0.6 * 0.5,
    0.55,
    0.65,
]
S_TERMS = [
    0.8,
    0.4,
    0.9,
    0.85,
    0.5,
    0.45 / 0.8222,
    (0.2 - 0.0009) / (0.2855 - 0.0009),
    0.24 / 0.364,
    0.26 / 0.364,
]


def test_all_sixteen_dimensions() -> None:
    score = final_score(RAW)
    quality, semantic = sum(Q_TERMS) / 6.5, sum(S_TERMS) / 9
    assert score.quality == pytest.approx(quality, abs=1e-12)
    assert score.semantic == pytest.approx(semantic, abs=1e-12)
    assert score.total == pytest.approx((4 * quality + semantic) / 5, abs=1e-12)
    assert score.missing == () and score.note == ""
    # Worked through once with a calculator, to catch a wrong constant in both places at once.
    assert score.quality == pytest.approx(0.80712, abs=1e-5)
    assert score.semantic == pytest.approx(0.67450, abs=1e-5)


def test_dynamic_degree_counts_half() -> None:
    still, moving = dict(RAW, dynamic_degree=0.0), dict(RAW, dynamic_degree=1.0)
    gap = final_score(moving).quality - final_score(still).quality  # type: ignore[operator]
    assert gap == pytest.approx(0.5 / 6.5, abs=1e-12)


def test_extremes_map_to_zero_and_one_without_clamping() -> None:
    top = {n: s.high for n, s in DIMENSIONS.items()}
    assert final_score(top).total == pytest.approx(1.0, abs=1e-12)
    bottom = {n: s.low for n, s in DIMENSIONS.items()}
    assert final_score(bottom).total == pytest.approx(0.0, abs=1e-12)
    below = dict(bottom, subject_consistency=0.0)
    assert final_score(below).quality == pytest.approx((0 - 0.1462) / 0.8538 / 6.5, abs=1e-12)


def test_missing_dimension_is_refused_by_default() -> None:
    partial = {k: v for k, v in RAW.items() if k != "scene"}
    with pytest.raises(MissingDimensionsError, match="scene"):
        final_score(partial)


def test_missing_dimension_reweights_and_says_so() -> None:
    partial = {k: v for k, v in RAW.items() if k not in {"dynamic_degree", "scene"}}
    score = final_score(partial, policy="reweight")
    quality = (sum(Q_TERMS) - 0.6 * 0.5) / 6.0
    semantic = (sum(S_TERMS) - 0.45 / 0.8222) / 8
    assert score.quality == pytest.approx(quality, abs=1e-12)
    assert score.semantic == pytest.approx(semantic, abs=1e-12)
    assert score.total == pytest.approx((4 * quality + semantic) / 5, abs=1e-12)
    assert score.missing == ("dynamic_degree", "scene")
    assert "weight 6 of 6.5" in score.note and "weight 8 of 9" in score.note
    # VBench's zero-filling would have given a lower total: the two must differ.
    assert score.total > (4 * (sum(Q_TERMS) - 0.3) / 6.5 + (sum(S_TERMS) - 0.45 / 0.8222) / 9) / 5


def test_group_with_no_dimension_has_no_total() -> None:
    score = final_score({"subject_consistency": 0.9}, policy="reweight")
    assert score.semantic is None and score.total is None and "Total n/a" in score.note
    with pytest.raises(KeyError, match="valid:"):
        final_score({"subject_consistence": 0.9}, policy="reweight")
