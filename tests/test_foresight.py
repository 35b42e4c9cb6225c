"""The foresight loss: window fusion, stop-gradient, cosine, teacher targets, layer indices, replay."""

from __future__ import annotations

import pytest
import torch

from mirai_train.losses import (
    PairReplay,
    foresight_loss,
    fuse_window,
    layer_at_fraction,
    layer_fraction,
    official_layer_to_tap,
    supervised_blocks,
    teacher_targets,
)
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.predictor import ForesightPredictor
from tests.conftest import TINY_TRANSFORMER

# Three blocks of two one-channel tokens: block i holds [v_i, 10 v_i] with v = 1, 2, 4.
TARGETS = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]).view(1, 3, 2, 1)


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        ([0], [[1, 10], [2, 20], [4, 40]]),
        ([1], [[2, 20], [4, 40]]),  # the last block sees past the rollout: no target, no loss
        ([0, 1], [[1.5, 15], [3, 30], [4, 40]]),  # last block: its own tokens only
        ([0, 1, 2], [[7 / 3, 70 / 3], [3, 30], [4, 40]]),
        ([1, 0], [[1.5, 15], [3, 30], [4, 40]]),
    ],
)
def test_fuse_window_by_hand(deltas: list[int], expected: list[list[float]]) -> None:
    fused = fuse_window(TARGETS, deltas)
    assert fused.shape == (1, len(expected), 2, 1)
    assert torch.allclose(fused, torch.tensor(expected, dtype=torch.float32).view(1, -1, 2, 1))
    assert supervised_blocks(3, deltas) == len(expected)


def test_fuse_window_rejects_bad_windows() -> None:
    for bad in ([], [0, 0], [-1, 0]):
        with pytest.raises(ValueError, match="window"):
            fuse_window(TARGETS, bad)
    with pytest.raises(ValueError, match="no block of 3"):
        fuse_window(TARGETS, [3])


