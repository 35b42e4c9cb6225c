"""The 16 VBench dimensions: group, normalisation range and weight of each (VBench's scripts/constant.py);
and the long-video measures scored beside them.

These constants are what turn raw per-dimension scores into VBench's Quality, Semantic and
Total; they are kept in one table so the final score and the registry cannot disagree. Beside them,
the other facts a manifest is checked against without loading a model (profiles, protocols, which
dimensions run natively): this module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Group = Literal["quality", "semantic"]
Profile = Literal["vbench", "toy"]  # scoring/profiles.py
ProtocolMode = Literal["whole", "clips"]  # whole videos, or VBench-Long's clips (scoring/longvideo.py)
EXCLUDED = "excluded: "  # how a stored score row's error begins when the video was excluded, not failed


@dataclass(frozen=True)
class DimensionSpec:
    """A VBench dimension as the final score sees it: norm = (raw - low) / (high - low) * weight."""

    name: str
    group: Group
    low: float
    high: float
    weight: float = 1.0

    def normalise(self, raw: float) -> float:
        """VBench's normalisation, deliberately without clamping (VBench does not clamp)."""
        return (raw - self.low) / (self.high - self.low) * self.weight


_SPECS = (
    DimensionSpec("subject_consistency", "quality", 0.1462, 1.0),
    DimensionSpec("background_consistency", "quality", 0.2615, 1.0),
    DimensionSpec("temporal_flickering", "quality", 0.6293, 1.0),
    DimensionSpec("motion_smoothness", "quality", 0.706, 0.9975),
    DimensionSpec("dynamic_degree", "quality", 0.0, 1.0, weight=0.5),
    DimensionSpec("aesthetic_quality", "quality", 0.0, 1.0),
    DimensionSpec("imaging_quality", "quality", 0.0, 1.0),
    DimensionSpec("object_class", "semantic", 0.0, 1.0),
    DimensionSpec("multiple_objects", "semantic", 0.0, 1.0),
    DimensionSpec("human_action", "semantic", 0.0, 1.0),
    DimensionSpec("color", "semantic", 0.0, 1.0),
    DimensionSpec("spatial_relationship", "semantic", 0.0, 1.0),
    DimensionSpec("scene", "semantic", 0.0, 0.8222),
    DimensionSpec("appearance_style", "semantic", 0.0009, 0.2855),
    DimensionSpec("temporal_style", "semantic", 0.0, 0.364),
    DimensionSpec("overall_consistency", "semantic", 0.0, 0.364),
)

DIMENSIONS: dict[str, DimensionSpec] = {spec.name: spec for spec in _SPECS}
QUALITY = tuple(s.name for s in _SPECS if s.group == "quality")
SEMANTIC = tuple(s.name for s in _SPECS if s.group == "semantic")


# Long-video measures beyond VBench (scoring/drift.py): scored, stored and tabled like dimensions,
# in both profiles, and never part of the final score.
MEASURES = {
    "luminance": "mean luma",
    "clipped": "share of clipped pixels",
    "saturation": "mean saturation",
    "identity_decay": "similarity to the first second at growing offsets",
    "repetition": "largest similarity of two non-neighbouring windows",
    # The planning gap, from the sprites world's truth (scoring/planning_gap.py; toy profile only).
    "persistence": "share of frames showing each named sprite with its colour and shape",
    "swaps": "share of frames where a named colour shows another shape",
    "duplicates": "share of frames with two whole blobs of one named colour",
    "vanished": "share of named sprites absent from the whole span",
    "reentry": "share of re-entries that come back with their own shape",
    "hallucinated": "share of frames with an unnamed colour or shape",
}
VBENCH_UNAVAILABLE = {
    name: "the planning-gap measures read the sprites world's truth: toy profile only"
    for name in ("persistence", "swaps", "duplicates", "vanished", "reentry", "hallucinated")
}
METRICS = (*DIMENSIONS, *MEASURES)  # what a horizon can score and a table column can show


def spec(name: str) -> DimensionSpec:
    """Look a dimension up, with an error that lists the valid names."""
    try:
        return DIMENSIONS[name]
    except KeyError:
        raise KeyError(f"unknown VBench dimension {name!r}; valid: {', '.join(DIMENSIONS)}") from None


# What this harness computes itself (scoring/profiles.py, the vbench profile); the other dimensions
# run in the vbench package's own environment (scoring/delegate.py), on whole videos only.
NATIVE = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "appearance_style",
    "imaging_quality",
    "temporal_style",
    "overall_consistency",
)
DELEGATED = tuple(name for name in DIMENSIONS if name not in NATIVE)


def is_native(name: str) -> bool:
    """Computed by this harness under the vbench profile (the measures are ours)."""
    return name in NATIVE or name in MEASURES


CLIPS_NATIVE_ONLY = "the clips protocol is native-only; delegated dimensions need 'whole'"
STATIC_FILTER_VBENCH_ONLY = (
    "the static filter is VBench's RAFT test (vbench profile); the toy profile has no static filter"
)
