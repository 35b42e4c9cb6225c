"""Parity of the causal Wan transformer with diffusers, and of cached with uncached generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from mirai_train.models import causal_wan
from mirai_train.models.causal_wan import CausalWanTransformer, key_spans
from mirai_train.models.kv_cache import KVCache
from tests.conftest import TINY_TRANSFORMER


def _inputs(frames: int = 6, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    latents = torch.randn(batch, 16, frames, 4, 6)
    text = torch.randn(batch, 7, 32)
    return latents, text


def _model(nfpb: int = 1, layers: int = 2) -> CausalWanTransformer:
    torch.manual_seed(1)
    return CausalWanTransformer(**{**TINY_TRANSFORMER, "num_layers": layers}, num_frame_per_block=nfpb).eval()


def test_full_mask_matches_diffusers() -> None:
    model = _model()
    reference = WanTransformer3DModel(**TINY_TRANSFORMER).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=True)
    assert not missing and not unexpected
    latents, text = _inputs()
    timestep = torch.tensor([700.0, 120.0])
    with torch.no_grad():
        ours = model(latents, timestep, text, causal=False).sample
        theirs = reference(latents, timestep, text, return_dict=False)[0]
    assert ours is not None
    assert ours.shape == theirs.shape == latents.shape
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_state_dict_keys_are_diffusers_keys() -> None:
    ours = _model().state_dict()
    theirs = WanTransformer3DModel(**TINY_TRANSFORMER).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_causal_mask_hides_the_future() -> None:
    """Changing frames of a later block leaves earlier blocks' outputs untouched; same block does not."""
    model = _model(nfpb=3)
    latents, text = _inputs(frames=6)
    t = torch.full((2, 6), 500.0)
    edited = latents.clone()
    edited[:, :, 4] += 1.0
    with torch.no_grad():
        a = model(latents, t, text).sample
        b = model(edited, t, text).sample
    assert a is not None and b is not None
    assert torch.equal(a[:, :, :3], b[:, :, :3])
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])  # frame 3 shares block 1 with frame 4


@pytest.mark.parametrize("nfpb", [1, 3])
def test_cached_blocks_equal_one_block_causal_forward(nfpb: int) -> None:
    """Generating block by block with the cache equals one block-causal forward over everything."""
    model = _model(nfpb=nfpb)
    frames = 6
    latents, text = _inputs(frames=frames)
    timestep = torch.rand(2, frames) * 1000
    with torch.no_grad():
        full = model(latents, timestep, text).sample
        cache = KVCache(num_layers=2)
        pieces = []
        for start in range(0, frames, nfpb):
            block = slice(start, start + nfpb)
            out = model(
                latents[:, :, block],
                timestep[:, block],
                text,
                frame_offset=start,
                cache=cache,
                write_cache=True,
            ).sample
            assert out is not None
            pieces.append(out)
    assert full is not None
    assert len(cache) == frames
    assert (torch.cat(pieces, dim=2) - full).abs().max().item() <= 1e-5


def test_denoising_calls_do_not_change_the_cache() -> None:
    """Only the clean-context pass writes; reading the cache for other noise levels changes nothing."""
    model = _model(nfpb=1)
    latents, text = _inputs(frames=2)
    with torch.no_grad():
        cache = KVCache(num_layers=2)
        model(latents[:, :, :1], torch.zeros(2, 1), text, cache=cache, write_cache=True)
        first = model(latents[:, :, 1:], torch.full((2, 1), 900.0), text, frame_offset=1, cache=cache).sample
        model(latents[:, :, 1:], torch.full((2, 1), 300.0), text, frame_offset=1, cache=cache)
        again = model(latents[:, :, 1:], torch.full((2, 1), 900.0), text, frame_offset=1, cache=cache).sample
    assert len(cache) == 1
    assert first is not None and again is not None
    assert torch.equal(first, again)


def test_per_frame_timesteps_matter_per_frame() -> None:
    model = _model()
    latents, text = _inputs(frames=3)
    t = torch.full((2, 3), 400.0)
    t2 = t.clone()
    t2[:, 2] = 900.0
    with torch.no_grad():
        a = model(latents, t, text, causal=False).sample
        b = model(latents, t2, text).sample
        a_causal = model(latents, t, text).sample
    assert a is not None and b is not None and a_causal is not None
    assert torch.equal(a_causal[:, :, :2], b[:, :, :2])  # earlier frames never see frame 2 (frame-wise)
    assert not torch.allclose(a_causal[:, :, 2], b[:, :, 2])


