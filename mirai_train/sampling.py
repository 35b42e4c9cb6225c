"""Flow matching schedule and the few-step causal rollout (Self-Forcing inference).

Wan is trained with rectified flow: x_t = (1 - sigma) x0 + sigma * noise, the network predicts
the flow noise - x0, and timestep = 1000 * sigma. Shifting, sigma = s*shift / (1 + (shift-1)*s),
spends more of the schedule at high noise; the few-step generator's steps are warped through it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.kv_cache import KVCache
from mirai_train.spec import SamplerSpec


@dataclass(frozen=True)
class FlowMatchSchedule:
    shift: float = 5.0
    num_train_timesteps: int = 1000

    def shifted(self, s: Tensor) -> Tensor:
        """sigma for unshifted noise level(s) s in [0, 1]."""
        return self.shift * s / (1 + (self.shift - 1) * s)

    def warp(self, steps: list[float]) -> list[float]:
        """Map nominal steps (e.g. [1000, 750, 500, 250]) through the shift: [1000, 937.5, 833.3, 625]."""
        s = torch.tensor(steps, dtype=torch.float64) / self.num_train_timesteps
        return [float(t) for t in self.shifted(s) * self.num_train_timesteps]

    def sigma(self, timestep: Tensor) -> Tensor:
        return timestep / self.num_train_timesteps

    def add_noise(self, x0: Tensor, noise: Tensor, timestep: Tensor) -> Tensor:
        """x_t at `timestep` ([B] or [B, F]) for latents [B, C, F, H, W]."""
        sigma = _per_frame(self.sigma(timestep), x0)
        return (1 - sigma) * x0 + sigma * noise

    def flow_to_x0(self, flow: Tensor, xt: Tensor, timestep: Tensor) -> Tensor:
        return xt - _per_frame(self.sigma(timestep), xt) * flow

    def sample_timesteps(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Training timesteps: s ~ U[0, 1), shifted (the flow-matching and DMD draw)."""
        s = torch.rand(shape, generator=generator)
        return self.shifted(s) * self.num_train_timesteps


def _per_frame(sigma: Tensor, like: Tensor) -> Tensor:
    """Broadcast [B] or [B, F] noise levels over latents [B, C, F, H, W]."""
    if sigma.ndim == 1:
        return sigma.view(-1, 1, 1, 1, 1).to(like.dtype)
    return sigma[:, None, :, None, None].to(like.dtype)


