"""Shared fixtures: tiny configurations of the real model classes (FACTS.md section 6)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
