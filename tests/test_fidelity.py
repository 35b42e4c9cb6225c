"""The sprites Fréchet distance separates sprites videos from noise, and is 0 for identical sets."""

from __future__ import annotations

import numpy as np
import pytest

from mirai_train.world import SpritesConfig, render, sample_scene
from mirai_train.world.fidelity import frechet_distance, sprites_fd, video_features
from mirai_train.world.vocabulary import PALETTE

CONFIG = SpritesConfig(height=32, width=32)


def _real(seeds: range) -> list[np.ndarray]:
    return [render(sample_scene(seed, CONFIG), 9) for seed in seeds]


def test_features_of_a_hand_built_video() -> None:
    video = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    video[:] = PALETTE["red"]
    video[1:, :2] = PALETTE["blue"]  # half the frame turns blue after frame 0
    video[2, 0, 0] = (90, 200, 90)  # one off-palette pixel in the last frame
    features = video_features(video)
    names = list(PALETTE)
    assert features[names.index("blue")] == pytest.approx(15 / 48)
    assert features[len(names)] == pytest.approx(1 / 48)  # off-palette share
    assert features[-2] == pytest.approx((8 + 1) / 32)  # changed pixels over the two frame pairs
    assert features[-1] == pytest.approx((8 + 1) / 32)  # pixels whose colour class changed


def test_real_clips_are_close_and_noise_is_far() -> None:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8) for _ in range(8)]
    real_a, real_b = _real(range(0, 16)), _real(range(100, 116))
    assert sprites_fd(real_a, real_a) == pytest.approx(0.0, abs=1e-6)
    # Measured: 0.48 vs 2.47 (plain backgrounds: one colour fills most of a clip, so two sets of 16
    # clips differ more in their colour shares than with banded backgrounds: 0.14 vs 2.04).
    assert sprites_fd(real_a, real_b) < 0.25 * sprites_fd(noise, real_b)


def test_frechet_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least two"):
        frechet_distance(np.ones((1, 3)), np.ones((4, 3)))
