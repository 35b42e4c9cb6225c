"""The probe's table (LaTeX and Markdown, `tables/templates/probe.*.j2`) and its images (PNG).

The table does not fit `TableSpec` (no VBench rows, no bootstrap over prompts), so it has its own
templates rendered through `render.environment`, which gives it the same escaping and LaTeX-safe
delimiters as every other table. A value that could not be computed prints as n/a and its reason
is listed under the table.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirai_eval.tables.render import Format, environment

if TYPE_CHECKING:
    from mirai_eval.probe.spec import ProbeResult, Value

MSE_SCALE = 1e3  # MSE of pixels in [0, 1] is printed x 10^3


@dataclass(frozen=True)
class ProbeRow:
    """One (model, Delta) line as the templates see it: formatted strings, first line of a model labelled."""

    label: str
    delta: str
    cells: list[str]


def _format(value: Value, decimals: int, scale: float = 1.0) -> str:
    return "n/a" if value.value is None else f"{value.value * scale:.{decimals}f}"


def table_rows(result: ProbeResult) -> tuple[list[list[ProbeRow]], list[str]]:
    """Rows grouped by model, and the distinct reasons behind the n/a cells (sprites columns only
    when the prompts are sprites scenes)."""
    sprites = result.spec.prompts == "sprites"
    groups, reasons = [], []
    for label, model in result.models.items():
        rows = []
        for n, d in enumerate(model.deltas):
            values = [
                (d.readout_future, 2, 1.0),
                (d.current_future, 2, 1.0),
                (d.readout_current, 2, 1.0),
                (d.readout_average, 3, MSE_SCALE),
                (d.readout_single, 3, MSE_SCALE),
                (d.spread, 3, MSE_SCALE),
            ]
            if sprites:
                values += [
                    (d.position_readout, 2, 1.0),
                    (d.position_current, 2, 1.0),
                    (d.detection_readout, 1, 100.0),
                ]
            for value, _, _ in values:
                if value.reason is not None and value.reason not in reasons:
                    reasons.append(value.reason)
            cells = [_format(v, decimals, scale) for v, decimals, scale in values]
            rows.append(ProbeRow(label if n == 0 else "", str(d.delta), cells))
        groups.append(rows)
    return groups, reasons


def render_table(result: ProbeResult, fmt: Format) -> str:
    """The probe table; the caption's wording lives in the templates, Python hands them numbers."""
    spec = result.spec
    groups, reasons = table_rows(result)
    template = environment(fmt).get_template(f"probe.{fmt}.j2")
    return template.render(
        spec=spec,
        label=spec.name.replace("_", "-"),
        layers=sorted({(m.layer, m.tap) for m in result.models.values()}),
        groups=groups,
        reasons=reasons,
        sprites=spec.prompts == "sprites",
    )


def write_tables(result: ProbeResult, out_dir: Path) -> dict[str, Path]:
    written = {}
    for fmt in ("tex", "md"):
        path = out_dir / f"{result.spec.name}.{fmt}"
        path.write_text(render_table(result, fmt), encoding="utf-8")
        written[fmt] = path
    return written


@dataclass(frozen=True)
class Panel:
    """An image grid: one row per Delta, one column per named frame (uint8 [H, W, 3])."""

    caption: str
    file_stem: str
    columns: list[str]
    rows: list[tuple[str, list[np.ndarray]]]


def draw_panel(panel: Panel, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panel.rows), len(panel.columns)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(2.0 * n_cols, 2.0 * n_rows), squeeze=False)
    for r, (row_label, frames) in enumerate(panel.rows):
        for c, frame in enumerate(frames):
            axis = axes[r][c]
            axis.imshow(frame, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:  # wrapped, so long model labels do not run into their neighbours
                axis.set_title(textwrap.fill(panel.columns[c], 26), fontsize=8)
            if c == 0:
                axis.set_ylabel(row_label, fontsize=9)
    figure.tight_layout()
    path = out_dir / f"{panel.file_stem}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
