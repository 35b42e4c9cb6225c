"""Planning-gap measures on hand-built sprites videos with known answers, and on the world's own clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mirai_eval.scoring.base import Excluded
from mirai_eval.scoring.planning_gap import PlanningGap, measure_span, read_blobs
from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
from mirai_train.video import Video
from mirai_train.world import SpritesConfig, heldout_prompts, render, sample_scene
from mirai_train.world.render import pixel_centres
from mirai_train.world.shapes import inside
from mirai_train.world.vocabulary import PALETTE

CONFIG = SpritesConfig()
FPS, FRAMES, RADIUS = 16, 80, 11.0
PROMPT = "a red circle and a blue square moving on a grey background"
Sprite = tuple[str, str, float, float]  # colour, shape, x, y (pixels)


def draw(frames: list[list[Sprite]]) -> np.ndarray:
    """A uint8 [T, 64, 64, 3] video on grey with the given sprites in each frame."""
    video = np.empty((len(frames), 64, 64, 3), dtype=np.uint8)
    video[:] = PALETTE["grey"]
    xs, ys = pixel_centres(64), pixel_centres(64)
    for t, sprites in enumerate(frames):
        for colour, shape, x, y in sprites:
            video[t][inside(shape, xs[None, :] - x, ys[:, None] - y, RADIUS)] = PALETTE[colour]
    return video


def scene(t: int, red: str = "circle", blue: str = "square") -> list[Sprite]:
    """The prompt's scene at frame t: the red sprite drifts right, the blue one stays."""
    return [("red", red, 14.0 + 0.1 * t, 18.0), ("blue", blue, 46.0, 44.0)]


def whole(video: np.ndarray) -> dict[str, float]:
    return measure_span(read_blobs(video, CONFIG), PROMPT, 0, len(video), FPS).as_dict()


def windows(video: np.ndarray, prompt: str, fps: float, frames: int) -> list[PlanningGap]:
    """Spans of `frames` frames, each judged with the whole video before it (re-entries across a
    span's start count in the span)."""
    blobs = read_blobs(video, CONFIG)
    return [
        measure_span(blobs, prompt, a, min(a + frames, len(blobs)), fps) for a in range(0, len(blobs), frames)
    ]


def test_a_faithful_video_keeps_everything() -> None:
    got = whole(draw([scene(t) for t in range(FRAMES)]))
    assert got["persistence"] == 1.0
    assert got["swaps"] == got["duplicates"] == got["vanished"] == got["hallucinated"] == 0.0
    assert math.isnan(got["reentry"])  # nothing left and came back


def test_two_sprites_exchanging_colours_are_a_swap() -> None:
    video = draw([scene(t) if t < 40 else scene(t, red="square", blue="circle") for t in range(FRAMES)])
    got = whole(video)
    assert got["swaps"] == pytest.approx(0.5)
    assert got["persistence"] == pytest.approx(0.5)
    assert got["hallucinated"] == 0.0  # both shapes are named, only by the other sprite
    assert got["vanished"] == 0.0


def test_a_duplicated_sprite() -> None:
    video = draw(
        [scene(t) + ([("red", "circle", 20.0, 50.0)] if 20 <= t < 30 else []) for t in range(FRAMES)]
    )
    got = whole(video)
    assert got["duplicates"] == pytest.approx(10 / FRAMES)
    assert got["persistence"] == 1.0 and got["swaps"] == 0.0


def test_a_vanishing_sprite_per_window() -> None:
    video = draw([scene(t) if t < 40 else scene(t)[:1] for t in range(FRAMES)])
    first, second = windows(video, PROMPT, FPS, 40)
    assert first.vanished == 0.0 and first.persistence == 1.0
    assert second.vanished == 0.5 and second.persistence == 0.5
    assert whole(video)["vanished"] == 0.0  # over the whole video both were there


@pytest.mark.parametrize(("back_as", "expected"), [("circle", 1.0), ("triangle", 0.0)])
def test_reentry_keeps_or_loses_the_shape(back_as: str, expected: float) -> None:
    """The red circle is gone for 20 frames (more than REENTRY_GAP) and comes back as `back_as`."""
    frames = [
        scene(t) if t < 30 else scene(t)[1:] if t < 50 else scene(t, red=back_as) for t in range(FRAMES)
    ]
    got = whole(draw(frames))
    assert got["reentry"] == expected
    # The re-entry belongs to the window it happens in.
    early, late = windows(draw(frames), PROMPT, FPS, 40)
    assert math.isnan(early.reentry) and late.reentry == expected


def test_a_short_flicker_is_no_reentry() -> None:
    frames = [scene(t) if not 30 <= t < 33 else scene(t)[1:] for t in range(FRAMES)]
    assert math.isnan(whole(draw(frames))["reentry"])


def test_unnamed_colours_and_shapes_are_hallucinated() -> None:
    extra = {range(0, 10): ("green", "circle"), range(60, 65): ("blue", "ring")}
    frames = [
        scene(t) + [(c, s, 46.0, 14.0) for span, (c, s) in extra.items() if t in span] for t in range(FRAMES)
    ]
    got = whole(draw(frames))
    assert got["hallucinated"] == pytest.approx(15 / FRAMES)


def test_the_worlds_own_clips_swap_duplicate_and_hallucinate_nothing() -> None:
    """Real 30 s clips: sprites leave, hide and come back, always as themselves."""
    reentries = []
    for prompt in heldout_prompts(6, CONFIG):
        video = render(sample_scene(prompt.seed, CONFIG), CONFIG.long_num_frames)
        for window in windows(video, prompt.prompt, CONFIG.fps, round(5 * CONFIG.fps)):
            assert window.swaps == window.duplicates == window.hallucinated == 0.0, prompt.prompt
            reentries += [] if math.isnan(window.reentry) else [window.reentry]
    assert reentries and all(r == 1.0 for r in reentries)


def test_the_toy_profile_scores_them_as_dimensions_and_the_vbench_one_cannot() -> None:
    """Through the scoring loop's dimensions: the same values as `measure_span`; a prompt that is not
    a sprites prompt, or no re-entry, excludes the video; the vbench profile says why it cannot."""
    frames = [
        scene(t) if t < 30 else scene(t)[1:] if t < 50 else scene(t, red="triangle") for t in range(FRAMES)
    ]
    video = Video("hand-built.mp4", torch.from_numpy(draw(frames)), float(FPS))
    names = ["persistence", "swaps", "duplicates", "vanished", "reentry", "hallucinated"]
    loaded = load_dimensions("toy", names, ScoringOptions())
    expected = whole(draw(frames))
    assert {n: loaded.native[n].score(video, PROMPT).value for n in names} == expected
    assert expected["reentry"] == 0.0 and expected["persistence"] < 1.0
    with pytest.raises(Excluded, match="not a sprites prompt"):
        loaded.native["persistence"].score(video, "a cat on a sofa")
    steady = Video("steady.mp4", torch.from_numpy(draw([scene(t) for t in range(FRAMES)])), float(FPS))
    with pytest.raises(Excluded, match="came back"):
        loaded.native["reentry"].score(steady, PROMPT)
    vbench = load_dimensions("vbench", names, ScoringOptions())
    assert not vbench.native and not vbench.delegated and set(vbench.unavailable) == set(names)
