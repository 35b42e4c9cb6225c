"""Every stage trains, resumes bit-identically, and exports the generator alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import Tensor

from mirai_train.checkpoint import load_checkpoint, read_metadata
from mirai_train.data import TrainingData
from mirai_train.trainer import GENERATOR, STATE, fit, train_chain
from tests.training_recipes import write_recipes

ORDER = ["teacher", "ode_init", "ar", "causal_ode", "dmd", "dmd_mirai"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole chain, two steps a stage."""
    runs = tmp_path_factory.mktemp("runs")
    recipes = write_recipes(runs)
    for name in ORDER:
        fit(recipes[name], runs / name, runs=runs, progress=False)
    return runs


@pytest.mark.parametrize("name", ORDER)
def test_every_stage_trains_and_exports(chain: Path, name: str) -> None:
    _, model = load_checkpoint(chain / name / GENERATOR)
    assert (chain / name / "log.jsonl").read_text().count("\n") >= 1
    initial = torch.load(chain / name / STATE, weights_only=False)
    assert initial["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_export_drops_critic_and_predictor(chain: Path) -> None:
    state = torch.load(chain / "dmd_mirai" / STATE, weights_only=False)
    assert set(state["modules"]) == {"generator", "critic", "predictor"}
    exported = chain / "dmd_mirai" / GENERATOR
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json",
        "generator.safetensors",
        "metadata.json",
    ]
    weights = load_file(exported / "generator.safetensors")
    assert weights.keys() == state["modules"]["generator"].keys()
    assert all(torch.equal(weights[k], v) for k, v in state["modules"]["generator"].items())
    notes = read_metadata(exported).provenance.notes
    assert notes == ["dropped at export: critic, predictor"]


@pytest.mark.parametrize("name", ["ar", "dmd_mirai"])
def test_resume_is_bit_identical(chain: Path, tmp_path: Path, name: str) -> None:
    """Four steps straight equal two steps, a stop, and two more (replay buffer and all)."""
    recipes = write_recipes(tmp_path, max_steps=4)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(recipes[name], straight, runs=chain, progress=False)
    fit(recipes[name], resumed, runs=chain, progress=False, max_steps=3)
    assert not (resumed / GENERATOR).exists()
    fit(recipes[name], resumed, runs=chain, progress=False)
    a = torch.load(straight / STATE, weights_only=False)
    b = torch.load(resumed / STATE, weights_only=False)
    for module in a["modules"]:
        for key, value in a["modules"][module].items():
            assert torch.equal(value, b["modules"][module][key]), f"{module}.{key}"


def test_chain_skips_finished_runs_and_stops_at_until(chain: Path, tmp_path: Path) -> None:
    recipes = write_recipes(tmp_path)
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text("runs:\n" + "".join(f"  {name}: {recipes[name].name}\n" for name in ORDER))
    before = {name: (chain / name / STATE).stat().st_mtime_ns for name in ORDER}
    done = train_chain(chain_file, chain, until="ar")
    assert list(done) == ["teacher", "ode_init", "ar"]
    assert all((chain / name / STATE).stat().st_mtime_ns == before[name] for name in ORDER)
    with pytest.raises(ValueError, match="no run named 'nope'"):
        train_chain(chain_file, chain, until="nope")


def test_chain_trains_a_replicate_beside_the_run(chain: Path, tmp_path: Path) -> None:
    """Replicate 1 of the last run: its own directory and seeds, the same prerequisites (not retrained)."""
    recipes = write_recipes(tmp_path)
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text("runs:\n" + "".join(f"  {name}: {recipes[name].name}\n" for name in ORDER))
    before = {name: (chain / name / STATE).stat().st_mtime_ns for name in ORDER}
    done = train_chain(chain_file, chain, until="dmd_mirai", replicate=1)
    assert list(done) == [*ORDER[:-1], "dmd_mirai-replicate1"]
    assert all((chain / name / STATE).stat().st_mtime_ns == before[name] for name in ORDER)
    trained = yaml.safe_load((chain / "dmd_mirai-replicate1" / "recipe.yaml").read_text())
    written = yaml.safe_load(recipes["dmd_mirai"].read_text())
    assert trained["optim"]["seed"] == written["optim"].get("seed", 0) + 1
    original = load_file(chain / "dmd_mirai" / GENERATOR / "generator.safetensors")
    replica = load_file(done["dmd_mirai-replicate1"] / "generator.safetensors")
    assert any(not torch.equal(original[k], replica[k]) for k in original)
    with pytest.raises(ValueError, match="name it with `until`"):
        train_chain(chain_file, chain, replicate=1)


