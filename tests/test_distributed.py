"""Two ranks (torchrun, gloo, CPU) train what one rank trains on the same global batch.

Samples: `TrainingData.indices` gives rank r of n the clips ((step * acc + micro) * n + r) * batch + j,
so 2 ranks x batch 1 and 1 rank x batch 2 see the same clips each step (tested below).

Noise: `Context.micro_generator(step, micro)` keys a micro-batch's draws (noise, timesteps, text
dropout, rollout) by its global index in the step, micro * world_size + rank, so 2 ranks x batch 1
draw what 1 rank x 2 accumulated micro-batches of 1 draws. (Batch 2 vs 2 x 1 would also need one
generator per sample: `rollout`, `draw_flow_matching`, `dmd_timesteps` and the text dropout take one
generator per batch.) The test compares 2 ranks x batch 1 with 1 rank x 2 micro-batches of 1: the
same clips, the same draws, the same averaged gradient (loss / acc summed locally vs the all-reduce
mean), for AR teacher forcing and for DMD with the foresight loss (generator, critic, predictor and
its replay step). What remains is float rounding of the different thread counts and reduction orders.

This file is also the worker torchrun starts (`python -m tests.test_distributed RUNS NAME`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mirai_train.checkpoint import Provenance, save_checkpoint
from mirai_train.data import TrainingData
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import build_codec
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.recipe import load_recipe
from mirai_train.spec import GeneratorSpec
from mirai_train.trainer import STATE, fit
from tests.training_recipes import GENERATOR, TEACHER, write_recipes

REPO = Path(__file__).parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
NAMES = ("ar", "dmd_mirai")
STEPS = 2  # dmd_mirai (dfake_gen_update_ratio 2): a generator step, then a replay step; critic on both
GRADIENT_RTOL = 1e-4  # per tensor, in norm; measured <= 1e-5 (1 vs 2 threads, local sums vs all-reduce)
WEIGHT_ATOL = 0.1  # in units of lr; measured <= 0.03


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random init and teacher checkpoints; recipes for 2 ranks x batch 1 and 1 rank x 2 micro-batches."""
    runs = tmp_path_factory.mktemp("runs")
    for name, raw, seed in (("ode_init", GENERATOR, 1), ("teacher", TEACHER, 2)):
        spec = GeneratorSpec.model_validate(raw)
        torch.manual_seed(seed)
        model = CausalWanTransformer(**spec.transformer_kwargs())
        save_checkpoint(
            runs / name / "generator", spec, model.state_dict(), provenance=Provenance(source="random")
        )
    for layout, accumulation in (("two_ranks", 1), ("one_rank", 2)):
        (runs / layout).mkdir()
        write_recipes(runs / layout, max_steps=STEPS, batch_size=1, gradient_accumulation_steps=accumulation)
    return runs


def launch(runs: Path, name: str) -> subprocess.Popen[str]:
    """torchrun with this module as the worker: 2 CPU processes, gloo, rendezvous on 127.0.0.1."""
    command = [
        str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "tests.test_distributed", str(runs), name,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    """The launch's output; past the timeout, SIGTERM to torchrun's agent, which stops its workers."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.terminate()
        return f"timed out after {timeout} s\n" + process.communicate(timeout=60)[0]


@pytest.fixture(scope="module")
def two_ranks(runs: Path) -> Path:
    """Each recipe under its own torchrun launch, side by side.

    Not both in one launch: `trainer.distributed` creates and destroys the process group in every
    `fit`, and a second group in the same torchrun process may read the first one's stale
    rendezvous keys (gloo: "connectFullMesh failed ... Connection refused", or a hang).
    """
    began = time.perf_counter()
    launches = [launch(runs, name) for name in NAMES]
    outputs = [finish(process) for process in launches]
    for process, output in zip(launches, outputs, strict=True):
        assert process.returncode == 0, output
    print(f"torchrun, 2 ranks: {time.perf_counter() - began:.1f} s")
    return runs / "two_ranks"


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


@pytest.mark.parametrize("name", NAMES)
def test_two_ranks_train_what_one_rank_trains(runs: Path, two_ranks: Path, name: str) -> None:
    """The last averaged gradient of every module agrees to float rounding; the weights to Adam's amplification of it.

    beta1 is 0 in these recipes, so AdamW's `exp_avg` is the last (averaged, clipped) gradient. Adam
    divides by |gradient|: an entry whose gradient is at the rounding floor can move by a fraction of
    `lr` either way, hence the weights' tolerance in units of `lr`. A missing or wrong all-reduce
    gives rank 0's own gradient, off by about its own size, and weights off by about `lr`.
    """
    fit(runs / "one_rank" / f"{name}.yaml", runs / "one_rank" / name, runs=runs, progress=False)
    one = torch.load(runs / "one_rank" / name / STATE, weights_only=False)
    two = torch.load(two_ranks / name / STATE, weights_only=False)
    assert one["step"] == two["step"] == STEPS
    assert set(one["modules"]) == set(two["modules"]) == set(one["optimizers"])
    for module in one["optimizers"]:
        ours, reference = two["optimizers"][module]["state"], one["optimizers"][module]["state"]
        assert ours.keys() == reference.keys()
        for index, state in reference.items():
            gradient = state["exp_avg"]
            error = (ours[index]["exp_avg"] - gradient).norm() / gradient.norm().clamp_min(1e-30)
            assert error <= GRADIENT_RTOL, f"{module} parameter {index}: relative gradient error {error:.1e}"
    lr = load_recipe(runs / "one_rank" / f"{name}.yaml").optim.lr
    for module, weights in one["modules"].items():
        for key, value in weights.items():
            torch.testing.assert_close(
                two["modules"][module][key], value, rtol=0, atol=WEIGHT_ATOL * lr, msg=f"{module}.{key}"
            )


def main(runs: Path, name: str) -> None:
    """The torchrun worker: every rank trains the named two-rank recipe (rank 0 writes the state)."""
    fit(runs / "two_ranks" / f"{name}.yaml", runs / "two_ranks" / name, runs=runs, progress=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
