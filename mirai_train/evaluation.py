"""In-training evaluation: a recipe's `eval:` section, computed by an evaluator found by name.

An evaluator is a function `(checkpoint, spec, device) -> {name: value}` registered under the entry
point group `mirai_train.evaluators`; mirai-eval registers `mirai-eval` (pyproject.toml), so training
can score rollouts with the harness's own loop while mirai_train never imports mirai_eval. Each
result is kept as `RUN/eval/step-N.json`: a run resumed after a kill reads back the evaluations it
has instead of repeating them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from mirai_train.atomic import atomic_write_text
from mirai_train.recipe import EvalSpec

GROUP = "mirai_train.evaluators"
Evaluator = Callable[[Path, EvalSpec, str], dict[str, float]]


def load_evaluator(name: str) -> Evaluator:
    """The evaluator registered as `name`, or an error naming the recipe field and the fix."""
    found = {point.name: point for point in entry_points(group=GROUP)}
    if name not in found:
        raise ValueError(
            f"eval.evaluator: no evaluator {name!r} is installed (found: {sorted(found) or 'none'}); "
            "install the harness (`pip install -e .`), which registers `mirai-eval`"
        )
    evaluator: Evaluator = found[name].load()
    return evaluator


def result_path(run: Path, step: int) -> Path:
    return run / "eval" / f"step-{step}.json"


def evaluate(
    run: Path, step: int, spec: EvalSpec, device: str, export: Callable[[Path], Path]
) -> tuple[dict[str, float], bool]:
    """The evaluation after `step` steps and whether it was computed now (False: read back).

    `export(folder)` writes the generator as it is at this step; the folder is reused by every
    evaluation of the run, so only the latest export stays on disk.
    """
    path = result_path(run, step)
    if path.is_file():
        found: dict[str, float] = json.loads(path.read_text())
        return found, False
    checkpoint = export(run / "eval" / "generator")
    results = load_evaluator(spec.evaluator)(checkpoint, spec, device)
    atomic_write_text(path, json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results, True
