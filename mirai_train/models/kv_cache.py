"""KV cache of the causal generator: clean context frames per layer, and the text keys/values.

Keys are stored *before* RoPE and rotated at attention time at their frame's position. That costs
one elementwise rotation per call and buys two things: positions can be re-based (RoPE is
relative, so a long rollout never runs off the end of the table), and stored keys can be placed at
another position (Rolling Sink re-rotates early frames at the current index, `rolling_sink.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LayerKV:
    """One layer's context: keys/values [B, frames, tokens per frame, heads, head_dim]."""

    k: Tensor
    v: Tensor
    frame: Tensor  # [frames] the generated-frame index (= RoPE position) of each entry

    def select(self, keep: Tensor) -> LayerKV:
        return LayerKV(k=self.k[:, keep], v=self.v[:, keep], frame=self.frame[keep])


class KVCache:
    """The clean context frames of every layer, and the text keys/values.

    Unbounded by default (a rollout inside the training horizon attends to every earlier frame).
    `max_context_frames` bounds what a new block attends to, and what is kept, to the newest
    frames: the attention window minus the block itself. Use one cache per rollout (one prompt).
    """

    def __init__(self, num_layers: int, max_context_frames: int | None = None) -> None:
        self.max_context_frames = max_context_frames
        self.layers: list[LayerKV | None] = [None] * num_layers
        self._cross: list[tuple[Tensor, Tensor] | None] = [None] * num_layers
        self._memo: list[tuple[int, tuple[Tensor, Tensor] | None] | None] = [None] * num_layers

    def __len__(self) -> int:
        """Context frames held (the same in every layer)."""
        first = self.layers[0]
        return 0 if first is None else len(first.frame)

    def cross_kv(self, layer: int) -> tuple[Tensor, Tensor] | None:
        return self._cross[layer]

    def set_cross_kv(self, layer: int, k: Tensor, v: Tensor) -> None:
        self._cross[layer] = (k, v)

    def context_positions(self, before_frame: int) -> Tensor | None:
        """RoPE positions of the context frames visible to frames from `before_frame` on."""
        entry = self.layers[0]
        if entry is None:
            return None
        visible = entry.frame < before_frame
        return entry.frame[visible] if bool(visible.any()) else None

    def context(self, layer: int, before_frame: int) -> tuple[Tensor, Tensor] | None:
        """Keys and values [B, tokens, heads, head_dim] of the visible context frames.

        Assembled once per layer and block: every denoising step of a block reads the same context,
        and only a write changes it.
        """
        memo = self._memo[layer]
        if memo is None or memo[0] != before_frame:
            memo = self._memo[layer] = (before_frame, self._assemble(layer, before_frame))
        return memo[1]

    def _assemble(self, layer: int, before_frame: int) -> tuple[Tensor, Tensor] | None:
        entry = self.layers[layer]
        if entry is None:
            return None
        visible = entry.frame < before_frame
        if not bool(visible.any()):
            return None
        if bool(visible.all()):
            return entry.k.flatten(1, 2), entry.v.flatten(1, 2)
        return entry.k[:, visible].flatten(1, 2), entry.v[:, visible].flatten(1, 2)

    def write(self, layer: int, k: Tensor, v: Tensor, frames: Tensor, tokens_per_frame: int) -> None:
        """Store the clean keys/values of `frames`, replacing earlier writes of the same frames."""
        self._memo[layer] = None
        entry = merged(self.layers[layer], k, v, frames, tokens_per_frame)
        if self.max_context_frames is not None:  # the next block's window: the newest frames
            entry = entry.select(entry.frame > int(entry.frame.max()) - self.max_context_frames)
        self.layers[layer] = entry


def merged(entry: LayerKV | None, k: Tensor, v: Tensor, frames: Tensor, tokens_per_frame: int) -> LayerKV:
    """`entry` with the frames' keys/values [B, frames*tokens, heads, hd] added or replaced."""
    k = k.unflatten(1, (len(frames), tokens_per_frame))
    v = v.unflatten(1, (len(frames), tokens_per_frame))
    frames = frames.to(k.device)
    if entry is None:
        return LayerKV(k=k, v=v, frame=frames)
    old = entry.select(~torch.isin(entry.frame, frames))
    return LayerKV(
        k=torch.cat([old.k, k], dim=1), v=torch.cat([old.v, v], dim=1), frame=torch.cat([old.frame, frames])
    )
