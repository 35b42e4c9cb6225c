"""The real Wan2.1-T2V-1.3B architecture, random weights, on the CPU: a two-block causal rollout.

Slow (about a minute and 6 GB: 1.42e9 float32 parameters); run by `nox -s slow`. No weights are
needed: the spec is the wan generator config, and the text embedding is a random UMT5-sized tensor
[1, 512, 4096] (what `UMT5TextEncoder` hands the DiT).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import torch

from mirai_train.config_files import load_model
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.sampling import RolloutConfig, rollout
from mirai_train.spec import GeneratorSpec

WAN = Path(__file__).parents[1] / "mirai_train/configs/wan"


@pytest.mark.slow
def test_real_size_chunkwise_rollout_of_two_blocks() -> None:
    spec = load_model(WAN / "generator_chunkwise.yaml", GeneratorSpec)
    torch.manual_seed(0)
    began = time.perf_counter()
    model = CausalWanTransformer(**spec.transformer_kwargs()).eval()
    built = time.perf_counter() - began
    assert 1.3e9 <= sum(p.numel() for p in model.parameters()) < 1.5e9
    block = model.num_frame_per_block  # 3 latent frames: chunk-wise
    config = RolloutConfig(
        num_frames=2 * block, latent_channels=spec.transformer.in_channels, latent_height=4, latent_width=4,
        sampler=spec.sampler,
    )  # fmt: skip
    text = torch.randn(1, spec.text_encoder.max_length, spec.text_encoder.dim)
    began = time.perf_counter()
    with torch.no_grad():
        out = rollout(model, text, config, generator=torch.Generator().manual_seed(0))
    rolled = time.perf_counter() - began
    assert out.latents.shape == (1, 16, 2 * block, 4, 4)
    assert torch.isfinite(out.latents).all() and out.latents.std() > 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux
    print(
        f"\n1.3B on CPU: built in {built:.1f} s, 2-block rollout in {rolled:.1f} s, peak RSS {peak:.2f} GiB"
    )
