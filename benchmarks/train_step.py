"""Cost of the Video-Mirai foresight loss in a DMD training step, at toy scale, side by side in one run.

1. Step time with the foresight loss / without (target <= 1.3x), for the generator update steps
   (critic included), where the foresight loss adds a teacher forward up to its layer and the
   predictor. One generator step per exit step of the rollout (0..3), so their sum weighs the exit
   steps as the uniform draw does. Beside it the critic-only step after each (with foresight it
   replays the kept pairs through the predictor) and a whole `dfake_gen_update_ratio` cycle.
   Variants and repeats are interleaved (in alternating order) and each step's fastest run is
   kept, which filters out a busy machine; the process CPU time of the generator steps is shown
   as well, a second check that load cannot skew. One thread by default, for the same reason.
2. Peak memory with / without (target <= 1.3x): each variant in a fresh process, built and warmed
   up with a critic-only step; then the peak RSS of the process during a generator step (the peak
   is reset before it), and that peak above the RSS before the step.

The recipes are the toy chain's Self-Forcing chunk-wise DMD recipes (`dmd_sf_chunkwise.yaml` and
`dmd_sf_chunkwise_mirai.yaml`), run through `DMDStage` directly, with randomly initialised student
and teacher checkpoints written to a temporary directory: no trained models needed.

    python benchmarks/train_step.py [--size 64] [--repeats 3] [--threads 1]

`--size` sets the video side (the toy recipes' 64 px: 16 tokens per latent frame).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from ratio_table import print_ratios, verdict
from rich.console import Console

from mirai_train.checkpoint import Provenance, save_checkpoint
from mirai_train.config_files import load_model
from mirai_train.data import TrainingData
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import build_codec
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.recipe import Recipe, load_recipe
from mirai_train.spec import GeneratorSpec
from mirai_train.stages.base import Context
from mirai_train.stages.dmd import DMDStage

TOY = Path(__file__).parents[1] / "mirai_train/configs/toy"
VARIANTS = {"plain": TOY / "dmd_sf_chunkwise.yaml", "foresight": TOY / "dmd_sf_chunkwise_mirai.yaml"}
MODELS = {
    "student": ("generator_chunkwise.yaml", 0),
    "base": ("generator_chunkwise.yaml", 2),
    "teacher": ("teacher_generator.yaml", 1),
}
TARGET = 1.3


def resized(spec: GeneratorSpec, size: int) -> GeneratorSpec:
    return spec.model_copy(update={"video": spec.video.model_copy(update={"height": size, "width": size})})


def write_checkpoints(runs: Path, size: int) -> None:
    """Randomly initialised student (init), base (the critic's init) and teacher (real score and
    foresight encoder)."""
    for name, (spec_file, seed) in MODELS.items():
        spec = resized(load_model(TOY / spec_file, GeneratorSpec), size)
        torch.manual_seed(seed)
        model = CausalWanTransformer(**spec.transformer_kwargs())
        provenance = Provenance(source=f"benchmarks/train_step.py: random init, seed {seed}")
        save_checkpoint(runs / name / "generator", spec, model.state_dict(), provenance=provenance)


def recipe(variant: str, size: int) -> Recipe:
    base = load_recipe(VARIANTS[variant])
    update = {
        "init": "student/generator",
        "critic": "base/generator",
        "teacher": "teacher/generator",
        "generator": resized(base.generator, size),
    }
    return base.model_copy(update=update)


def build_stage(variant: str, runs: Path, size: int) -> DMDStage:
    """What `fit` builds for one rank on the CPU, without the loop around it."""
    chosen = recipe(variant, size)
    spec, optim = chosen.generator, chosen.optim
    codec, text_encoder = build_codec(spec.codec), build_text_encoder(spec.text_encoder)
    data = TrainingData(
        chosen.data, spec.video, codec, text_encoder, batch_size=optim.batch_size,
        accumulation=optim.gradient_accumulation_steps,
    )  # fmt: skip
    return DMDStage(Context(chosen, runs, runs / variant, data, torch.device("cpu")))


def step_seconds(stage: DMDStage, step: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of one step."""
    wall, cpu = time.perf_counter(), time.process_time()
    stage.step(step)
    return time.perf_counter() - wall, time.process_time() - cpu


def generator_steps(stage: DMDStage, ratio: int) -> list[int]:
    """The first generator step (a multiple of `ratio`) that draws each exit step, by exit step (the
    exit step of the step's first micro-step rollout: its only one at the toy recipes' accumulation)."""
    found: dict[int, int] = {}
    for step in range(0, 1000 * ratio, ratio):
        found.setdefault(stage._exit_step(step, 0), step)
        if len(found) == stage.num_steps:
            break
    return [found[exit_step] for exit_step in sorted(found)]


