"""Tables -> LaTeX (booktabs) and Markdown through Jinja templates in tables/templates.

The LaTeX environment uses LaTeX-safe delimiters (`\\VAR{...}`, `\\BLOCK{...}`, `\\#{...}`) so
braces and `%` in the template are plain LaTeX, and escapes every value it prints: a model
label or caption containing `%`, `&`, `_`, `#`, `$` or braces cannot break the document.
Markup (bold, marks, intervals) lives in the templates; Python hands them formatted numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mirai_eval.tables.build import POWER, Cell, Table, build_table, scorer_summary
from mirai_eval.tables.spec import TableSpec
from mirai_train.atomic import atomic_write_text

Format = Literal["tex", "md"]
FORMATS: tuple[Format, ...] = ("tex", "md")
TEMPLATES = Path(__file__).resolve().parents[2] / "tables" / "templates"


def horizon_text(name: str) -> str:
    """A horizon's name as a header says it: "30s" -> "30 s", "30s_windows" -> "30 s, windows"."""
    length, _, rest = name.partition("_")
    spoken = f"{length[:-1]} s" if re.fullmatch(r"\d+(\.\d+)?s", length) else length
    return f"{spoken}, {rest.replace('_', ' ')}" if rest else spoken


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "\n": " ",
}
_MARKDOWN = {ch: "\\" + ch for ch in "\\`*_[]<>|~$#"} | {"\n": " "}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    return "".join(_MARKDOWN.get(ch, ch) for ch in text)


def _finalize(escape: Callable[[str], str]) -> Callable[[Any], str]:
    """Every printed value is escaped; numbers reach the templates already formatted as digits."""

    def finalize(value: Any) -> str:
        return escape(str(value))

    return finalize


