"""Long-video measures (scoring/drift.py) and motion stall, on hand-built videos with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirai_eval.scoring.backbones.block_matching import BlockMatchingFlow
from mirai_eval.scoring.base import Excluded
from mirai_eval.scoring.drift import Exposure, IdentityDecay, Repetition
from mirai_eval.scoring.dynamic import DynamicDegree
from mirai_eval.scoring.final import final_score
from mirai_eval.scoring.longvideo import score_clips
from mirai_eval.tables.windows import summaries
from mirai_train.video import MIN_SIDE, Video

FPS = 8.0


def video(frames: np.ndarray) -> Video:
    return Video("hand-built.mp4", torch.from_numpy(np.ascontiguousarray(frames)), FPS)


def square(
    t_positions: list[int], colour: tuple[int, int, int] = (220, 40, 40), size: int = 64
) -> np.ndarray:
    """A 12 px square on dark grey, its left edge at each given column in turn."""
    frames = np.full((len(t_positions), size, size, 3), 50, dtype=np.uint8)
    for t, x in enumerate(t_positions):
        frames[t, 26:38, x : x + 12] = colour
    return frames


def pixels(clip: Video) -> torch.Tensor:
    """Features for the tests: the frames themselves, flattened (a backbone that sees everything)."""
    return clip.frames.reshape(clip.frames.shape[0], -1).float()


def test_a_fade_to_white_brightens_clips_and_desaturates() -> None:
    """10 s from a saturated orange to white: luminance rises, clipped pixels appear, saturation falls."""
    steps = np.linspace(0.0, 1.0, int(10 * FPS))[:, None]
    colour = (np.array([230.0, 120.0, 20.0]) * (1 - steps) + 255.0 * steps).round().astype(np.uint8)
    clip = video(np.broadcast_to(colour[:, None, None, :], (len(colour), 32, 32, 3)))
    drift = {}
    for name in ("luminance", "clipped", "saturation"):
        _, windows = score_clips(Exposure(name), clip, "", 5.0)
        drift[name] = summaries(windows, 5.0)
    first = (colour[: int(5 * FPS)].astype(float) @ np.array([0.299, 0.587, 0.114])).mean() / 255
    assert drift["luminance"]["first"] == pytest.approx(first, abs=1e-6)
    assert drift["luminance"]["last_minus_first"] > 0.2 and drift["luminance"]["slope_per_10s"] > 0.4
    assert drift["clipped"]["first"] == 0.0 and drift["clipped"]["last"] > 0.05
    assert drift["saturation"]["first"] > 0.6 and drift["saturation"]["last_minus_first"] < -0.4
    # Black is not saturated (no division by zero), and is clipped.
    dark = video(np.zeros((4, 16, 16, 3), dtype=np.uint8))
    assert (
        Exposure("saturation").score(dark, "").value == 0.0
        and Exposure("clipped").score(dark, "").value == 1.0
    )


def test_a_rollout_that_freezes_stalls_per_window() -> None:
    """A square moves 3 px a frame for 5 s, then stands still for 5 s: dynamic per window 1, then 0."""
    moving = [min(3 * t, 50) if t < 17 else 50 - 3 * (t - 17) for t in range(int(5 * FPS))]
    frozen = [moving[-1]] * int(5 * FPS)
    dynamic = DynamicDegree(BlockMatchingFlow(), 4, "cpu", min_side=MIN_SIDE)
    _, windows = score_clips(dynamic, video(square(moving + frozen)), "", 5.0)
    assert windows == [1.0, 0.0]
    assert summaries(windows, 5.0)["last_minus_first"] == -1.0


def test_a_loop_is_flagged_and_a_walk_is_not() -> None:
    """A 2 s back-and-forth played 4 times repeats exactly; a one-way walk past a change does not."""
    cycle = [2 * t for t in range(8)] + [14 - 2 * t for t in range(8)]  # 16 frames = 2 s at 8 fps
    loop = video(square(cycle * 4))
    assert Repetition(pixels).score(loop, "").value == pytest.approx(1.0)
    walk = square([t * 52 // 63 for t in range(64)])
    walk[32:, 26:38] = np.where(walk[32:, 26:38] == 50, 50, 90)  # the square dims half-way
    assert Repetition(pixels).score(video(walk), "").value < 0.98
    with pytest.raises(Excluded, match="three 2 s windows"):
        Repetition(pixels).score(video(square(cycle * 2)), "")


def test_identity_decays_after_the_subject_changes() -> None:
    """A red square that turns into a blue one at 4 s, 12 s long: the curve holds at 1 and 2 s, then drops."""
    frames = square([20] * int(12 * FPS))
    frames[int(4 * FPS) :, 26:38, 20:32] = (40, 60, 230)
    score = IdentityDecay(pixels).score(video(frames), "")
    same, changed = score.frames[:2], score.frames[2:]
    assert len(score.frames) == 4  # 1, 2, 5 and 10 s have a whole second after them; 20 s does not
    assert same == pytest.approx([1.0, 1.0], abs=1e-4) and max(changed) < 0.95
    # The area (mean height over 1-10 s, trapezoid rule) sits between the two levels.
    offsets = [1.0, 2.0, 5.0, 10.0]
    area = sum((offsets[i + 1] - offsets[i]) * (score.frames[i] + score.frames[i + 1]) / 2 for i in range(3))
    assert score.value == pytest.approx(area / 9.0) and changed[0] < score.value < 1.0
    steady = IdentityDecay(pixels).score(video(square([20] * int(12 * FPS))), "")
    assert steady.value == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(Excluded, match="2 s of video"):
        IdentityDecay(pixels).score(video(square([20] * 12)), "")


def test_measures_stay_out_of_vbench_final_score() -> None:
    raw = {"subject_consistency": 0.9, "color": 0.5, "luminance": 0.4, "repetition": 0.99}
    assert final_score(raw, "reweight") == final_score({"subject_consistency": 0.9, "color": 0.5}, "reweight")