def guided(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance as diffusers and Wan sample with it: uncond + scale * (cond - uncond);
    scale 1 is the conditional prediction alone. (The DMD real score keeps Self-Forcing's own
    convention, `losses.dmd.cfg`.)"""
    return uncond + scale * (cond - uncond)


def denoising_steps(spec: SamplerSpec) -> list[float]:
    schedule = FlowMatchSchedule(spec.timestep_shift, spec.num_train_timesteps)
    steps = list(spec.denoising_step_list)
    return schedule.warp(steps) if spec.warp_denoising_step else steps


@dataclass
class RolloutConfig:
    """Everything a causal rollout needs beyond the model and the prompt."""

    num_frames: int  # latent frames
    latent_channels: int
    latent_height: int
    latent_width: int
    sampler: SamplerSpec
    repeat_block_noise: bool = False  # Rolling Sink's long rollouts reuse one block of initial noise


@dataclass
class Rollout:
    """Generated latents [B, C, F, H, W]; with a tap layer, each block's tokens [B, N, D] at its exit step."""

    latents: Tensor
    taps: list[Tensor]


def rollout(
    model: CausalWanTransformer,
    text: Tensor,
    config: RolloutConfig,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    negative_text: Tensor | None = None,
    make_cache: Callable[[], KVCache] | None = None,
    on_block: Callable[[int, int], None] | None = None,
    exit_step: int | None = None,
    tap_layer: int | None = None,
) -> Rollout:
    """Generate block by block; the same generator state gives the same video.

    `generator`: one for the whole batch (training's draws), or one per sample, so that each video
    of a batched rollout draws the noise of its batch-1 twin (batched generation).

    Per block: start from fresh noise, run the few denoising steps (each predicts x0 and, but for
    the last, re-noises it to the next step's level), then one pass at `context_noise` writes the
    block's clean keys/values into the cache. Noise is drawn block by block, so a short rollout
    is a prefix of a longer one with the same seed (unless `repeat_block_noise`). With
    `sampler.guidance_scale != 1`, classifier-free guidance against `negative_text` keeps a second
    cache for that branch.

    Training (Self-Forcing's gradient truncation) is the same loop with `exit_step=k`: steps
    before k run without gradients, step k runs in the caller's grad mode and its x0 is the
    block's output; the context pass never carries gradients. Inference runs every step.
    """
    sampler = config.sampler
    schedule = FlowMatchSchedule(sampler.timestep_shift, sampler.num_train_timesteps)
    steps = denoising_steps(sampler)
    last = len(steps) - 1 if exit_step is None else exit_step
    if not 0 <= last < len(steps):
        raise ValueError(f"exit_step {exit_step} is outside 0..{len(steps) - 1}")
    block = model.num_frame_per_block
    if config.num_frames % block:
        raise ValueError(f"{config.num_frames} latent frames is not a multiple of the block size {block}")
    guidance = sampler.guidance_scale != 1.0
    if guidance and negative_text is None:
        raise ValueError("guidance_scale != 1 needs the negative prompt's text embedding")
    new_cache = make_cache or (lambda: KVCache(num_layers=len(model.blocks)))
    caches = [new_cache(), new_cache()] if guidance else [new_cache()]
    contexts = [text, negative_text] if guidance else [text]
    batch = text.shape[0]
    shape = (batch, config.latent_channels, block, config.latent_height, config.latent_width)
    device, dtype = text.device, text.dtype
    if not isinstance(generator, torch.Generator) and len(generator) != batch:
        raise ValueError(f"{len(generator)} generators for a batch of {batch} prompts")
    taps: list[Tensor] = []

    def randn() -> Tensor:
        if isinstance(generator, torch.Generator):
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
        one = (1, *shape[1:])
        return torch.cat([torch.randn(one, generator=g, device=device, dtype=dtype) for g in generator])

    def predict_x0(x: Tensor, t: float, start: int, write: bool, tap: bool) -> Tensor:
        timestep = torch.full((batch, block), t, device=device, dtype=dtype)
        flows = []
        for branch, (ctx, cache) in enumerate(zip(contexts, caches, strict=True)):
            layer = tap_layer if tap and branch == 0 else None
            out = model(x, timestep, ctx, frame_offset=start, cache=cache, write_cache=write, tap_layer=layer)
            assert out.sample is not None
            flows.append(out.sample)
            if out.tap is not None:
                taps.append(out.tap)
        flow = guided(flows[0], flows[1], sampler.guidance_scale) if len(flows) == 2 else flows[0]
        return schedule.flow_to_x0(flow, x, timestep)

    blocks: list[Tensor] = []
    first_noise: Tensor | None = None
    for index, start in enumerate(range(0, config.num_frames, block)):
        if first_noise is None or not config.repeat_block_noise:
            first_noise = randn()
        x = first_noise
        for i, t in enumerate(steps[: last + 1]):
            if i < last:
                with torch.no_grad():
                    x0 = predict_x0(x, t, start, write=False, tap=False)
                noise = randn()
                x = schedule.add_noise(x0, noise, torch.full((batch,), steps[i + 1], device=device))
            else:
                x0 = predict_x0(x, t, start, write=False, tap=tap_layer is not None)
        blocks.append(x0)
        with torch.no_grad():
            context = x0.detach()
            if sampler.context_noise > 0:
                noise = randn()
                context = schedule.add_noise(
                    context, noise, torch.full((batch,), sampler.context_noise, device=device)
                )
            predict_x0(context, sampler.context_noise, start, write=True, tap=False)
        if on_block is not None:
            on_block(index + 1, config.num_frames // block)
    return Rollout(latents=torch.cat(blocks, dim=2), taps=taps)


def ode_grid(schedule: FlowMatchSchedule, steps: int, include: list[float]) -> list[float]:
    """Timesteps of an Euler grid, uniform before the shift, that passes exactly through `include`."""
    s_values = {round(1 - i / steps, 12) for i in range(steps + 1)}
    for t in include:  # invert sigma = shift*s / (1 + (shift-1)*s) to put t on the grid
        sigma = t / schedule.num_train_timesteps
        s_values.add(round(sigma / (schedule.shift - (schedule.shift - 1) * sigma), 12))
    s = torch.tensor(sorted(s_values, reverse=True), dtype=torch.float64)
    return [float(t) for t in schedule.shifted(s) * schedule.num_train_timesteps]


@torch.no_grad()
def ode_trajectory(
    model: CausalWanTransformer,
    text: Tensor,
    noise: Tensor,
    grid: list[float],
    record: list[float],
    *,
    causal: bool,
    clean_context: Tensor | None = None,
    guidance_scale: float = 1.0,
    negative_text: Tensor | None = None,
    schedule: FlowMatchSchedule | None = None,
) -> Tensor:
    """Deterministic Euler sampling from `noise`; the states at `record` timesteps plus the clean end.

    Returns [B, len(record) + 1, C, F, H, W]. `causal=False` samples every frame at once (the
    bidirectional teacher, Self-Forcing's ODE pairs). `causal=True` with `clean_context` also
    samples every frame at once, each block seeing the given clean latents of the blocks before it
    (teacher forcing: the AR teacher of Causal-Forcing's causal ODE data, `clean_x` in its
    get_causal_ode_data_*.py). `causal=True` alone samples block by block, each block seeing the
    blocks sampled before it through a clean-context cache (the AR model's own many-step rollout).
    """
    schedule = schedule or FlowMatchSchedule()
    if clean_context is not None and not causal:
        raise ValueError("a clean context is seen block-causally: pass causal=True with it")
    if guidance_scale != 1.0 and negative_text is None:
        raise ValueError("guidance needs the negative prompt's text embedding")
    missing = [t for t in record if not any(abs(t - g) < 1e-6 for g in grid)]
    if missing or abs(grid[-1]) > 1e-9:
        raise ValueError(f"the grid must end at 0 and contain the recorded timesteps; missing {missing}")

    def flow(x: Tensor, t: float, start: int, caches: list[KVCache] | None, write: bool = False) -> Tensor:
        timestep = torch.full(x.shape[:1], t, device=x.device)
        outs = []
        texts = [text] if guidance_scale == 1.0 else [text, negative_text]
        for branch, ctx in enumerate(texts):
            cache = caches[branch] if caches is not None else None
            out = model(
                x, timestep, ctx, frame_offset=start, causal=causal, cache=cache, write_cache=write,
                clean_context=clean_context,
            )  # fmt: skip
            assert out.sample is not None
            outs.append(out.sample)
        return guided(outs[0], outs[1], guidance_scale) if len(outs) == 2 else outs[0]

    def euler(x: Tensor, start: int, caches: list[KVCache] | None) -> list[Tensor]:
        states = []
        for t, t_next in itertools.pairwise(grid):
            if any(abs(t - r) < 1e-6 for r in record):
                states.append(x)
            x = x + (t_next - t) / schedule.num_train_timesteps * flow(x, t, start, caches)
        return [*states, x]

    if not causal or clean_context is not None:
        return torch.stack(euler(noise, 0, None), dim=1)
    block = model.num_frame_per_block
    branches = 1 if guidance_scale == 1.0 else 2
    caches = [KVCache(len(model.blocks)) for _ in range(branches)]
    per_block = []
    for start in range(0, noise.shape[2], block):
        states = euler(noise[:, :, start : start + block], start, caches)
        flow(states[-1], 0.0, start, caches, write=True)  # the clean block becomes context
        per_block.append(torch.stack(states, dim=1))
    return torch.cat(per_block, dim=3)
