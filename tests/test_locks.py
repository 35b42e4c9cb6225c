"""Toy outputs too slow for CI to regenerate (pipeline/lock.py): the committed ones are current, and
a lock catches stale rows, tables, reports and upstream inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mirai_eval.fidelity import render_markdown
from mirai_eval.pipeline.lock import check_lock, paths, write_lock, write_report_lock
from mirai_eval.pipeline.run import write_rows
from mirai_eval.tables.rows import ScoreRow

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "tables" / "generated"
LOCKS = sorted(GENERATED.rglob("*.lock.json"))
CHAIN = ROOT / "mirai_train" / "configs" / "toy" / "chain.yaml"


@pytest.mark.parametrize("lock", LOCKS, ids=[str(p.relative_to(GENERATED)) for p in LOCKS])
def test_committed_locked_tables_are_current(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the manifest's paths are relative to the repository root
    assert check_lock(lock.relative_to(ROOT)) == []


def test_what_ci_does_not_regenerate_is_locked() -> None:
    """`nox -s tables` (CI) regenerates every toy manifest but noxfile.LOCKED; each of those, and the
    fidelity report of both toy chains, is committed with a lock the default suite checks."""
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    manifests = {json.loads(lock.read_text()).get("manifest") for lock in LOCKS} - {None}
    assert manifests == set(noxfile.LOCKED)
    report = GENERATED / "toy_fidelity" / "fidelity.lock.json"
    assert report in LOCKS
    assert set(json.loads(report.read_text())["upstream"]["chains"]) == set(noxfile.TOY_CHAINS)


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
    assert check_lock(lock) == [f"{lock}: chains changed since it was computed; " + _fix(manifest, folder)]
    manifest.write_text(manifest.read_text().replace("limit: 2", "limit: 3"))
    assert any("manifest changed" in s for s in check_lock(lock))


def _fix(manifest: Path, folder: Path) -> str:
    return (
        f"run `mirai-eval run --manifest {manifest}` then `mirai-eval lock --manifest {manifest} --out {folder}`"
        ' (README, "Committed toy tables", names the nox session that does both)'
    )


def test_a_fidelity_report_lock_catches_edits_and_new_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "toy_fidelity"
    (folder / "grids").mkdir(parents=True)
    rows = [
        {"label": "real clips", "kind": "real", "window": "5s", "role": None, "grid": None, "unavailable": None,
         "measures": {"visible": 0.7, "visible_of_real": 1.0}, "misses": None},
        {"label": "chain/teacher", "kind": "teacher", "window": "5s", "role": "teacher", "unavailable": None,
         "grid": "grids/01-chain-teacher-5s.png", "measures": {"visible": 0.1, "visible_of_real": 0.14},
         "misses": ["visible_of_real 0.140 < 0.85"]},
    ]  # fmt: skip
    document = {"prompts": ["p"], "seed": 0, "steps": 4, "rows": rows}
    (folder / "fidelity.json").write_text(json.dumps(document))
    (folder / "fidelity.md").write_text(render_markdown(document))
    grid = folder / rows[1]["grid"]
    grid.write_bytes(b"png")
    options = {"num": 1, "steps": 4, "seed": 0, "device": "cpu"}
    lock = write_report_lock(folder, [str(CHAIN)], options)
    assert lock == folder / "fidelity.lock.json" and check_lock(lock) == []
    grid.write_bytes(b"another png")
    markdown = folder / "fidelity.md"
    markdown.write_text(markdown.read_text().replace("0.140", "0.900"))
    stale = check_lock(lock)
    assert [s.split(":")[0] for s in stale] == [str(grid), str(markdown)]
    assert stale[0].endswith(
        f"run `mirai-eval fidelity --chain={CHAIN} --out {folder} --device cpu --num 1 --seed 0 --steps 4`"
        " (it writes the lock)"
    )
    write_report_lock(folder, [str(CHAIN)], options)
    locked = json.loads(lock.read_text())
    locked["upstream"]["fidelity_code"] = "0" * 64  # measured by other code
    lock.write_text(json.dumps(locked))
    assert [s.split(";")[0] for s in check_lock(lock)] == [
        f"{lock}: fidelity_code changed since it was computed",
        f"{markdown}: differs from the report its measures render",
    ]