def test_tap_and_early_exit() -> None:
    model = _model(layers=3)
    latents, text = _inputs(frames=2)
    t = torch.full((2,), 250.0)
    with torch.no_grad():
        out = model(latents, t, text, tap_layer=2)
        early = model(latents, t, text, exit_layer=2)
    assert out.tap is not None and early.tap is not None and early.sample is None
    assert out.tap.shape == (2, 2 * 2 * 3, 24)
    assert torch.equal(out.tap, early.tap)
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        model(latents, t, text, tap_layer=4)


def test_rope_is_relative_so_offsets_do_not_matter_with_a_rebased_cache() -> None:
    """Shifting every frame index by a constant leaves the output unchanged (positions re-based)."""
    model = _model(nfpb=1)
    latents, text = _inputs(frames=2)
    t = torch.tensor([[0.0, 800.0]] * 2)
    outs = []
    with torch.no_grad():
        for offset in (0, 500):  # 500 is far past the tiny table of 32 positions
            cache = KVCache(num_layers=2)
            model(latents[:, :, :1], t[:, :1], text, frame_offset=offset, cache=cache, write_cache=True)
            out = model(latents[:, :, 1:], t[:, 1:], text, frame_offset=offset + 1, cache=cache).sample
            outs.append(out)
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("nfpb", [1, 3])
def test_teacher_forcing_equals_noisy_blocks_on_a_clean_cache(nfpb: int) -> None:
    """One teacher-forcing forward = each noisy block generated after a clean context pass."""
    model = _model(nfpb=nfpb)
    clean, text = _inputs(frames=6)
    noisy = torch.randn_like(clean)
    timestep = torch.rand(2, 6) * 1000
    with torch.no_grad():
        full = model(noisy, timestep, text, clean_context=clean, tap_layer=1)
        for start in range(0, 6, nfpb):
            cache = KVCache(num_layers=2)
            if start:
                model(clean[:, :, :start], torch.zeros(2, start), text, cache=cache, write_cache=True)
            block = slice(start, start + nfpb)
            out = model(
                noisy[:, :, block], timestep[:, block], text, frame_offset=start, cache=cache, tap_layer=1
            )
            assert full.sample is not None and out.sample is not None
            assert (full.sample[:, :, block] - out.sample).abs().max().item() <= 1e-5
    assert full.tap is not None and full.tap.shape == (2, 6 * 2 * 3, 24)


def _dense_attend(
    self: causal_wan._SelfAttention, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """The reference: one SDPA call over all tokens under the dense token mask of the frame mask."""
    mask = None
    if self.frame_mask is not None:
        context_frames = keys.shape[1] // self.per_frame - len(self.positions)
        visible = torch.ones(len(self.positions), context_frames, dtype=torch.bool)
        frames = torch.cat([visible, self.frame_mask], dim=1)
        mask = frames.repeat_interleave(self.per_frame, 0).repeat_interleave(self.per_frame, 1)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2).flatten(2, 3)


@pytest.mark.parametrize("nfpb", [1, 3])
@pytest.mark.parametrize("mode", ["block_causal", "on_a_cache", "teacher_forcing"])
def test_per_block_attention_equals_the_dense_mask(
    nfpb: int, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One SDPA call per query block (no mask) gives what one call under the dense mask gives (1e-5)."""
    model = _model(nfpb=nfpb)
    latents, text = _inputs(frames=6)
    timestep = torch.rand(2, 6) * 1000

    def forward() -> torch.Tensor:
        with torch.no_grad():
            if mode == "teacher_forcing":
                out = model(
                    latents, timestep, text, clean_context=torch.randn_like(latents, generator=None)
                ).sample
            elif mode == "on_a_cache":
                cache = KVCache(num_layers=2)
                model(latents[:, :, :3], timestep[:, :3], text, cache=cache, write_cache=True)
                out = model(latents[:, :, 3:], timestep[:, 3:], text, frame_offset=3, cache=cache).sample
            else:
                out = model(latents, timestep, text).sample
        assert out is not None
        return out

    torch.manual_seed(5)
    ours = forward()
    monkeypatch.setattr(causal_wan._SelfAttention, "attend", _dense_attend)
    torch.manual_seed(5)
    dense = forward()
    assert (ours - dense).abs().max().item() <= 1e-5


def test_key_spans_of_teacher_forcing() -> None:
    """Chunks of 2 frames, 4 frames, 10 tokens each, 1 context frame: clean block b sees the context
    and clean blocks <= b; noisy block b the context, clean blocks < b and itself."""
    model = CausalWanTransformer(**TINY_TRANSFORMER, num_frame_per_block=2)
    spans = key_spans(model._teacher_forcing(torch.arange(4)), context_frames=1, per_frame=10)
    assert spans == [
        (slice(0, 20), [slice(0, 30)]),
        (slice(20, 40), [slice(0, 50)]),
        (slice(40, 60), [slice(0, 10), slice(50, 70)]),
        (slice(60, 80), [slice(0, 30), slice(70, 90)]),
    ]
