"""The foresight predictor: maps the causal student's hidden state into the encoder's space.

A few DiT layers at student width refine the student tokens of one block (self-attention over
those tokens only, no positional encoding), then a bias-free linear map lifts them to the
teacher's width. The predictor exists only at training time; export drops it.

Each layer keeps the release's adaLN structure so its weights map one to one: a modulation
`Linear(dim, 6 * dim)` after SiLU is fed a zero condition, so only its bias acts (six learned
vectors: scale, shift, gate for attention and for the FFN). Everything of the modulation starts
at zero, so both gates are 0 and the layers start as the exact identity: at initialisation the
predictor is just `proj`. The modulation weight never receives a gradient (its input is zero).

Official keys (`mirai_projector` and `foresight_dim_proj` in the release's model.pt):
`blocks.{i}.*` keep their names, `foresight_dim_proj.weight` is `proj.weight`; the release's
unused `delta_embedder.*` and `_num_heads_meta` have no counterpart.
"""

from __future__ import annotations

import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn


class ForesightLayer(nn.Module):
    """One DiT layer (attention + FFN) with bias-only adaLN modulation and zero-initialised gates."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        ffn_in, ffn_out, modulation = (
            nn.Linear(dim, ffn_dim),
            nn.Linear(ffn_dim, dim),
            nn.Linear(dim, 6 * dim),
        )
        self.ffn = nn.Sequential(ffn_in, nn.GELU(), ffn_out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), modulation)
        for linear in (self.q, self.k, self.v, self.o, ffn_in, ffn_out):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, N, dim] -> [B, N, dim]; attention runs over the N tokens."""
        condition = x.new_zeros(x.shape[0], 1, x.shape[-1])
        scale1, shift1, gate1, scale2, shift2, gate2 = self.adaLN_modulation(condition).chunk(6, dim=-1)

        h = self.norm1(x.float()).type_as(x) * (1 + scale1) + shift1
        q = self._heads(self.norm_q(self.q(h).float()).type_as(h))
        k = self._heads(self.norm_k(self.k(h).float()).type_as(h))
        attn = F.scaled_dot_product_attention(q, k, self._heads(self.v(h)))
        x = x + gate1 * self.o(attn.transpose(1, 2).flatten(2))

        h = self.norm2(x.float()).type_as(x) * (1 + scale2) + shift2
        return x + gate2 * self.ffn(h)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, heads, N, head_dim]


class ForesightPredictor(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' own config_name clash
    """`depth` foresight layers at student width `dim`, then `proj`: Linear(dim -> teacher_dim, no bias)."""

    @register_to_config
    def __init__(
        self,
        dim: int = 1536,
        teacher_dim: int = 5120,
        num_heads: int = 12,
        depth: int = 3,
        ffn_ratio: float = 4.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        ffn_dim = int(dim * ffn_ratio)
        self.blocks = nn.ModuleList(ForesightLayer(dim, num_heads, ffn_dim, eps) for _ in range(depth))
        self.proj = nn.Linear(dim, teacher_dim, bias=False)

    def refine(self, h: Tensor) -> Tensor:
        """The DiT layers alone: h [..., N, dim] -> [..., N, dim], each leading index its own sequence."""
        x = h.reshape(-1, *h.shape[-2:])
        for block in self.blocks:
            x = block(x)
        return x.reshape(h.shape)

    def forward(self, h: Tensor) -> Tensor:
        """Student tokens of one block h [B, N, dim] (or [B, n_blocks, N, dim]) -> [..., N, teacher_dim]."""
        return self.proj(self.refine(h))
