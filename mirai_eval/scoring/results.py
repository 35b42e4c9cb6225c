"""The readable terminal summary of a scoring run, and the atomic JSON write of its results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mirai_train.atomic import atomic_write_text


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file, an interrupted run leaves the old one."""
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=False))


def print_summary(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"VBench scores ({results['profile']} profile, {results['protocol']['mode']} videos)")
    table.add_column("dimension")
    table.add_column("score", justify="right")
    table.add_column("how")
    for name in results["dimensions"]:
        if name in results["aggregate"]:
            how = "native" if name in results["native"] else "vbench package"
            excluded = sum(name in record["excluded"] for record in results["videos"].values())
            how += f" ({excluded} video(s) excluded by its rule)" if excluded else ""
            table.add_row(name, f"{results['aggregate'][name]:.4f}", how)
        elif name in results["unavailable"]:
            table.add_row(name, "n/a", f"unavailable: {results['unavailable'][name]}")
        else:
            table.add_row(name, "error", results["dimension_errors"].get(name, "not scored"))
    console.print(table)
    final = results["final"]
    if "refused" in final:
        console.print(f"[bold]Final score:[/bold] not computed: {final['refused']}")
    else:
        parts = [
            f"{k.capitalize()} {final[k]:.4f}" if final[k] is not None else f"{k.capitalize()} n/a"
            for k in ("quality", "semantic", "total")
        ]
        console.print("[bold]Final score:[/bold] " + ", ".join(parts))
        if final["note"]:
            console.print(f"  {final['note']}")
    failed = results["failed_videos"]
    per_dim = {(v, d): e for v, rec in results["videos"].items() for d, e in rec["errors"].items()}
    if failed or per_dim:
        console.print(
            f"[bold red]{len(failed)} video(s) failed[/bold red], {len(per_dim)} per-dimension error(s):"
        )
        for name, reason in failed.items():
            console.print(f"  {name}: {reason}")
        for (name, dim), reason in per_dim.items():
            console.print(f"  {name} [{dim}]: {reason}")
