"""Two ranks (torchrun, gloo, CPU) train what one rank trains on the same global batch, under
either `distributed.strategy`: FSDP2 (sharded models, reduce-scattered gradients) and DDP (whole
models, all-reduced gradients).

Samples: `TrainingData.indices` gives rank r of n the clips ((step * acc + micro) * n + r) * batch + j,
so 2 ranks x batch 1 and 1 rank x batch 2 see the same clips each step (tested below).

Noise: `Context.micro_generator(step, micro)` keys a micro-batch's draws (noise, timesteps, text
dropout, rollout noise) by its global index in the step, micro * world_size + rank, so 2 ranks x
batch 1 draw what 1 rank x 2 accumulated micro-batches of 1 draws. (Not the exit step: one per
rollout, shared by the ranks' simultaneous rollouts; the test fixes it at the last step.) (Batch 2 vs 2 x 1 would also need one
generator per sample: `rollout`, `draw_flow_matching`, `dmd_timesteps` and the text dropout take one
generator per batch.) The test compares 2 ranks x batch 1 with 1 rank x 2 micro-batches of 1: the
same clips, the same draws, the same averaged gradient (loss / acc summed locally vs the all-reduce
mean), for AR teacher forcing and for DMD with the foresight loss (generator, critic, predictor and
its replay step) and the generator's EMA. What remains is float rounding of the different thread
counts and reduction orders.

Under FSDP2 a run also resumes bit-identically: the full state that rank 0 wrote is split again
across the ranks (modules, AdamW states, the EMA's slices, each rank's own replay pairs).

This file is also the worker torchrun starts (`python -m tests.test_distributed RUNS STRATEGY NAME [RESUMED]`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import cast

import pytest
import torch
import yaml
from torch.distributed.tensor import DTensor
from torch.utils._pytree import tree_flatten

from mirai_train.checkpoint import Provenance, save_checkpoint
from mirai_train.data import TrainingData
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import build_codec
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.parallel import (
    clip_gradients,
    full_tensors,
    is_sharded,
    load_model_state,
    load_optimizer_state,
    model_state,
    optimizer_state,
    shaped_like,
    shard,
)
from mirai_train.recipe import load_recipe
from mirai_train.spec import GeneratorSpec
from mirai_train.stages.base import Context, adamw
from mirai_train.trainer import STATE, fit
from tests.training_recipes import GENERATOR, TEACHER, write_recipes

REPO = Path(__file__).parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
NAMES = ("ar", "dmd_mirai")
STRATEGIES = ("fsdp", "ddp")
RESUMED = "dmd_mirai_resumed"  # dmd_mirai under FSDP2, stopped after step 1 (a generator step) and resumed
STEPS = 2  # dmd_mirai (dfake_gen_update_ratio 2): a generator step, then a replay step; critic on both
GRADIENT_RTOL = 1e-4  # per tensor, in norm; measured <= 1e-5 (1 vs 2 threads, local sums vs all-reduce)
# The critic's last gradient (step 2) is taken at weights that carry Adam's amplified rounding of
# step 1 (below): measured 1.8e-3 between 1 and 2 threads of one process.
CRITIC_GRADIENT_RTOL = 1e-2
WEIGHT_ATOL = 0.1  # in units of lr, for all but a few entries per tensor
# Adam's first update is lr * sign(gradient): an entry whose step-1 gradient is at the rounding floor
# moves by lr one way or the other. Measured: 2 of the critic's 73,728 patch-embedding entries, 1.8 lr
# apart, between 1 and 2 threads of one process. A missing all-reduce moves most entries by ~lr.
WEIGHT_OUTLIERS = 1e-3  # the share of a tensor's entries allowed past WEIGHT_ATOL
WEIGHT_OUTLIER_ATOL = 4.0  # in units of lr: two updates of at most about lr / sqrt(1 - beta2**2) each


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random init and teacher checkpoints; recipes for 2 ranks x batch 1 (per strategy) and 1 rank x 2 micro-batches."""
    runs = tmp_path_factory.mktemp("runs")
    for name, raw, seed in (("ode_init", GENERATOR, 1), ("teacher", TEACHER, 2)):
        spec = GeneratorSpec.model_validate(raw)
        torch.manual_seed(seed)
        model = CausalWanTransformer(**spec.transformer_kwargs())
        save_checkpoint(
            runs / name / "generator", spec, model.state_dict(), provenance=Provenance(source="random")
        )
    for layout, accumulation in (*((strategy, 1) for strategy in STRATEGIES), ("one_rank", 2)):
        (runs / layout).mkdir()
        recipes = write_recipes(
            runs / layout, max_steps=STEPS, strategy=layout if layout in STRATEGIES else "fsdp",
            batch_size=1, gradient_accumulation_steps=accumulation, ema_weight=0.5,
        )  # fmt: skip
        # The exit step is drawn per rollout and shared by the ranks' simultaneous rollouts (so that
        # FSDP2's collectives line up): 2 ranks x 1 micro-batch draw once where 1 rank x 2 draws twice.
        # Fixed at the last step here, so that the two layouts train the same thing.
        for name in ("dmd", "dmd_mirai"):
            body = yaml.safe_load(recipes[name].read_text())
            body["dmd"]["last_step_only"] = True
            recipes[name].write_text(yaml.safe_dump(body))
    return runs


