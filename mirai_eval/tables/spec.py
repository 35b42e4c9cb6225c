"""What a table shows: the `tables:` entries of a manifest (free of torch and pandas, so a
manifest validates without them).

A manifest lists its tables as `TableSpec`s (YAML under `tables:`); every model is strict
(`extra="forbid"`), so a misspelt key is an error naming the field. Schema:

    name: table1                    # output file stem: tables/generated/<name>.tex / .md
    kind: table1                    # table1 | ablation_window | ablation_alpha | ablation_depth
                                    # | ablation_weight | reported_vs_reproduced
                                    # | effects (one line per method and column: the paired
                                    #   difference, its interval, p, minimum detectable effect)
    title: "VBench at 5 s and consistency at 30 s"
    groups:                         # bold marks the best row within each group
      - rows:
          - {model: "Self-Forcing (chunk-wise)"}
          - {model: "Self-Forcing (chunk-wise) + Video-Mirai", label: "+ Video-Mirai",
             baseline: "Self-Forcing (chunk-wise)"}
    columns:                        # optional; defaults per kind (see DEFAULT_COLUMNS)
      - {metric: total, horizon: 5s}
      - {metric: subject_consistency, horizon: 30s, label: SC}
      - {metric: subject_consistency, horizon: 30s_windows, summary: last_minus_first}
      - {metric: repetition, horizon: 30s, best: lower}   # bold: highest unless `best` says lower or none
    intervals: true                 # 95% cluster-bootstrap interval under each value
    significance: true              # mark where the paired test against the baseline is significant
    bootstrap: {resamples: 2000, permutations: 9999, seed: 0, alpha: 0.05}
    missing: na                     # na: Q/S/T with a missing dimension is "n/a" with the reason;
                                    # reweight: average each group over the dimensions present (stated)
    decimals: 2
    reported: table1                # tables/reported/<reported>.yaml; needed by reported_vs_reproduced

A column's `horizon` is a key of the manifest's `horizons:`. `summary` (first, last, last_minus_first,
slope_per_10s; tables/windows.py) shows a per-window summary of a dimension at a horizon scored per
window (`protocol: windows` or `clips`) instead of its mean over the windows.

`model` is the manifest's model label (`ScoreRow.model`); `baseline` names another row of the same
group; `reported` on a row names its row in the reported file (default: the model label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from mirai_eval.scoring.dimensions import METRICS, QUALITY, SEMANTIC
from mirai_eval.tables.windows import SUMMARY_LABELS, Summary
from mirai_train.config_files import Strict

Kind = Literal[
    "table1",
    "ablation_window",
    "ablation_alpha",
    "ablation_depth",
    "ablation_weight",
    "reported_vs_reproduced",
    "effects",
]
COMPOSITES = {"quality": QUALITY, "semantic": SEMANTIC, "total": QUALITY + SEMANTIC}
LABELS = {
    "quality": "Quality",
    "semantic": "Semantic",
    "total": "Total",
    "subject_consistency": "Subject cons.",
    "background_consistency": "Background cons.",
    "overall_consistency": "Overall cons.",
}
REPORTED_DIR = Path(__file__).resolve().parents[2] / "tables" / "reported"


class Column(Strict):
    """One metric at one horizon: a composite (quality, semantic, total) or a VBench dimension, or a
    per-window summary of a dimension."""

    metric: str
    horizon: str = Field(min_length=1)
    label: str | None = None
    summary: Summary | None = None
    best: Literal["higher", "lower", "none"] = "higher"  # which value bold marks

    @model_validator(mode="after")
    def _summarisable(self) -> Column:
        if self.summary is not None and self.metric in COMPOSITES:
            raise ValueError(
                f"summary {self.summary!r} of composite {self.metric!r}: summaries are per dimension; "
                "name a dimension such as subject_consistency"
            )
        return self

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        if metric not in COMPOSITES and metric not in METRICS:
            raise ValueError(
                f"unknown metric {metric!r}; use quality, semantic, total, a VBench dimension or a "
                "long-video measure: " + ", ".join(METRICS)
            )
        return metric

    @property
    def header(self) -> str:
        if self.label:
            return self.label
        name = LABELS.get(self.metric, self.metric.replace("_", " ").capitalize())
        return f"{name} ({SUMMARY_LABELS[self.summary]})" if self.summary else name


class TableRow(Strict):
    model: str = Field(min_length=1)
    label: str | None = None
    baseline: str | None = None
    reported: str | None = None

    @property
    def shown(self) -> str:
        return self.label or self.model


class RowGroup(Strict):
    rows: list[TableRow] = Field(min_length=1)


class Bootstrap(Strict):
    """Resampling settings; the seed is recorded in the caption so a table can be regenerated exactly."""

    resamples: int = Field(default=2000, ge=100)
    permutations: int = Field(default=9999, ge=99)
    seed: int = 0
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)


_Q_S_T = [Column(metric=m, horizon="5s") for m in ("quality", "semantic", "total")]
DEFAULT_COLUMNS: dict[str, list[Column]] = {
    "table1": [
        *_Q_S_T,
        *(
            Column(metric=m, horizon="30s")
            for m in ("subject_consistency", "background_consistency", "overall_consistency")
        ),
    ],
    "ablation": _Q_S_T,
}


class TableSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Kind
    title: str
    groups: list[RowGroup] = Field(min_length=1)
    columns: list[Column] = Field(default_factory=list)
    intervals: bool = True
    significance: bool = True
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    missing: Literal["na", "reweight"] = "na"
    decimals: int = Field(default=2, ge=0, le=4)
    reported: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TableSpec:
        if not self.columns:
            key = "ablation" if self.kind.startswith("ablation") else "table1"
            object.__setattr__(self, "columns", list(DEFAULT_COLUMNS[key]))
        models = [row.model for group in self.groups for row in group.rows]
        duplicates = sorted({m for m in models if models.count(m) > 1})
        if duplicates:
            raise ValueError(f"table {self.name}: model listed twice: {duplicates}; list each model once")
        for group in self.groups:
            members = {row.model for row in group.rows}
            for row in group.rows:
                if row.baseline is not None and row.baseline not in members - {row.model}:
                    raise ValueError(
                        f"table {self.name}: baseline {row.baseline!r} of {row.model!r} is not another "
                        f"row of its group ({sorted(members)}); put the baseline in the same group"
                    )
        if self.kind == "reported_vs_reproduced" and self.reported is None:
            raise ValueError(
                f"table {self.name}: kind reported_vs_reproduced needs `reported`, the stem of a file "
                f"in {REPORTED_DIR} (e.g. table1)"
            )
        return self


class ReportedFile(Strict):
    """tables/reported/<name>.yaml: the paper's numbers, keyed by row, then by `metric@horizon`."""

    source: str
    values: dict[str, dict[str, float]]


def load_reported(name: str, directory: Path = REPORTED_DIR) -> ReportedFile:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in directory.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no such reported-numbers file; `reported:` can be one of {found}")
    try:
        return ReportedFile.model_validate(yaml.safe_load(path.read_text()))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def column_key(column: Column) -> str:
    """`metric@horizon`, with `:summary` for a per-window summary (the reported files' keys)."""
    key = f"{column.metric}@{column.horizon}"
    return f"{key}:{column.summary}" if column.summary else key
