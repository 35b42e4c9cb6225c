"""Per-video score rows: the one table every later stage reads (aggregation, statistics, rendering).

One row per (model, horizon, prompt, sample, dimension). `mirai-eval run` writes them next to the
rendered tables (JSONL, or parquet when pyarrow is installed); `tables.py` turns them into table
cells. A value that could not be computed is NaN with the reason in `error`, never a silent zero;
an error beginning "excluded: " is no failure: the dimension's own rule leaves that video out (as
VBench's colour does a video where the object is never detected).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import pandas as pd


@dataclass(frozen=True)
class ScoreRow:
    model: str  # the manifest's model label, e.g. "Causal-Forcing (chunk-wise) + Video-Mirai"
    baseline: str | None  # label of the model this one is compared with; None for a baseline
    group: str  # the table group (a baseline and its methods share it), e.g. "cf-chunkwise"
    horizon: str  # "5s" or "30s"
    prompt: str
    prompt_index: int  # index in the prompt set; the cluster for bootstrap and pairing
    sample: int  # k in 0..samples_per_prompt-1
    seed: int  # base + prompt_index * samples_per_prompt + sample
    dimension: str  # VBench dimension name, e.g. "subject_consistency"
    value: float  # raw value in VBench's units (mostly [0, 1]); NaN when unavailable
    error: str | None  # why `value` is NaN, else None
    profile: str  # scoring profile, "vbench" or "toy"
    scorer: str  # scorer signature (dimension, profile, weight hashes, frame sampling)
    video: str  # content key of the video in the store
    # Per-window values in time order, under the windows and clips protocols (tables/windows.py), and
    # the windows' length; None for whole videos.
    windows: list[float] | None = None
    window_seconds: float | None = None
    # The model's training replicate (manifest `train.replicates`; 0: the recipe as written): the
    # top level of the hierarchical bootstrap, and what pairs a method with its baseline.
    replicate: int = 0

    def __post_init__(self) -> None:
        if math.isnan(self.value) != (self.error is not None):
            raise ValueError(
                f"row for {self.video}/{self.dimension}: a NaN value needs an error and vice versa"
            )


COLUMNS = [f.name for f in fields(ScoreRow)]


def slug(label: str) -> str:
    """A file-name part: runs of anything but letters and digits become one '-'."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in label).split())


def to_frame(rows: list[ScoreRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Refuse a frame that does not have exactly the row columns (e.g. a file from another version)."""
    missing, extra = set(COLUMNS) - set(frame.columns), set(frame.columns) - set(COLUMNS)
    if missing or extra:
        raise ValueError(f"score rows: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    return frame[COLUMNS]
