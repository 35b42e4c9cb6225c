"""Manifest errors: one file:line: field message per problem, and nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mirai_eval.cli import app
from mirai_eval.manifest import RollingSinkOverrides, SamplerOverrides, load_manifest
from mirai_eval.pipeline.plan import build_plan
from mirai_eval.pipeline.score import scoring_blockers
from mirai_eval.scoring.dimensions import STATIC_FILTER_VBENCH_ONLY
from mirai_train.config_files import ConfigError
from mirai_train.spec import RollingSinkSpec, SamplerSpec

ROOT = Path(__file__).parents[1]
SHARED = Path("/work/shared/data/prompts")
GOOD = """\
name: t
scale: toy
store: store
out: out
scoring: {{profile: toy}}
prompt_sets:
  p: {{path: prompts.txt, sha256: {sha}}}
horizons:
  5s: {{seconds: 1, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering]}}
models:
  - {{label: A, group: g, checkpoint: ck}}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_overrides_cover_every_spec_field() -> None:
    assert set(SamplerOverrides.model_fields) == set(SamplerSpec.model_fields)
    assert set(RollingSinkOverrides.model_fields) == set(RollingSinkSpec.model_fields)


def test_generation_runs_in_bf16_on_cuda_unless_the_manifest_says_otherwise(tmp_path: Path) -> None:
    sha = "a" * 64
    generation = load_manifest(write(tmp_path, GOOD.format(sha=sha))).manifest.generation
    assert (generation.batch_size, generation.torch_dtype()) == (1, "float32")
    cuda = GOOD.format(sha=sha).replace("scoring:", "generation: {device: cuda, batch_size: 4}\nscoring:")
    assert load_manifest(write(tmp_path, cuda)).manifest.generation.torch_dtype() == "bfloat16"
    pinned = cuda.replace("batch_size: 4", "dtype: float32")
    assert load_manifest(write(tmp_path, pinned)).manifest.generation.torch_dtype() == "float32"


def test_schema_problems_each_with_line_and_field(tmp_path: Path) -> None:
    bad = (
        GOOD.format(sha="ab" * 32)
        .replace("scale: toy", "scale: toy\ncolour: red")
        .replace("samples_per_prompt: 2", "samples_per_prompt: two")
    )
    bad = bad.replace("sha256: " + "ab" * 32, "sha256: abc")
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert f"{path}:3: colour: unknown key (check the spelling)" in problems
    assert any(p.startswith(f"{path}:8: prompt_sets.p.sha256:") and "pattern" in p for p in problems)
    assert any(p.startswith(f"{path}:10: horizons.5s.samples_per_prompt:") for p in problems)


def test_references_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = GOOD.format(sha="ab" * 32).replace("prompts: p,", "prompts: q,")
    text = text.replace("[temporal_flickering]", "[temporal_flicker]")
    text += "  - {label: B, group: h, baseline: A, checkpoint: ck}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    problems = info.value.problems
    assert any(":9: horizons.5s.prompts: no prompt set 'q'" in p for p in problems)
    assert any(":9: horizons.5s.dimensions.0: unknown dimension 'temporal_flicker'" in p for p in problems)
    assert any(":12: models.1.group: 'h' differs from its baseline's group 'g'" in p for p in problems)
    assert len(problems) == 3
    # A wrong sha256 and a missing file are file problems, one line each, found before any job runs.
    path = write(
        tmp_path,
        GOOD.format(sha="ab" * 32).replace(
            "sha256:", "extended: none.txt, extended_sha256: " + "cd" * 32 + ", sha256:"
        ),
    )
    with pytest.raises(ConfigError) as info:
        build_plan(load_manifest(path))
    assert len(info.value.problems) == 2
    assert "has sha256" in info.value.problems[0] and "not abab" in info.value.problems[0]
    assert "none.txt not found" in info.value.problems[1]


