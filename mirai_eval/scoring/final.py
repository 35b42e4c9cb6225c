"""VBench's Quality, Semantic and Total scores, with an explicit policy for missing dimensions.

VBench fills a missing dimension with 0, which silently drags the totals down. Here a missing
dimension either stops the computation (`refuse`) or the groups are averaged over the present
dimensions' weights (`reweight`), and the result says which dimensions it left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mirai_eval.scoring.dimensions import DIMENSIONS, MEASURES, QUALITY, SEMANTIC, spec

MissingPolicy = Literal["refuse", "reweight"]
QUALITY_SHARE = 4.0  # Total = (4 * Quality + 1 * Semantic) / 5
SEMANTIC_SHARE = 1.0


class MissingDimensionsError(ValueError):
    """Raised under the `refuse` policy when some of the 16 dimensions have no score."""


@dataclass(frozen=True)
class FinalScore:
    """Group and total scores; None where a group has no dimension at all, with the reason in `note`."""

    quality: float | None
    semantic: float | None
    total: float | None
    normalised: dict[str, float]
    missing: tuple[str, ...] = ()
    note: str = ""
    weights_used: dict[str, float] = field(default_factory=dict)


def _group(names: tuple[str, ...], normalised: Mapping[str, float]) -> tuple[float | None, float]:
    present = [n for n in names if n in normalised]
    weight = sum(spec(n).weight for n in present)
    if not present:
        return None, 0.0
    return sum(normalised[n] for n in present) / weight, weight


def final_score(raw: Mapping[str, float], policy: MissingPolicy = "refuse") -> FinalScore:
    """Combine raw dimension scores (each in VBench's own scale) into Quality, Semantic and Total."""
    raw = {n: v for n, v in raw.items() if n not in MEASURES}  # ours, not VBench's: no weight in it
    for name in raw:
        spec(name)
    missing = tuple(n for n in DIMENSIONS if n not in raw)
    if missing and policy == "refuse":
        raise MissingDimensionsError(
            f"no score for {len(missing)} of 16 VBench dimensions: {', '.join(missing)}; score them, "
            "or use the 'reweight' policy to average each group over the dimensions present"
        )
    normalised = {n: spec(n).normalise(v) for n, v in raw.items()}
    quality, q_weight = _group(QUALITY, normalised)
    semantic, s_weight = _group(SEMANTIC, normalised)
    total = None
    if quality is not None and semantic is not None:
        total = (QUALITY_SHARE * quality + SEMANTIC_SHARE * semantic) / (QUALITY_SHARE + SEMANTIC_SHARE)
    note = ""
    if missing:
        full_q = sum(spec(n).weight for n in QUALITY)
        full_s = sum(spec(n).weight for n in SEMANTIC)
        note = (
            f"reweighted: Quality over weight {q_weight:g} of {full_q:g}, Semantic over weight "
            f"{s_weight:g} of {full_s:g}; missing: {', '.join(missing)}"
        )
        if total is None:
            note += "; Total n/a (a group has no dimension)"
    return FinalScore(
        quality=quality,
        semantic=semantic,
        total=total,
        normalised=normalised,
        missing=missing,
        note=note,
        weights_used={"quality": q_weight, "semantic": s_weight},
    )
