"""What a generator checkpoint needs to make a video: the `config.json` of a checkpoint.

One pydantic schema serves the toy and the wan scale; unknown keys are errors (`extra="forbid"`),
so a typo in a recipe or a checkpoint never passes silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mirai_train.config_files import Strict


class TransformerSpec(Strict):
    """Keyword arguments of `CausalWanTransformer` (diffusers' Wan keys plus the causal ones)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 12
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    rope_max_seq_len: int = 1024
    num_frame_per_block: int = 1


class CodecSpec(Strict):
    """`pixel`: weightless space/time-to-depth; `sprites_pca`: the toy codec (pixel patches on
    principal components fitted on sprites); `wan_vae`: AutoencoderKLWan loaded from `path`."""

    kind: Literal["pixel", "sprites_pca", "wan_vae"]
    path: str | None = None
    spatial_factor: int = 8
    temporal_factor: int = 4
    latent_channels: int = 16


class TextEncoderSpec(Strict):
    """`toy`: seeded hashed word embeddings (no weights); `umt5`: UMT5-XXL from a local `path`."""

    kind: Literal["toy", "umt5"]
    path: str | None = None
    dim: int = 4096
    max_length: int = 512
    seed: int = 0


class SamplerSpec(Strict):
    """Few-step causal rollout settings (Self-Forcing inference defaults)."""

    denoising_step_list: list[float] = Field(default_factory=lambda: [1000.0, 750.0, 500.0, 250.0])
    warp_denoising_step: bool = True
    timestep_shift: float = 5.0
    num_train_timesteps: int = 1000
    context_noise: float = 0.0
    guidance_scale: float = 1.0  # uncond + scale * (cond - uncond) (`sampling.guided`); 1: none
    negative_prompt: str = ""


class VideoSpec(Strict):
    fps: int = 16
    height: int = 480
    width: int = 832
    train_latent_frames: int = 21


class RollingSinkSpec(Strict):
    """Rolling Sink settings for rollouts past the training horizon (haodong2000/RollingSink)."""

    window_frames: int = 21
    sweep_frames: int = 18
    repeat_block_noise: bool = True  # as Rolling Sink's release: one block of initial noise, reused


class GeneratorSpec(Strict):
    transformer: TransformerSpec
    codec: CodecSpec
    text_encoder: TextEncoderSpec
    sampler: SamplerSpec = SamplerSpec()
    video: VideoSpec = VideoSpec()
    rolling_sink: RollingSinkSpec = RollingSinkSpec()

    def transformer_kwargs(self) -> dict[str, Any]:
        return self.transformer.model_dump()
