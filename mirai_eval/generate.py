"""Rollouts of a checkpoint for a prompt: 5 s inside the training horizon, 30 s past it.

Past the training horizon the KV cache turns into a Rolling Sink (bounded memory, re-based RoPE),
as the paper does for its 30 s results; inside it the rollout is Self-Forcing's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import mirai_train
from mirai_train.checkpoint import load_checkpoint, source_version
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.codecs import VideoCodec, build_codec
from mirai_train.models.kv_cache import KVCache
from mirai_train.models.rolling_sink import RollingSinkCache
from mirai_train.models.text_encoders import TextEncoder, build_text_encoder
from mirai_train.sampling import RolloutConfig, rollout
from mirai_train.spec import GeneratorSpec
from mirai_train.video import write_mp4

# The code a rollout runs through: a change in any of these files changes every video key.
GENERATION_SOURCES = (
    Path(__file__),
    Path(mirai_train.__file__).parent / "video.py",
    Path(mirai_train.__file__).parent / "sampling.py",
    Path(mirai_train.__file__).parent / "spec.py",
    *sorted((Path(mirai_train.__file__).parent / "models").glob("*.py")),
    # The toy codec fits its basis on rendered sprites clips when it is built: the renderer decides
    # decoded pixels too.
    *sorted((Path(mirai_train.__file__).parent / "world").glob("*.py")),
)
# Hashed when this module is imported, with the code itself, so a file edited later in a live
# checkout cannot give the running (old) code the new code's keys.
GENERATION_CODE = source_version(GENERATION_SOURCES)


def to_frames(video: Tensor) -> Tensor:
    """A decoded video [3, T, H, W] in [-1, 1] -> uint8 frames [T, H, W, 3] on the CPU."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


@dataclass
class Generator:
    """A loaded checkpoint with its codec and text encoder: everything that turns text into video."""

    spec: GeneratorSpec
    model: CausalWanTransformer
    codec: VideoCodec
    text_encoder: TextEncoder

    @classmethod
    def load(
        cls,
        checkpoint: Path | str,
        *,
        use_ema: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Generator:
        """The checkpoint's generator, codec and text encoder; the generator and the codec in `dtype`.

        bf16 is how the releases generate: Self-Forcing's `inference.py` casts its whole pipeline,
        the VAE included, to bfloat16 and decodes each video of a batch on its own.
        """
        spec, model = load_checkpoint(checkpoint, use_ema=use_ema, device=device, dtype=dtype)
        codec = build_codec(spec.codec, device=device, dtype=dtype)
        return cls(spec, model.eval(), codec, build_text_encoder(spec.text_encoder, device=device))

    def latent_frames(self, seconds: float) -> int:
        """Latent frames covering `seconds`: 1 + ceil(fps*s / 4), rounded up to whole blocks (5 s -> 21)."""
        fps, block = self.spec.video.fps, self.model.num_frame_per_block
        frames = 1 + math.ceil(seconds * fps / self.codec.temporal_factor - 1e-9)
        return block * math.ceil(frames / block)

    def rollout_config(self, latent_frames: int) -> RolloutConfig:
        video = self.spec.video
        factor = self.codec.spatial_factor
        return RolloutConfig(
            num_frames=latent_frames,
            latent_channels=self.codec.latent_channels,
            latent_height=video.height // factor,
            latent_width=video.width // factor,
            sampler=self.spec.sampler,
            repeat_block_noise=self.past_horizon(latent_frames) and self.spec.rolling_sink.repeat_block_noise,
        )

    def past_horizon(self, latent_frames: int) -> bool:
        return latent_frames > self.spec.video.train_latent_frames

    def make_cache(self, latent_frames: int) -> Callable[[], KVCache]:
        """Plain cache inside the training horizon; Rolling Sink past it."""
        layers = len(self.model.blocks)
        if not self.past_horizon(latent_frames):
            return lambda: KVCache(layers)
        sink = self.spec.rolling_sink
        return lambda: RollingSinkCache(
            layers,
            window_frames=sink.window_frames,
            sweep_frames=sink.sweep_frames,
            block_frames=self.model.num_frame_per_block,
        )

    def generate(
        self, prompt: str, seconds: float, seed: int, on_block: Callable[[int, int], None] | None = None
    ) -> Tensor:
        """Video frames uint8 [T, H, W, 3] for `prompt`; the same seed gives the same frames."""
        return self.generate_batch([prompt], seconds, [seed], on_block)[0]

    @torch.no_grad()
    def generate_batch(
        self,
        prompts: Sequence[str],
        seconds: float,
        seeds: Sequence[int],
        on_block: Callable[[int, int], None] | None = None,
    ) -> list[Tensor]:
        """One rollout for several prompts: each video draws its own seed's noise and is decoded on
        its own, so it equals its batch-1 twin up to the float rounding of batched matmuls."""
        if len(prompts) != len(seeds) or not prompts:
            raise ValueError(f"{len(prompts)} prompts and {len(seeds)} seeds: give one seed per prompt")
        parameter = next(self.model.parameters())
        device, dtype = parameter.device, parameter.dtype
        frames = self.latent_frames(seconds)
        text = self.text_encoder.encode(list(prompts)).to(device, dtype)
        sampler = self.spec.sampler
        negative = None
        if sampler.guidance_scale != 1.0:
            negative = self.text_encoder.encode([sampler.negative_prompt]).to(device, dtype)
            negative = negative.expand(len(prompts), -1, -1)
        generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        latents = rollout(
            self.model,
            text,
            self.rollout_config(frames),
            generator=generators,
            negative_text=negative,
            make_cache=self.make_cache(frames),
            on_block=on_block,
        ).latents
        return [to_frames(self.codec.decode(latents[i : i + 1])[0]) for i in range(len(prompts))]

    def write(self, frames: Tensor, out: Path | str) -> None:
        write_mp4(out, frames, fps=self.spec.video.fps)
