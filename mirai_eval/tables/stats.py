"""Statistics over prompts: cluster bootstrap intervals, paired sign-flip permutation tests, Holm.

The unit of resampling is the prompt: videos of one prompt (its samples and seeds) are not
independent, so every statistic starts from per-prompt means and resamples prompts. The
percentile interval and the permutation p-value follow scipy.stats.bootstrap (method
"percentile") and scipy.stats.permutation_test (paired "samples", two-sided) and are tested
against them; they are reimplemented here to resample per cell with seeds the caption records.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

MAX_EXACT_PROMPTS = 20  # 2**20 sign patterns is the most enumerated exactly


def prompt_means(values: pd.DataFrame) -> pd.Series:
    """Mean `value` per `prompt_index` (the cluster), sorted by prompt."""
    return values.groupby("prompt_index", sort=True)["value"].mean()


def bootstrap_interval(
    per_prompt: np.ndarray, resamples: int, alpha: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the mean over prompts, resampling prompts with replacement."""
    n = len(per_prompt)
    if n < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 prompts, got {n}")
    index = rng.integers(0, n, (resamples, n))
    means = per_prompt[index].mean(axis=-1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_permutation_p(differences: np.ndarray, permutations: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of a zero mean paired difference, flipping the sign of each prompt's difference.

    Exact (all 2**n sign patterns) when there are at most `permutations` of them, else
    Monte Carlo with the (count + 1) / (permutations + 1) correction, as scipy does.
    """
    n = len(differences)
    if n < 1:
        raise ValueError("a paired test needs at least one prompt present in both models")
    observed = differences.mean()
    exact = n <= MAX_EXACT_PROMPTS and 2**n <= permutations
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = rng.choice((1.0, -1.0), size=(permutations, n))
    null = (signs * differences).mean(axis=-1)
    tolerance = 100 * np.finfo(float).eps * abs(observed)  # scipy's tie tolerance
    greater = np.count_nonzero(null >= observed - tolerance)
    less = np.count_nonzero(null <= observed + tolerance)
    if exact:
        p_greater, p_less = greater / len(null), less / len(null)
    else:
        p_greater, p_less = (greater + 1) / (permutations + 1), (less + 1) / (permutations + 1)
    return float(min(1.0, 2 * min(p_greater, p_less)))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); None (no test) stays None."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
