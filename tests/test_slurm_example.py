"""examples/slurm/table1.sbatch: each array task runs its own shard under torchrun, the follow-up
job aggregates. Run with bash and stand-ins for torchrun and python that record their arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mirai_eval.pipeline.run import parse_shard

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "examples/slurm/table1.sbatch"


def launched(tmp_path: Path, **slurm: str) -> list[str]:
    """The command line the script execs, with SLURM's variables set as given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("torchrun", "python"):
        stand_in = bin_dir / name
        stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" {name} "$@" > "{tmp_path}/argv"\n')
        stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(ROOT), **slurm}
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True)
    return (tmp_path / "argv").read_text().splitlines()


@pytest.mark.parametrize(("first", "task", "shard"), [(0, 3, "3/8"), (1, 1, "0/8"), (1, 8, "7/8")])
def test_each_array_task_runs_its_shard_under_torchrun(
    tmp_path: Path, first: int, task: int, shard: str
) -> None:
    argv = launched(
        tmp_path,
        SLURM_ARRAY_TASK_ID=str(task),
        SLURM_ARRAY_TASK_MIN=str(first),
        SLURM_ARRAY_TASK_COUNT="8",
        SLURM_GPUS_ON_NODE="4",
    )
    assert argv[:4] == ["torchrun", "--standalone", "--nproc-per-node", "4"]
    assert argv[4:] == ["-m", "mirai_eval", "run", "--manifest", "manifests/table1.yaml", "--shard", shard]
    assert parse_shard(shard) == (int(shard.split("/")[0]), 8)
    assert (ROOT / argv[8]).is_file()


def test_the_follow_up_job_aggregates_without_a_shard(tmp_path: Path) -> None:
    argv = launched(tmp_path, MANIFEST="manifests/ablation_window.yaml")
    assert argv == ["python", "-m", "mirai_eval", "run", "--manifest", "manifests/ablation_window.yaml"]
