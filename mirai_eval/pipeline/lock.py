"""Locked tables: committed toy outputs that take too long for CI to regenerate, and how CI still
catches them stale.

The full toy chain trains for most of an hour on one core and `nox -s planning_gap` trains 27
models for hours; CI cannot. So such a manifest's tables are committed with their score rows
(`<stem>.rows.jsonl`) and a lock (`<stem>.lock.json`) of everything upstream of those rows: the
manifest without its `tables:` and `probe:` (models, prompts, horizons, scoring), the digest of every
training chain (recipes and training code), the generation code and every scorer signature (scoring
code and scoring weights). `check_lock` recomputes them, without training or scoring anything, and
renders the tables again from the committed rows: any change upstream, in the rows or in the tables
code shows as a named difference (tests/test_locks.py).

A toy fidelity report (`mirai-eval fidelity`) is locked the same way from its own folder
(`fidelity.lock.json`): its chains' digests, the generation code, the report's code and options, and
the sha256 of its measures and grids; its markdown must render from its measures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mirai_eval.manifest import load_manifest
from mirai_eval.pipeline.plan import digest
from mirai_train.atomic import atomic_write_text
from mirai_train.checkpoint import file_sha256


def paths(manifest: Path, folder: Path) -> tuple[Path, Path]:
    """The lock file and the committed rows of a manifest, in the tables folder."""
    return folder / f"{manifest.stem}.lock.json", folder / f"{manifest.stem}.rows.jsonl"


def upstream(manifest: Path) -> dict[str, Any]:
    """What decides a manifest's score rows, computed without training or scoring."""
    from mirai_eval.generate import GENERATION_CODE
    from mirai_eval.pipeline.score import make_scorer
    from mirai_train.recipe import chain_digest

    spec = load_manifest(manifest).manifest
    chains = sorted({str(m.train.chain) for m in spec.models if m.train is not None})
    return {
        "manifest": digest(spec.model_dump(mode="json", exclude={"tables", "probe"})),
        "chains": {chain: chain_digest(chain) for chain in chains},
        "generation_code": GENERATION_CODE,
        "scorers": make_scorer(spec, "cpu").signatures,
    }


def write_lock(manifest: Path, folder: Path) -> list[Path]:
    """Copy the run's rows beside its rendered tables and lock them; the files written."""
    from mirai_eval.tables.build import read_rows
    from mirai_eval.tables.render import FORMATS, table_path, write_tables

    spec = load_manifest(manifest).manifest
    lock, rows = paths(manifest, folder)
    source = spec.out / "rows.jsonl"
    frame = read_rows(source)  # refuses a file from another version
    shutil.copyfile(source, rows)
    tables = write_tables(frame, spec.tables, spec.scale, folder)
    document = {
        "manifest": str(manifest),
        "rows": rows.name,
        "rows_sha256": file_sha256(rows),
        "upstream": upstream(manifest),
    }
    atomic_write_text(lock, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return [lock, rows, *(table_path(folder, t.spec.name, fmt) for t in tables for fmt in FORMATS)]


REPORT_LOCK = "fidelity.lock.json"


def report_upstream(chains: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """What decides a fidelity report of toy chains, computed without sampling anything."""
    from mirai_eval.fidelity import FIDELITY_CODE
    from mirai_eval.generate import GENERATION_CODE
    from mirai_train.recipe import chain_digest

    return {
        "chains": {chain: chain_digest(chain) for chain in chains},
        "generation_code": GENERATION_CODE,
        "fidelity_code": FIDELITY_CODE,
        "options": options,
    }


def report_files(folder: Path) -> list[str]:
    """A fidelity report's measures and the grids they name, relative to its folder."""
    document = json.loads((folder / "fidelity.json").read_text())
    return ["fidelity.json", *(row["grid"] for row in document["rows"] if row["grid"])]


def write_report_lock(folder: Path, chains: list[str], options: dict[str, Any]) -> Path:
    """Lock the fidelity report just written into `folder` (`mirai-eval fidelity` of `chains`)."""
    document = {
        "report": str(folder),
        "files": {name: file_sha256(folder / name) for name in report_files(folder)},
        "upstream": report_upstream(chains, options),
    }
    lock = folder / REPORT_LOCK
    atomic_write_text(lock, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return lock


def check_lock(lock: Path) -> list[str]:
    """Why the tables (or the fidelity report) a lock covers are stale, empty when they are current:
    each upstream input that changed, the rows file if edited, and each committed table that no longer
    renders from the rows."""
    from mirai_eval.tables.build import build_table, read_rows, scorer_summary
    from mirai_eval.tables.render import FORMATS, render, table_path

    document = json.loads(lock.read_text())
    if "report" in document:
        return _stale_report(lock, document)
    manifest, folder = Path(document["manifest"]), lock.parent
    fix = (
        f"run `mirai-eval run --manifest {manifest}` then `mirai-eval lock --manifest {manifest} --out "
        f'{folder}` (README, "Committed toy tables", names the nox session that does both)'
    )
    stale = _changed(lock, document["upstream"], upstream(manifest), fix)
    rows = folder / document["rows"]
    if file_sha256(rows) != document["rows_sha256"]:
        stale.append(f"{rows}: not the rows the lock was written with; {fix}")
    spec = load_manifest(manifest).manifest
    frame = read_rows(rows)
    signature = scorer_summary(frame)
    for table_spec in spec.tables:
        table = build_table(frame, table_spec, scale=spec.scale, scorer_signature=signature)
        for fmt in FORMATS:
            path = table_path(folder, table_spec.name, fmt)
            if not path.is_file() or path.read_text(encoding="utf-8") != render(table, fmt):
                stale.append(f"{path}: differs from the table the committed rows render; {fix}")
    return stale


def _changed(lock: Path, locked: dict[str, Any], now: dict[str, Any], fix: str) -> list[str]:
    return [
        f"{lock}: {key} changed since it was computed; {fix}" for key in locked if now.get(key) != locked[key]
    ]


def _stale_report(lock: Path, document: dict[str, Any]) -> list[str]:
    """A fidelity report's lock: upstream inputs, its measures and grids, and its markdown."""
    from mirai_eval.fidelity import render_markdown

    folder, locked = lock.parent, document["upstream"]
    options = locked["options"]
    chains = " ".join(f"--chain={chain}" for chain in locked["chains"])
    flags = " ".join(f"--{name} {value}" for name, value in options.items())
    fix = f"run `mirai-eval fidelity {chains} --out {folder} {flags}` (it writes the lock)"
    stale = _changed(lock, locked, report_upstream(list(locked["chains"]), options), fix)
    files = document["files"]
    for name in sorted(set(files) | set(report_files(folder))):
        path = folder / name
        if name not in files or not path.is_file() or file_sha256(path) != files[name]:
            stale.append(f"{path}: not the file the lock was written with; {fix}")
    markdown = folder / "fidelity.md"
    measures = json.loads((folder / "fidelity.json").read_text())
    if not markdown.is_file() or markdown.read_text(encoding="utf-8") != render_markdown(measures):
        stale.append(f"{markdown}: differs from the report its measures render; {fix}")
    return stale