def status_mib(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def memory_child(variant: str, runs: Path, size: int) -> None:
    """Run in a fresh process: a warm-up critic-only step, then a generator step; print MiB as JSON."""
    stage = build_stage(variant, runs, size)
    stage.step(1)  # critic only: lazy allocations and the critic's optimiser state are not the step's
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = status_mib("VmRSS:")
    stage.step(0)
    peak = status_mib("VmHWM:")
    print(json.dumps({"peak_mib": peak, "step_mib": peak - before}))


def measure_memory(variant: str, runs: Path, size: int, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--size", str(size), "--threads", str(threads)]
    command += ["--memory-child", variant, "--runs", str(runs)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.runs, args.size)
        return
    console = Console()
    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        runs = Path(tmp)
        write_checkpoints(runs, args.size)
        stages = {variant: build_stage(variant, runs, args.size) for variant in VARIANTS}
        plain = recipe("plain", args.size)
        foresight = recipe("foresight", args.size).foresight
        assert foresight is not None and plain.dmd is not None
        ratio = plain.dmd.dfake_gen_update_ratio
        side = args.size // plain.generator.codec.spatial_factor
        student = stages["plain"].generator
        steps = generator_steps(stages["plain"], ratio)
        console.print(
            f"[bold]Toy-scale DMD step benchmark[/]: {args.size}x{args.size} px, "
            f"{student.tokens_per_frame(side, side)} tokens per latent frame, "
            f"{plain.data.num_frames} video frames, batch {plain.optim.batch_size}, "
            f"foresight window {foresight.foresight_deltas}, layers {foresight.foresight_student_layer}"
            f"/{foresight.foresight_teacher_layer}, predictor depth {foresight.predictor_depth}, "
            f"{torch.get_num_threads()} thread(s), {args.repeats} repeats, generator steps {steps}"
        )
        for stage in stages.values():  # warm-up: the first generator step allocates optimiser state
            stage.step(0)
        times: dict[str, list[list[tuple[float, float]]]] = {variant: [] for variant in VARIANTS}
        for repeat in range(args.repeats):  # interleaved: both variants see the same machine load
            for variant in list(VARIANTS)[:: 1 if repeat % 2 == 0 else -1]:
                stage = stages[variant]
                times[variant].append([step_seconds(stage, s + k) for s in steps for k in (0, 1)])
        fastest = {  # per step, the fastest wall and CPU time over the repeats
            variant: [(min(w for w, _ in c), min(p for _, p in c)) for c in zip(*per_repeat, strict=True)]
            for variant, per_repeat in times.items()
        }
        memory = {variant: measure_memory(variant, runs, args.size, args.threads) for variant in VARIANTS}

    generator = {variant: sum(w for w, _ in seconds[0::2]) for variant, seconds in fastest.items()}
    generator_cpu = {variant: sum(p for _, p in seconds[0::2]) for variant, seconds in fastest.items()}
    critic = {variant: sum(w for w, _ in seconds[1::2]) for variant, seconds in fastest.items()}
    cycle = {
        variant: (generator[variant] + (ratio - 1) * critic[variant]) / len(steps) for variant in VARIANTS
    }
    gen = generator["foresight"] / generator["plain"]
    rows: list[tuple[str, str, str, str]] = []
    rows.append((
        f"generator step (+ critic), with / without foresight, exit steps 0..{len(steps) - 1} "
        f"({generator['foresight']:.2f} s / {generator['plain']:.2f} s)",
        f"{gen:.2f}x", f"<= {TARGET}x", verdict(gen <= TARGET),
    ))  # fmt: skip
    rows.append((
        f"  the same in process CPU time ({generator_cpu['foresight']:.2f} s / {generator_cpu['plain']:.2f} s)",
        f"{generator_cpu['foresight'] / generator_cpu['plain']:.2f}x", "", "",
    ))  # fmt: skip
    rows.append((
        f"  critic-only step (foresight: + pair replay) ({critic['foresight']:.2f} s / {critic['plain']:.2f} s)",
        f"{critic['foresight'] / critic['plain']:.2f}x", "", "",
    ))  # fmt: skip
    rows.append((
        f"  a cycle of {ratio} steps, mean ({cycle['foresight']:.2f} s / {cycle['plain']:.2f} s)",
        f"{cycle['foresight'] / cycle['plain']:.2f}x", "", "",
    ))  # fmt: skip
    peak = memory["foresight"]["peak_mib"] / memory["plain"]["peak_mib"]
    rows.append((
        f"peak RSS of the process in a generator step, with / without ({memory['foresight']['peak_mib']:.0f} / "
        f"{memory['plain']['peak_mib']:.0f} MiB)",
        f"{peak:.2f}x", f"<= {TARGET}x", verdict(peak <= TARGET),
    ))  # fmt: skip
    step_mib = {variant: m["step_mib"] for variant, m in memory.items()}
    rows.append((
        f"  the step's peak above the RSS before it ({step_mib['foresight']:.1f} / {step_mib['plain']:.1f} MiB)",
        f"{step_mib['foresight'] / max(step_mib['plain'], 1e-9):.2f}x", "", "",
    ))  # fmt: skip
    print_ratios(console, rows)


if __name__ == "__main__":
    main()
