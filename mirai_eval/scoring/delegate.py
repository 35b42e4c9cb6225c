"""Dimensions computed by the vbench package in its own virtual environment, merged by video.

vbench 0.1.5 pins transformers 4.33 and numpy<2, so it cannot share our environment; we run
vbench_worker.py with that environment's Python and read back its per-video results.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("vbench_worker.py")
PYTHON_ENV = "MIRAI_VBENCH_PYTHON"


class DelegationError(RuntimeError):
    """The vbench environment is missing or its run failed; the message says which and how to fix it."""


def vbench_python(explicit: str | None = None) -> Path:
    """The vbench environment's interpreter: --vbench-python, $MIRAI_VBENCH_PYTHON, or nox's .nox/vbench."""
    options = [explicit, os.environ.get(PYTHON_ENV), str(Path.cwd() / ".nox" / "vbench" / "bin" / "python")]
    for option in options:
        if option and Path(option).is_file():
            return Path(option)
    raise DelegationError(
        "the vbench package's environment was not found (tried --vbench-python, "
        f"${PYTHON_ENV}, ./.nox/vbench/bin/python); create it with `nox -s vbench --install-only` "
        "or point --vbench-python at a Python that has vbench==0.1.5"
    )


@dataclass(frozen=True)
class DelegatedResult:
    aggregate: float
    per_video: dict[str, float]  # video file name -> vbench's per-video value


def run_vbench(
    videos: list[Path], dims: list[str], python: Path, device: str = "cpu", mode: str = "vbench_standard"
) -> dict[str, DelegatedResult]:
    """Evaluate `dims` with vbench on these videos only (linked into a folder of their own, so a
    video that already failed to decode cannot stop vbench); per-video values keyed by file name."""
    with tempfile.TemporaryDirectory(prefix="mirai-vbench-") as out:
        folder = Path(out) / "videos"
        folder.mkdir()
        for video in videos:
            (folder / video.name).symlink_to(video.resolve())
        command = [str(python), str(WORKER), "--videos", str(folder), "--out", out, "--dims", ",".join(dims)]
        command += ["--device", device, "--mode", mode]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        results_path = Path(out) / "delegated_eval_results.json"
        if done.returncode != 0 or not results_path.is_file():
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise DelegationError(f"vbench failed on {', '.join(dims)} (exit {done.returncode}):\n{tail}")
        raw = json.loads(results_path.read_text())
    return {
        dim: DelegatedResult(
            aggregate=float(value[0]),
            # vbench reports imaging quality per video on a 0-100 scale but aggregates it on 0-1.
            per_video={
                Path(v["video_path"]).name: float(v["video_results"])
                / (100.0 if dim == "imaging_quality" else 1.0)
                for v in value[1]
            },
        )
        for dim, value in raw.items()
    }
