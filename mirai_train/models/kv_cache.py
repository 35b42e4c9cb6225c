"""KV cache of the causal generator: clean context frames per layer, and the text keys/values.

Keys are stored *before* RoPE, with a RoPE position per frame, and rotated at attention time.
That costs one elementwise rotation per call and buys two things: positions can be re-based (RoPE
is relative, so a long rollout never runs off the end of the table), and a frame's keys can be
re-used at another position (Rolling Sink re-rotates stored early frames at the current index).
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
    frame: Tensor  # [frames] generated-frame index each entry belongs to
    pos: Tensor  # [frames] RoPE position each entry is rotated at


class KVCache:
    """Unbounded by default; `window_frames` bounds it (oldest frames evicted first).

    Use one cache per rollout: the cross-attention cache assumes one prompt.
    """

    def __init__(self, num_layers: int, window_frames: int | None = None) -> None:
        self.window_frames = window_frames
        self.layers: list[LayerKV | None] = [None] * num_layers
        self._cross: list[tuple[Tensor, Tensor] | None] = [None] * num_layers

    def __len__(self) -> int:
        """Context frames held (the same in every layer)."""
        first = self.layers[0]
        return 0 if first is None else len(first.frame)

    def cross_kv(self, layer: int) -> tuple[Tensor, Tensor] | None:
        return self._cross[layer]

    def set_cross_kv(self, layer: int, k: Tensor, v: Tensor) -> None:
        self._cross[layer] = (k, v)

    def _visible(self, entry: LayerKV, before_frame: int) -> Tensor:
        return entry.frame < before_frame

    def context_positions(self, before_frame: int) -> Tensor | None:
        """RoPE positions of the context frames visible to frames from `before_frame` on."""
        entry = self.layers[0]
        if entry is None:
            return None
        visible = self._visible(entry, before_frame)
        return entry.pos[visible] if bool(visible.any()) else None

    def context(self, layer: int, before_frame: int) -> tuple[Tensor, Tensor] | None:
        """Keys and values [B, tokens, heads, head_dim] of the visible context frames."""
        entry = self.layers[layer]
        if entry is None:
            return None
        visible = self._visible(entry, before_frame)
        if not bool(visible.any()):
            return None
        if bool(visible.all()):
            return entry.k.flatten(1, 2), entry.v.flatten(1, 2)
        return entry.k[:, visible].flatten(1, 2), entry.v[:, visible].flatten(1, 2)

    def write(self, layer: int, k: Tensor, v: Tensor, frames: Tensor, tokens_per_frame: int) -> None:
        """Store the clean keys/values of `frames`, replacing earlier writes of the same frames."""
        k = k.unflatten(1, (len(frames), tokens_per_frame))
        v = v.unflatten(1, (len(frames), tokens_per_frame))
        frames = frames.to(k.device)
        entry = self.layers[layer]
        if entry is not None:
            keep = ~torch.isin(entry.frame, frames)
            k = torch.cat([entry.k[:, keep], k], dim=1)
            v = torch.cat([entry.v[:, keep], v], dim=1)
            frames_all = torch.cat([entry.frame[keep], frames])
            pos_all = torch.cat([entry.pos[keep], frames])
        else:
            frames_all, pos_all = frames, frames.clone()
        if self.window_frames is not None and len(frames_all) > self.window_frames:
            drop = len(frames_all) - self.window_frames
            k, v, frames_all, pos_all = k[:, drop:], v[:, drop:], frames_all[drop:], pos_all[drop:]
        self.layers[layer] = LayerKV(k=k, v=v, frame=frames_all, pos=pos_all)
