"""The training loop shared by every stage: steps, gradients across ranks, EMA, logs, resume, export.

A stage (mirai_train/stages/, given a `stages.base.Context`) owns its models, optimisers and what
one step does; the trainer owns everything around it. Randomness is drawn from generators seeded by (seed, step, rank), and
batches are a pure function of the step, so a resumed run continues bit-identically.

Ranks (torchrun) run the same step on disjoint data and average gradients. How models are spread
over ranks is the recipe's `distributed.strategy` (mirai_train/parallel.py): FSDP2 shards them and
reduce-scatters gradients at every backward; DDP keeps them whole and all-reduces gradients before
every optimiser step (DDP's semantics, written out so one step can hold several forwards). Either
way the clipping norm is the global one, and `state.pt` holds full state dicts written by rank 0.

Run directory:
    state.pt          everything needed to resume (all modules, optimisers, EMA, step)
    log.jsonl         one line per logged step
    tensorboard/      the same scalars, every optimiser's learning rate (`tensorboard --logdir RUN`)
    generator/        the exported generator checkpoint (predictor and critic dropped)
    eval/             with `eval:` in the recipe: step-N.json per evaluation, and the latest export
                      it scored (mirai_train/evaluation.py)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from mirai_train.atomic import atomic_write
from mirai_train.checkpoint import Parent, Provenance, save_checkpoint
from mirai_train.data import TrainingData
from mirai_train.evaluation import evaluate
from mirai_train.models.codecs import build_codec
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.parallel import (
    full_tensors,
    join_torchrun,
    load_model_state,
    load_optimizer_state,
    model_state,
    optimizer_state,
    shaped_like,
)
from mirai_train.recipe import EvalSpec, Recipe, load_chain, load_recipe, replicate_name
from mirai_train.recipe import replicate as replicate_recipe
from mirai_train.stages import STAGES
from mirai_train.stages.base import Context, Stage

STATE, LOG, BOARD, GENERATOR, RECIPE = "state.pt", "log.jsonl", "tensorboard", "generator", "recipe.yaml"


class EMA:
    """Exponential moving average of the generator, started at `ema_start_step` (Self-Forcing).

    Of a sharded generator it holds this rank's slices, gathered whole only when saved.
    """

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.shadow: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = {k: v.detach().float() for k, v in module.state_dict().items()}
        if self.shadow is None:
            self.shadow = {k: v.clone() for k, v in params.items()}
            return
        for key, value in params.items():
            self.shadow[key].mul_(self.weight).add_(value, alpha=1 - self.weight)


@contextmanager
def distributed(device: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device); under torchrun, in its process group (joined once per process, so
    a chain of fits in one process reuses it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = join_torchrun(device)
    yield (dist.get_rank() if world_size > 1 else 0), world_size, torch.device(device)


def build_stage(ctx: Context) -> Stage:
    return STAGES[ctx.recipe.stage](ctx)


def fit(
    recipe_path: Path | str,
    out_dir: Path | str,
    *,
    runs: Path | str = "runs",
    device: str = "cpu",
    max_steps: int | None = None,
    schedule_steps: int | None = None,
    replicate: int = 0,
    progress: bool = True,
) -> Path:
    """Train a recipe into `out_dir` (resuming it if a state is there); returns the exported generator.

    `schedule_steps` replaces the recipe's `optim.max_steps` (a chain's quick variant); `replicate`
    trains that training replicate of it (`recipe.replicate`: new noise and data seeds); `max_steps`
    stops early and leaves the run resumable, e.g. to test resuming.
    """
    recipe, out = replicate_recipe(load_recipe(recipe_path), replicate), Path(out_dir)
    if schedule_steps is not None:
        recipe = recipe.model_copy(
            update={"optim": recipe.optim.model_copy(update={"max_steps": schedule_steps})}
        )
    with distributed(device) as (rank, world_size, dev):
        out.mkdir(parents=True, exist_ok=True)
        if rank == 0:  # the run documents itself (the recipe as trained); `export` reads it back
            (out / RECIPE).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
        spec = recipe.generator
        codec = build_codec(spec.codec, device=str(dev))
        text_encoder = build_text_encoder(spec.text_encoder, device=str(dev))
        optim = recipe.optim
        data = TrainingData(
            recipe.data, spec.video, codec, text_encoder, batch_size=optim.batch_size,
            accumulation=optim.gradient_accumulation_steps, rank=rank, world_size=world_size, device=dev,
            codec_spec=spec.codec,
        )  # fmt: skip
        ctx = Context(recipe, Path(runs), out, data, dev, rank, world_size)
        stage = build_stage(ctx)
        ema = EMA(optim.ema_weight) if optim.ema_weight is not None else None
        start = _resume(out / STATE, stage, ema, ctx)
        stop = optim.max_steps if max_steps is None else min(max_steps, optim.max_steps)
        precision = recipe.precision
        if precision.tf32:  # the release's train.py: TF32 matmuls and cuDNN convolutions
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        # bf16 compute over the whole step (autocast leaves the backward in the forward's dtypes);
        # sharded models also gather their parameters in bf16 (FSDP2's policy, Context.parallel).
        board = _board(out, start) if rank == 0 else None
        if recipe.eval is not None and start and start % recipe.eval.every == 0:
            _evaluate(out, start, recipe.eval, ctx, board)  # a killed run's, read back (or finished)
        with _progress(progress and rank == 0, recipe.stage, start, optim.max_steps) as advance:
            for step in range(start, stop):
                began = time.perf_counter()
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision.mixed_precision):
                    logs = stage.step(step)
                if ema is not None and step + 1 >= optim.ema_start_step and logs.get("generator_updated", 0):
                    ema.update(stage.modules[stage.generator_name])
                logs["seconds"] = time.perf_counter() - began
                if board is not None and (step % recipe.log_every == 0 or step + 1 == optim.max_steps):
                    with (out / LOG).open("a") as log:
                        log.write(json.dumps({"step": step, **logs}) + "\n")
                    for name, value in logs.items():
                        board.add_scalar(f"train/{name}", value, step)
                    for name, optimizer in stage.optimizers.items():
                        board.add_scalar(f"lr/{name}", optimizer.param_groups[0]["lr"], step)
                due = recipe.eval if recipe.eval and (step + 1) % recipe.eval.every == 0 else None
                saving = (step + 1) % recipe.save_every == 0 or step + 1 == stop or due is not None
                if saving:  # a collective when sharded
                    _save_state(out / STATE, step + 1, stage, ema, ctx)
                    if board is not None:
                        board.flush()
                if due is not None:
                    _evaluate(out, step + 1, due, ctx, board)
                advance(logs)
        if board is not None:
            board.close()
        if rank == 0 and stop == optim.max_steps:
            export(out, out / GENERATOR, parents=ctx.parents, overwrite=True)
        if world_size > 1:
            dist.barrier()
    return out / GENERATOR


def train_chain(
    chain_path: Path | str,
    runs: Path | str,
    *,
    until: str | None = None,
    replicate: int = 0,
    device: str = "cpu",
) -> dict[str, Path]:
    """Run a chain's recipes in order into RUNS/<name> (finished runs skipped, partial ones resumed).

    `until` stops after that run, so a model can be built with exactly its prerequisites. With
    `replicate` k > 0, run `until` is trained as its replicate k (`recipe.replicate`) into
    RUNS/<until>-replicate<k>, from the same prerequisites. Returns the exported generator of every
    run done or found.
    """
    runs = Path(runs)
    steps = load_chain(chain_path)
    names = [name for name, _, _ in steps]
    if until is not None and until not in names:
        raise ValueError(f"{chain_path}: no run named '{until}'; the chain has {', '.join(names)}")
    if replicate and until is None:
        raise ValueError(f"{chain_path}: a replicate is of one run; name it with `until`")
    done: dict[str, Path] = {}
    for name, recipe, steps_override in steps:
        k = replicate if name == until else 0
        out = runs / replicate_name(name, k)
        if not (out / GENERATOR).exists():
            fit(recipe, out, runs=runs, device=device, schedule_steps=steps_override, replicate=k)
        done[replicate_name(name, k)] = out / GENERATOR
        if name == until:
            break
    return done


def _save_state(path: Path, step: int, stage: Stage, ema: EMA | None, ctx: Context) -> None:
    """Every rank takes part (sharded state is gathered); rank 0 writes full state dicts.

    `extra` (the DMD replay pairs) is per rank: each rank's own micro-batches, one entry a rank.
    """
    extra: dict[str, Any] = getattr(stage, "extra_state", dict)()
    extras = [extra]
    if ctx.world_size > 1:
        extras = [{} for _ in range(ctx.world_size)] if ctx.rank == 0 else []
        dist.gather_object(extra, extras if ctx.rank == 0 else None, dst=0)
    state = {
        "step": step,
        "generator_name": stage.generator_name,
        "modules": {name: model_state(m) for name, m in stage.modules.items()},
        "optimizers": {name: optimizer_state(stage.modules[name], o) for name, o in stage.optimizers.items()},
        "ema": None if ema is None or ema.shadow is None else full_tensors(ema.shadow),
        "extra": extras,
    }
    if ctx.rank != 0:
        return
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _resume(path: Path, stage: Stage, ema: EMA | None, ctx: Context) -> int:
    """Every rank loads the full state (memory-mapped: ranks on one host share its pages) and keeps its part."""
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    extras = state["extra"] if isinstance(state["extra"], list) else [state["extra"]]  # dict: one rank
    if len(extras) != ctx.world_size:
        raise ValueError(
            f"{path} was written by {len(extras)} rank(s); resume it with as many (each rank's data "
            f"and replay pairs are its own), not {ctx.world_size}"
        )
    for name, module in stage.modules.items():
        load_model_state(module, state["modules"][name])
    for name, optimizer in stage.optimizers.items():
        load_optimizer_state(stage.modules[name], optimizer, state["optimizers"][name])
    if ema is not None and state["ema"] is not None:
        ema.shadow = shaped_like(state["ema"], stage.modules[stage.generator_name].state_dict())
    if hasattr(stage, "load_extra_state"):
        stage.load_extra_state(extras[ctx.rank])
    return int(state["step"])


def _evaluate(out: Path, step: int, spec: EvalSpec, ctx: Context, board: Any) -> None:
    """The recipe's evaluation after `step` steps, on rank 0 (the others wait), from the state just
    saved; the training's random state is left as it was, so evaluating changes no weight."""
    if ctx.rank == 0:
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            results, fresh = evaluate(
                out,
                step,
                spec,
                str(ctx.device),
                lambda folder: export(out, folder, parents=ctx.parents, overwrite=True),
            )
        if fresh:
            with (out / LOG).open("a") as log:
                log.write(json.dumps({"step": step, **{f"eval/{k}": v for k, v in results.items()}}) + "\n")
        for name, value in results.items():
            board.add_scalar(f"eval/{name}", value, step)
        board.flush()
    if ctx.world_size > 1:
        dist.barrier()


