"""The toy profile: its trained stand-ins and weightless estimators tell sprites clips apart as the
VBench dimensions they stand in for should (a reduced-schedule training, once per session)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mirai_eval.cli import app
from mirai_eval.scoring.profiles import TOY_UNAVAILABLE, LoadedDimensions, ScoringOptions, load_dimensions
from mirai_train.video import Video, write_mp4
from mirai_train.world import SpritesConfig, clip_seed, render, sample_scene
from mirai_train.world.dataset import HELDOUT_BASE_SEED
from mirai_train.world.scene import Scene
from mirai_train.world.vocabulary import COLOURS, SHAPES, describe_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRAMES = 41
CLIPS = 6


def scenes() -> list[Scene]:
    """Held-out scenes with at least two sprites (never trained on)."""
    found, index = [], 0
    while len(found) < CLIPS:
        scene = sample_scene(clip_seed(HELDOUT_BASE_SEED, index), SpritesConfig())
        index += 1
        if len(scene.objects) >= 2:
            found.append(scene)
    return found


def video(frames: np.ndarray, fps: float = 16.0) -> Video:
    return Video("clip", torch.from_numpy(np.ascontiguousarray(frames)), fps)


def unused_colour(scene: Scene) -> str:
    used = {s.colour for s in scene.objects} | set(scene.background.colours)
    used |= set() if scene.pillar is None else {scene.pillar.colour}
    return next(c for c in COLOURS if c not in used)


def changed_midway(scene: Scene, kind: str) -> np.ndarray:
    """The clip with its front sprite turned into another sprite, or gone, from the middle frame on."""
    front = scene.objects[-1]
    if kind == "identity":
        shape = SHAPES[(SHAPES.index(front.shape) + 1) % len(SHAPES)]
        other = dataclasses.replace(front, colour=unused_colour(scene), shape=shape)
    else:  # far outside the frame, still
        other = dataclasses.replace(
            front, start=(-5e4, -5e4), velocity=(0.0, 0.0), walls=(-1e5, -1e4, -1e5, -1e4)
        )
    frames = render(scene, FRAMES)
    frames[FRAMES // 2 :] = render(dataclasses.replace(scene, objects=(*scene.objects[:-1], other)), FRAMES)[
        FRAMES // 2 :
    ]
    return frames


@pytest.fixture(scope="module")
def plan(toy_scorers: Path) -> LoadedDimensions:
    dims = ["subject_consistency", "background_consistency", "imaging_quality", "overall_consistency",
            "object_class", "multiple_objects", "color"]  # fmt: skip
    return load_dimensions("toy", dims, ScoringOptions(weights={"toy_scorers": str(toy_scorers)}))


def mean_score(plan: LoadedDimensions, name: str, clips: list[np.ndarray], prompts: list[str]) -> float:
    return float(
        np.mean([plan.native[name].score(video(c), p).value for c, p in zip(clips, prompts, strict=True)])
    )


def test_subject_consistency_drops_when_a_sprite_changes_or_vanishes(plan: LoadedDimensions) -> None:
    clips = scenes()
    prompts = [s.prompt for s in clips]
    real = mean_score(plan, "subject_consistency", [render(s, FRAMES) for s in clips], prompts)
    swapped = mean_score(plan, "subject_consistency", [changed_midway(s, "identity") for s in clips], prompts)
    vanished = mean_score(plan, "subject_consistency", [changed_midway(s, "vanish") for s in clips], prompts)
    assert real > swapped + 0.02 and real > vanished + 0.02, (real, swapped, vanished)


def test_background_consistency_drops_when_the_background_changes(plan: LoadedDimensions) -> None:
    clips = scenes()
    prompts = [s.prompt for s in clips]
    changed = []
    for scene in clips:
        colours = tuple(unused_colour(scene) for _ in scene.background.colours)
        other = dataclasses.replace(scene, background=dataclasses.replace(scene.background, colours=colours))
        frames = render(scene, FRAMES)
        frames[FRAMES // 2 :] = render(other, FRAMES)[FRAMES // 2 :]
        changed.append(frames)
    real = mean_score(plan, "background_consistency", [render(s, FRAMES) for s in clips], prompts)
    assert real > mean_score(plan, "background_consistency", changed, prompts) + 0.02


def test_overall_consistency_prefers_the_matching_prompt(plan: LoadedDimensions) -> None:
    clips = scenes()
    frames = [render(s, FRAMES) for s in clips]
    matching = mean_score(plan, "overall_consistency", frames, [s.prompt for s in clips])
    shuffled = mean_score(plan, "overall_consistency", frames, [s.prompt for s in clips[1:] + clips[:1]])
    assert matching > shuffled + 0.2, (matching, shuffled)


def renamed(scene: Scene, part: str) -> str:
    """The scene's prompt with every sprite's shape (or colour) replaced by one the scene lacks."""
    shape = next(s for s in SHAPES if s not in {o.shape for o in scene.objects})
    objects = [
        (sprite.colour, shape) if part == "shape" else (unused_colour(scene), sprite.shape)
        for sprite in scene.objects
    ]
    pillar = None if scene.pillar is None else scene.pillar.colour
    return describe_scene(objects, scene.background.layout, scene.background.colours, pillar)


def test_detection_dimensions_find_the_named_sprites(plan: LoadedDimensions) -> None:
    clips = scenes()
    frames = [render(s, FRAMES) for s in clips]
    named = [s.prompt for s in clips]
    # sprites often roam out of view, so even real clips show all named sprites at once in few frames
    for name, margin in (("object_class", 0.3), ("multiple_objects", 0.1)):
        real = mean_score(plan, name, frames, named)
        other_shapes = mean_score(plan, name, frames, [renamed(s, "shape") for s in clips])
        assert real > other_shapes + margin, (name, real, other_shapes)
    real = mean_score(plan, "color", frames, named)
    other_colours = mean_score(plan, "color", frames, [renamed(s, "colour") for s in clips])
    assert real > other_colours + 0.3, (real, other_colours)


def test_imaging_quality_is_lower_for_noised_frames(plan: LoadedDimensions) -> None:
    clips = scenes()
    frames = [render(s, 9) for s in clips]
    generator = np.random.default_rng(0)
    noised = [np.clip(f + generator.normal(0, 25, f.shape), 0, 255).astype(np.uint8) for f in frames]
    prompts = [s.prompt for s in clips]
    clean = mean_score(plan, "imaging_quality", frames, prompts)
    assert 0 <= mean_score(plan, "imaging_quality", noised, prompts) < clean <= 1


def test_dynamic_degree_still_and_moving() -> None:
    config = SpritesConfig(min_radius=0.2, max_radius=0.22, min_speed=0.6, max_speed=0.6, roam_probability=0.0,
                           roam_margin=0.5, pillar_probability=0.0)  # fmt: skip
    moving = render(sample_scene(3, config), FRAMES)
    still = np.repeat(moving[:1], FRAMES, axis=0)
    dynamic = load_dimensions("toy", ["dynamic_degree"], ScoringOptions()).native["dynamic_degree"]
    assert dynamic.score(video(still), "").value == 0.0
    assert dynamic.score(video(moving), "").value == 1.0


def test_motion_smoothness_prefers_smooth_motion() -> None:
    smoothness = load_dimensions("toy", ["motion_smoothness"], ScoringOptions()).native["motion_smoothness"]
    clip = render(scenes()[0], FRAMES)
    jittered = clip.copy()
    jittered[1::2] = clip[np.random.default_rng(0).permutation(np.arange(1, FRAMES, 2))]
    smooth = smoothness.score(video(clip), "").value
    assert smooth > 0.99 and smooth > smoothness.score(video(jittered), "").value + 0.005


def test_score_command_with_the_toy_profile(tmp_path: Path, toy_scorers: Path) -> None:
    videos = tmp_path / "videos"
    scene = scenes()[0]
    write_mp4(videos / f"{scene.prompt}-0.mp4", render(scene, 17), fps=16)
    out = tmp_path / "scores.json"
    args = ["score", "--videos", str(videos), "--profile", "toy", "--out", str(out), "--missing", "reweight",
            "--weight", f"toy_scorers={toy_scorers}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert set(results["aggregate"]) | set(results["unavailable"]) == set(results["dimensions"])
    assert set(results["unavailable"]) == set(TOY_UNAVAILABLE)
    assert "reweighted" in results["final"]["note"]


def test_the_scorers_store_key_follows_the_world_they_are_trained_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A world whose defaults change (issue 13's bigger, slower sprites) must retrain the toy scorers:
    the key covers the resolved recipe, not only the recipe file's bytes."""
    from mirai_eval.scoring import toy_training
    from mirai_eval.scoring.toy_weights import RECIPE

    recipe = toy_training.load_scorers_recipe(RECIPE)
    before = toy_training.scorers_digest(RECIPE)
    other = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"world": SpritesConfig(min_radius=0.15)})}
    )
    monkeypatch.setattr(toy_training, "load_scorers_recipe", lambda path: other)
    assert toy_training.scorers_digest(RECIPE) != before