def _with(recipe: Path, out: Path, **sections: dict[str, object]) -> Path:
    """A copy of `recipe` with top-level sections replaced (e.g. precision, log_every)."""
    body = yaml.safe_load(recipe.read_text())
    body.update(sections)
    out.write_text(yaml.safe_dump(body))
    return out


@pytest.mark.parametrize("name", ["teacher", "dmd_mirai"])
def test_gradient_checkpointing_changes_no_gradient(
    chain: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recomputing every block in the backward trains every module bit for bit as without it."""
    from mirai_train.models import causal_wan

    recipe = write_recipes(tmp_path)[name]
    checkpointed = _with(recipe, tmp_path / "ckpt.yaml", precision={"gradient_checkpointing": True})
    fit(recipe, tmp_path / "plain", runs=chain, progress=False)
    calls = []
    original = causal_wan.checkpoint
    monkeypatch.setattr(causal_wan, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    fit(checkpointed, tmp_path / "ckpt", runs=chain, progress=False)
    assert calls, "no block was checkpointed"
    a = torch.load(tmp_path / "plain" / STATE, weights_only=False)
    b = torch.load(tmp_path / "ckpt" / STATE, weights_only=False)
    for module in a["modules"]:
        for key, value in a["modules"][module].items():
            assert torch.equal(value, b["modules"][module][key]), f"{module}.{key}"


def test_bf16_mixed_precision_tracks_float32(tmp_path: Path) -> None:
    """bf16 autocast trains the teacher with float32 master weights, and its losses stay within a
    few percent of float32 training's, step by step (they are not equal: bf16 really computes)."""
    recipe = write_recipes(tmp_path, max_steps=12)["teacher"]
    losses = {}
    for mixed in (False, True):
        path = _with(recipe, tmp_path / f"{mixed}.yaml", precision={"mixed_precision": mixed}, log_every=1)
        fit(path, tmp_path / str(mixed), runs=tmp_path, progress=False)
        lines = (tmp_path / str(mixed) / "log.jsonl").read_text().splitlines()
        losses[mixed] = torch.tensor([json.loads(line)["loss"] for line in lines])
        state = torch.load(tmp_path / str(mixed) / STATE, weights_only=False)
        assert all(v.dtype == torch.float32 for v in state["modules"]["generator"].values())
    full, mixed_losses = losses[False], losses[True]
    assert len(full) == 12 and torch.isfinite(mixed_losses).all()
    assert not torch.equal(full, mixed_losses)
    assert ((mixed_losses - full).abs() / full).max() < 0.05, (full, mixed_losses)


def test_the_exit_step_is_drawn_for_every_rollout(
    chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator step of 4 micro-batches rolls out 4 times for the generator and 4 for the critic,
    each rollout with its own exit step (the release's per-rollout draw), reproducibly."""
    from mirai_train.stages import dmd

    recipe = write_recipes(tmp_path, max_steps=1, batch_size=1, gradient_accumulation_steps=4)["dmd"]
    original, seen = dmd.rollout, []

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["exit_step"])
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dmd, "rollout", recording)
    fit(recipe, tmp_path / "a", runs=chain, progress=False)
    first, seen[:] = list(seen), []
    fit(recipe, tmp_path / "b", runs=chain, progress=False)
    assert len(first) == 8 and first == seen
    assert len(set(first)) > 1, first
    logged = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[0])
    assert logged["exit_step"] == pytest.approx(sum(first[:4]) / 4)