def _board(out: Path, start: int) -> Any:
    """A TensorBoard writer into `out/tensorboard`. Resumed at `start`, it purges the events of later
    steps that the killed run logged after its last save: those steps run again, and each shows once."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / BOARD), purge_step=start or None)


@contextmanager
def _progress(enabled: bool, name: str, start: int, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda logs: None
        return
    columns = (
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[loss]}"),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(name, total=total, completed=start, loss="")

        def advance(logs: dict[str, float]) -> None:
            shown = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k.endswith("loss"))
            bar.update(task, advance=1, loss=shown)

        yield advance


def export(
    run_dir: Path | str,
    out: Path | str,
    *,
    parents: list[Parent] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the generator alone (EMA weights beside it when kept); critic, predictor, optimisers dropped."""
    run_dir, out = Path(run_dir), Path(out)
    state_path = run_dir / STATE
    if not state_path.exists():
        raise FileNotFoundError(f"{state_path}: no training state; is {run_dir} a `mirai-train fit` run?")
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    recipe = _recipe_of(run_dir)
    weights = state["modules"][state["generator_name"]]
    dropped = sorted(name for name in state["modules"] if name != state["generator_name"])
    if overwrite and out.exists():
        shutil.rmtree(out)
    provenance = Provenance(
        source=f"mirai-train fit, stage {recipe.stage}",
        parents=parents or [],
        step=int(state["step"]),
        notes=[f"dropped at export: {', '.join(dropped)}"] if dropped else [],
    )
    save_checkpoint(out, recipe.generator, weights, ema_state_dict=state["ema"], provenance=provenance)
    return out


def _recipe_of(run_dir: Path) -> Recipe:
    copy_path = run_dir / RECIPE
    if not copy_path.exists():
        raise FileNotFoundError(f"{copy_path}: missing; is {run_dir} a `mirai-train fit` run?")
    return load_recipe(copy_path)
