"""The memory plan of the wan recipes: per-GPU peak estimates on N GPUs, checked against a measurement.

For each wan recipe, what one GPU holds while training (FSDP2 over N ranks, as the recipes run):
- trainable models (generator, critic, predictor): float32 parameters, gradients and AdamW's two
  moments, sharded by N (FSDP2 keeps float32 masters under bf16 mixed precision), plus the
  all-gathered bf16 or float32 copies of the two blocks in flight;
- the generator's EMA (float32, sharded) when the recipe keeps one within its steps;
- frozen models: the 14B real score (DMD; loaded in float32 and sharded), the ODE stages' teacher
  (whole on each rank while it samples the trajectory pool), UMT5-XXL (whole on each rank, in float32
  as `build_text_encoder` loads it) and the Wan VAE;
- activations of the forwards that carry gradients, per transformer block and token, measured on
  one real-width block (the bytes autograd saves, with and without bf16 autocast), times the blocks
  and tokens of the stage's forwards; with activation checkpointing, each block's input plus one
  block's activations (recomputed in the backward). Attention builds no dense mask (one SDPA call
  per query block, `causal_wan.key_spans`), so there is no tokens^2 term.

The estimate is checked on this machine's CPU: the real 1.3B (30 blocks, width 1536) at a reduced
token count, one forward and backward, in a fresh process, predicted vs measured peak RSS, with and
without checkpointing (target: within 25%).

    python benchmarks/memory.py [--gpus 8] [--gpu-gib 80] [--check-side 8 --check-frames 6] [--device cuda]

Sizes come from the real classes on the meta device, so no weights or memory are needed for the plan.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from ratio_table import print_ratios, verdict
from rich.console import Console
from rich.table import Table
from transformers import UMT5Config, UMT5EncoderModel

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.predictor import ForesightPredictor
from mirai_train.recipe import Recipe, load_recipe
from mirai_train.spec import GeneratorSpec

WAN = Path(__file__).parents[1] / "mirai_train" / "configs" / "wan"
GIB = 2**30
# google/umt5-xxl's encoder (Wan's text encoder: models_t5_umt5-xxl-enc-bf16.pth, 5.7B parameters).
UMT5_XXL = UMT5Config(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    feed_forward_proj="gated-gelu",
)  # fmt: skip


def parameters(build: Callable[[], torch.nn.Module]) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def transformer(spec: GeneratorSpec, **overrides: int) -> CausalWanTransformer:
    return CausalWanTransformer(**{**spec.transformer_kwargs(), **overrides})


@contextmanager
def saved_bytes(exclude: set[int]) -> Iterator[list[int]]:
    """Bytes autograd saves for the backward inside the block (each storage once; not `exclude`'s)."""
    seen: set[int] = set()
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in exclude:
            seen.add(key)
            total[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def activation_bytes(spec: GeneratorSpec, bf16: bool) -> float:
    """Bytes per token per block autograd saves, measured on real-width blocks: the slope over tokens
    (2 and 4 frames of 8x8 tokens) of what a second block adds. Per-forward constants drop out
    (autocast's bf16 copies of the weights: FSDP2 all-gathers bf16 weights instead)."""
    torch.manual_seed(0)
    saved = {}
    for layers in (1, 2):
        model = transformer(spec, num_layers=layers)
        exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
        for frames in (2, 4):
            x = torch.randn(1, spec.transformer.in_channels, frames, 16, 16)
            text = torch.randn(1, 16, spec.transformer.text_dim)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), saved_bytes(exclude) as total:
                model(x, torch.full((1,), 500.0), text, causal=False)
            saved[layers, frames] = total[0]
    per_frame = model.tokens_per_frame(16, 16)
    block = [saved[2, frames] - saved[1, frames] for frames in (2, 4)]
    return (block[1] - block[0]) / (2 * per_frame)


@dataclass
class Line:
    what: str
    gib: float


def stage_lines(
    recipe: Recipe,
    sizes: dict[str, int],
    gpus: int,
    bf16: bool,
    checkpointing: bool,
    per_token: tuple[float, float],
) -> list[Line]:
    """What one of `gpus` FSDP2 ranks holds at the peak of a training step of `recipe`."""
    spec, optim = recipe.generator, recipe.optim
    student, layers = sizes["student"], spec.transformer.num_layers
    frames = recipe.data.num_frames // 4 + 1
    tokens = frames * (spec.video.height // 16) * (spec.video.width // 16)  # VAE 8x, patch 2x2
    lines: list[Line] = []

    def trainable(name: str, count: int) -> None:
        lines.append(
            Line(
                f"{name}: float32 weights + gradients + AdamW (2 moments), / {gpus}", 16 * count / gpus / GIB
            )
        )

    trainable("generator", student)
    ema_kept = optim.ema_weight is not None and optim.ema_start_step < optim.max_steps
    if ema_kept:
        lines.append(Line(f"generator EMA (float32, / {gpus})", 4 * student / gpus / GIB))
    # The forward that carries gradients: the whole clip (teacher forcing, in stage 1 and in stage 2's
    # student: clean + noisy frames). In DMD the generator's rollout (each block's exit step) and the
    # critic's denoising, one at a time.
    if recipe.stage in ("ar_teacher_forcing", "causal_ode"):
        tokens *= 2
    if recipe.stage == "dmd":
        trainable("critic", student)
        lines.append(
            Line(f"real score, Wan2.1-T2V-14B (frozen, float32, / {gpus})", 4 * sizes["teacher"] / gpus / GIB)
        )
        block = (2 if bf16 else 4) * sizes["teacher"] / sizes["teacher_layers"]
        lines.append(Line("real score's all-gathered blocks in flight (2)", 2 * block / GIB))
        if recipe.foresight is not None:
            trainable("foresight predictor", sizes["predictor"])
    elif recipe.stage in ("ode_init", "causal_ode"):
        lines.append(
            Line("ODE teacher, 1.3B (frozen, float32, whole; while sampling the pool)", 4 * student / GIB)
        )
    lines.append(Line("UMT5-XXL text encoder (frozen, float32, whole on each rank)", 4 * sizes["umt5"] / GIB))
    lines.append(Line("Wan VAE (frozen, float32, whole)", 4 * sizes["vae"] / GIB))
    width = 2 if bf16 else 4
    lines.append(Line("all-gathered blocks in flight (2)", 2 * width * student / layers / GIB))
    lines.append(
        Line(
            f"activations, {activations_label(tokens, layers, checkpointing)}",
            activations(tokens, layers, per_token, checkpointing, spec) / GIB,
        )
    )
    return lines


def pool_gib(recipe: Recipe, gpus: int) -> tuple[int, int, float]:
    """An ODE stage's trajectory pool on each rank, in host memory (stages/ode.py): its trajectories,
    the states each keeps (the student's steps, the teacher's end, and the clean clip it was forced
    on in causal_ode) and GiB in float16."""
    assert recipe.ode is not None
    spec = recipe.generator
    frames = recipe.data.num_frames // 4 + 1
    states = len(spec.sampler.denoising_step_list) + (2 if recipe.stage == "causal_ode" else 1)
    latent = spec.transformer.in_channels * frames * (spec.video.height // 8) * (spec.video.width // 8)
    share = -(-recipe.ode.num_trajectories // gpus)
    return share, states, 2 * share * states * latent / GIB


def activations(
    tokens: int, layers: int, per_token: float, checkpointing: bool, spec: GeneratorSpec
) -> float:
    """Bytes saved for the backward: every block's (or, checkpointed, every block's float32 input and
    one block's, recomputed in the backward)."""
    if not checkpointing:
        return layers * tokens * per_token
    width = spec.transformer.num_attention_heads * spec.transformer.attention_head_dim
    return layers * tokens * width * 4 + tokens * per_token


def activations_label(tokens: int, layers: int, checkpointing: bool) -> str:
    return f"{tokens} tokens, " + ("block inputs + one block" if checkpointing else f"{layers} blocks")


def measure_child(tokens_side: int, frames: int, checkpointing: bool, device: str) -> None:
    """In a fresh process: the real 1.3B, one forward and backward; prints its peak memory (bytes):
    CUDA's peak allocation, or on the CPU the peak RSS above the process's start."""
    spec = load_recipe(WAN / "dmd_sf_chunkwise.yaml").generator
    cuda = device.startswith("cuda")
    start = 0 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    with torch.device(device):
        model = transformer(spec).train()
        model.gradient_checkpointing = checkpointing
        x = torch.randn(1, spec.transformer.in_channels, frames, 2 * tokens_side, 2 * tokens_side)
        text = torch.randn(1, 512, spec.transformer.text_dim)
        out = model(x, torch.full((1,), 500.0), text).sample
    assert out is not None
    out.square().mean().backward()
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(json.dumps({"peak": peak - start}))


def measured(tokens_side: int, frames: int, checkpointing: bool, device: str) -> float:
    command = [
        sys.executable,
        __file__,
        "--child",
        f"{tokens_side},{frames},{int(checkpointing)}",
        "--device",
        device,
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU (80: H100/A100 80GB)")
    parser.add_argument(
        "--check-side", type=int, default=8, help="tokens per side of a frame in the CPU check"
    )
    parser.add_argument("--check-frames", type=int, default=6, help="latent frames in the CPU check")
    parser.add_argument("--no-check", action="store_true", help="print the plan only")
    parser.add_argument(
        "--device", default="cpu", help="where the check runs (cuda: a larger --check-side fits)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, frames, checkpointing = (int(v) for v in args.child.split(","))
        measure_child(side, frames, bool(checkpointing), args.device)
        return
    console = Console(width=150)
    recipes = {
        path.stem: load_recipe(path) for path in sorted(WAN.glob("*.yaml")) if "stage:" in path.read_text()
    }
    student_spec = next(iter(recipes.values())).generator
    teacher_spec = GeneratorSpec.model_validate(yaml.safe_load((WAN / "teacher_generator.yaml").read_text()))
    sizes = {
        "student": parameters(lambda: transformer(student_spec)),
        "teacher": parameters(lambda: transformer(teacher_spec)),
        "predictor": parameters(lambda: ForesightPredictor()),
        "umt5": parameters(lambda: UMT5EncoderModel(UMT5_XXL)),
        "vae": parameters(lambda: AutoencoderKLWan()),
        "teacher_layers": teacher_spec.transformer.num_layers,
    }
    console.print(
        "[bold]Parameters[/]: "
        + ", ".join(f"{name} {count / 1e9:.2f}B" for name, count in sizes.items() if name != "teacher_layers")
    )
    per_token = {bf16: activation_bytes(student_spec, bf16) for bf16 in (False, True)}
    console.print(
        "activations saved per token per block: "
        + ", ".join(
            f"{per_token[b] / 1024:.0f} KiB ({'bf16 autocast' if b else 'float32'})" for b in (False, True)
        )
    )

    table = Table(
        "recipe",
        "stage",
        "float32",
        "float32 + ckpt",
        "bf16",
        "bf16 + ckpt (recipe)",
        f"fits {args.gpu_gib:g} GiB",
    )
    for name, recipe in recipes.items():
        totals = []
        for bf16 in (False, True):
            for ckpt in (False, True):
                lines = stage_lines(recipe, sizes, args.gpus, bf16, ckpt, per_token[bf16])
                totals.append(sum(line.gib for line in lines))
        fits = "yes" if totals[3] <= args.gpu_gib else "no"
        table.add_row(name, recipe.stage, *(f"{t:.1f}" for t in totals), fits)
    console.print(f"[bold]Per-GPU peak estimate (GiB) on {args.gpus} GPUs[/], FSDP2")
    console.print(table)
    for name, recipe in recipes.items():
        if recipe.ode is not None:
            share, states, gib = pool_gib(recipe, args.gpus)
            console.print(
                f"{name}: trajectory pool in host memory, {share} trajectories x {states} states a rank, "
                f"{gib:.1f} GiB a rank ({gib * args.gpus:.0f} GiB over the {args.gpus})"
            )
    detail = Table("dmd_sf_chunkwise_mirai, bf16 + checkpointing", "GiB")
    for line in stage_lines(recipes["dmd_sf_chunkwise_mirai"], sizes, args.gpus, True, True, per_token[True]):
        detail.add_row(line.what, f"{line.gib:.2f}")
    console.print(detail)

    if args.no_check:
        return
    side, frames = args.check_side, args.check_frames
    tokens = side * side * frames
    rows = []
    for ckpt in (False, True):
        actual = measured(side, frames, ckpt, args.device)
        layers = student_spec.transformer.num_layers
        # weights + gradients (float32), activations
        predicted = 8 * sizes["student"] + activations(tokens, layers, per_token[False], ckpt, student_spec)
        ratio = predicted / actual
        rows.append(
            (
                f"1.3B on {args.device}, {tokens} tokens, float32{', checkpointing' if ckpt else ''}: predicted / measured peak",
                f"{ratio:.2f}",
                "0.75 to 1.25",
                f"{verdict(0.75 <= ratio <= 1.25)} ({predicted / GIB:.2f} vs {actual / GIB:.2f} GiB)",
            )
        )
    print_ratios(console, rows)


if __name__ == "__main__":
    main()
