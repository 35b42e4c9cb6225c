"""Cluster bootstrap, paired permutation test and Holm, checked against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mirai_eval.tables.stats import bootstrap_interval, holm, paired_permutation_p, prompt_means


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def test_prompt_means_average_each_prompt_first() -> None:
    frame = pd.DataFrame({"prompt_index": [1, 0, 0, 0, 1], "value": [4.0, 1.0, 2.0, 3.0, 6.0]})
    means = prompt_means(frame)
    assert list(means.index) == [0, 1]
    assert means.tolist() == [2.0, 5.0]  # not the video mean 3.2


def test_bootstrap_interval_matches_scipy_percentile() -> None:
    data = np.random.default_rng(3).gamma(2.0, 1.0, size=40)
    ours = bootstrap_interval(data, 20000, 0.05, np.random.default_rng(11))
    theirs = scipy_stats.bootstrap(
        (data,), np.mean, method="percentile", n_resamples=20000, rng=np.random.default_rng(12)
    ).confidence_interval
    width = theirs.high - theirs.low
    assert ours[0] == pytest.approx(theirs.low, abs=0.03 * width)
    assert ours[1] == pytest.approx(theirs.high, abs=0.03 * width)
    assert ours[0] < data.mean() < ours[1]


def test_bootstrap_interval_is_seeded_and_needs_two_prompts() -> None:
    data = np.arange(10.0)
    first = bootstrap_interval(data, 500, 0.05, np.random.default_rng(5))
    assert first == bootstrap_interval(data, 500, 0.05, np.random.default_rng(5))
    assert first != bootstrap_interval(data, 500, 0.05, np.random.default_rng(6))
    with pytest.raises(ValueError, match="at least 2 prompts"):
        bootstrap_interval(np.array([1.0]), 500, 0.05, np.random.default_rng(0))


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_exact_permutation_p_equals_scipy(shift: float) -> None:
    rng = np.random.default_rng(7)
    baseline = rng.normal(size=10)
    method = baseline + shift + rng.normal(scale=0.5, size=10)
    ours = paired_permutation_p(method - baseline, 9999, np.random.default_rng(0))
    theirs = scipy_stats.permutation_test(
        (method, baseline),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=9999,
        alternative="two-sided",
    ).pvalue
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_monte_carlo_permutation_p_close_to_scipy() -> None:
    rng = np.random.default_rng(8)
    baseline = rng.normal(size=30)
    method = baseline + 0.25 + rng.normal(scale=1.0, size=30)
    ours = paired_permutation_p(method - baseline, 20000, np.random.default_rng(1))
    theirs = scipy_stats.permutation_test(
        (method, baseline),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=20000,
        rng=np.random.default_rng(2),
    ).pvalue
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(theirs, abs=0.01)


def test_permutation_p_of_identical_models_is_one() -> None:
    assert paired_permutation_p(np.zeros(6), 9999, np.random.default_rng(0)) == 1.0


def test_holm_by_hand() -> None:
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([None, None]) == [None, None]
