"""Configuration errors name the file, the line and the field, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirai_train.config_files import ConfigError, load_model
from mirai_train.spec import GeneratorSpec

CONFIGS = Path(__file__).parents[1] / "mirai_train" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/generator_*.yaml")), ids=lambda p: p.stem)
def test_shipped_generator_configs_validate(path: Path) -> None:
    spec = load_model(path, GeneratorSpec)
    assert spec.transformer.num_frame_per_block in (1, 3)


def test_each_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "transformer:\n  num_layers: four\n  num_heads: 2\ncodec:\n  kind: jpeg\ntext_encoder:\n  kind: toy\n"
    )
    with pytest.raises(ConfigError) as info:
        load_model(bad, GeneratorSpec)
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith(f"{bad}:2: transformer.num_layers:") for p in problems)
    assert f"{bad}:3: transformer.num_heads: unknown key (check the spelling)" in problems
    assert any(p.startswith(f"{bad}:5: codec.kind:") for p in problems)


def test_sections_missing_files_and_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_model(tmp_path / "none.yaml", GeneratorSpec)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:1: a: not valid YAML"):
        load_model(broken, GeneratorSpec)
    # An unclosed bracket is noticed at the next key; the message points at the bracket's line and field.
    broken.write_text("name: t\nhorizons:\n  5s: {seconds: 5, prompts: p\n  30s: {seconds: 30}\nmodels: []\n")
    with pytest.raises(
        ConfigError, match=r"broken.yaml:3: horizons.5s: not valid YAML: while parsing a flow mapping"
    ):
        load_model(broken, GeneratorSpec)
    broken.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:1: the file is empty"):
        load_model(broken, GeneratorSpec)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "stage: dmd\ngenerator:\n  transformer: {}\n  codec: {kind: pixel}\n  text_encoder: {kind: toy}\n  extra: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_model(recipe, GeneratorSpec, section="generator")
    assert info.value.problems == [f"{recipe}:6: generator.extra: unknown key (check the spelling)"]
    with pytest.raises(ConfigError, match="no top-level 'teacher:' section"):
        load_model(recipe, GeneratorSpec, section="teacher")
