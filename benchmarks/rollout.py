"""Rollout cost at toy scale, measured side by side in one run, printed as ratios.

1. Per-frame cost late vs early in a 30 s rollout with the Rolling Sink (target <= 1.2x): the last
   5 s against the first blocks that attend to a full window, beside the same rollout with an
   unbounded cache (cost grows with the context).
2. Peak memory of a 30 s vs a 5 s rollout (target <= 1.2x): each in a fresh process, peak RSS of
   the whole process and of the rollout above the loaded model, and the KV cache's own bytes.
3. KV-cache streaming vs recomputing every block's context without a cache, for a 5 s rollout
   (speed-up, reported; the two videos are checked to agree).

    python benchmarks/rollout.py [--config mirai_train/configs/toy/generator_chunkwise.yaml] [--size 128]

`--size` sets the video side (default 128: 64 tokens per latent frame). At the toy config's 64 px
(16 tokens per frame) every call is overhead-bound and attention barely shows; the wan scale has
1560 tokens per frame, where attention over the context dominates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from ratio_table import print_ratios, verdict
from rich.console import Console

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.kv_cache import KVCache
from mirai_train.models.rolling_sink import RollingSinkCache
from mirai_train.sampling import FlowMatchSchedule, RolloutConfig, denoising_steps, rollout
from mirai_train.spec import GeneratorSpec

DEFAULT_CONFIG = Path(__file__).parents[1] / "mirai_train/configs/toy/generator_chunkwise.yaml"
FRAMES_5S, FRAMES_30S = 21, 123  # latent frames: 81 and 489 video frames at 16 fps


def build(spec: GeneratorSpec, rope_max_seq_len: int | None = None) -> CausalWanTransformer:
    torch.manual_seed(0)
    kwargs = spec.transformer_kwargs()
    if rope_max_seq_len is not None:  # only the non-persistent RoPE table grows; weights are the same
        kwargs["rope_max_seq_len"] = rope_max_seq_len
    return CausalWanTransformer(**kwargs).eval()


def config(spec: GeneratorSpec, frames: int) -> RolloutConfig:
    factor = spec.codec.spatial_factor
    return RolloutConfig(
        frames,
        spec.codec.latent_channels,
        spec.video.height // factor,
        spec.video.width // factor,
        spec.sampler,
    )


def sink_cache(spec: GeneratorSpec, model: CausalWanTransformer) -> RollingSinkCache:
    sink = spec.rolling_sink
    return RollingSinkCache(
        len(model.blocks),
        window_frames=sink.window_frames,
        sweep_frames=sink.sweep_frames,
        block_frames=model.num_frame_per_block,
    )


def block_times(spec: GeneratorSpec, model: CausalWanTransformer, frames: int, rolling: bool) -> list[float]:
    """Wall seconds per latent frame of each block of one rollout."""
    stamps = [time.perf_counter()]
    text = torch.randn(1, 8, spec.transformer.text_dim)
    with torch.inference_mode():
        rollout(
            model,
            text,
            config(spec, frames),
            generator=torch.Generator().manual_seed(0),
            make_cache=(lambda: sink_cache(spec, model)) if rolling else None,
            on_block=lambda done, total: stamps.append(time.perf_counter()),
        )
    block = model.num_frame_per_block
    return [(b - a) / block for a, b in itertools.pairwise(stamps)]


def late_vs_early(times: list[float], early: slice, late: slice) -> float:
    return statistics.median(times[late]) / statistics.median(times[early])


def rollout_without_cache(
    spec: GeneratorSpec, model: CausalWanTransformer, frames: int, seed: int
) -> torch.Tensor:
    """The same sampler recomputing all earlier clean frames at t=0 for every step of every block."""
    cfg, schedule, steps = (
        config(spec, frames),
        FlowMatchSchedule(spec.sampler.timestep_shift),
        denoising_steps(spec.sampler),
    )
    block = model.num_frame_per_block
    shape = (1, cfg.latent_channels, block, cfg.latent_height, cfg.latent_width)
    generator = torch.Generator().manual_seed(seed)
    text = torch.randn(1, 8, spec.transformer.text_dim, generator=torch.Generator().manual_seed(seed))
    clean = torch.zeros(1, cfg.latent_channels, 0, cfg.latent_height, cfg.latent_width)
    for start in range(0, frames, block):
        x = torch.randn(shape, generator=generator)
        for i, t in enumerate(steps):
            timestep = torch.tensor([[0.0] * start + [t] * block])
            flow = model(torch.cat([clean, x], dim=2), timestep, text).sample
            assert flow is not None
            x0 = schedule.flow_to_x0(flow[:, :, start:], x, timestep[:, start:])
            if i + 1 < len(steps):
                x = schedule.add_noise(
                    x0, torch.randn(shape, generator=generator), torch.tensor([steps[i + 1]])
                )
        clean = torch.cat([clean, x0], dim=2)
    return clean


def streaming(spec: GeneratorSpec, model: CausalWanTransformer, frames: int, seed: int) -> torch.Tensor:
    text = torch.randn(1, 8, spec.transformer.text_dim, generator=torch.Generator().manual_seed(seed))
    return rollout(model, text, config(spec, frames), generator=torch.Generator().manual_seed(seed)).latents


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def load_spec(config_path: str, size: int) -> GeneratorSpec:
    spec = GeneratorSpec.model_validate(yaml.safe_load(Path(config_path).read_text()))
    return spec.model_copy(update={"video": spec.video.model_copy(update={"height": size, "width": size})})


def memory_child(config_path: str, size: int, frames: int) -> None:
    """Run in a fresh process: one rollout; print peak RSS and the cache's bytes as JSON."""
    spec = load_spec(config_path, size)
    model = build(spec)
    caches: list[KVCache] = []

    def make() -> KVCache:
        caches.append(
            sink_cache(spec, model) if frames > spec.video.train_latent_frames else KVCache(len(model.blocks))
        )
        return caches[-1]

    text = torch.randn(1, 8, spec.transformer.text_dim)
    with torch.inference_mode():  # a warm-up block, so lazy allocations are not counted as the rollout's
        rollout(
            model, text, config(spec, model.num_frame_per_block), generator=torch.Generator().manual_seed(1)
        )
        before = rss_mib()
        rollout(
            model, text, config(spec, frames), generator=torch.Generator().manual_seed(0), make_cache=make
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cache = caches[0]
    stores = [*cache.layers, *getattr(cache, "early", [])]
    cache_bytes = sum(e.k.nbytes + e.v.nbytes for e in stores if e is not None)
    print(json.dumps({"peak_mib": peak, "rollout_mib": peak - before, "cache_mib": cache_bytes / 2**20}))


def measure_memory(config_path: str, size: int, frames: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--config", config_path, "--size", str(size), "--memory-child", str(frames)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.config, args.size, args.memory_child)
        return
    spec = load_spec(args.config, args.size)
    console = Console()
    model = build(spec)
    blocks_5s = FRAMES_5S // model.num_frame_per_block
    side = args.size // spec.codec.spatial_factor
    console.print(
        f"[bold]Toy-scale rollout benchmark[/]: {args.config}, {args.size}x{args.size} px, "
        f"{model.tokens_per_frame(side, side)} tokens per latent frame, "
        f"blocks of {model.num_frame_per_block}, {torch.get_num_threads()} threads"
    )
    block_times(spec, model, FRAMES_5S, rolling=False)  # warm-up

    rows: list[tuple[str, str, str, str]] = []
    unbounded = build(spec, rope_max_seq_len=2 * FRAMES_30S)
    sink_runs, grow_runs = [], []
    for _ in range(args.repeats):  # interleaved; per block the fastest run, which filters out a busy machine
        sink_runs.append(block_times(spec, model, FRAMES_30S, rolling=True))
        grow_runs.append(block_times(spec, unbounded, FRAMES_30S, rolling=False))
    sink_times = [min(c) for c in zip(*sink_runs, strict=True)]
    grow_times = [min(c) for c in zip(*grow_runs, strict=True)]
    # Early: the first blocks with a full attention window (the end of the first 5 s); the blocks
    # before attend to a cache still filling up, so they are cheaper by construction.
    full = slice(blocks_5s - 2, blocks_5s)
    last = slice(-blocks_5s, None)
    sink_ratio = late_vs_early(sink_times, full, last)
    rows.append((
        "per-frame cost, last 5 s of 30 s / first full-window blocks, Rolling Sink",
        f"{sink_ratio:.2f}x", "<= 1.2x", verdict(sink_ratio <= 1.2),
    ))  # fmt: skip
    rows.append((
        "  the same against the whole first 5 s (cache filling up)",
        f"{late_vs_early(sink_times, slice(0, blocks_5s), last):.2f}x", "", "",
    ))  # fmt: skip
    rows.append((
        "  with an unbounded cache instead (for contrast)",
        f"{late_vs_early(grow_times, full, last):.2f}x", "", "",
    ))  # fmt: skip

    mem5, mem30 = (
        measure_memory(args.config, args.size, FRAMES_5S),
        measure_memory(args.config, args.size, FRAMES_30S),
    )
    peak_ratio = mem30["peak_mib"] / mem5["peak_mib"]
    rows.append(
        ("peak RSS of the process, 30 s / 5 s", f"{peak_ratio:.2f}x", "<= 1.2x", verdict(peak_ratio <= 1.2))
    )
    rows.append((
        f"  rollout above the loaded model: {mem30['rollout_mib']:.1f} / {mem5['rollout_mib']:.1f} MiB",
        f"{mem30['rollout_mib'] / max(mem5['rollout_mib'], 1e-9):.2f}x", "", "",
    ))  # fmt: skip
    rows.append((
        f"  KV cache at the end: {mem30['cache_mib']:.2f} / {mem5['cache_mib']:.2f} MiB",
        f"{mem30['cache_mib'] / mem5['cache_mib']:.2f}x", "", "",
    ))  # fmt: skip

    with torch.inference_mode():
        start = time.perf_counter()
        cached = streaming(spec, model, FRAMES_5S, seed=0)
        t_cache = time.perf_counter() - start
        start = time.perf_counter()
        recomputed = rollout_without_cache(spec, model, FRAMES_5S, seed=0)
        t_recompute = time.perf_counter() - start
    diff = (cached - recomputed).abs().max().item()
    rows.append((
        f"5 s rollout, recompute without cache / KV-cache streaming ({t_recompute:.1f} s / {t_cache:.1f} s)",
        f"{t_recompute / t_cache:.2f}x", "reported", f"max |diff| {diff:.1e}",
    ))  # fmt: skip

    print_ratios(console, rows)


if __name__ == "__main__":
    main()
