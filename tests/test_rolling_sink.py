"""Rolling Sink: the sweep order, bounded memory, and what a block attends to past the horizon."""

from __future__ import annotations

import pytest
import torch

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.kv_cache import KVCache
from mirai_train.models.rolling_sink import RollingSinkCache, sweep_frame
from mirai_train.sampling import RolloutConfig, rollout
from mirai_train.spec import SamplerSpec
from tests.conftest import TINY_TRANSFORMER


def test_sweep_order_is_rolling_sinks_ping_pong() -> None:
    """Early frames re-used for blocks starting at 21, 24, ...: 17,16,15 | 14,13,12 | ... | 0,1,2 | ..."""
    expected = {
        21: [17, 16, 15], 24: [14, 13, 12], 33: [5, 4, 3], 36: [2, 1, 0], 39: [0, 1, 2],
        42: [3, 4, 5], 54: [15, 16, 17], 57: [17, 16, 15], 63: [11, 10, 9],
    }  # fmt: skip
    for start, frames in expected.items():
        assert [sweep_frame(p, 18) for p in range(start - 3, start)] == frames


def _write_block(cache: KVCache, start: int, block: int, tokens: int = 2) -> None:
    """Keys/values whose every number is the frame index, so slots can be read back."""
    frames = torch.arange(start, start + block)
    k = frames.float().repeat_interleave(tokens).view(1, -1, 1, 1).expand(1, block * tokens, 2, 4).clone()
    for layer in range(len(cache.layers)):
        cache.write(layer, k, k.clone(), frames, tokens)


def test_steady_state_context_is_sink_frames_then_the_real_previous_block() -> None:
    cache = RollingSinkCache(1, window_frames=21, sweep_frames=18, block_frames=3)
    for start in range(0, 60, 3):
        _write_block(cache, start, 3)
        assert cache.held_frames() <= 21  # early store + real frames: as a 5 s rollout holds
    context, positions = cache.context(0, 60), cache.context_positions(60)
    assert context is not None and positions is not None
    content = context[0][0, ::2, 0, 0].tolist()  # one value per frame (2 tokens each)
    by_position = dict(zip(positions.tolist(), content, strict=True))
    assert sorted(by_position) == list(range(42, 60))  # the window before frame 60
    for p in range(42, 57):
        assert by_position[p] == sweep_frame(p, 18)  # early frames, placed at these positions
    assert [by_position[p] for p in (57, 58, 59)] == [57.0, 58.0, 59.0]  # the real previous block


def test_transition_keeps_real_frames_below_the_horizon() -> None:
    """Block 24 sees real 6..17, sink slots 18..20 (early 17, 16, 15) and real 21..23."""
    cache = RollingSinkCache(1, window_frames=21, sweep_frames=18, block_frames=3)
    for start in range(0, 24, 3):
        _write_block(cache, start, 3)
    context, positions = cache.context(0, 24), cache.context_positions(24)
    assert context is not None and positions is not None
    by_position = dict(zip(positions.tolist(), context[0][0, ::2, 0, 0].tolist(), strict=True))
    expected = {p: float(p) for p in range(6, 24)} | {18: 17.0, 19: 16.0, 20: 15.0}
    assert by_position == expected


def test_inside_the_horizon_it_is_the_plain_cache() -> None:
    cache, plain = RollingSinkCache(1, window_frames=21, sweep_frames=18, block_frames=3), KVCache(1)
    for start in range(0, 21, 3):
        _write_block(cache, start, 3)
        _write_block(plain, start, 3)
    a, b = cache.context(0, 21), plain.context(0, 21)
    assert a is not None and b is not None
    # The rolling cache keeps the newest 18 frames for the block at 21; the plain one all 21.
    assert torch.equal(a[0], b[0][:, 3 * 2 :])


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="sweep_frames=19"):
        RollingSinkCache(1, window_frames=21, sweep_frames=19, block_frames=3)


def test_long_rollout_runs_far_past_the_rope_table_with_bounded_cache() -> None:
    """A tiny model with a 32-entry RoPE table rolls out 60 latent frames (~7x its window of 9);
    inside the window the rollout is the plain one."""
    torch.manual_seed(0)
    model = CausalWanTransformer(**TINY_TRANSFORMER, num_frame_per_block=3).eval()
    text = torch.randn(1, 4, 32)
    caches: list[RollingSinkCache] = []

    def make() -> RollingSinkCache:
        caches.append(RollingSinkCache(2, window_frames=9, sweep_frames=6, block_frames=3))
        return caches[-1]

    with torch.no_grad():
        long = rollout(
            model,
            text,
            RolloutConfig(60, 16, 2, 2, SamplerSpec()),
            generator=torch.Generator().manual_seed(0),
            make_cache=make,
        ).latents
        plain = rollout(
            model, text, RolloutConfig(9, 16, 2, 2, SamplerSpec()), generator=torch.Generator().manual_seed(0)
        ).latents
    assert long.shape == (1, 16, 60, 2, 2) and torch.isfinite(long).all()
    assert caches[0].held_frames() <= 9
    assert torch.allclose(long[:, :, :9], plain, atol=1e-6)
    assert not torch.allclose(long[:, :, 9:12], long[:, :, 3:6])
