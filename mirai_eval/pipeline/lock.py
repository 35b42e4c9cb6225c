"""Locked tables: committed tables that take too long for CI to regenerate, and how CI still catches
them stale.

`nox -s planning_gap` trains 27 models for hours; CI cannot. So such a manifest's tables are
committed with their score rows (`<stem>.rows.jsonl`) and a lock (`<stem>.lock.json`) of
everything upstream of those rows: the manifest without its `tables:` and `probe:` (models, prompts,
horizons, scoring), the digest of every training chain (recipes and training code), the generation code and
every scorer signature (scoring code and scoring weights). `check_lock` recomputes them, without
training or scoring anything, and renders the tables again from the committed rows: any change
upstream, in the rows or in the tables code shows as a named difference (tests/test_locks.py).
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


def check_lock(lock: Path) -> list[str]:
    """Why the tables a lock covers are stale (empty when they are current): each upstream input that
    changed, the rows file if edited, and each committed table that no longer renders from the rows."""
    from mirai_eval.tables.build import build_table, read_rows, scorer_summary
    from mirai_eval.tables.render import FORMATS, render, table_path

    document = json.loads(lock.read_text())
    manifest, folder = Path(document["manifest"]), lock.parent
    fix = f"run `nox -s planning_gap` (or `mirai-eval run --manifest {manifest}` then `mirai-eval lock`)"
    stale = []
    now = upstream(manifest)
    for key, locked in document["upstream"].items():
        if now.get(key) != locked:
            stale.append(f"{lock}: {key} changed since the rows were computed; {fix}")
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
