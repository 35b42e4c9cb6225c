"""The import arrows point one way: mirai_eval stands on mirai_train, never the reverse, and the
trainer stands on the stages, which stand on `stages/base.py`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mirai_train.cli import app as train_app

ROOT = Path(__file__).parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted((ROOT / "mirai_train").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_mirai_train_never_imports_mirai_eval(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m.split(".")[0] == "mirai_eval"}


def test_stages_do_not_import_the_trainer() -> None:
    for path in sorted((ROOT / "mirai_train" / "stages").glob("*.py")):
        assert "mirai_train.trainer" not in imported_modules(path), path.name


def test_mirai_train_fit_points_a_scorers_recipe_to_mirai_eval(tmp_path: Path) -> None:
    recipe = ROOT / "mirai_eval" / "scoring" / "toy_scorers.yaml"
    result = CliRunner().invoke(train_app, ["fit", "--config", str(recipe), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "mirai-eval train-scorers" in result.output
    assert not (tmp_path / "x").exists()
