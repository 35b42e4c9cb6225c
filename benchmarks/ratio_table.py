"""The benchmarks' shared output: one row per measured ratio, with its target and whether it was met."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

Row = tuple[str, str, str, str]  # measure, ratio, target, verdict or note


def verdict(passed: bool) -> str:
    return "[green]met[/]" if passed else "[red]missed[/]"


def print_ratios(console: Console, rows: list[Row]) -> None:
    table = Table("measure", "ratio", "target", "")
    for row in rows:
        table.add_row(*row)
    console.print(table)
