"""Sessions: tests (default suite), slow, lint, typecheck, tables, locked_tables, planning_gap, report;
vbench and bench_score.

The project's sessions run in the environment nox itself runs from, the one the README makes
(`.venv`, with `pip install -e ".[dev]"`): a torch environment is about 6 GB, and one each for
tests, typecheck and tables filled a CI machine's disk. vbench and bench_score keep their own
environments because vbench 0.1.5 pins transformers 4.33 and numpy<2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"
PROJECT = Path(__file__).resolve().parent
project_session = nox.session(venv_backend="none")


def _project_python(session: nox.Session) -> str:
    """nox's own interpreter, once it is known to have this checkout installed (editable, with dev)."""
    import importlib.util

    spec = importlib.util.find_spec("mirai_eval")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin is None or PROJECT not in origin.parents or importlib.util.find_spec("pytest") is None:
        session.error(
            f"{sys.executable} does not have this checkout installed with its dev tools "
            f"(mirai_eval found at {origin}); run nox from the project's environment: "
            f'python3.11 -m venv .venv, .venv/bin/pip install -e ".[dev]", then .venv/bin/nox -s {session.name}'
        )
    return sys.executable


def _live_env() -> dict[str, str]:
    """This environment, with rich told to draw its progress bars as on a terminal: the long toy
    sessions write them into log files, which `tail -f` then shows moving."""
    return dict(os.environ, TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")


@project_session
def tests(session: nox.Session) -> None:
    """The default suite (about 15 minutes at most on 2 cores); pytest's exit 5 (no tests) fails."""
    session.run(_project_python(session), "-m", "pytest", *session.posargs)


@project_session
def slow(session: nox.Session) -> None:
    """Tests marked slow: whole toy training chains, long rollouts."""
    session.run(_project_python(session), "-m", "pytest", "-m", "slow", *session.posargs)


@project_session
def lint(session: nox.Session) -> None:
    python = _project_python(session)
    session.run(python, "-m", "ruff", "check", ".")
    session.run(python, "-m", "ruff", "format", "--check", ".")


@project_session
def typecheck(session: nox.Session) -> None:
    session.run(_project_python(session), "-m", "mypy")


VBENCH_PINS = ("torch==2.14.1", "torchvision==0.29.1", "vbench==0.1.5", "setuptools<81")


@nox.session(python=PYTHON)
def vbench(session: nox.Session) -> None:
    """Parity of our native dimensions with the vbench package (own venv: it pins transformers 4.33)."""
    from pathlib import Path

    session.install(*VBENCH_PINS, "pytest>=8")
    # Our package without its dependencies: vbench's pins (transformers, numpy<2) must win.
    session.install("--no-deps", "-e", ".")
    session.install("typer>=0.12", "rich>=13", "pydantic>=2.6", "pyyaml>=6", "av>=12")
    # vbench reads tokenizer files from its cache at import; keep the tests' copy out of the user's cache.
    session.env["VBENCH_CACHE_DIR"] = str(Path(session.virtualenv.location) / "vbench-cache")
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-o",
        "python_files=parity_*.py",
        "tests/vbench_parity",
        *session.posargs,
    )


@nox.session(name="bench_score", python=PYTHON)
def bench_score(session: nox.Session) -> None:
    """benchmarks/score.py: our scoring time against the vbench package's and against the floor."""
    session.install(*VBENCH_PINS)
    session.install("--no-deps", "-e", ".")
    # What our scoring imports besides vbench's pins (rich also prints the ratio table).
    session.install("typer>=0.12", "rich>=13", "pydantic>=2.6", "pyyaml>=6", "av>=12")
    session.run("python", "benchmarks/score.py", *session.posargs)