def environment(fmt: Format, templates: Path = TEMPLATES) -> Environment:
    if not templates.is_dir():
        raise FileNotFoundError(
            f"{templates}: table templates not found; run from a checkout that has tables/templates "
            "or pass the templates directory"
        )
    common: dict[str, Any] = dict(
        loader=FileSystemLoader(templates),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    if fmt == "tex":
        return Environment(
            block_start_string=r"\BLOCK{",
            block_end_string="}",
            variable_start_string=r"\VAR{",
            variable_end_string="}",
            comment_start_string=r"\#{",
            comment_end_string="}",
            line_comment_prefix="%#",
            finalize=_finalize(latex_escape),
            **common,
        )
    return Environment(finalize=_finalize(markdown_escape), **common)


@dataclass(frozen=True)
class CellView:
    """A cell as the templates see it: formatted numbers and flags."""

    text: str  # the value, or "n/a"
    low: str
    high: str
    bold: bool
    mark: bool
    reported: str
    difference: str


@dataclass(frozen=True)
class Span:
    """A run of adjacent columns at one horizon, for the header row above the column names."""

    text: str
    first: int  # 1-based column number in the body, the label column being column 1
    last: int


@dataclass(frozen=True)
class EffectView:
    """One line of an effects table: a method against its baseline on one column."""

    pair: str  # "baseline vs method"
    metric: str
    horizon: str
    baseline: str
    method: str
    difference: str
    low: str
    high: str
    p_value: str
    mark: bool
    detectable: str  # the minimum detectable difference, or "n/a"
    design: str  # "replicates x prompts"
    paper: str  # the paper's reported difference, or "-"
    needed: str  # replicates x prompts at which the paper's difference is the detectable one, or "-"


def _effects(table: Table) -> list[EffectView]:
    """Every (method, column) of an effects table, group by group."""
    d, views = table.spec.decimals, []
    for group in table.groups:
        baselines = {line.model: line for line in group}
        for line in group:
            if line.baseline is None:
                continue
            base = baselines[line.baseline]
            for column, cell, base_cell in zip(table.columns, line.cells, base.cells, strict=True):
                effect = cell.effect
                paper = (
                    None
                    if cell.reported is None or base_cell.reported is None
                    else cell.reported - base_cell.reported
                )
                needed = None
                if paper is not None and effect is not None and effect.variance is not None:
                    needed = effect.variance.needed(paper, table.spec.bootstrap.alpha, POWER)
                views.append(
                    EffectView(
                        pair=f"{base.label} vs {line.label}",
                        metric=column.header,
                        horizon=horizon_text(column.horizon),
                        baseline=_number(base_cell.value, d),
                        method=_number(cell.value, d),
                        difference=_number(None if effect is None else effect.difference, d, sign=True),
                        low=_number(None if effect is None else effect.low, d, sign=True),
                        high=_number(None if effect is None else effect.high, d, sign=True),
                        p_value="n/a" if cell.p_value is None else f"{cell.p_value:.3f}",
                        mark=table.spec.significance and cell.significant,
                        detectable=_number(None if effect is None else effect.detectable, d),
                        design="n/a" if effect is None else f"{effect.replicates} x {effect.prompts}",
                        paper="-" if paper is None else _number(paper, d, sign=True),
                        needed="-" if needed is None else f"{needed[0]} x {needed[1]}",
                    )
                )
    return views


def _number(value: float | None, decimals: int, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _view(cell: Cell, table: Table) -> CellView:
    spec = table.spec
    d = spec.decimals
    has_interval = spec.intervals and cell.low is not None and cell.high is not None
    return CellView(
        text=_number(cell.value, d),
        low=_number(cell.low, d) if has_interval else "",
        high=_number(cell.high, d) if has_interval else "",
        bold=cell.bold,
        mark=spec.significance and cell.significant,
        reported=_number(cell.reported, d),
        difference=_number(cell.difference, d, sign=True),
    )


def _spans(table: Table, width: int) -> list[Span]:
    """Adjacent columns sharing a horizon; `width` body columns per table column (3 when reported)."""
    spans: list[Span] = []
    for i, column in enumerate(table.columns):
        first, last = 2 + i * width, 1 + (i + 1) * width
        if spans and spans[-1].text == horizon_text(column.horizon):
            spans[-1] = Span(spans[-1].text, spans[-1].first, last)
        else:
            spans.append(Span(horizon_text(column.horizon), first, last))
    return spans


def template_name(table: Table, fmt: Format) -> str:
    kind = table.spec.kind
    stem = "ablation" if kind.startswith("ablation") else kind
    return f"{stem}.{fmt}.j2"


def layout(table: Table) -> dict[str, Any]:
    """What every template (LaTeX, Markdown, HTML report) gets: the table, cell views and header spans."""
    width = 3 if table.spec.kind == "reported_vs_reproduced" else 1
    return dict(
        table=table,
        spec=table.spec,
        columns=table.columns,
        groups=[[(line, [_view(c, table) for c in line.cells]) for line in group] for group in table.groups],
        spans=_spans(table, width),
        body_columns=1 + width * len(table.columns),
        label=table.spec.name.replace("_", "-"),
        horizon_text=horizon_text,
        effects=_effects(table) if table.spec.kind == "effects" else [],
    )


def render(table: Table, fmt: Format, templates: Path = TEMPLATES) -> str:
    """The table as LaTeX (`tex`; needs booktabs, and graphicx for reported-vs-reproduced) or Markdown."""
    if fmt not in ("tex", "md"):
        raise ValueError(f"format {fmt!r}: use tex or md")
    template = environment(fmt, templates).get_template(template_name(table, fmt))
    return template.render(**layout(table))


def table_path(folder: Path, name: str, fmt: Format) -> Path:
    """Where `write_tables` writes table `name` in format `fmt`."""
    return folder / f"{name}.{fmt}"


def write_tables(frame: pd.DataFrame, specs: Sequence[TableSpec], scale: str, folder: Path) -> list[Table]:
    """Build every table of `specs` from the score rows and write `table_path` for each of FORMATS
    (each written whole or not at all); the built tables, for the report."""
    signature = scorer_summary(frame)
    tables = [build_table(frame, spec, scale=scale, scorer_signature=signature) for spec in specs]
    for table in tables:
        for fmt in FORMATS:
            atomic_write_text(table_path(folder, table.spec.name, fmt), render(table, fmt))
    return tables
