"""Frames per second of causal generation: the protocol, measured side by side in one run.

Protocol (Self-Forcing reports about 17 FPS for its chunk-wise 1.3B model on one H100; its FPS is
video frames out per second of wall time, after a warm-up):
- a warm-up rollout before each length is excluded (kernel selection, allocator growth, lazy init);
- throughput: video frames per second, of the rollout alone and of rollout + decode, each the
  median of `--repeats` runs, for 5 s, 30 s and 60 s rollouts (past the 21-frame training horizon
  the Rolling Sink keeps the cache bounded, so throughput should hold with length);
- first-block latency: from the call to the first block's clean latents, and to its decoded frames;
- peak memory against rollout length: CUDA's peak allocation of each length on its own; on the
  CPU, the process's peak RSS after each length, shortest first (it can only grow, so a flat column
  says that longer rollouts need no more memory);
- batched generation: seconds per video of a batch of `--batch` prompts against batch 1.

    python benchmarks/fps.py                              # toy scale, CPU, random weights
    python benchmarks/fps.py --scale wan --device cuda    # the Wan2.1-T2V-1.3B architecture, random weights

The wan scale needs no weights: the real transformer (30 blocks, width 1536) and the real Wan
VAE architecture with random weights, random UMT5-shaped text embeddings, bf16 as the releases
generate; the speed of a random network is the speed of the trained one.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from ratio_table import print_ratios
from rich.console import Console
from rich.table import Table

from mirai_eval.generate import Generator
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import VideoCodec, WanVAECodec, build_codec
from mirai_train.spec import GeneratorSpec

CONFIGS = Path(__file__).parents[1] / "mirai_train" / "configs"
SCALES = {
    "toy": CONFIGS / "toy" / "generator_chunkwise.yaml",
    "wan": CONFIGS / "wan" / "generator_chunkwise.yaml",
}
LENGTHS = (5.0, 30.0, 60.0)
# A 7 s rollout (30 latent frames) already runs past the 21-frame horizon through the Rolling Sink,
# whose cache then keeps its shape: it warms up every shape of a longer rollout.
WARM_UP_SECONDS = 7.0


class RandomText:
    """Text embeddings of the encoder's shape, without its weights (speed does not depend on them)."""

    def __init__(self, spec: GeneratorSpec, device: str, dtype: torch.dtype) -> None:
        self.shape = (spec.text_encoder.max_length, spec.text_encoder.dim)
        self.device, self.dtype = device, dtype

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        generator = torch.Generator().manual_seed(len(prompts))
        return torch.randn(len(prompts), *self.shape, generator=generator).to(self.device, self.dtype)


def random_generator(scale: str, device: str, dtype: torch.dtype, size: tuple[int, int] | None) -> Generator:
    """The scale's chunk-wise generator with random weights: its transformer, codec architecture and
    text shape; `size` (height, width) replaces the video size (a CPU check of the wan path)."""
    spec = GeneratorSpec.model_validate(yaml.safe_load(SCALES[scale].read_text()))
    if size is not None:
        spec = spec.model_copy(
            update={"video": spec.video.model_copy(update={"height": size[0], "width": size[1]})}
        )
    torch.manual_seed(0)
    with torch.device(device):
        model = CausalWanTransformer(**spec.transformer_kwargs())
    # Weights in `dtype`, RoPE's tables in float32: what `load_checkpoint(dtype=...)` gives.
    model.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()}, assign=True)
    model.eval()
    codec: VideoCodec
    if spec.codec.kind == "wan_vae":  # diffusers' defaults are Wan2.1's VAE
        codec = WanVAECodec(AutoencoderKLWan().to(device, dtype))
    else:
        codec = build_codec(spec.codec, device=device, dtype=dtype)
    return Generator(spec, model, codec, RandomText(spec, device, dtype))