TOY_CHAINS = ("mirai_train/configs/toy/chain.yaml", "mirai_train/configs/toy/quickstart_chain.yaml")
# Toy outputs too slow for CI to regenerate (the full toy chain alone trains for most of an hour on
# one core): committed with their score rows and a lock of what the rows were computed from, which the
# default suite checks (tests/test_locks.py), so a stale table fails CI all the same. `nox -s
# locked_tables` regenerates Table 1, the window ablation and the fidelity report of both toy chains;
# `nox -s planning_gap` the planning gap.
PLANNING_GAP = "manifests/toy/planning_gap.yaml"
LOCKED = ("manifests/toy/ablation_window.yaml", "manifests/toy/table1.yaml", PLANNING_GAP)
FIDELITY = "tables/generated/toy_fidelity"
# Written by `nox -s tables` beside the tables: the machine they were computed on.
MACHINE_FILE = "toy_machine.txt"
MACHINE_HEADER = (
    "# The machine that computed the toy tables in this folder (written by `nox -s tables`). Toy\n"
    '# numbers reproduce byte for byte only on machines of this kind (README, "The toy tables and\n'
    '# the machine").\n'
)


def _chains(manifest: str) -> frozenset[str]:
    """The toy chains a manifest's models are trained by (`train.chain`)."""
    import yaml

    models = yaml.safe_load(Path(manifest).read_text()).get("models", [])
    return frozenset(str(m["train"]["chain"]) for m in models if isinstance(m.get("train"), dict))


def _committed_machine() -> str:
    """The kind of machine `tables/generated/toy_machine.txt` says made the toy tables."""
    machine = Path("tables/generated") / MACHINE_FILE
    return machine.read_text().splitlines()[-1] if machine.exists() else "not recorded"