def test_cosine_loss_by_hand() -> None:
    predicted = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]).unsqueeze(0)
    targets = torch.tensor([[[0.0, 1.0], [2.0, 2.0]], [[-3.0, 0.0], [0.0, -1.0]]]).unsqueeze(0)
    # Block 0: orthogonal (1) and equal direction (0) -> 0.5; block 1: opposite twice -> 2.
    assert float(foresight_loss(predicted, targets)) == pytest.approx(1.25)
    assert float(foresight_loss(targets, targets)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_loss_averages_over_batch_and_blocks() -> None:
    a = torch.tensor([1.0, 0.0])
    predicted = a.expand(2, 2, 3, 2)
    targets = torch.stack([a, torch.tensor([0.0, 1.0]), -a])[
        torch.tensor([[[0, 0, 0], [1, 1, 1]], [[2, 2, 2], [0, 1, 2]]])
    ]
    # Block losses: 0, 1 (sample 0); 2, 1 (sample 1) -> 1.
    assert float(foresight_loss(predicted, targets)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ"):
        foresight_loss(predicted, targets[:, :1])


def test_targets_get_no_gradient() -> None:
    predicted = torch.randn(2, 3, 4, 5, requires_grad=True)
    targets = torch.randn(2, 3, 4, 5, requires_grad=True)
    loss = foresight_loss(predicted, targets)
    loss.backward()
    assert predicted.grad is not None and predicted.grad.abs().sum() > 0
    assert targets.grad is None
    # Same gradient as the release's -cos: the two losses differ by a constant.
    release = -torch.nn.functional.cosine_similarity(predicted, targets.detach(), dim=-1).mean()
    (reference,) = torch.autograd.grad(release, predicted)
    assert torch.allclose(predicted.grad, reference, atol=1e-7)


def _encoder(layers: int = 3) -> CausalWanTransformer:
    torch.manual_seed(5)
    return CausalWanTransformer(**{**TINY_TRANSFORMER, "num_layers": layers}, num_frame_per_block=3).eval()


def test_layer_index_semantics() -> None:
    assert official_layer_to_tap(15) == 16 and official_layer_to_tap(20) == 21
    assert layer_fraction(15, 30) == 0.5 and layer_fraction(20, 40) == 0.5
    assert layer_at_fraction(0.5, 30) == 15 and layer_at_fraction(0.5, 40) == 20
    assert layer_at_fraction(0.5, 4) == 2
    with pytest.raises(ValueError):
        official_layer_to_tap(-1)
    with pytest.raises(ValueError):
        layer_at_fraction(1.0, 30)


def test_teacher_targets_are_the_encoder_tap_per_block() -> None:
    encoder = _encoder()
    latents, text = torch.randn(2, 16, 6, 4, 6), torch.randn(2, 7, 32)
    targets = teacher_targets(encoder, latents, text, teacher_layer=1, block_frames=3)
    per_frame = encoder.tokens_per_frame(4, 6)
    assert targets.shape == (2, 2, 3 * per_frame, encoder.hidden_dim)
    with torch.no_grad():
        by_hand = encoder(latents, torch.zeros(2), text, causal=False, exit_layer=2).tap
        one_block_less = encoder(latents, torch.zeros(2), text, causal=False, exit_layer=1).tap
    assert by_hand is not None and one_block_less is not None
    assert torch.equal(targets[:, 1], by_hand[:, 3 * per_frame :])
    assert torch.equal(targets.flatten(1, 2), by_hand)
    assert not torch.allclose(targets.flatten(1, 2), one_block_less)
    with pytest.raises(ValueError, match="multiple of the block size"):
        teacher_targets(encoder, latents[:, :, :5], text, teacher_layer=1, block_frames=3)


def test_teacher_sees_the_future() -> None:
    """Bidirectional: editing the last frame changes the first block's target."""
    encoder = _encoder()
    latents, text = torch.randn(1, 16, 6, 4, 6), torch.randn(1, 7, 32)
    edited = latents.clone()
    edited[:, :, 5] += 1.0
    a = teacher_targets(encoder, latents, text, teacher_layer=1, block_frames=3)
    b = teacher_targets(encoder, edited, text, teacher_layer=1, block_frames=3)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_no_gradient_reaches_the_encoder_or_the_rollout() -> None:
    encoder = _encoder(layers=2)
    scale = torch.ones((), requires_grad=True)  # stands in for the generator behind the rollout
    rollout = torch.randn(1, 16, 6, 4, 6) * scale
    targets = teacher_targets(encoder, rollout, torch.randn(1, 7, 32), teacher_layer=0, block_frames=3)
    assert not targets.requires_grad
    fused = fuse_window(targets, [0, 1])
    predictor = ForesightPredictor(dim=16, teacher_dim=encoder.hidden_dim, num_heads=2, depth=1)
    hidden = torch.randn(1, 2, targets.shape[2], 16, requires_grad=True)
    foresight_loss(predictor(hidden), fused).backward()
    assert hidden.grad is not None and predictor.proj.weight.grad is not None
    assert all(p.grad is None for p in encoder.parameters())
    assert scale.grad is None


def test_pair_replay_updates_only_the_predictor() -> None:
    predictor = ForesightPredictor(dim=8, teacher_dim=12, num_heads=2, depth=1)
    replay = PairReplay()
    pairs = [(torch.randn(1, 2, 5, 8, requires_grad=True), torch.randn(1, 2, 5, 12)) for _ in range(2)]
    for hidden, target in pairs:
        replay.add(hidden, target)
    assert len(replay) == 2
    assert all(not h.requires_grad and h.device.type == "cpu" for h, _ in replay)

    logged = replay.backward(predictor, weight=0.2)
    replayed = [p.grad.clone() for p in predictor.parameters() if p.grad is not None]
    predictor.zero_grad()
    by_hand = sum(0.2 * foresight_loss(predictor(h.detach()), t) for h, t in pairs) / 2
    assert isinstance(by_hand, torch.Tensor)
    by_hand.backward()
    assert logged == pytest.approx(float(by_hand.detach()))
    expected = [p.grad for p in predictor.parameters() if p.grad is not None]
    assert len(replayed) == len(expected) > 0
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(replayed, expected, strict=True))
    assert all(h.grad is None for h, _ in pairs)

    replay.clear()
    predictor.zero_grad()
    assert len(replay) == 0 and replay.backward(predictor, weight=0.2) == 0.0
    assert all(p.grad is None for p in predictor.parameters())