def launch(runs: Path, *worker: str) -> subprocess.Popen[str]:
    """torchrun with this module as the worker: 2 CPU processes, gloo, rendezvous on 127.0.0.1."""
    command = [
        str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "tests.test_distributed", str(runs), *worker,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 600) -> str:
    """The launch's output; past the timeout, SIGTERM to torchrun's agent, which stops its workers."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.terminate()
        return f"timed out after {timeout} s\n" + process.communicate(timeout=60)[0]


@pytest.fixture(scope="module")
def two_ranks(runs: Path) -> Path:
    """Each (strategy, recipe) under its own torchrun launch, all side by side, and the resumed FSDP2 run."""
    began = time.perf_counter()
    workers = [(strategy, name) for strategy in STRATEGIES for name in NAMES] + [
        ("fsdp", "dmd_mirai", RESUMED)
    ]
    launches = [launch(runs, *worker) for worker in workers]
    outputs = [finish(process) for process in launches]
    for process, output in zip(launches, outputs, strict=True):
        assert process.returncode == 0, output
    print(f"torchrun, 2 ranks, {len(workers)} launches: {time.perf_counter() - began:.1f} s")
    return runs


def test_module_entry_point_for_torchrun() -> None:
    """`torchrun -m mirai_train fit ...` runs `python -m mirai_train`, the `mirai-train` command."""
    done = subprocess.run(
        [sys.executable, "-m", "mirai_train", "fit", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: mirai-train fit" in done.stdout


def test_ranks_split_the_single_rank_batch(tmp_path: Path) -> None:
    """Per step, ranks' clips (batch 1 each) are the one-rank batch of 2 and the one-rank 2 x 1 micro-batches."""
    recipe = load_recipe(write_recipes(tmp_path)["ar"])
    spec = recipe.generator
    codec, text = build_codec(spec.codec), build_text_encoder(spec.text_encoder)

    def data(batch: int, accumulation: int, rank: int, world: int) -> TrainingData:
        return TrainingData(
            recipe.data, spec.video, codec, text, batch_size=batch, accumulation=accumulation, rank=rank,
            world_size=world,
        )  # fmt: skip

    ranks = [data(1, 1, rank, 2) for rank in range(2)]
    one_batch, micro_batches = data(2, 1, 0, 1), data(1, 2, 0, 1)
    for step in range(12):  # past the 16 clips: cycling keeps the correspondence
        shared = [i for rank in ranks for i in rank.indices(step, 0)]
        assert shared == one_batch.indices(step, 0)
        assert shared == [i for micro in range(2) for i in micro_batches.indices(step, micro)]
        assert len(set(shared)) == 2


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", NAMES)
def test_two_ranks_train_what_one_rank_trains(runs: Path, two_ranks: Path, name: str, strategy: str) -> None:
    """The last averaged gradient of every module agrees to float rounding; the weights to Adam's amplification of it.

    beta1 is 0 in these recipes, so AdamW's `exp_avg` is the last (averaged, clipped) gradient. Adam
    divides by |gradient|: an entry whose gradient is at the rounding floor can move by a fraction of
    `lr` either way, hence the weights' tolerance in units of `lr` (with a few outliers allowed), and
    the critic's looser gradient tolerance (its last gradient is taken at such weights). A missing or wrong all-reduce
    gives rank 0's own gradient, off by about its own size, and weights off by about `lr`. The EMA
    (weight 0.5) of such weights is within the same tolerance.
    """
    if not (runs / "one_rank" / name / STATE).exists():
        fit(runs / "one_rank" / f"{name}.yaml", runs / "one_rank" / name, runs=runs, progress=False)
    one = torch.load(runs / "one_rank" / name / STATE, weights_only=False)
    two = torch.load(two_ranks / strategy / name / STATE, weights_only=False)
    assert one["step"] == two["step"] == STEPS
    assert set(one["modules"]) == set(two["modules"]) == set(one["optimizers"])
    for module in one["optimizers"]:
        ours, reference = two["optimizers"][module]["state"], one["optimizers"][module]["state"]
        assert ours.keys() == reference.keys()
        tolerance = CRITIC_GRADIENT_RTOL if module == "critic" else GRADIENT_RTOL
        for index, state in reference.items():
            gradient = state["exp_avg"]
            error = (ours[index]["exp_avg"] - gradient).norm() / gradient.norm().clamp_min(1e-30)
            assert error <= tolerance, f"{module} parameter {index}: relative gradient error {error:.1e}"
    lr = load_recipe(runs / "one_rank" / f"{name}.yaml").optim.lr
    for module, weights in [*one["modules"].items(), ("ema", one["ema"])]:
        ours = two["modules"][module] if module != "ema" else two["ema"]
        assert ours.keys() == weights.keys()
        for key, value in weights.items():
            error = (ours[key] - value).abs() / lr
            outliers = (error > WEIGHT_ATOL).float().mean().item()
            assert outliers <= WEIGHT_OUTLIERS, (
                f"{module}.{key}: {outliers:.1e} of entries off by > {WEIGHT_ATOL} lr"
            )
            assert error.max() <= WEIGHT_OUTLIER_ATOL, f"{module}.{key}: off by {error.max():.2f} lr"