def _side_by_side(
    session: nox.Session, lanes: dict[str, list[list[str]]], logs: Path = Path("runs/tables-logs")
) -> None:
    """Run each lane's `mirai-eval` commands one after the other, the lanes side by side (toy runs use
    one torch thread each, and the store takes concurrent writers); a lane stops at its first failure.
    Each lane's output, progress bars included, goes to `logs`/<lane>.log (`tail -f`)."""
    import subprocess
    import threading

    command = [_project_python(session), "-m", "mirai_eval"]
    logs.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    def lane(name: str, steps: list[list[str]]) -> None:
        log = logs / f"{name}.log"
        for arguments in steps:
            session.log(f"mirai-eval {' '.join(arguments)}  (output: {log})")
            with log.open("a") as out:
                done = subprocess.run(
                    [*command, *arguments], stdout=out, stderr=subprocess.STDOUT, env=_live_env(), check=False
                )
            if done.returncode:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                failures.append(
                    f"mirai-eval {' '.join(arguments)} exited {done.returncode}; {log} ends:\n{tail}"
                )
                return

    threads = [threading.Thread(target=lane, args=item) for item in lanes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        session.error("\n".join(failures))


@project_session
def tables(session: nox.Session) -> None:
    """Regenerate the toy tables CI regenerates from nothing (every manifests/toy/*.yaml with `tables:`
    that is not LOCKED: the quick start) and fail when the committed tables differ.

    `mirai-eval run` resumes from the store (only missing videos and scores are computed) and writes
    the score rows; `mirai-eval render` renders each manifest's `tables:` from those rows. Pass
    manifests as arguments to regenerate only some. Toy runs use one torch thread whatever the
    environment says (`generation.threads`), so the tables come out bit for bit on any machine of
    the kind that made them; `tables/generated/toy_machine.txt` names that kind (the CPU and the
    kernels torch picks for it), and a failure here names this machine's beside it. Manifests that
    train different chains run side by side, those sharing a chain one after the other.
    """
    manifests = session.posargs or [
        str(path)
        for path in sorted(Path("manifests/toy").glob("*.yaml"))
        if "\ntables:" in path.read_text() and str(path) not in LOCKED
    ]
    if not manifests:
        session.error("no manifests/toy/*.yaml with `tables:`; nothing to regenerate")
    lanes: dict[frozenset[str], list[list[str]]] = {}
    for manifest in manifests:
        lanes.setdefault(_chains(manifest), []).extend(
            [["run", "--manifest", manifest], ["render", "--manifest", manifest, "--out", "tables/generated"]]
        )
    _side_by_side(session, {Path(steps[0][-1]).stem: steps for steps in lanes.values()})
    from mirai_eval.pipeline.run import cpu_kind  # nox runs in the project's environment (_project_python)

    machine = Path("tables/generated") / MACHINE_FILE
    committed = _committed_machine()
    here = cpu_kind()
    if not session.posargs:  # every table was computed here
        machine.write_text(MACHINE_HEADER + here + "\n")
    changed = session.run(
        "git",
        "status",
        "--porcelain",
        "--",
        "tables/generated",
        f":(exclude){machine}",
        external=True,
        silent=True,
    )
    if changed:
        session.error(
            f"the committed toy tables differ from the regenerated ones:\n{changed}commit tables/generated/ "
            f"(with {machine}).\nThe committed tables were computed on: {committed}\nthis machine is: {here}\n"
            "CPU kernels sum in an order that depends on the processor: toy tables reproduce byte for "
            'byte only on the kind of machine that made them (README, "The toy tables and the machine").'
        )


@project_session
def locked_tables(session: nox.Session) -> None:
    """Regenerate the locked toy tables but the planning gap (Table 1 and the window ablation, with
    their rows and locks: `mirai-eval lock`) and the fidelity report of both toy chains (with its lock);
    commit what changes in tables/generated/.

    The two manifests run side by side (one trains the full chain while the other waits on the
    chain's lock; both then generate and score), beside the quick start's run, which trains the quick
    chain for the report; the report follows. Everything resumes through the store. Output:
    runs/tables-logs/.
    """
    from mirai_eval.pipeline.run import cpu_kind  # nox runs in the project's environment (_project_python)

    here, committed = cpu_kind(), _committed_machine()
    if here != committed:
        session.warn(f"this machine ({here}) is not the kind the toy tables were made on ({committed})")
    locked = [m for m in LOCKED if m != PLANNING_GAP]
    lanes = {
        Path(m).stem: [["run", "--manifest", m], ["lock", "--manifest", m, "--out", "tables/generated"]]
        for m in locked
    }
    lanes["quickstart"] = [["run", "--manifest", "manifests/toy/quickstart.yaml"]]  # trains the quick chain
    _side_by_side(session, lanes)
    chains = [f"--chain={chain}" for chain in TOY_CHAINS]
    _side_by_side(session, {"fidelity": [["fidelity", *chains, "--out", FIDELITY]]})
    session.run("git", "status", "--short", "--", "tables/generated", external=True)


@project_session
def planning_gap(session: nox.Session) -> None:
    """Issue 17's answer: tables/generated/planning_gap.{md,tex}, its rows and its lock, from 3 training
    replicates of every arm of manifests/toy/planning_gap.yaml, and the readout probe over replicates
    (1 h 50 min measured on 2 cores from an empty store; less once `nox -s locked_tables` has trained
    the chain; README).

    Two shards run side by side (the first trains what is missing while the second waits on the
    chain's lock; both then generate and score their half), then one process aggregates, commits the
    table with its rows and lock (`mirai-eval lock`) and writes the HTML report.
    Everything resumes through the store: run it again after a kill. Output: runs/planning-gap-logs/.
    """
    python = _project_python(session)
    manifest = PLANNING_GAP
    run = ["run", "--manifest", manifest]
    shards = {f"shard-{shard}": [[*run, "--shard", f"{shard}/2"]] for shard in range(2)}
    _side_by_side(session, shards, logs=Path("runs/planning-gap-logs"))
    session.run(python, "-m", "mirai_eval", *run)
    session.run(python, "-m", "mirai_eval", "lock", "--manifest", manifest, "--out", "tables/generated")
    # The HTML report: the table, baseline and method videos side by side, the planning-gap drift curves
    # with bands over replicates and prompts, the probe over replicates (its plot, then each replicate's
    # readout images) (runs/toy_planning_gap/tables/report/index.html).
    probes = "runs/toy_planning_gap/probe"
    session.run(python, "-m", "mirai_eval", "render", "--manifest", manifest, "--report", "--probes", probes)


@project_session
def report(session: nox.Session) -> None:
    """The HTML report in headless Chromium (Debian's chromium, installed when missing; needs root).

    Keeps the screenshot at runs/report/screenshot.png.
    """
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "chromium", external=True)
    python = _project_python(session)
    screenshot = Path("runs/report/screenshot.png").resolve()
    session.run(
        python,
        "-m",
        "pytest",
        "tests/test_report.py",
        *session.posargs,
        env={"REPORT_SCREENSHOT": str(screenshot)},
    )
    session.log(f"screenshot: {screenshot}")
