"""The probe's measurements on one frozen generator: rollouts with taps, readouts, distances.

`Frozen` wraps a loaded checkpoint with the probe's geometry: a segment is a block of
`num_frame_per_block` latent frames, `per_block` tokens, each token one latent patch (see
`readout.py`). Every video the probe compares is decoded by the generator's own codec and
compared as RGB in [0, 1], over the frames of the segments that were predicted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mirai_eval.generate import Generator
from mirai_eval.probe.readout import Readout, fit_readout, latent_patches, patches_to_latents
from mirai_eval.probe.spec import DeltaResult, FitReport, ModelProbe, ProbeSpec, PromptFile, Value
from mirai_eval.probe.sprites import PositionTally, tally_positions
from mirai_train.checkpoint import content_sha256
from mirai_train.losses.foresight import layer_at_fraction, official_layer_to_tap
from mirai_train.sampling import FlowMatchSchedule, denoising_steps, rollout
from mirai_train.world import (
    HELDOUT_BASE_SEED,
    Scene,
    SpritesConfig,
    clip_seed,
    heldout_prompts,
    render,
    sample_scene,
)
from mirai_train.world import to_tensor as video_tensor
from mirai_train.world import tracks as sprite_tracks

HELDOUT_OFFSET, BRANCH_OFFSET, TEACHER_OFFSET = 100_000, 200_000, 300_000


@dataclass(frozen=True)
class Prompt:
    text: str
    scene_seed: int | None  # sprites: the scene the prompt describes


class Frozen:
    """A generator under probe: frozen weights, its tap layer and the segment/token geometry."""

    def __init__(self, generator: Generator, layer: int | None) -> None:
        self.generator = generator
        self.model = generator.model.eval().requires_grad_(False)
        num_layers = len(self.model.blocks)
        self.layer = layer_at_fraction(0.5, num_layers) if layer is None else layer
        if self.layer >= num_layers:
            raise ValueError(f"probe layer {self.layer} is outside 0..{num_layers - 1} of this checkpoint")
        self.tap = official_layer_to_tap(self.layer)
        self.device = next(self.model.parameters()).device
        self.block = self.model.num_frame_per_block
        video = generator.spec.video
        factor = generator.codec.spatial_factor
        self.latent_hw = (video.height // factor, video.width // factor)
        self.per_block = self.block * self.model.tokens_per_frame(*self.latent_hw)
        self.patch = self.model.patch

    def text(self, prompt: str) -> tuple[Tensor, Tensor | None]:
        encoder, sampler = self.generator.text_encoder, self.generator.spec.sampler
        negative = None
        if sampler.guidance_scale != 1.0:
            negative = encoder.encode([sampler.negative_prompt]).to(self.device)
        return encoder.encode([prompt]).to(self.device), negative

    def rollout(
        self, prompt: str, latent_frames: int, seed: int, branch: tuple[int, int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Latents [1, C, F, H, W] and taps [n_blocks, per_block, D]. `branch=(blocks, seed2)`: after
        that many blocks the noise generator is reseeded, so branches share their prefix exactly."""
        text, negative = self.text(prompt)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        on_block: Callable[[int, int], None] | None = None
        if branch is not None:
            after, branch_seed = branch

            def on_block(done: int, total: int) -> None:
                if done == after:
                    generator.manual_seed(branch_seed)

        with torch.no_grad():
            out = rollout(
                self.model,
                text,
                self.generator.rollout_config(latent_frames),
                generator=generator,
                negative_text=negative,
                make_cache=self.generator.make_cache(latent_frames),
                on_block=on_block,
                tap_layer=self.tap,
            )
        return out.latents, torch.cat(out.taps, dim=1)[0].unflatten(0, (-1, self.per_block))

    def teacher_forced(self, prompt: str, latents: Tensor, seed: int) -> Tensor:
        """Taps [n_blocks, per_block, D] while reading `latents`: segment i at the final denoising
        step's noise level, earlier segments clean: about the state of a rollout that had made them."""
        text, _ = self.text(prompt)
        sampler = self.generator.spec.sampler
        schedule = FlowMatchSchedule(sampler.timestep_shift, sampler.num_train_timesteps)
        level = torch.full((1,), denoising_steps(sampler)[-1], device=self.device)
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
        noisy = schedule.add_noise(latents, noise, level)
        with torch.no_grad():
            out = self.model(noisy, level, text, clean_context=latents, tap_layer=self.tap)
        assert out.tap is not None
        return out.tap[0].unflatten(0, (-1, self.per_block))

    def blocks(self, latents: Tensor) -> Tensor:
        """Latents [1, C, F, H, W] -> patches per block [n_blocks, per_block, P]."""
        return latent_patches(latents, self.patch)[0].unflatten(0, (-1, self.per_block))

    def latents(self, blocks: Tensor) -> Tensor:
        """Inverse of `blocks`."""
        frames = blocks.shape[0] * self.block
        channels = self.generator.codec.latent_channels
        return patches_to_latents(blocks.flatten(0, 1)[None], channels, frames, *self.latent_hw, self.patch)

    def pixels(self, blocks: Tensor) -> Tensor:
        """Decoded RGB [T, H, W, 3] in [0, 1] of patches per block."""
        video = self.generator.codec.decode(self.latents(blocks))[0]
        return ((video.clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)

    def first_frame(self, block: int) -> int:
        """Index of the first video frame of segment `block` (the codec's causal frame rule)."""
        return 0 if block == 0 else self.generator.codec.pixel_frames(block * self.block)


def predicted_blocks(readout: Readout, taps: Tensor, truth: Tensor, delta: int) -> Tensor:
    """Segments with i + delta predicted from segment i; the first `delta` (no source) kept true."""
    predicted = readout(taps[:-delta].flatten(0, 1).float()).unflatten(0, (-1, taps.shape[1]))
    return torch.cat([truth[:delta], predicted.to(truth)])


def collapse_blocks(truth: Tensor, delta: int) -> Tensor:
    """The collapse baseline: segment i shown as segment i + delta (first `delta` kept true)."""
    return torch.cat([truth[:delta], truth[:-delta]])


@dataclass(frozen=True)
class SegmentErrors:
    """Pixel MSE of one held-out rollout at one Delta, over the frames of segments Delta onwards."""

    readout_future: float
    current_future: float  # the collapse baseline
    readout_current: float


def segment_errors(probe: Frozen, predicted: Tensor, truth: Tensor, delta: int) -> SegmentErrors:
    """Readout (`predicted` segments) and the collapse baseline against the rollout's own future."""
    start = probe.first_frame(delta)
    future = probe.pixels(truth)[start:]
    readout = probe.pixels(predicted)[start:]
    current = probe.pixels(collapse_blocks(truth, delta))[start:]
    return SegmentErrors(mse(readout, future), mse(current, future), mse(readout, current))


def mse(a: Tensor, b: Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def psnr(errors: list[float]) -> Value:
    """Mean over videos of 10 log10(1 / MSE), for pixels in [0, 1]."""
    if any(e == 0 for e in errors):
        return Value(None, "prediction identical to the target (MSE 0)")
    return Value(float(np.mean([10 * math.log10(1 / e) for e in errors])))


def to_uint8(frames: Tensor) -> np.ndarray:
    return (frames * 255).round().to(torch.uint8).cpu().numpy()


def load_prompts(spec: ProbeSpec, config: SpritesConfig) -> tuple[list[Prompt], list[Prompt]]:
    """(training, held-out) prompts: sprites scenes (held-out ones from the fixed evaluation set), or files."""
    if spec.prompts == "sprites":
        if spec.train_base_seed == HELDOUT_BASE_SEED:
            raise ValueError(
                f"train_base_seed {HELDOUT_BASE_SEED} is the held-out prompts' seed; choose another"
            )
        seeds = [clip_seed(spec.train_base_seed, i) for i in range(spec.train_prompts)]
        train = [Prompt(sample_scene(s, config).prompt, s) for s in seeds]
        return train, [Prompt(h.prompt, h.seed) for h in heldout_prompts(spec.heldout_prompts, config)]
    return _prompt_file(spec.prompts.train, spec.train_prompts), _prompt_file(
        spec.prompts.heldout, spec.heldout_prompts
    )


def _prompt_file(source: PromptFile, count: int) -> list[Prompt]:
    data = source.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != source.sha256:
        raise ValueError(f"{source.path}: sha256 differs from the probe spec's; the prompt file changed")
    lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    if len(lines) < count:
        raise ValueError(f"{source.path}: {len(lines)} prompts, the probe asks for {count}")
    return [Prompt(line, None) for line in lines[:count]]


def train_readouts(
    spec: ProbeSpec, probe: Frozen, prompts: list[Prompt], frames: int
) -> dict[int, tuple[Readout, FitReport]]:
    """One readout per Delta, fitted on the rollouts of the training prompts."""
    inputs: dict[int, list[Tensor]] = {d: [] for d in spec.deltas}
    targets: dict[int, list[Tensor]] = {d: [] for d in spec.deltas}
    for i, prompt in enumerate(prompts):
        latents, taps = probe.rollout(prompt.text, frames, spec.seed + i)
        patches = probe.blocks(latents)
        if spec.train_tokens_per_block is not None and spec.train_tokens_per_block < probe.per_block:
            keep = torch.randperm(probe.per_block, generator=torch.Generator().manual_seed(spec.seed + i))
            keep = keep[: spec.train_tokens_per_block]
            taps, patches = taps[:, keep], patches[:, keep]
        for d in spec.deltas:
            inputs[d].append(taps[:-d].flatten(0, 1).float().cpu())
            targets[d].append(patches[d:].flatten(0, 1).float().cpu())
    return {
        d: fit_readout(torch.cat(inputs[d]), torch.cat(targets[d]), spec.readout, spec.seed + d)
        for d in spec.deltas
    }


def measure_model(
    spec: ProbeSpec, label: str, checkpoint: Path, use_ema: bool, device: str
) -> tuple[ModelProbe, Frozen, dict[int, Readout]]:
    """Every number of one checkpoint (see the module docstring), and its readouts for the images."""
    probe = Frozen(Generator.load(checkpoint, use_ema=use_ema, device=device), spec.layer)
    frames = probe.generator.latent_frames(spec.seconds)
    n_blocks = frames // probe.block
    if spec.context_blocks + spec.max_delta > n_blocks:
        raise ValueError(
            f"{spec.seconds} s is {n_blocks} segments: context_blocks {spec.context_blocks} + max_delta "
            f"{spec.max_delta} do not fit; raise seconds or lower them"
        )
    train, heldout = load_prompts(spec, sprites_config(probe))
    fitted = train_readouts(spec, probe, train, frames)
    readouts = {d: r for d, (r, _) in fitted.items()}

    errors: dict[int, list[SegmentErrors]] = {d: [] for d in spec.deltas}
    for j, prompt in enumerate(heldout):
        latents, taps = probe.rollout(prompt.text, frames, spec.seed + HELDOUT_OFFSET + j)
        truth = probe.blocks(latents)
        for d in spec.deltas:
            errors[d].append(segment_errors(probe, predicted_blocks(readouts[d], taps, truth, d), truth, d))

    averages = continuation_distances(spec, probe, readouts, heldout[: spec.average_prompts])
    positions = sprite_positions_per_delta(spec, probe, readouts, heldout)
    results = []
    for d in spec.deltas:
        avg, pos = averages[d], positions[d]
        results.append(
            DeltaResult(
                delta=d,
                readout_future=psnr([e.readout_future for e in errors[d]]),
                current_future=psnr([e.current_future for e in errors[d]]),
                readout_current=psnr([e.readout_current for e in errors[d]]),
                readout_future_mse=float(np.mean([e.readout_future for e in errors[d]])),
                current_future_mse=float(np.mean([e.current_future for e in errors[d]])),
                readout_future_mses=[e.readout_future for e in errors[d]],
                current_future_mses=[e.current_future for e in errors[d]],
                readout_average=avg["readout_average"],
                readout_single=avg["readout_single"],
                spread=avg["spread"],
                current_average=avg["current_average"],
                position_readout=pos["readout"],
                position_current=pos["current"],
                detection_readout=pos["detection"],
                fit=fitted[d][1],
            )
        )
    sha = content_sha256(checkpoint)
    return ModelProbe(label, str(checkpoint), sha, probe.layer, probe.tap, results), probe, readouts


def continuation_distances(
    spec: ProbeSpec, probe: Frozen, readouts: dict[int, Readout], prompts: list[Prompt]
) -> dict[int, dict[str, Value]]:
    """Part 2: the one-shot readout from the last context segment vs `continuations` stochastic futures."""
    i = spec.context_blocks - 1
    frames = (spec.context_blocks + spec.max_delta) * probe.block
    sums: dict[int, dict[str, list[float]]] = {d: {} for d in spec.deltas}
    for j, prompt in enumerate(prompts):
        seed = spec.seed + HELDOUT_OFFSET + j
        runs = [
            probe.rollout(
                prompt.text,
                frames,
                seed,
                (spec.context_blocks, spec.seed + BRANCH_OFFSET + j * spec.continuations + k),
            )
            for k in range(spec.continuations)
        ]
        context, taps = probe.blocks(runs[0][0])[: i + 1], runs[0][1]
        predicted = torch.cat(
            [context, *(readouts[d](taps[i].float())[None].to(context) for d in spec.deltas)]
        )
        readout_video = probe.pixels(predicted)
        current_video = probe.pixels(torch.cat([context, context[i:].expand(spec.max_delta, -1, -1)]))
        futures = torch.stack([probe.pixels(probe.blocks(latents)) for latents, _ in runs])
        mean = futures.mean(0)
        for d in spec.deltas:
            window = slice(probe.first_frame(i + d), probe.first_frame(i + d + 1))
            target = mean[window]
            values = {
                "readout_average": mse(readout_video[window], target),
                "readout_single": float(np.mean([mse(readout_video[window], f[window]) for f in futures])),
                "spread": float(np.mean([mse(f[window], target) for f in futures])),
                "current_average": mse(current_video[window], target),
            }
            for key, value in values.items():
                sums[d].setdefault(key, []).append(value)
    return {d: {k: Value(float(np.mean(v))) for k, v in sums[d].items()} for d in spec.deltas}


def sprite_positions_per_delta(
    spec: ProbeSpec, probe: Frozen, readouts: dict[int, Readout], prompts: list[Prompt]
) -> dict[int, dict[str, Value]]:
    """Part 3: positions decoded from readouts of teacher-forced held-out scenes vs the tracks."""
    if spec.prompts != "sprites":
        reason = "needs the sprites world's ground truth; these prompts come from files"
        return {d: {k: Value(None, reason) for k in ("readout", "current", "detection")} for d in spec.deltas}
    config = sprites_config(probe)
    frames = probe.generator.latent_frames(spec.seconds)
    readout_tally = {d: PositionTally() for d in spec.deltas}
    current_tally = {d: PositionTally() for d in spec.deltas}
    for j, prompt in enumerate(prompts):
        assert prompt.scene_seed is not None
        scene = sample_scene(prompt.scene_seed, config)
        latents, truth = true_latents(probe, scene, frames)
        taps = probe.teacher_forced(prompt.text, latents, spec.seed + TEACHER_OFFSET + j)
        track = sprite_tracks(scene, probe.generator.codec.pixel_frames(frames))
        colours = [sprite.colour for sprite in scene.objects]
        for d in spec.deltas:
            start = probe.first_frame(d)
            centres, visible = track.centres[start:], track.visible[start:]
            readout_frames = to_uint8(probe.pixels(predicted_blocks(readouts[d], taps, truth, d))[start:])
            current_frames = to_uint8(probe.pixels(collapse_blocks(truth, d))[start:])
            readout_tally[d] += tally_positions(readout_frames, centres, visible, colours)
            current_tally[d] += tally_positions(current_frames, centres, visible, colours)
    return {d: _position_values(readout_tally[d], current_tally[d]) for d in spec.deltas}


def _position_values(readout: PositionTally, current: PositionTally) -> dict[str, Value]:
    def error(tally: PositionTally, what: str) -> Value:
        if tally.mean_error is None:
            return Value(
                None, f"no sprite colour found in the {what} ({tally.eligible} visible sprite-frames)"
            )
        return Value(tally.mean_error)

    detection = readout.detection_rate
    return {
        "readout": error(readout, "readout"),
        "current": error(current, "current segment"),
        "detection": Value(detection)
        if detection is not None
        else Value(None, "no visible sprite in the frames"),
    }


def sprites_config(probe: Frozen) -> SpritesConfig:
    """The sprites world at the generator's size and frame rate (sizes are fractions of the frame)."""
    video = probe.generator.spec.video
    return SpritesConfig(height=video.height, width=video.width, fps=video.fps)


def true_latents(probe: Frozen, scene: Scene, latent_frames: int) -> tuple[Tensor, Tensor]:
    """The rendered scene through the codec: latents [1, C, F, H, W] and patches per block."""
    pixels = video_tensor(render(scene, probe.generator.codec.pixel_frames(latent_frames)))
    latents = probe.generator.codec.encode(pixels[None].to(probe.device))
    return latents, probe.blocks(latents)