def test_causal_ode_is_teacher_forced_on_the_clean_clip(
    chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Causal-Forcing stage 2 (get_causal_ode_data_*.py, model/ode_regression.py): the pool keeps the
    student's steps, the teacher's end and the clean clip the teacher was forced on. On a hand-built
    pool (state k holds the value k, the clean clip 7) the student sees one of its steps for the whole
    clip, the clean clip as context, and regresses on the teacher's end."""
    from mirai_train.models.causal_wan import CausalWanTransformer
    from mirai_train.models.codecs import build_codec
    from mirai_train.models.text_encoders import build_text_encoder
    from mirai_train.recipe import load_recipe
    from mirai_train.sampling import FlowMatchSchedule, denoising_steps

    path = write_recipes(tmp_path, max_steps=2)["causal_ode"]
    fit(path, tmp_path / "sampled", runs=chain, progress=False, max_steps=1)
    pool = torch.load(tmp_path / "sampled" / "trajectories-rank0.pt")
    recipe = load_recipe(path)
    spec = recipe.generator
    data = TrainingData(
        recipe.data, spec.video, build_codec(spec.codec), build_text_encoder(spec.text_encoder),
        batch_size=1, accumulation=1,
    )  # fmt: skip
    steps = denoising_steps(spec.sampler)
    assert pool["states"].shape[:2] == (2, len(steps) + 2)
    assert torch.equal(pool["states"][:, -1], data.clean_latents([0, 1]).half())
    assert pool["prompts"] == [data.prompt(0), data.prompt(1)]

    states = torch.empty_like(pool["states"])
    for k in range(len(steps) + 1):
        states[:, k] = k
    states[:, -1] = 7
    (tmp_path / "built").mkdir()
    torch.save({**pool, "states": states}, tmp_path / "built" / "trajectories-rank0.pt")
    original, calls = CausalWanTransformer.forward, []

    def recording(self: CausalWanTransformer, x: Tensor, t: Tensor, text: Tensor, **kwargs: Any) -> Any:
        out = original(self, x, t, text, **kwargs)
        calls.append((x.detach(), t, kwargs.get("clean_context"), out.sample.detach()))
        return out

    monkeypatch.setattr(CausalWanTransformer, "forward", recording)
    fit(path, tmp_path / "built", runs=chain, progress=False)
    assert len(calls) == 2
    for noisy, timestep, context, _ in calls:
        level = int(noisy.flatten()[0])
        assert 0 <= level < len(steps) and torch.equal(noisy, torch.full_like(noisy, level))
        assert torch.allclose(timestep, torch.full_like(timestep, steps[level]))
        assert context is not None and torch.equal(context, torch.full_like(context, 7))
    noisy, timestep, _, flow = calls[0]
    x0 = FlowMatchSchedule(spec.sampler.timestep_shift).flow_to_x0(flow, noisy, timestep)
    logged = json.loads((tmp_path / "built" / "log.jsonl").read_text().splitlines()[0])
    assert logged["loss"] == pytest.approx(float(((x0 - len(steps)) ** 2).mean()), rel=1e-5)


def test_tensorboard_holds_every_logged_scalar_and_learning_rate(chain: Path) -> None:
    """`RUN/tensorboard` has each log.jsonl value at its step, and every optimiser's learning rate."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = chain / "dmd_mirai"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged and "predictor_grad_norm" in {key for line in logged for key in line}
    for line in logged:
        for key, value in line.items():
            if key != "step":
                (scalar,) = [e for e in events.Scalars(f"train/{key}") if e.step == line["step"]]
                assert scalar.value == pytest.approx(value, rel=1e-6), key
    optimizers = torch.load(run / STATE, weights_only=False)["optimizers"]
    assert set(optimizers) == {"generator", "critic", "predictor"}
    for name in optimizers:
        assert [e.value for e in events.Scalars(f"lr/{name}")] == pytest.approx([1e-3] * len(logged))


def _with_eval(path: Path, **spec: Any) -> Path:
    body = yaml.safe_load(path.read_text())
    body["save_every"] = 100  # saves only where an evaluation (or the end) needs one
    body["eval"] = {"every": 2, "evaluator": "counting", "dimensions": ["x"], **spec}
    evaluated = path.with_name(f"{path.stem}_eval.yaml")
    evaluated.write_text(yaml.safe_dump(body))
    return evaluated


def test_in_training_evaluation_is_logged_once_and_changes_no_weight(
    chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval:` every 2 of 4 steps: evaluated at 2 and 4 from the generator as exported there; a run
    stopped at 2 and resumed evaluates only 4; the weights are those of a run without evaluation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import mirai_train.evaluation as evaluation

    calls: list[int] = []

    def counting(checkpoint: Path, spec: Any, device: str) -> dict[str, float]:
        step = read_metadata(checkpoint).provenance.step
        calls.append(step)
        torch.rand(3)  # an evaluator that draws from the global generator must not move training's
        return {"x@5s": float(step)}

    monkeypatch.setattr(evaluation, "load_evaluator", lambda name: counting)
    recipes = write_recipes(tmp_path, max_steps=4)
    plain, straight, resumed = tmp_path / "plain", tmp_path / "straight", tmp_path / "resumed"
    fit(recipes["dmd_mirai"], plain, runs=chain, progress=False)
    fit(_with_eval(recipes["dmd_mirai"]), straight, runs=chain, progress=False)
    assert calls == [2, 4]
    fit(_with_eval(recipes["dmd_mirai"]), resumed, runs=chain, progress=False, max_steps=2)
    fit(_with_eval(recipes["dmd_mirai"]), resumed, runs=chain, progress=False)
    assert calls == [2, 4, 2, 4]  # the resumed run read step 2 back
    for run in (straight, resumed):
        a = torch.load(plain / STATE, weights_only=False)["modules"]
        b = torch.load(run / STATE, weights_only=False)["modules"]
        assert all(torch.equal(v, b[m][k]) for m in a for k, v in a[m].items())
        logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert [(line["step"], line["eval/x@5s"]) for line in logged if "eval/x@5s" in line] == [
            (2, 2.0),
            (4, 4.0),
        ]
        assert sorted(p.name for p in (run / "eval").glob("step-*.json")) == ["step-2.json", "step-4.json"]
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("eval/x@5s")] == [(2, 2.0), (4, 4.0)]


def test_mirai_evals_evaluator_scores_as_the_scoring_loop(chain: Path) -> None:
    """The entry point mirai-eval registers gives `score_video`'s values on the videos `Generator` makes."""
    from mirai_eval.generate import Generator
    from mirai_eval.scoring.longvideo import Protocol
    from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
    from mirai_eval.scoring.runner import score_video
    from mirai_eval.training_eval import prompts_of
    from mirai_train.evaluation import load_evaluator
    from mirai_train.recipe import EvalSpec
    from mirai_train.video import Video

    spec = EvalSpec(every=1, dimensions=["luminance", "temporal_flickering"], seconds=[1.0], num_prompts=2)
    results = load_evaluator("mirai-eval")(chain / "dmd" / GENERATOR, spec, "cpu")
    generator = Generator.load(chain / "dmd" / GENERATOR)
    loaded = load_dimensions("toy", spec.dimensions, ScoringOptions())

    values: dict[str, list[float]] = {"luminance": [], "temporal_flickering": []}
    for i, prompt in enumerate(prompts_of(spec)):
        video = Video("v.mp4", generator.generate(prompt, 1.0, i), 16.0)
        for name, outcome in score_video(video, prompt, loaded, spec.dimensions, Protocol()).items():
            assert outcome.score is not None
            values[name].append(outcome.score.value)
    assert results == {f"{n}@1s": pytest.approx(sum(v) / 2) for n, v in values.items()}
    with pytest.raises(ValueError, match=r"eval\.evaluator: no evaluator 'nope'"):
        load_evaluator("nope")
    with pytest.raises(ValueError, match=r"eval\.dimensions: color cannot be scored inside training"):
        load_evaluator("mirai-eval")(
            chain / "dmd" / GENERATOR, EvalSpec(every=1, dimensions=["color"], profile="vbench"), "cpu"
        )
