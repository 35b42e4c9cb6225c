"""Rolling Sink: a training-free KV cache for rollouts past the training horizon.

Past the horizon the attention window stays the training window (21 latent frames at both
scales): a block attends to the `window - block` positions before it. The clean keys/values of
the first `sweep_frames` generated frames are kept aside. Once a block's successor has been
written past the horizon, its positions no longer hold its own keys but stored early frames,
re-rotated at those positions, chosen by a ping-pong sweep (forward, then backward). In the
steady state a block therefore sees `window - 2*block` sink frames, the real previous block and
itself, at the same relative offsets as in training.

Sink slots are not copies: they index the early-frame store when the context is assembled, and
the early frames live only there, so the cache holds about as many frames as inside the training
horizon. Rolling Sink's release keeps absolute positions with an 8192-entry RoPE table; positions
here are re-based at attention time (RoPE is relative: equal up to rounding, and no length limit).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirai_train.models.kv_cache import KVCache, LayerKV, merged


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
        self.early: list[LayerKV | None] = [None] * num_layers
        self._slots: dict[int, tuple[Tensor, Tensor]] = {}  # before_frame -> (positions, store index)

    def write(self, layer: int, k: Tensor, v: Tensor, frames: Tensor, tokens_per_frame: int) -> None:
        """Early frames go to the early store, the others to the window; sink slots drop their keys."""
        self._memo[layer] = None
        is_early = frames.to(k.device) < self.sweep_frames
        k, v = k.unflatten(1, (len(frames), -1)), v.unflatten(1, (len(frames), -1))
        if bool(is_early.any()):
            early = (k[:, is_early].flatten(1, 2), v[:, is_early].flatten(1, 2), frames[is_early.cpu()])
            self.early[layer] = merged(self.early[layer], *early, tokens_per_frame)
            self._slots.clear()
        if bool(is_early.all()):
            return
        rest = ~is_early
        super().write(
            layer, k[:, rest].flatten(1, 2), v[:, rest].flatten(1, 2), frames[rest.cpu()], tokens_per_frame
        )
        first = int(frames[0])
        entry = self.layers[layer]
        if first >= self.window_frames and entry is not None:  # earlier blocks past the horizon: sink slots
            self.layers[layer] = entry.select(
                (entry.frame < self.window_frames - self.block_frames) | (entry.frame >= first)
            )

    def _early_slots(self, before_frame: int) -> tuple[Tensor, Tensor]:
        """(positions, index into the early store) of the early and sink slots before `before_frame`.

        Computed once per block and shared by every layer (the stores' frame order is the same).
        """
        if before_frame not in self._slots:
            low = max(0, before_frame - (self.window_frames - self.block_frames))
            own = list(range(low, min(self.sweep_frames, before_frame)))
            sink = list(
                range(max(low, self.window_frames - self.block_frames), before_frame - self.block_frames)
            )
            sources = own + [sweep_frame(p, self.sweep_frames) for p in sink]
            store = self.early[0]
            if sources and (store is None or not set(sources) <= set(store.frame.tolist())):
                raise RuntimeError("Rolling Sink needs the early frames written before they are attended to")
            index = torch.empty(0, dtype=torch.long)
            if store is not None and sources:
                row = {int(f): i for i, f in enumerate(store.frame.tolist())}
                index = torch.tensor([row[f] for f in sources], device=store.k.device)
            self._slots = {before_frame: (torch.tensor(own + sink, dtype=torch.long), index)}
        return self._slots[before_frame]

    def context_positions(self, before_frame: int) -> Tensor | None:
        real = super().context_positions(before_frame)
        positions, _ = self._early_slots(before_frame)
        if not len(positions):
            return real
        return positions if real is None else torch.cat([positions.to(real.device), real])

    def _assemble(self, layer: int, before_frame: int) -> tuple[Tensor, Tensor] | None:
        """Early and sink slots, then the real frames (key order is free: RoPE carries position)."""
        real = super()._assemble(layer, before_frame)
        _, index = self._early_slots(before_frame)
        store = self.early[layer]
        if not len(index) or store is None:
            return real
        k, v = store.k[:, index].flatten(1, 2), store.v[:, index].flatten(1, 2)
        if real is None:
            return k, v
        return torch.cat([k, real[0]], dim=1), torch.cat([v, real[1]], dim=1)

    def held_frames(self) -> int:
        """Frames of keys/values held per layer (early store + window): bounded."""
        early = self.early[0]
        return len(self) + (0 if early is None else len(early.frame))