def test_fsdp_resume_is_bit_identical(two_ranks: Path) -> None:
    """Two FSDP2 ranks: a step, a stop, a step equal two steps straight (replay pairs, EMA and AdamW too)."""
    straight = torch.load(two_ranks / "fsdp" / "dmd_mirai" / STATE, weights_only=False)
    resumed = torch.load(two_ranks / "fsdp" / RESUMED / STATE, weights_only=False)
    assert straight["step"] == resumed["step"] == STEPS
    assert len(resumed["extra"]) == 2  # each rank's own replay pairs
    for section in ("modules", "optimizers"):
        for module, state in straight[section].items():
            flat, ours = tree_flatten(state)[0], tree_flatten(resumed[section][module])[0]
            assert len(flat) == len(ours)
            for a, b in zip(flat, ours, strict=True):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, f"{section}.{module}"
    for key, value in straight["ema"].items():
        assert torch.equal(value, resumed["ema"][key]), f"ema.{key}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_recipe_strategy_decides_what_is_sharded(
    one_rank_group: None, tmp_path: Path, strategy: str
) -> None:
    """Under torchrun (world size > 1) `fsdp` shards every block and then the root; `ddp` and one process keep models whole."""
    recipe = load_recipe(write_recipes(tmp_path, strategy=strategy)["ar"])
    data = cast(TrainingData, None)  # not used by `parallel`
    spec = GeneratorSpec.model_validate(GENERATOR)
    for world_size in (1, 2):
        ctx = Context(recipe, tmp_path, tmp_path, data, torch.device("cpu"), rank=0, world_size=world_size)
        model = ctx.parallel(CausalWanTransformer(**spec.transformer_kwargs()))
        sharded = strategy == "fsdp" and world_size > 1
        assert [is_sharded(m) for m in (model, *model.blocks)] == [sharded] * (1 + len(model.blocks))
        assert all(isinstance(p, DTensor) == sharded for p in model.parameters())


