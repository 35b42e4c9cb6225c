"""The causal Wan video transformer: diffusers' Wan blocks with block-causal attention and a KV cache.

Parameters keep diffusers' names and shapes (`WanTransformer3DModel`), so a diffusers-layout Wan
checkpoint loads unconverted and, with `causal=False`, the output equals diffusers' own. What it
adds is what autoregressive generation and the foresight loss need:

- block-causal self-attention: a frame attends to every frame of its own block and of earlier
  blocks (`num_frame_per_block` 1 = frame-wise, 3 = chunk-wise), one SDPA call per query block and
  no dense mask (`key_spans`);
- per-frame timesteps (a clean context frame beside a noisy one);
- RoPE at absolute frame positions, applied at attention time so cached keys can be re-based;
- a KV cache for self-attention and a cross-attention cache (see `kv_cache.py`);
- a hidden-state tap after block k, and an early exit at block k (the foresight encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformerBlock,
)
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mirai_train.models.kv_cache import KVCache


@dataclass
class CausalWanOutput:
    """`sample`: flow prediction [B, C, F, H, W] (None after an early exit); `tap`: tokens [B, N, D]."""

    sample: Tensor | None
    tap: Tensor | None


class CausalWanTransformer(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' own config_name clash
    """Wan2.1 text-to-video DiT run causally; see the module docstring."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["CausalWanBlock"]  # type: ignore[assignment]
    _keep_in_fp32_modules = [  # type: ignore[assignment]
        "rope",
        "time_embedder",
        "scale_shift_table",
        "norm1",
        "norm2",
        "norm3",
    ]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
        num_frame_per_block: int = 1,
    ) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.patch = (patch_size[0], patch_size[1], patch_size[2])
        self.hidden_dim = inner_dim
        self.num_frame_per_block = num_frame_per_block
        self.num_heads = num_attention_heads
        self.rope = WanRotaryPosEmbed(attention_head_dim, self.patch, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=inner_dim, time_freq_dim=freq_dim, time_proj_dim=inner_dim * 6, text_embed_dim=text_dim
        )
        self.blocks = nn.ModuleList(
            CausalWanBlock(inner_dim, ffn_dim, num_attention_heads, qk_norm or "", cross_attn_norm, eps)
            for _ in range(num_layers)
        )
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)
        self.gradient_checkpointing = False

    def tokens_per_frame(self, height: int, width: int) -> int:
        """Tokens of one latent frame of `height` x `width` latent pixels."""
        _, p_h, p_w = self.patch
        return (height // p_h) * (width // p_w)

    def forward(
        self,
        hidden_states: Tensor,
        timestep: Tensor,
        encoder_hidden_states: Tensor,
        *,
        frame_offset: int = 0,
        causal: bool = True,
        cache: KVCache | None = None,
        write_cache: bool = False,
        tap_layer: int | None = None,
        exit_layer: int | None = None,
        clean_context: Tensor | None = None,
    ) -> CausalWanOutput:
        """Predict the flow of `hidden_states` [B, C, F, H, W], latent frames `frame_offset` onwards.

        `timestep` is [B] or per frame [B, F]. With a `cache`, the frames attend to the cached
        context frames before `frame_offset`; `write_cache` stores their keys and values (the
        clean-context pass). `tap_layer=k` also returns the tokens after block k (1-based: after k
        blocks); `exit_layer=k` stops there and returns only that tap.

        `clean_context` (teacher forcing, the AR-diffusion stage): the clean latents of the same
        frames; each noisy block attends to the clean frames of earlier blocks and to itself, in
        one forward over both (outputs and taps are the noisy frames').
        """
        noisy_frames = hidden_states.shape[2]
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(-1, noisy_frames // self.patch[0])
        positions = torch.arange(frame_offset, frame_offset + noisy_frames // self.patch[0])
        frame_mask = self._block_causal(positions) if causal else None
        if clean_context is not None:
            hidden_states = torch.cat([clean_context, hidden_states], dim=2)
            timestep = torch.cat([torch.zeros_like(timestep), timestep], dim=1)
            frame_mask = self._teacher_forcing(positions)
            positions = torch.cat([positions, positions])
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch
        grid = (frames // p_t, height // p_h, width // p_w)
        if exit_layer is not None:
            tap_layer = exit_layer
        if tap_layer is not None and not 1 <= tap_layer <= len(self.blocks):
            raise ValueError(f"tap/exit layer {tap_layer} is outside 1..{len(self.blocks)}")

        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        # The time and text embeddings run outside autocast, in their parameters' dtype: diffusers
        # keeps the time embedder in float32 (`_keep_in_fp32_modules`), and so does bf16 training
        # (mirai_train/parallel.py gives the embedder a float32 FSDP2 policy).
        dtype = next(self.condition_embedder.parameters()).dtype
        with torch.autocast(x.device.type, enabled=False):
            temb, timestep_proj, context, _ = self.condition_embedder(
                timestep.flatten(), encoder_hidden_states.to(dtype), timestep_seq_len=grid[0]
            )
        modulation = timestep_proj.unflatten(2, (6, -1))  # [B, F, 6, D]
        positions = positions.to(x.device)
        attend = _SelfAttention(self, grid, positions, frame_mask, cache, write_cache)
        keep = slice(len(positions) - noisy_frames // p_t, None)  # the noisy frames under teacher forcing

        tap: Tensor | None = None
        for index, module in enumerate(self.blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = checkpoint(module, x, context, modulation, attend, index, use_reentrant=False)
            else:
                x = module(x, context, modulation, attend, index)
            if tap_layer == index + 1:
                tap = x.unflatten(1, (grid[0], -1))[:, keep].flatten(1, 2)
                if exit_layer is not None:
                    return CausalWanOutput(sample=None, tap=tap)

        shift, scale = (self.scale_shift_table[:, None] + temb[:, :, None]).chunk(2, dim=2)  # [B, F, 1, D]
        x = x.unflatten(1, (grid[0], -1))
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)[:, keep]
        x = self.proj_out(x.flatten(1, 2))
        x = x.reshape(batch, -1, *grid[1:], p_t, p_h, p_w, x.shape[-1] // (p_t * p_h * p_w))
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return CausalWanOutput(sample=x.flatten(6, 7).flatten(4, 5).flatten(2, 3), tap=tap)

    def _block_causal(self, positions: Tensor) -> Tensor:
        """[F, F] frame mask: a frame sees its own block and earlier blocks."""
        block = torch.div(positions, self.num_frame_per_block, rounding_mode="floor")
        return block[None, :] <= block[:, None]

    def _teacher_forcing(self, positions: Tensor) -> Tensor:
        """[2F, 2F] frame mask over (clean frames, noisy frames) at the same positions."""
        block = torch.div(positions, self.num_frame_per_block, rounding_mode="floor")
        earlier, same = block[None, :] < block[:, None], block[None, :] == block[:, None]
        clean_rows = torch.cat([earlier | same, torch.zeros_like(same)], dim=1)
        noisy_rows = torch.cat([earlier, same], dim=1)
        return torch.cat([clean_rows, noisy_rows], dim=0)


class CausalWanBlock(WanTransformerBlock):
    """diffusers' Wan block with per-frame adaLN modulation and this model's self-attention.

    Called as a module (not a function of its submodules), so that per-block wrappers see it:
    FSDP2's all-gather and gradient reduce-scatter hooks, activation checkpointing. It adds no
    parameters: the state dict is diffusers' `WanTransformerBlock`'s.
    """

    def forward(  # type: ignore[override]  # the causal model's own block signature
        self, x: Tensor, context: Tensor, modulation: Tensor, attend: _SelfAttention, index: int
    ) -> Tensor:
        """One block on tokens `x`; the arithmetic follows diffusers' block, per frame."""
        frames = modulation.shape[1]
        mods = (self.scale_shift_table[:, None] + modulation.float()).chunk(6, dim=2)  # 6 x [B, F, 1, D]
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = mods

        def per_frame(t: Tensor) -> Tensor:
            return t.unflatten(1, (frames, -1))

        h = per_frame(self.norm1(x.float())) * (1 + scale_msa) + shift_msa
        attn = attend(self.attn1, h.flatten(1, 2).type_as(x), index)
        x = (per_frame(x.float()) + per_frame(attn) * gate_msa).flatten(1, 2).type_as(x)

        h = self.norm2(x.float()).type_as(x)
        x = x + _cross_attention(self.attn2, h, context, attend.cache, index)

        h = (per_frame(self.norm3(x.float())) * (1 + c_scale) + c_shift).flatten(1, 2).type_as(x)
        ff = self.ffn(h)
        return (per_frame(x.float()) + per_frame(ff.float()) * c_gate).flatten(1, 2).type_as(x)


def _heads(attn: WanAttention, t: Tensor) -> Tensor:
    return t.unflatten(2, (attn.heads, -1))


def _attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """SDPA on [B, N, heads, hd] tensors, as diffusers' native backend lays them out (no mask:
    block-causal attention is one call per query block, `key_spans`)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2, 3).type_as(q)


def _cross_attention(
    attn: WanAttention, x: Tensor, context: Tensor, cache: KVCache | None, index: int
) -> Tensor:
    """Text cross-attention; the text keys/values are computed once per rollout when cached.

    A call that records gradients recomputes them instead, so that the text path trains whatever
    step of a truncated rollout carries the gradient (a cache filled under no_grad would cut it).
    """
    reuse = cache is not None and not torch.is_grad_enabled()
    cached = cache.cross_kv(index) if cache is not None and reuse else None
    if cached is None:
        k = _heads(attn, attn.norm_k(attn.to_k(context)))
        v = _heads(attn, attn.to_v(context))
        if cache is not None and reuse:
            cache.set_cross_kv(index, k, v)
    else:
        k, v = cached
    q = _heads(attn, attn.norm_q(attn.to_q(x)))
    out = _attention(q, k, v)
    return attn.to_out[1](attn.to_out[0](out))


Span = tuple[slice, list[slice]]  # query tokens, and the key-token runs they attend to


def key_spans(frame_mask: Tensor, context_frames: int, per_frame: int) -> list[Span]:
    """Block-causal attention as SDPA calls without a mask: consecutive query frames that see the
    same frames form one call, whose keys are the runs of visible frames (context frames, cached
    before this call, are visible to all).

    A block-causal forward over 21 latent frames of 1560 tokens would otherwise build a dense
    32,760^2 mask (1 GB as bool, and SDPA's additive copy in the compute dtype), four times that
    under teacher forcing; per block, SDPA takes its fastest (flash) kernel, and masked-out work is
    skipped instead of computed and discarded.
    """
    rows = frame_mask.tolist()
    spans: list[Span] = []
    start = 0
    for stop in range(1, len(rows) + 1):
        if stop < len(rows) and rows[stop] == rows[start]:
            continue
        visible = [True] * context_frames + rows[start]
        runs, first = [], None
        for frame, seen in enumerate([*visible, False]):
            if seen and first is None:
                first = frame
            elif not seen and first is not None:
                runs.append(slice(first * per_frame, frame * per_frame))
                first = None
        spans.append((slice(start * per_frame, stop * per_frame), runs))
        start = stop
    return spans


class _SelfAttention:
    """Self-attention of one forward call: which keys each query block sees, the RoPE positions and
    the cache traffic."""

    def __init__(
        self,
        model: CausalWanTransformer,
        grid: tuple[int, int, int],
        positions: Tensor,
        frame_mask: Tensor | None,
        cache: KVCache | None,
        write_cache: bool,
    ) -> None:
        self.model, self.grid, self.positions = model, grid, positions
        self.frame_mask, self.cache, self.write_cache = frame_mask, cache, write_cache
        self.per_frame = grid[1] * grid[2]
        self._prepared: tuple[Tensor, Tensor, Tensor, Tensor, list[Span] | None] | None = None

    def _prepare(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Span] | None]:
        """RoPE tables and key spans, built once per call and shared by all layers."""
        if self._prepared is not None:
            return self._prepared
        context_pos = self.cache.context_positions(int(self.positions[0])) if self.cache is not None else None
        key_pos = (
            self.positions if context_pos is None else torch.cat([context_pos.to(device), self.positions])
        )
        base = int(key_pos.min())  # re-base: RoPE is relative, so shifting all positions changes nothing
        rope = self.model.rope
        q_cos, q_sin = rope_tables(rope, self.positions - base, self.grid[1], self.grid[2])
        k_cos, k_sin = rope_tables(rope, key_pos - base, self.grid[1], self.grid[2])
        spans = None
        if self.frame_mask is not None and not bool(self.frame_mask.all()):
            spans = key_spans(self.frame_mask, len(key_pos) - len(self.positions), self.per_frame)
        self._prepared = (q_cos, q_sin, k_cos, k_sin, spans)
        return self._prepared

    def __call__(self, attn: WanAttention, x: Tensor, index: int) -> Tensor:
        return attn.to_out[1](attn.to_out[0](self.attend(*self.project(attn, x, index))))

    def project(self, attn: WanAttention, x: Tensor, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, and keys and values with the cached context before them (RoPE applied to both);
        writes this call's keys and values to the cache when asked."""
        q = _heads(attn, attn.norm_q(attn.to_q(x)))
        k = _heads(attn, attn.norm_k(attn.to_k(x)))
        v = _heads(attn, attn.to_v(x))
        q_cos, q_sin, k_cos, k_sin, _ = self._prepare(x.device)
        keys, values = k, v
        if self.cache is not None:
            context = self.cache.context(index, int(self.positions[0]))
            if context is not None:
                keys, values = torch.cat([context[0], k], dim=1), torch.cat([context[1], v], dim=1)
            if self.write_cache:
                self.cache.write(index, k.detach(), v.detach(), self.positions, self.per_frame)
        return apply_rope(q, q_cos, q_sin), apply_rope(keys, k_cos, k_sin), values

    def attend(self, q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Attention outputs [B, N, heads * hd]: one SDPA call per query block over its key runs."""
        spans = self._prepare(q.device)[4]
        if spans is None:  # every query sees every key
            return _attention(q, keys, values)
        return torch.cat(
            [
                _attention(
                    q[:, queries],
                    torch.cat([keys[:, run] for run in runs], dim=1),
                    torch.cat([values[:, run] for run in runs], dim=1),
                )
                for queries, runs in spans
            ],
            dim=1,
        )


def rope_tables(rope: WanRotaryPosEmbed, frame_pos: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """cos/sin [1, N, 1, hd] for tokens at frame positions `frame_pos` on a height x width grid.

    Positions index diffusers' table (`rope_max_seq_len` entries); callers re-base them so that
    arbitrarily long rollouts stay inside it.
    """
    if int(frame_pos.max()) >= rope.max_seq_len or int(frame_pos.min()) < 0:
        raise ValueError(
            f"RoPE position {int(frame_pos.max())} is outside the table of {rope.max_seq_len} entries; "
            "use a rolling cache (window) or a larger rope_max_seq_len"
        )
    sizes = [rope.t_dim, rope.h_dim, rope.w_dim]
    tables = []
    for freqs in (cast(Tensor, rope.freqs_cos), cast(Tensor, rope.freqs_sin)):
        t_f, h_f, w_f = freqs.split(sizes, dim=1)
        n = len(frame_pos)
        parts = [
            t_f[frame_pos.to(t_f.device)].view(n, 1, 1, -1).expand(n, height, width, -1),
            h_f[:height].view(1, height, 1, -1).expand(n, height, width, -1),
            w_f[:width].view(1, 1, width, -1).expand(n, height, width, -1),
        ]
        tables.append(torch.cat(parts, dim=-1).reshape(1, n * height * width, 1, -1).float())
    return tables[0], tables[1]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of the head dimension as diffusers' Wan processor does.

    In float32, where diffusers multiplies by float64 tables: equal to about 1e-6, and no float64
    arithmetic on the CPU.
    """
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty_like(x, dtype=torch.float32)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out.type_as(x)
