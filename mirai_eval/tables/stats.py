"""Statistics over prompts and training replicates: cluster bootstrap intervals, paired tests, Holm,
and minimum detectable effects.

The unit of resampling is the prompt: videos of one prompt (its samples and seeds) are not
independent, so every statistic starts from per-prompt means and resamples prompts. The
percentile interval and the permutation p-value follow scipy.stats.bootstrap (method
"percentile") and scipy.stats.permutation_test (paired "samples", two-sided) and are tested
against them; they are reimplemented here to resample per cell with seeds the caption records.

A model trained more than once (training replicates) adds a level above the prompt: one trained
model's videos share its training noise. `hierarchical_means` resamples replicates, then prompts
within each drawn replicate (the two-stage bootstrap of Davison and Hinkley, Bootstrap Methods and
their Application, 1997, section 3.8), and the paired test inverts that interval. `Variance`
splits paired differences into between-replicate and within-replicate (prompt) parts by the method
of moments of a one-way random-effects model, which gives the minimum detectable effect of a
design with S replicates and P prompts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

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
    return percentile_interval(per_prompt[index].mean(axis=-1), alpha)


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


def replicate_prompt_means(values: pd.Series) -> list[np.ndarray]:
    """Per training replicate (in order), its per-prompt means of a series indexed by `replicate` and
    `prompt_index`; NaN (a video its dimension excludes) left out, and prompts with none dropped."""
    means = values.groupby(level=["replicate", "prompt_index"], sort=True).mean().dropna()
    return [group.to_numpy() for _, group in means.groupby(level="replicate", sort=True)]


def hierarchical_mean(per_replicate: Sequence[np.ndarray]) -> float:
    """The mean over replicates of each replicate's mean over prompts (replicates weigh alike)."""
    return float(np.mean([prompts.mean() for prompts in per_replicate]))


def hierarchical_means(
    per_replicate: Sequence[np.ndarray], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap distribution of `hierarchical_mean`: each resample draws as many replicates as there
    are, with replacement, and for each draw resamples that replicate's prompts with replacement."""
    count = len(per_replicate)
    if count < 1 or min(len(p) for p in per_replicate) < 1:
        raise ValueError("a hierarchical bootstrap needs at least one replicate with a prompt")
    chosen = rng.integers(0, count, (resamples, count))
    # draws[b, j, r]: replicate r's prompt-resampled mean for draw j of resample b (independent per draw)
    draws = np.stack(
        [p[rng.integers(0, len(p), (resamples, count, len(p)))].mean(axis=-1) for p in per_replicate], axis=-1
    )
    return np.take_along_axis(draws, chosen[..., None], axis=-1)[..., 0].mean(axis=-1)


def percentile_interval(means: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def replicate_interval(
    per_replicate: Sequence[np.ndarray], resamples: int, alpha: float, rng: np.random.Generator
) -> tuple[float, float] | None:
    """The interval of `hierarchical_mean`: hierarchical with several replicates, over prompts with one;
    None with one replicate of fewer than two prompts."""
    if len(per_replicate) > 1:
        return percentile_interval(hierarchical_means(per_replicate, resamples, rng), alpha)
    if per_replicate and len(per_replicate[0]) >= 2:
        return bootstrap_interval(per_replicate[0], resamples, alpha, rng)
    return None


def bootstrap_p(means: np.ndarray) -> float:
    """Two-sided p of a zero mean from a bootstrap distribution of a paired difference: the
    smallest alpha whose percentile interval excludes 0, with the (count + 1) / (resamples + 1)
    correction, so it is never 0."""
    below = (np.count_nonzero(means <= 0) + 1) / (len(means) + 1)
    above = (np.count_nonzero(means >= 0) + 1) / (len(means) + 1)
    return float(min(1.0, 2 * min(below, above)))


@dataclass(frozen=True)
class PairedBootstrap:
    """A paired difference over replicates and prompts, its interval and its p, from one set of resamples."""

    mean: float
    low: float | None  # None with fewer than two prompts in all
    high: float | None
    p_value: float


def paired_bootstrap(
    per_replicate: Sequence[np.ndarray], resamples: int, alpha: float, rng: np.random.Generator
) -> PairedBootstrap:
    """`hierarchical_mean` of paired differences, its percentile interval, and the p that inverts
    that very interval (`bootstrap_p`): the tables' effects and the probe's differences alike."""
    means = hierarchical_means(per_replicate, resamples, rng)
    low, high = percentile_interval(means, alpha) if sum(map(len, per_replicate)) >= 2 else (None, None)
    return PairedBootstrap(hierarchical_mean(per_replicate), low, high, bootstrap_p(means))


def _z(alpha: float, power: float) -> float:
    """z_{1-alpha/2} + z_power: minimum detectable differences in standard errors (two-sided test)."""
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)


@dataclass(frozen=True)
class Variance:
    """Variance components of paired differences (one-way random effects, method of moments):
    `between` training replicates (None with one replicate: unmeasured) and `within` one, over prompts."""

    between: float | None
    within: float
    replicates: int
    prompts: float  # mean prompts per replicate

    @classmethod
    def of(cls, per_replicate: Sequence[np.ndarray]) -> Variance | None:
        """None when no replicate has two prompts (no within-replicate variance to measure)."""
        usable = [p for p in per_replicate if len(p) >= 2]
        if not usable:
            return None
        within = float(np.mean([p.var(ddof=1) for p in usable]))
        prompts = float(np.mean([len(p) for p in per_replicate]))
        between = None
        if len(per_replicate) >= 2:
            replicate_means = np.array([p.mean() for p in per_replicate])
            between = max(0.0, float(replicate_means.var(ddof=1)) - within / prompts)
        return cls(between, within, len(per_replicate), prompts)

    def standard_error(self, replicates: int, prompts: float) -> float:
        """Of the mean difference with `replicates` replicate pairs of `prompts` prompts each."""
        return math.sqrt(((self.between or 0.0) + self.within / prompts) / replicates)

    def detectable(self, alpha: float, power: float, replicates: int, prompts: float) -> float:
        """The minimum detectable difference, normal approximation: (z_{1-alpha/2} + z_power) x SE."""
        return _z(alpha, power) * self.standard_error(replicates, prompts)

    def needed(self, effect: float, alpha: float, power: float) -> tuple[int, int] | None:
        """(replicates, prompts) at which `effect` becomes the minimum detectable difference: more
        prompts at this many replicates if that can get there, else more replicates at this many
        prompts; None for a zero effect."""
        if effect == 0:
            return None
        target = (abs(effect) / _z(alpha, power)) ** 2  # the standard error's square that detects `effect`
        between = self.between or 0.0
        if between / self.replicates < target:
            prompts = math.ceil(self.within / (self.replicates * target - between))
            return self.replicates, max(prompts, 2)
        prompts = math.ceil(self.prompts)
        return max(math.ceil((between + self.within / prompts) / target), 2), prompts
