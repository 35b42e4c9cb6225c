"""The foresight predictor: identity at initialisation, shapes, depth, training, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mirai_train.losses import foresight_loss
from mirai_train.models.predictor import ForesightPredictor

TINY = dict(dim=24, teacher_dim=40, num_heads=2, depth=3)


def test_identity_before_the_projection_at_init() -> None:
    predictor = ForesightPredictor(**TINY)
    h = torch.randn(2, 10, 24) * 3
    assert torch.equal(predictor.refine(h), h)
    assert torch.equal(predictor(h), predictor.proj(h))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_shapes_and_depth(depth: int) -> None:
    predictor = ForesightPredictor(**{**TINY, "depth": depth})
    assert len(predictor.blocks) == depth
    assert predictor.proj.bias is None and predictor.proj.weight.shape == (40, 24)
    assert predictor(torch.randn(2, 10, 24)).shape == (2, 10, 40)
    assert predictor(torch.randn(2, 3, 10, 24)).shape == (2, 3, 10, 40)


def test_official_key_layout() -> None:
    keys = set(ForesightPredictor(**{**TINY, "depth": 1}).state_dict())
    layer = {"q", "k", "v", "o", "ffn.0", "ffn.2", "adaLN_modulation.1"}
    expected = {f"blocks.0.{m}.{p}" for m in layer for p in ("weight", "bias")}
    expected |= {"blocks.0.norm_q.weight", "blocks.0.norm_k.weight", "proj.weight"}
    assert keys == expected
    assert ForesightPredictor(**TINY).blocks[0].ffn[0].weight.shape == (96, 24)  # ffn ratio 4


def test_attention_stays_within_each_block() -> None:
    """With open gates, editing block 1's tokens changes block 1's output only."""
    predictor = ForesightPredictor(**TINY)
    with torch.no_grad():
        for block in predictor.blocks:
            block.adaLN_modulation[1].bias.normal_()
    h = torch.randn(1, 2, 10, 24)
    edited = h.clone()
    edited[:, 1, 3] += torch.randn(24)
    with torch.no_grad():
        a, b = predictor(h), predictor(edited)
    assert torch.equal(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 1, 0], b[:, 1, 0])  # token 0 attends to token 3 of its block


def test_one_step_opens_the_gates_then_every_parameter_learns() -> None:
    predictor = ForesightPredictor(**TINY)
    optimiser = torch.optim.AdamW(predictor.parameters(), lr=1e-2)
    h, target = torch.randn(2, 2, 10, 24), torch.randn(2, 2, 10, 40)

    foresight_loss(predictor(h), target).backward()
    optimiser.step()
    for block in predictor.blocks:
        gates = block.adaLN_modulation[1].bias.view(6, -1)[[2, 5]]
        assert bool((gates != 0).all())

    optimiser.zero_grad()
    foresight_loss(predictor(h), target).backward()
    for name, p in predictor.named_parameters():
        assert p.grad is not None, name
        if name.endswith("adaLN_modulation.1.weight"):
            assert not p.grad.any(), name  # its input, the condition, is zero
        elif name.endswith("adaLN_modulation.1.bias"):  # scale, shift, gate of attention and FFN each act
            assert bool((p.grad.view(6, -1).abs().sum(dim=1) > 0).all()), name
        else:
            assert p.grad.abs().sum() > 0, name


def test_save_and_load_pretrained(tmp_path: Path) -> None:
    predictor = ForesightPredictor(**TINY)
    with torch.no_grad():
        predictor.blocks[2].adaLN_modulation[1].bias.fill_(0.1)
    predictor.save_pretrained(tmp_path)
    loaded = ForesightPredictor.from_pretrained(tmp_path)
    assert loaded.config.depth == 3 and loaded.config.teacher_dim == 40
    h = torch.randn(1, 10, 24)
    assert torch.equal(loaded(h), predictor(h))
