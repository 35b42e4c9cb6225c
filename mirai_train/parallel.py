"""How a run spreads its models over torchrun ranks, and how their full state reaches rank 0.

`distributed.strategy` in a recipe chooses, for every model a stage trains (generator, critic,
foresight predictor) and for the DMD real score / foresight encoder:

fsdp  FSDP2 (`fully_shard`): each transformer block is its own unit, then the root takes the rest
      (embeddings, head). Parameters, gradients and AdamW states are split across ranks; a block is
      all-gathered for its forward and backward, and gradients are reduce-scattered (averaged) at
      every backward. Needed at wan scale: the 14B real score alone is 57 GB in float32.
ddp   every rank holds whole models; the trainer all-reduces gradients before every optimiser step.

A single process never wraps anything. Checkpoints (`state.pt`) have one layout whatever the
strategy: full, unsharded state dicts, written by rank 0, optimiser states keyed by parameter
index as `Optimizer.state_dict()` keys them; a run can resume under the other strategy.
"""

from __future__ import annotations

import atexit
import os
from datetime import timedelta
from functools import cache
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

M = TypeVar("M", bound=nn.Module)
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered, on rank 0's CPU only
LOAD = StateDictOptions(full_state_dict=True)  # every rank passes the full state; each keeps its shard


def join_torchrun(device: str, *, backend: str | None = None, timeout: timedelta | None = None) -> str:
    """Under torchrun (WORLD_SIZE > 1): join its process group, once per process, and return this
    rank's device (`cuda` becomes `cuda:<LOCAL_RANK>`); in a single process, `device` as it is.

    The backend is NCCL on CUDA and gloo otherwise, unless given: an evaluation's group carries one
    CPU barrier (gloo), with a timeout as long as the other ranks may generate."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return device
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if device.startswith("cuda") else "gloo"), timeout=timeout)
        atexit.register(dist.destroy_process_group)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


@cache
def _mesh(device_type: str, world_size: int) -> DeviceMesh:
    """One 1-D mesh over all ranks per process (a chain's fits share it, like the process group)."""
    return init_device_mesh(device_type, (world_size,))


def shard(module: M, device: torch.device, *, mixed_precision: bool = False) -> M:
    """FSDP2 over all ranks: every entry of `module.blocks` first, then the root (in place).

    `mixed_precision`: bf16 parameters in forward and backward, gradients reduced in float32 (the
    sharded float32 parameters stay the optimiser's master weights). The condition embedder (the
    time embedding diffusers keeps in float32, and the text projection) is its own unit in float32.
    Inputs are not cast (a bf16 timestep would round 937.5 to 936): the trainer's autocast gives the
    matmuls bf16 operands, and the blocks keep their norms and modulation in float32.
    """
    mesh = _mesh(device.type, dist.get_world_size())
    bf16 = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
    )
    policy = bf16 if mixed_precision else MixedPrecisionPolicy()
    embedder = getattr(module, "condition_embedder", None)
    if mixed_precision and embedder is not None:
        fully_shard(embedder, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32))
    for block in getattr(module, "blocks", ()):
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(module, mesh=mesh, mp_policy=policy)
    return module


def is_sharded(module: nn.Module) -> bool:
    return isinstance(module, FSDPModule)


def clip_gradients(module: nn.Module, clip: float) -> Tensor:
    """Clip to the global norm over all of the module's gradients; returns that norm (before clipping).

    Sharded, each rank holds a slice of every gradient: the norm of the slices' norms is reduced
    across ranks (a replicated DTensor) before any gradient is scaled.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not is_sharded(module):
        return torch.nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, clip, norm)
    return norm


def model_state(module: nn.Module) -> dict[str, Any]:
    """The full state dict (a collective when sharded: call on every rank; rank 0 gets it)."""
    if not is_sharded(module):
        return module.state_dict()
    return get_model_state_dict(module, options=FULL)


def load_model_state(module: nn.Module, state: dict[str, Any]) -> None:
    """Load a full state dict; sharded, every rank passes it and keeps its own slices."""
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    set_model_state_dict(module, dict(state), options=LOAD)  # a copy: it puts its slices into the dict given


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()`'s layout with full tensors (a collective when sharded)."""
    if not is_sharded(module):
        return optimizer.state_dict()
    state: dict[str, Any] = dict(get_optimizer_state_dict(module, optimizer, options=FULL))
    if not state.get("state"):  # ranks other than 0
        return {}
    index = {name: i for i, name in enumerate(_names(module, optimizer))}
    return {
        "state": {index[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**g, "params": [index[name] for name in g["params"]]} for g in state["param_groups"]
        ],
    }


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load `optimizer.state_dict()`'s layout; sharded, each rank keeps the slices of its parameters."""
    if not is_sharded(module):
        optimizer.load_state_dict(state)
        return
    names = _names(module, optimizer)
    by_name: dict[str, Any] = {
        "state": {names[i]: value for i, value in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(module, optimizer, by_name, options=LOAD)


def _names(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimiser's order, the order its integer state keys count."""
    name_of = {id(p): name for name, p in module.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Sharded tensors gathered whole onto the CPU (a collective if any is sharded); others as they are."""
    return {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in tensors.items()}


def shaped_like(full: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """Full tensors split as `reference`'s are (this rank's slices of sharded ones), on their devices.

    Every rank holds the full tensors, so each cuts its own slice (no broadcast from rank 0).
    """
    out: dict[str, Tensor] = {}
    for key, value in full.items():
        ref = reference[key]
        if isinstance(ref, DTensor):
            local = value.to(ref.device)
            out[key] = distribute_tensor(local, ref.device_mesh, ref.placements, src_data_rank=None)
        else:
            out[key] = value.to(ref.device)
    return out
