"""What a stage is given and the optimiser helpers every stage uses; `trainer.py` runs the loop.

Stages (`dmd.py`, `flow_matching.py`, `ode.py`) and the trainer both stand on this module, so the
import arrows point one way: trainer -> stages -> base.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mirai_train.checkpoint import Parent, file_sha256, load_checkpoint
from mirai_train.data import TrainingData
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.parallel import clip_gradients, is_sharded, shard
from mirai_train.recipe import Recipe
from mirai_train.spec import GeneratorSpec

M = TypeVar("M", bound=nn.Module)


@dataclass
class Context:
    """What a stage is given: the recipe, where things are, the data and this rank's place."""

    recipe: Recipe
    runs: Path
    out: Path
    data: TrainingData
    device: torch.device
    rank: int = 0
    world_size: int = 1
    parents: list[Parent] = field(default_factory=list)

    def resolve(self, reference: str) -> Path:
        path = Path(reference)
        return path if path.is_absolute() else self.runs / path

    def load(self, reference: str, *, role: str) -> tuple[GeneratorSpec, CausalWanTransformer]:
        """A checkpoint named in the recipe, recorded as a parent of this run."""
        path = self.resolve(reference)
        if not path.exists():
            raise FileNotFoundError(
                f"recipe {role}: {path} does not exist; train or import it first (paths are relative to --runs)"
            )
        spec, model = load_checkpoint(path, device=str(self.device))
        self.parents.append(Parent(path=str(path), sha256=file_sha256(path / "generator.safetensors")))
        return spec, model.float()

    def parallel(self, module: M) -> M:
        """`module` spread over the ranks as the recipe says (FSDP2-sharded under `strategy: fsdp`),
        with the recipe's activation checkpointing and, sharded, its mixed precision.

        Stages call it before building a module's optimiser (sharding replaces the parameters),
        and only for modules that every rank runs in lockstep (a sharded forward is a collective).
        """
        if isinstance(module, CausalWanTransformer):  # per transformer block (causal_wan.py)
            module.gradient_checkpointing = self.recipe.precision.gradient_checkpointing
        if self.world_size == 1 or self.recipe.distributed.strategy == "ddp":
            return module
        return shard(module, self.device, mixed_precision=self.recipe.precision.mixed_precision)

    def generator(self, step: int, purpose: int = 0) -> torch.Generator:
        """Randomness of one step; identical on every rank (shared draws such as the exit step)."""
        seed = np.random.SeedSequence([self.recipe.optim.seed, step, purpose]).generate_state(1)[0]
        return torch.Generator(device=self.device).manual_seed(int(seed) >> 1)

    def micro_generator(self, step: int, micro: int, stream: int = 0) -> torch.Generator:
        """Randomness of this rank's micro-batch `micro`, keyed by its global index in the step.

        The index is micro * world_size + rank, so 2 ranks x 1 micro-batch draw exactly what 1 rank
        x 2 accumulated micro-batches draws (`stream` separates a step's independent draws).
        """
        index = micro * self.world_size + self.rank
        if index >= 100:
            raise ValueError("more than 100 micro-batches per step across ranks: widen the stream spacing")
        return self.generator(step, 1000 + 100 * stream + index)


class Stage(Protocol):
    """One training stage. `modules` and `optimizers` are what resuming restores."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    generator_name: str  # the key in `modules` that is exported

    def step(self, step: int) -> dict[str, float]:
        """One optimisation step (all its micro-batches); returns numbers to log."""
        ...


def adamw(params: Iterable[nn.Parameter], lr: float, recipe: Recipe) -> torch.optim.AdamW:
    optim = recipe.optim
    return torch.optim.AdamW(
        list(params), lr=lr, betas=(optim.beta1, optim.beta2), weight_decay=optim.weight_decay, foreach=True
    )


def optimizer_step(module: nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Average gradients across ranks, clip to the global norm, step, clear; returns the norm before clipping.

    Sharded (FSDP2), the backward already averaged this rank's gradient slices; whole (DDP), the
    gradients are all-reduced here.
    """
    if not is_sharded(module) and dist.is_initialized() and dist.get_world_size() > 1:
        for p in module.parameters():
            if p.requires_grad:
                if p.grad is None:  # every rank must reduce the same tensors
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
    norm = clip_gradients(module, clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