@dataclass
class Timed:
    rollout: float  # seconds to the last block's latents
    decode: float  # seconds to decode them
    first_block: float  # seconds to the first block's latents
    first_frames: float  # ... plus decoding that block alone
    frames: int  # video frames out, per prompt


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(generator: Generator, seconds: float, batch: int, device: str) -> Timed:
    """One `generate_batch` call of `batch` prompts (the rollout ends at its last block, decoding
    after), and one block decoded on its own (decoding time does not depend on the values)."""
    stamps: list[float] = []

    def on_block(done: int, total: int) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    synchronize(device)
    start = time.perf_counter()
    generator.generate_batch([f"prompt {i}" for i in range(batch)], seconds, list(range(batch)), on_block)
    synchronize(device)
    end = time.perf_counter()
    config = generator.rollout_config(generator.model.num_frame_per_block)
    parameter = next(generator.model.parameters())
    block = torch.randn(
        1, config.latent_channels, config.num_frames, config.latent_height, config.latent_width
    )
    with torch.inference_mode():
        generator.codec.decode(block.to(parameter.device, parameter.dtype))
    synchronize(device)
    first_decode = time.perf_counter() - end
    return Timed(
        rollout=stamps[-1] - start,
        decode=end - stamps[-1],
        first_block=stamps[0] - start,
        first_frames=stamps[0] - start + first_decode,
        frames=generator.codec.pixel_frames(generator.latent_frames(seconds)),
    )


def with_peak_memory(device: str, run: Callable[[], Timed]) -> tuple[Timed, float]:
    """`run`'s result and GiB: CUDA's peak allocation of `run` alone; on the CPU the process's peak RSS so far."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        result = run()
        return result, torch.cuda.max_memory_allocated() / 2**30
    result = run()
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on CUDA, else float32"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4, help="prompts per rollout for the batched ratio")
    parser.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS), help="rollout seconds")
    parser.add_argument(
        "--size", help="HxW instead of the scale's video size, e.g. 32x32 to try the wan path on a CPU"
    )
    args = parser.parse_args()
    size = None
    if args.size:
        height, width = args.size.split("x")
        size = int(height), int(width)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    console = Console()
    began = time.perf_counter()
    generator = random_generator(args.scale, args.device, dtype, size)
    video = generator.spec.video
    where = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    console.print(
        f"[bold]FPS[/]: {args.scale} scale ({SCALES[args.scale].name}, random weights), {video.width}x{video.height} "
        f"at {video.fps} fps, blocks of {generator.model.num_frame_per_block} latent frames, {dtype}, {where}; "
        f"built in {time.perf_counter() - began:.1f} s"
    )

    table = Table(
        "rollout",
        "frames",
        "FPS (rollout)",
        "FPS (+ decode)",
        "first block (s)",
        "first frames (s)",
        "peak memory (GiB)",
    )
    per_video: dict[tuple[int, bool], float] = {}  # (batch, with decode) -> seconds per video
    for seconds in args.lengths:
        timed(generator, min(seconds, WARM_UP_SECONDS), 1, args.device)  # warm-up, excluded
        first, memory = with_peak_memory(args.device, lambda s=seconds: timed(generator, s, 1, args.device))
        runs = [first, *(timed(generator, seconds, 1, args.device) for _ in range(args.repeats - 1))]
        rollout_s = statistics.median(r.rollout for r in runs)
        total_s = statistics.median(r.rollout + r.decode for r in runs)
        frames = runs[0].frames
        table.add_row(
            f"{seconds:g} s", str(frames), f"{frames / rollout_s:.2f}", f"{frames / total_s:.2f}",
            f"{statistics.median(r.first_block for r in runs):.3f}",
            f"{statistics.median(r.first_frames for r in runs):.3f}", f"{memory:.2f}",
        )  # fmt: skip
        if seconds == args.lengths[0]:
            per_video[1, True], per_video[1, False] = total_s, rollout_s
    console.print(table)

    seconds = args.lengths[0]
    timed(generator, seconds, args.batch, args.device)  # warm-up of the batched shapes
    batched = [timed(generator, seconds, args.batch, args.device) for _ in range(args.repeats)]
    per_video[args.batch, True] = statistics.median(r.rollout + r.decode for r in batched) / args.batch
    per_video[args.batch, False] = statistics.median(r.rollout for r in batched) / args.batch
    rows = []
    for decode in (False, True):
        ours, single = per_video[args.batch, decode], per_video[1, decode]
        rows.append(
            (
                f"seconds per {seconds:g} s video, batch {args.batch} vs batch 1 ({'rollout + decode' if decode else 'rollout'})",
                f"{ours / single:.2f}x",
                "< 1 (reported)",
                f"{ours:.2f} s vs {single:.2f} s",
            )
        )
    print_ratios(console, rows)
    console.print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
