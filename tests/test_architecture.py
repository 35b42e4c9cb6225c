"""The import arrows point one way: mirai_eval stands on mirai_train, never the reverse; no module
imports itself back through others; the trainer stands on the stages, which stand on
`stages/base.py`; a manifest is read without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mirai_train.cli import app as train_app

ROOT = Path(__file__).parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included); for `from a
    import b`, both `a` and `a.b` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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


def test_no_import_cycle() -> None:
    files = {
        module_name(p): p for package in ("mirai_eval", "mirai_train") for p in (ROOT / package).rglob("*.py")
    }
    graph = {name: sorted(imported_modules(path) & files.keys() - {name}) for name, path in files.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name not in done:
            for imported in graph[name]:
                visit(imported, [*path, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_a_manifest_is_read_without_torch() -> None:
    """`mirai-eval validate` starts fast: the manifest's models import no torch, pandas or PyAV."""
    code = "import sys, mirai_eval.manifest; print(sorted({'torch', 'pandas', 'av'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
