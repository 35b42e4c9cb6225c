"""VBench's per-video formulas on inputs small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mirai_eval.scoring.backbones.dino import DinoViT
from mirai_eval.scoring.base import Excluded, VideoScore, aggregate
from mirai_eval.scoring.consistency import frame_consistency
from mirai_eval.scoring.dynamic import is_dynamic, sampled_indices
from mirai_eval.scoring.flicker import byte_sum, flicker_score, top_mean
from mirai_eval.scoring.objects import Colour, MultipleObjects, ObjectClass, SpriteDetections
from mirai_train.video import Video


def test_consistency_formula_clamps_negative_cosines() -> None:
    # f1 = (1, 0); f2 at 60 degrees; f3 = (-1, 0): cos(f2, f3) = -0.5 and cos(f1, f3) = -1 clamp to 0.
    features = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [-2.0, 0.0]])
    score = frame_consistency(features)
    assert score.frames == pytest.approx([(0.5 + 0.5) / 2, (0.0 + 0.0) / 2], abs=1e-6)
    assert score.value == pytest.approx(0.25, abs=1e-6) and score.count == 2
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_consistency(features[:1])


def test_frame_weighted_and_video_mean_aggregates_differ() -> None:
    short = VideoScore(value=0.5, total=0.5, count=1)
    long = VideoScore(value=1.0, total=3.0, count=3)
    assert aggregate([short, long], "frame_weighted") == pytest.approx(3.5 / 4)
    assert aggregate([short, long], "video_mean") == pytest.approx(0.75)


def test_flicker_score_by_hand() -> None:
    frames = torch.zeros(3, 2, 2, 3, dtype=torch.uint8)
    frames[1] = 10  # |f1 - f0| = 10 everywhere, |f2 - f1| = 10 everywhere
    assert flicker_score(frames) == pytest.approx((255 - 10) / 255)
    frames[2] = 40  # pair means 10 and 30 -> 20
    assert flicker_score(frames) == pytest.approx((255 - 20) / 255)


def test_byte_sum_is_exact_at_any_size_and_at_the_uint16_edge() -> None:
    generator = np.random.default_rng(0)
    for size in (0, 1, 255, 256, 257, 256 * 7 + 13, 480 * 832 * 3):
        values = generator.integers(0, 256, size, dtype=np.uint8)
        assert byte_sum(values) == int(values.sum(dtype=np.int64))
        saturated = np.full(size, 255, np.uint8)  # 256 rows of 255 per column: the uint16 maximum
        assert byte_sum(saturated) == 255 * size


def test_top_mean_uses_the_largest_magnitudes() -> None:
    flow = torch.zeros(2, 10, 10)
    flow[0, 0, :5] = 3.0
    flow[1, 0, :5] = 4.0  # five pixels of magnitude 5 among 100
    assert top_mean(flow, 0.05) == pytest.approx(5.0)
    assert top_mean(flow, 0.10) == pytest.approx(2.5)


def test_dynamic_decision_thresholds() -> None:
    # 480x832 frames: threshold 6 * 480 / 256 = 11.25; 16 sampled frames need round(4) = 4 moving pairs.
    assert sampled_indices(33, 16.0) == list(range(0, 33, 2))
    assert is_dynamic([12.0] * 4 + [0.0] * 11, 480, 832, 16)
    assert not is_dynamic([12.0] * 3 + [11.25] * 12, 480, 832, 16)
    assert not is_dynamic([], 480, 832, 1)  # no pair at all is never dynamic, as in VBench


def test_dino_positional_resizing() -> None:
    torch.manual_seed(0)
    model = DinoViT(dim=48, depth=1, heads=2).eval()
    torch.nn.init.normal_(model.pos_embed)
    assert model._positions(14, 14) is model.pos_embed
    resized = model._positions(14, 24)
    assert resized.shape == (1, 1 + 14 * 24, 48)
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 224, 398)).shape == (2, 48)


def test_musiq_patch_layout_by_hand() -> None:
    from mirai_eval.scoring.backbones.musiq import hashed_grid, multiscale_patches

    # 300x512: longer side 224 -> 131x224 = 5x7 patches in 49 slots; 384 -> 225x384 = 8x12 in 144;
    # native 10x16 = 160 patches, all kept.
    patches, grid, scale, mask = multiscale_patches(torch.zeros(2, 3, 300, 512))
    assert patches.shape == (2, 49 + 144 + 160, 3 * 32 * 32)
    assert int(mask[0].sum()) == 35 + 96 + 160
    assert scale[0, :35].eq(0).all() and scale[0, 49 : 49 + 96].eq(1).all() and scale[0, 193:].eq(2).all()
    assert not mask[0, 35:49].any() and scale[0, 35:49].eq(0).all() and grid[0, 35:49].eq(0).all()
    assert grid[0, :35].tolist() == hashed_grid(5, 7).tolist()
    # A 2x3 patch grid hashes onto the 10x10 table by nearest neighbour: rows 0, 5; columns 0, 3, 6.
    assert hashed_grid(2, 3).tolist() == [0, 3, 6, 50, 53, 56]


def test_viclip_middle_sampling_by_hand() -> None:
    from mirai_eval.scoring.videotext import middle_indices

    # 17 frames: interval edges 0 2 4 6 8 10 12 14 17 -> middles of [a, b - 1].
    assert middle_indices(17) == [0, 2, 4, 6, 8, 10, 12, 15]
    assert middle_indices(5) == [0, 1, 2, 3, 4, 4, 4, 4]


class FixedDetections(SpriteDetections):
    """The detector's findings given outright, whatever the video."""

    def __init__(self, found: list[list[tuple[str, str]]]) -> None:
        self.found = found

    def of(self, video: Video) -> list[list[tuple[str, str]]]:
        return self.found


def test_object_counting_by_hand() -> None:
    prompt = "a red circle and a blue ring moving on a grey background"
    found = FixedDetections(
        [
            [("red", "circle"), ("blue", "ring")],
            [("green", "circle")],
            [],
            [("blue", "ring"), ("red", "ring")],
        ]
    )
    clip = Video("v", torch.zeros(4, 8, 8, 3, dtype=torch.uint8), 16.0)
    # object class: (circle, ring) found in frames 1: 2, 2: 1, 3: 0, 4: 1 -> 4 of 8 pairs
    assert ObjectClass(found).score(clip, prompt) == VideoScore(0.5, 4.0, 8)
    # multiple objects: a circle and a ring together only in frame 1
    assert MultipleObjects(found).score(clip, prompt) == VideoScore(0.25, 1.0, 4)
    # colour: a named shape is seen 4 times (circle 2x, ring 2x); in the named colour 3 times
    assert Colour(found).score(clip, prompt).value == 0.75
    twins = "an orange ring and a green ring moving on a grey background"
    assert MultipleObjects(FixedDetections([[("orange", "ring")]])).score(clip, twins).value == 0.0
    both = FixedDetections([[("orange", "ring"), ("green", "ring")]])
    assert MultipleObjects(both).score(clip, twins).value == 1.0
    with pytest.raises(Excluded, match="names one sprite"):
        MultipleObjects(found).score(clip, "a red circle moving on a grey background")
    with pytest.raises(Excluded, match="no sprite of a named shape"):
        Colour(FixedDetections([[("red", "square")]])).score(clip, prompt)
    with pytest.raises(ValueError, match="not a sprites prompt"):
        ObjectClass(found).score(clip, "a cat playing the piano")