def test_sharded_state_round_trips_and_clips_to_the_global_norm(one_rank_group: None, tmp_path: Path) -> None:
    """FSDP2's code paths in one gloo process: a step, clipping, full state dicts out and back in, the EMA's slices.

    The sharded model follows the whole one exactly (one rank: its slice is everything); the
    optimiser state comes out in `Optimizer.state_dict()`'s layout, so `state.pt` is strategy-free.
    """
    recipe = load_recipe(write_recipes(tmp_path)["ar"])
    spec = GeneratorSpec.model_validate(GENERATOR)
    whole = CausalWanTransformer(**spec.transformer_kwargs())
    sharded = shard(deepcopy(whole), torch.device("cpu"))
    assert model_state(sharded).keys() == whole.state_dict().keys()
    optimizers = {id(m): adamw(m.parameters(), 1e-3, recipe) for m in (whole, sharded)}
    latents, text = torch.randn(1, 768, 6, 2, 2), torch.randn(1, 8, 16)
    norms = []
    for model in (whole, sharded):
        flow = model(latents, torch.tensor([500.0]), text).sample
        flow.square().mean().backward()
        norms.append(clip_gradients(model, 1e-3))  # far below the norm: clipping acts
        optimizers[id(model)].step()
    torch.testing.assert_close(norms[1], norms[0], rtol=1e-6, atol=0)
    assert float(norms[0]) > 1e-3
    full = model_state(sharded)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(full[key], value, rtol=1e-6, atol=1e-9, msg=key)
    saved = optimizer_state(sharded, optimizers[id(sharded)])
    reference = optimizers[id(whole)].state_dict()
    assert saved["param_groups"] == reference["param_groups"]
    assert saved["state"].keys() == reference["state"].keys()
    for index, state in reference["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(saved["state"][index][key], value, rtol=1e-6, atol=1e-9)

    again = shard(CausalWanTransformer(**spec.transformer_kwargs()), torch.device("cpu"))
    optimizer = adamw(again.parameters(), 1e-3, recipe)
    load_model_state(again, full)
    load_optimizer_state(again, optimizer, saved)
    assert all(torch.equal(value, full[key]) for key, value in model_state(again).items())
    for index, state in optimizer_state(again, optimizer)["state"].items():
        assert all(torch.equal(value, saved["state"][index][key]) for key, value in state.items())
    slices = shaped_like(full, again.state_dict())  # how a resumed EMA gets its slices
    assert all(isinstance(value, DTensor) for value in slices.values())
    assert all(torch.equal(value, full[key]) for key, value in full_tensors(slices).items())


def main(runs: Path, strategy: str, name: str, out: str | None = None) -> None:
    """The torchrun worker: every rank trains the named two-rank recipe (rank 0 writes the state).

    With `out`, into that run directory, stopping after one step and resuming in the same processes.
    """
    recipe = runs / strategy / f"{name}.yaml"
    if out is not None:
        fit(recipe, runs / strategy / out, runs=runs, progress=False, max_steps=1)
    fit(recipe, runs / strategy / (out or name), runs=runs, progress=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
