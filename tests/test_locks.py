"""Tables too slow for CI to regenerate (pipeline/lock.py): the committed ones are current, and a
lock catches stale rows, tables and upstream inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirai_eval.pipeline.lock import check_lock, paths, write_lock
from mirai_eval.pipeline.run import write_rows
from mirai_eval.tables.rows import ScoreRow

ROOT = Path(__file__).resolve().parents[1]
LOCKS = sorted((ROOT / "tables" / "generated").glob("*.lock.json"))
CHAIN = ROOT / "mirai_train" / "configs" / "toy" / "chain.yaml"


@pytest.mark.parametrize("lock", LOCKS, ids=[p.name for p in LOCKS])
def test_committed_locked_tables_are_current(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the manifest's paths are relative to the repository root
    assert check_lock(lock.relative_to(ROOT)) == []


def test_the_planning_gap_table_is_locked() -> None:
    """Its manifest is left out of `nox -s tables` (noxfile.LOCKED), so its lock is what CI checks."""
    assert [p.name for p in LOCKS] == ["planning_gap.lock.json"]


MANIFEST = f"""
name: locked
scale: toy
store: {{store}}
out: {{out}}
scoring: {{{{profile: toy}}}}
prompt_sets:
  p: {{{{path: {ROOT}/manifests/toy/prompts/sprites_heldout.txt,
        sha256: af6977b6b0e1a1497684f8a811e5b6e0d0eb9c7b71caa8704c3e05e768c167b7, limit: 2}}}}
horizons:
  30s: {{{{seconds: 30, prompts: p, samples_per_prompt: 1, dimensions: [subject_consistency]}}}}
models:
  - {{{{label: B, group: g, train: {{{{chain: {CHAIN}, run: dmd_cf_chunkwise, replicates: 2}}}}}}}}
  - {{{{label: M, group: g, baseline: B, train: {{{{chain: {CHAIN}, run: dmd_cf_chunkwise_mirai, replicates: 2}}}}}}}}
tables:
  - name: effects
    kind: effects
    title: Effects
    columns: [{{{{metric: subject_consistency, horizon: 30s}}}}]
    groups: [{{{{rows: [{{{{model: B}}}}, {{{{model: M, baseline: B}}}}]}}}}]
"""


def _locked(tmp_path: Path) -> tuple[Path, Path]:
    out, folder = tmp_path / "out", tmp_path / "generated"
    out.mkdir()
    folder.mkdir()
    manifest = tmp_path / "locked.yaml"
    manifest.write_text(MANIFEST.format(store=tmp_path / "store", out=out))
    rows = [
        ScoreRow(
            model=model,
            baseline=None if model == "B" else "B",
            group="g",
            horizon="30s",
            prompt=f"p{p}",
            prompt_index=p,
            sample=0,
            seed=p,
            dimension="subject_consistency",
            value=0.5 + 0.1 * p + 0.01 * k + (0.02 if model == "M" else 0.0),
            error=None,
            profile="toy",
            scorer="s",
            video=f"{model}{k}{p}",
            replicate=k,
        )
        for model in ("B", "M")
        for k in range(2)
        for p in range(2)
    ]
    write_rows(out, rows)
    write_lock(manifest, folder)
    return manifest, folder


def test_lock_catches_stale_tables_rows_and_inputs(tmp_path: Path) -> None:
    manifest, folder = _locked(tmp_path)
    lock, rows = paths(manifest, folder)
    assert check_lock(lock) == []
    table = folder / "effects.md"
    table.write_text(table.read_text().replace("Effects", "Edited"))
    assert [s.split(":")[0] for s in check_lock(lock)] == [str(table)]
    table.unlink()
    write_lock(manifest, folder)
    rows.write_text(rows.read_text().replace('"value": 0.5', '"value": 0.25', 1))
    stale = check_lock(lock)
    assert any(s.startswith(f"{rows}: not the rows") for s in stale)
    assert any("effects.md: differs" in s for s in stale)  # the new rows render another table
    write_lock(manifest, tmp_path / "generated")
    document = json.loads(lock.read_text())
    document["upstream"]["chains"][str(CHAIN)] = "0" * 64  # the chain was trained by other code
    lock.write_text(json.dumps(document))
    assert check_lock(lock) == [f"{lock}: chains changed since the rows were computed; " + _fix(manifest)]
    manifest.write_text(manifest.read_text().replace("limit: 2", "limit: 3"))
    assert any("manifest changed" in s for s in check_lock(lock))


def _fix(manifest: Path) -> str:
    return f"run `nox -s planning_gap` (or `mirai-eval run --manifest {manifest}` then `mirai-eval lock`)"
