"""Read YAML/JSON configuration into pydantic models, with errors that point at file:line and field.

Recipes, generator specs and manifests all go through `load_model`, so a mistyped key or a wrong
type is reported the same way everywhere: one line per problem, before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """The base of every configuration model (recipes, specs, manifests, tables, probes): an unknown
    key is an error naming it, and a loaded configuration cannot change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """One or more problems in a configuration file; the message lists each as file:line: field: what."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path, self.problems = str(path), problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def _lines(node: yaml.Node, prefix: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Record the line of every key (and list item) under `node`."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*prefix, key.value)] = key.start_mark.line + 1
            _lines(value, (*prefix, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[(*prefix, index)] = item.start_mark.line + 1
            _lines(item, (*prefix, index), out)


def read_yaml(path: Path | str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The parsed document and the line of every key path (JSON is YAML too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, [f"{path}: file not found"])
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(path, [_syntax_problem(path, text, error)]) from error
    if data is None:
        raise ConfigError(path, [f"{path}:1: the file is empty; it should hold a YAML mapping of settings"])
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def _syntax_problem(path: Path, text: str, error: yaml.YAMLError) -> str:
    """'file:line: field: what', at the line where the broken construct starts (an unclosed bracket
    is found by the parser only at a later key, where it says 'expected , or }')."""
    problem = str(getattr(error, "problem", None) or error)
    mark = getattr(error, "context_mark", None) or getattr(error, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML: {problem}"
    line = mark.line + 1
    context = getattr(error, "context", None)
    found = getattr(error, "problem_mark", None)
    detail = problem
    if context is not None and found is not None:
        detail = f"{context} (opened here), {problem} at line {found.line + 1}"
    field = _field_at(text.splitlines(), mark.line)
    return f"{path}:{line}: {field + ': ' if field else ''}not valid YAML: {detail}"


def _field_at(lines: list[str], index: int) -> str:
    """The dotted key path of block-style line `index`, from the keys of less indented lines above it."""
    keys: list[str] = []
    indent = None
    for text in reversed(lines[: index + 1]):
        stripped = text.lstrip(" -")
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        depth = len(text) - len(stripped)
        if indent is None or depth < indent:
            keys.append(stripped.split(":", 1)[0].strip())
            indent = depth
        if depth == 0:
            break
    return ".".join(reversed(keys))


def describe(
    error: ValidationError, path: Path | str, lines: dict[tuple[Any, ...], int], prefix: tuple[Any, ...] = ()
) -> list[str]:
    """One 'file:line: field: message' per pydantic error, at the deepest key the file has."""
    problems = []
    for item in error.errors():
        loc = (*prefix, *item["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
        field = ".".join(str(part) for part in loc) or "(top level)"
        message = "unknown key (check the spelling)" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{path}:{line}: {field}: {message}")
    return problems


def load_model(
    path: Path | str, model: type[Model], section: str | None = None, substitute: dict[str, Any] | None = None
) -> Model:
    """Validate the file (or one top-level `section` of it) as `model`; `substitute` replaces top-level keys."""
    data, lines = read_yaml(path)
    if substitute and isinstance(data, dict):
        data = {**data, **substitute}
    prefix: tuple[Any, ...] = ()
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise ConfigError(path, [f"{path}:1: no top-level '{section}:' section"])
        data, prefix = data[section], (section,)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(path, describe(error, path, lines, prefix)) from error
