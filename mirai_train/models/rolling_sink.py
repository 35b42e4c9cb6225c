"""Rolling Sink: a training-free KV cache for rollouts past the training horizon.

Past the horizon the attention window stays the training window (21 latent frames at both
scales): a block attends to the newest `window - block` context frames. The clean keys/values of
the first `sweep_frames` generated frames are kept aside; after each block's clean-context pass,
the previous block's slots are overwritten by stored early frames, re-rotated at those slots'
positions. Which early frames: a ping-pong sweep over them, forward then backward, so that in the
steady state a block sees `window - 2*block` sink frames, the real previous block and itself, at
the same relative offsets as in training. Memory is bounded by `window + sweep` frames.

Rolling Sink's release keeps absolute positions with an 8192-entry RoPE table; this cache re-bases
positions at attention time instead (RoPE is relative: equal up to rounding, and no length limit).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirai_train.models.kv_cache import KVCache


def sweep_frame(position: int, sweep_frames: int) -> int:
    """Stored early frame placed at `position`: p mod 2S, reflected (... 17, 16, ..., 0, 0, 1, ...)."""
    m = position % (2 * sweep_frames)
    return m if m < sweep_frames else 2 * sweep_frames - 1 - m


class RollingSinkCache(KVCache):
    def __init__(self, num_layers: int, *, window_frames: int, sweep_frames: int, block_frames: int) -> None:
        if not 0 < sweep_frames <= window_frames - block_frames:
            raise ValueError(
                f"rolling_sink.sweep_frames={sweep_frames} must be in 1..window_frames - block "
                f"({window_frames} - {block_frames})"
            )
        super().__init__(num_layers, max_context_frames=window_frames - block_frames)
        self.window_frames, self.sweep_frames, self.block_frames = window_frames, sweep_frames, block_frames
        self._early: list[tuple[Tensor, Tensor] | None] = [None] * num_layers  # [B, S, tokens, H, hd]

    def write(self, layer: int, k: Tensor, v: Tensor, frames: Tensor, tokens_per_frame: int) -> None:
        super().write(layer, k, v, frames, tokens_per_frame)
        entry = self.layers[layer]
        assert entry is not None
        first = int(frames[0])
        if first < self.sweep_frames:
            self._keep_early(layer, entry.k, entry.v, entry.frame)
        if first >= self.window_frames:
            self._sink_previous_block(layer, first)

    def _keep_early(self, layer: int, k: Tensor, v: Tensor, frame: Tensor) -> None:
        early = frame < self.sweep_frames
        self._early[layer] = (k[:, early].clone(), v[:, early].clone())

    def _sink_previous_block(self, layer: int, first: int) -> None:
        entry, early = self.layers[layer], self._early[layer]
        assert entry is not None
        if early is None or early[0].shape[1] < self.sweep_frames:
            raise RuntimeError("Rolling Sink needs the first sweep_frames frames written before the horizon")
        for position in range(first - self.block_frames, first):
            slot = torch.nonzero(entry.frame == position).flatten()
            source = sweep_frame(position, self.sweep_frames)
            entry.k[:, slot] = early[0][:, source : source + 1]
            entry.v[:, slot] = early[1][:, source : source + 1]
