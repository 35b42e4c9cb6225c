"""Motion smoothness without the vbench package: AMT-S's checkpoint layout, sizes, and the formula by hand.

Parity with vbench itself is in tests/vbench_parity (the `vbench` nox session).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from mirai_eval.scoring.backbones.amt import AmtS, load_amt, read_amt_state
from mirai_eval.scoring.dimensions import NATIVE
from mirai_eval.scoring.motion import MotionSmoothness, centred_padding
from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
from mirai_train.video import Video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Shapes of a few entries of the official amt-s.pth, and its parameter count (213 tensors).
OFFICIAL_SHAPES = {
    "feat_encoder.conv1.weight": (32, 3, 7, 7),
    "feat_encoder.layer2.0.downsample.0.weight": (64, 32, 1, 1),
    "feat_encoder.conv2.weight": (84, 96, 1, 1),
    "encoder.pyramid4.0.1.weight": (56,),
    "decoder4.convblock.0.0.weight": (112, 113, 3, 3),
    "decoder3.convblock.1.conv2.0.weight": (20, 20, 3, 3),
    "decoder1.convblock.2.weight": (60, 24, 4, 4),
    "update2.convc1.weight": (64, 392, 1, 1),
    "update4.gru.0.weight": (76, 116, 3, 3),
    "update3.feat_head.2.weight": (32, 76, 3, 3),
    "comb_block.1.weight": (18,),
}
OFFICIAL_TENSORS, OFFICIAL_NUMEL = 213, 2_990_543


class TrainingArgs(argparse.Namespace):
    """A training-time object in a checkpoint; loading the weights must never construct it."""

    def __setstate__(self, state: dict) -> None:
        raise AssertionError("the checkpoint loader ran code of a pickled class")


@pytest.fixture(scope="module")
def amt_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random AMT-S saved as AMT's trainer saves it, with metadata outside torch's weights-only list."""
    model = AmtS()
    path = tmp_path_factory.mktemp("amt") / "amt-s.pth"
    optim = {"state": {}, "param_groups": [{"lr": 2e-4, "psnr": np.float64(35.2)}]}
    checkpoint = {
        "epoch": 300,
        "state_dict": model.state_dict(),
        "optim": optim,
        "args": TrainingArgs(lr=2e-4),
    }
    torch.save(checkpoint, path)
    return path


def test_official_layout_loads_as_is(amt_checkpoint: Path) -> None:
    state = read_amt_state(amt_checkpoint)
    assert len(state) == OFFICIAL_TENSORS and sum(t.numel() for t in state.values()) == OFFICIAL_NUMEL
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    model = load_amt(amt_checkpoint)  # strict: every key of the file, nothing else
    assert not model.training
    assert torch.equal(model.state_dict()["update2.convc1.weight"], state["update2.convc1.weight"])


def _video(frames: int, height: int, width: int, seed: int = 0) -> Video:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (frames, height, width, 3), generator=g, dtype=torch.uint8)
    return Video("v.mp4", pixels, fps=8.0)


def test_odd_sizes_and_batches(amt_checkpoint: Path) -> None:
    # 130x150 pads to 144x160 (7 + 7 rows, 5 + 5 columns); 7 frames give 3 interpolated odd frames.
    assert centred_padding(130, 150) == (5, 5, 7, 7)
    assert centred_padding(129, 143) == (0, 1, 7, 8)  # an odd amount puts the extra pixel after
    model = load_amt(amt_checkpoint)
    prediction = model(torch.rand(2, 3, 144, 160), torch.rand(2, 3, 144, 160))
    assert prediction.shape == (2, 3, 144, 160) and prediction.isfinite().all()
    video = _video(7, 130, 150)
    one = MotionSmoothness(model, batch_size=1).pair_differences(video)
    three = MotionSmoothness(model, batch_size=3).pair_differences(video)
    assert len(one) == 3 and all(0 < d < 255 for d in one)
    assert three == pytest.approx(one, abs=0.01)  # a few uint8 truncations may flip across batch sizes


def test_too_few_frames_or_too_small_frames_are_refused(amt_checkpoint: Path) -> None:
    dimension = MotionSmoothness(load_amt(amt_checkpoint))
    with pytest.raises(ValueError, match="at least 3 frames"):
        dimension.score(_video(2, 128, 128), "")
    # 112 px stays 112 after padding: AMT-S's coarsest correlation level would be 1 px (NaN).
    with pytest.raises(ValueError, match="at least 128 px"):
        dimension.score(_video(3, 112, 256), "")


def test_formula_by_hand(amt_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even frames in, odd frames compared, the last frame of an even count ignored, uint8 truncated."""
    model = load_amt(amt_checkpoint)
    # A constant prediction of 0.999: 254.745 truncates to 254 (rounding would give 255).
    monkeypatch.setattr(model, "forward", lambda img0, img1: torch.full_like(img0, 0.999))
    frames = torch.zeros(6, 128, 128, 3, dtype=torch.uint8)
    frames[1] = 254  # predicted exactly: difference 0
    frames[3] = 244  # difference 10
    frames[5] = 0  # after the last even frame: never compared
    score = MotionSmoothness(model, batch_size=1).score(Video("v.mp4", frames, 8.0), "")
    assert score.frames == pytest.approx([1.0, 245 / 255])
    assert score.value == pytest.approx((255 - 5) / 255)


def test_vbench_profile_runs_it_natively(amt_checkpoint: Path) -> None:
    assert "motion_smoothness" in NATIVE
    options = ScoringOptions(weights={"amt_s": str(amt_checkpoint)}, flow_batch_size=3)
    plan = load_dimensions("vbench", ["motion_smoothness"], options)
    assert plan.delegated == ()
    dimension = plan.native["motion_smoothness"]
    assert isinstance(dimension, MotionSmoothness) and dimension.batch_size == 3
