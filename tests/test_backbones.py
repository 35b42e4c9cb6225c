"""Our faster forwards of the scoring backbones compute exactly what the reference forwards do."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mirai_eval.scoring.backbones.raft import RaftFlow, load_raft


def test_raft_flow_is_torchvisions_last_refinement_bit_for_bit() -> None:
    torch.manual_seed(0)
    raft = load_raft(None)  # random weights; the forward, not the weights, is under test
    first, second = (torch.rand(2, 3, 124, 156) * 255).unbind(0)
    first, second = first[None], second[None]
    with torch.inference_mode():
        ours = RaftFlow(raft, iterations=5)(first, second)
        padding = [2, 2, 2, 2]  # 124x156 -> 128x160, centred, as RaftFlow pads
        reference = raft(
            F.pad(first, padding, mode="replicate") / 127.5 - 1.0,
            F.pad(second, padding, mode="replicate") / 127.5 - 1.0,
            num_flow_updates=5,
        )[-1]
    assert ours.shape == (1, 2, 128, 160)
    assert ours.abs().max() > 0
    assert torch.equal(ours, reference)