def test_scoring_options_the_loop_cannot_honour_are_refused(tmp_path: Path) -> None:
    """What `mirai-eval score` refuses, a manifest refuses too: VBench's static filter in the toy
    profile, delegated dimensions under the clips protocol."""
    text = GOOD.format(sha="ab" * 32).replace(
        "scoring: {profile: toy}", "scoring: {profile: toy, static_filter: true}"
    )
    with pytest.raises(ConfigError) as info:
        load_manifest(write(tmp_path, text))
    assert info.value.problems == [
        f"{tmp_path / 'm.yaml'}:5: scoring.static_filter: {STATIC_FILTER_VBENCH_ONLY}"
    ]
    text = GOOD.format(sha="ab" * 32).replace("scoring: {profile: toy}", "scoring: {profile: vbench}")
    text = text.replace(
        "dimensions: [temporal_flickering]}", "dimensions: [temporal_flickering, color], protocol: clips}"
    )
    with pytest.raises(ConfigError) as info:
        load_manifest(write(tmp_path, text))
    assert info.value.problems == [
        f"{tmp_path / 'm.yaml'}:9: horizons.5s.protocol: the clips protocol scores pieces natively; the "
        "delegated dimensions (color) need 'whole': put them in another horizon"
    ]


def test_cli_refuses_a_broken_manifest_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD.format(sha="ab" * 32))
    result = CliRunner().invoke(app, ["run", "--manifest", str(path)])
    assert result.exit_code == 2
    assert "prompt_sets.p.sha256" in result.output
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["table1.yaml", "table1_same_budget.yaml", "ablation_window.yaml"])
def test_wan_manifests_dry_run_without_weights(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the VBench and MovieGen prompt files) is not on this machine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts").symlink_to(SHARED)
    monkeypatch.chdir(tmp_path)
    plan = build_plan(load_manifest(ROOT / "manifests" / name))
    per_model = plan.samples("5s")  # (prompt, sample, seed) of each video a model makes
    assert len(per_model) == 946 * 5
    assert len({seed for _, _, seed in per_model}) == 946 * 5
    assert per_model[7][1:] == (2, 0 + 1 * 5 + 2)
    assert per_model[0][0].text == "In a still frame, a stop sign"
    assert per_model[0][0].generate.startswith("A still frame showing a classic octagonal stop sign")
    assert plan.blockers and not plan.jobs  # no checkpoints here: no video has a key, a run would refuse
    result = CliRunner().invoke(app, ["run", "--manifest", str(ROOT / "manifests" / name), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "946 x 5" in result.output
    if name.startswith("table1"):
        assert "128 x 1" in result.output


@pytest.mark.parametrize("path", sorted((ROOT / "manifests" / "toy").glob("*.yaml")), ids=lambda p: p.stem)
def test_toy_manifests_plan(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    plan = build_plan(load_manifest(path))
    assert all(plan.samples(name) for name in plan.manifest.horizons)
    assert all(m.entry.train is not None for m in plan.models.values())


def test_probe_section_names_model_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy quick start probes its pair; a probe naming unknown labels is refused, with the line."""
    monkeypatch.chdir(ROOT)
    path = ROOT / "manifests" / "toy" / "quickstart.yaml"
    assert load_manifest(path).manifest.probe is not None
    head, probe = path.read_text().split("\nprobe:\n")
    broken = tmp_path / "quickstart.yaml"
    broken.write_text(head + "\nprobe:\n" + probe.replace("Self-Forcing (chunk-wise)", "Nobody"))
    with pytest.raises(ConfigError) as info:
        load_manifest(broken)
    problems = [p.split(":", 2)[2] for p in info.value.problems]
    assert " probe.models.0.model: 'Nobody' is not a model label of this manifest" in [
        p.split(";")[0] for p in problems
    ]


def test_probed_models_share_their_replicate_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planning-gap manifest probes replicate k of every probed model together, so their counts agree."""
    monkeypatch.chdir(ROOT)
    path = ROOT / "manifests" / "toy" / "planning_gap.yaml"
    assert load_manifest(path).manifest.probe is not None
    text = path.read_text()
    line = "run: dmd_sf_chunkwise_mirai, replicates: 3}"
    assert line in text
    broken = tmp_path / "planning_gap.yaml"
    broken.write_text(text.replace(line, line.replace("3", "2")))
    with pytest.raises(ConfigError) as info:
        load_manifest(broken)
    assert any(
        "probe.models: the probed models are trained as different numbers of replicates" in p
        and "'Self-Forcing (chunk-wise) + Video-Mirai': 2" in p
        for p in info.value.problems
    )


def test_vbench_prompts_need_the_full_info_file_before_any_work(tmp_path: Path) -> None:
    """VBench's standard protocol scores each dimension on its own prompts, listed in VBench_full_info.json."""
    text = (ROOT / "manifests" / "table1.yaml").read_text()
    missing = tmp_path / "no_full_info.yaml"
    missing.write_text(text.replace("  full_info: data/prompts/vbench_full_info.json\n", ""))
    broken = tmp_path / "broken_full_info.yaml"
    (tmp_path / "info.json").write_text('[{"prompt": 1}]')
    broken.write_text(text.replace("data/prompts/vbench_full_info.json", str(tmp_path / "info.json")))
    blockers = scoring_blockers(load_manifest(missing).manifest)
    assert any(b.startswith("scoring.full_info: a vbench_standard prompt set needs") for b in blockers)
    blockers = scoring_blockers(load_manifest(broken).manifest)
    assert any("is not a readable VBench_full_info.json ('prompt_en')" in b for b in blockers)


@pytest.mark.parametrize("damage", ["truncated", "forged"])
def test_validate_checks_checkpoints_before_anything_starts(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated weight file or a metadata.json whose content hash was edited: `validate` and `run`
    exit 2 with one line naming the file, before any video is made."""
    import hashlib
    import json

    from mirai_train.checkpoint import METADATA, WEIGHTS, Provenance, save_checkpoint
    from tests.test_checkpoint import tiny_spec, tiny_weights

    monkeypatch.chdir(tmp_path)
    spec = tiny_spec()
    save_checkpoint(tmp_path / "ck", spec, tiny_weights(spec), provenance=Provenance(source="test"))
    if damage == "truncated":
        data = (tmp_path / "ck" / WEIGHTS).read_bytes()
        (tmp_path / "ck" / WEIGHTS).write_bytes(data[:100])
        expected = f"{tmp_path / 'ck' / WEIGHTS}: sha256"
    else:
        meta = json.loads((tmp_path / "ck" / METADATA).read_text())
        meta["content_sha256"] = hashlib.sha256(b"another checkpoint").hexdigest()
        (tmp_path / "ck" / METADATA).write_text(json.dumps(meta))
        expected = f"{tmp_path / 'ck' / METADATA}: content_sha256"
    prompts_sha = hashlib.sha256(b"a red circle\na blue square\n").hexdigest()
    path = write(tmp_path, GOOD.format(sha=prompts_sha))
    for command in (["validate"], ["run"]):
        result = CliRunner().invoke(app, [*command, "--manifest", str(path)])
        assert result.exit_code == 2, result.output
        assert "models.0.checkpoint" in result.output and expected in result.output.replace("\n", "")
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()


def test_the_two_table1_manifests_differ_only_in_their_checkpoints() -> None:
    """The paper's comparison (released baselines) and the same-budget controls: the same rows,
    prompts, horizons and scoring; the baselines come from the releases or from the recipes."""
    paper = load_manifest(ROOT / "manifests" / "table1.yaml").manifest
    controls = load_manifest(ROOT / "manifests" / "table1_same_budget.yaml").manifest
    assert [m.label for m in paper.models] == [m.label for m in controls.models]
    for field in ("prompt_sets", "horizons", "scoring", "generation"):
        assert getattr(paper, field) == getattr(controls, field), field
    recipes = {p.stem for p in (ROOT / "mirai_train" / "configs" / "wan").glob("dmd_*.yaml")}
    for model in controls.models:
        assert model.checkpoint is not None and model.checkpoint.name == "generator"
        assert model.checkpoint.parent.name in recipes
    methods = [m for m in controls.models if m.baseline is not None]
    for method in methods:
        baseline = controls.model(method.baseline or "")
        assert method.checkpoint is not None and baseline.checkpoint is not None
        assert method.checkpoint.parent.name.startswith(baseline.checkpoint.parent.name + "_mirai")
