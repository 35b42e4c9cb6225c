"""The sprites world: determinism, prompts, ground truth against pixels, motion, sharding, preview."""

from __future__ import annotations

import re
from pathlib import Path

import decord
import numpy as np
import pydantic
import pytest
import torch

from mirai_train.world import (
    HELDOUT_BASE_SEED,
    PALETTE,
    PROMPT_WORDS,
    Background,
    Pillar,
    Scene,
    Sprite,
    SpritesConfig,
    SpritesDataset,
    clip_seed,
    heldout_prompts,
    render,
    sample_scene,
    shard_indices,
    tracks,
    write_preview,
    write_prompt_file,
)

CONFIG = SpritesConfig()
FLOOR = Background("floor_sky", ("grey", "green"), (24.0,))


def scene_of(*objects: Sprite, pillar: Pillar | None = None) -> Scene:
    return Scene(0, 64, 64, 16, objects, FLOOR, pillar)


def roaming(colour: str, shape: str, start: tuple[float, float], velocity: tuple[float, float]) -> Sprite:
    return Sprite(colour, shape, 5.0, start, velocity, (-25.6, 89.6, -25.6, 89.6))


def test_same_seed_same_pixels_different_seeds_differ() -> None:
    assert np.array_equal(render(sample_scene(7, CONFIG), 81), render(sample_scene(7, CONFIG), 81))
    videos = [render(sample_scene(seed, CONFIG), 9) for seed in range(6)]
    assert all(not np.array_equal(a, b) for i, a in enumerate(videos) for b in videos[i + 1 :])
    first, second = SpritesDataset(4, CONFIG, num_frames=9)[3], SpritesDataset(4, CONFIG, num_frames=9)[3]
    assert first[0].equal(second[0]) and first[1:] == second[1:]


def test_prompt_names_every_sprite_in_the_closed_vocabulary() -> None:
    for seed in range(50):
        scene = sample_scene(seed, CONFIG)
        for sprite in scene.objects:
            assert sprite.name in scene.prompt
        for colour in scene.background.colours:
            assert colour in scene.prompt
        assert set(re.findall(r"[a-z]+", scene.prompt)) <= PROMPT_WORDS, scene.prompt


def test_tracks_agree_with_rendered_pixels() -> None:
    checked = 0
    for seed in range(12):
        scene = sample_scene(seed, CONFIG)
        video, truth = render(scene, 81), tracks(scene, 81)
        assert np.all(truth.visible <= truth.in_frame) and np.all(truth.in_frame <= 1)
        for k, sprite in enumerate(scene.objects):
            mine = truth.instances == k
            assert np.all(video[mine] == PALETTE[sprite.colour])
            assert np.array_equal(mine.any(axis=(1, 2)), truth.visible[:, k] > 0)
            for t in np.flatnonzero(truth.visible[:, k] == 1)[::10]:
                rows, cols = np.nonzero(mine[t])
                centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
                assert np.hypot(*(centroid - truth.centres[t, k])) < 1.0
                if sprite.shape != "ring":  # the ring's centre is its hole
                    x, y = truth.centres[t, k].astype(int)
                    assert tuple(video[t, y, x]) == PALETTE[sprite.colour]
                checked += 1
    assert checked > 50


def test_bounces_keep_speed_and_direction_between_walls() -> None:
    for seed in range(30):
        scene = sample_scene(seed, CONFIG)
        truth = tracks(scene, CONFIG.long_num_frames)
        for k, sprite in enumerate(scene.objects):
            if sprite.walls[0] < 0:
                continue
            assert np.all(truth.in_frame[:, k] == 1), "a walled sprite never leaves the frame"
            for axis, (low, high) in enumerate((sprite.walls[:2], sprite.walls[2:])):
                step = np.diff(truth.centres[:, k, axis].astype(np.float64))
                speed = abs(sprite.velocity[axis]) / scene.fps
                assert np.all(np.abs(step) <= speed + 1e-3)
                turns = np.flatnonzero(np.sign(step[1:]) != np.sign(step[:-1])) + 1
                at_turn = truth.centres[turns, k, axis]
                assert np.all(np.minimum(at_turn - low, high - at_turn) <= speed + 1e-3)
                # A turn may fall inside the first step (no step before it shows the sign change)
                # or follow the last.
                near_turn = np.concatenate([[0], turns - 1, turns, [len(step) - 1]])
                steady = np.setdiff1d(np.arange(len(step)), near_turn)
                assert np.allclose(np.abs(step[steady]), speed, atol=1e-3)
    wall = Sprite("red", "circle", 5.0, (50.0, 32.0), (16.0, 0.0), (5.0, 59.0, 5.0, 59.0))
    x = scene_of(wall).centres(33)[:, 0, 0]
    assert x[9] == pytest.approx(59.0) and x[16] == pytest.approx(2 * 59.0 - (50.0 + 16.0))


def test_leaving_and_reentering_keeps_identity_and_implied_position() -> None:
    leaver = roaming("red", "triangle", (40.0, 32.0), (24.0, 0.0))  # out past x = 69, wall at 89.6
    stayer = Sprite("blue", "square", 5.0, (10.0, 10.0), (0.0, 0.0), (5.0, 59.0, 5.0, 59.0))
    scene = scene_of(stayer, leaver)
    video, truth = render(scene, 160), tracks(scene, 160)
    gone = np.flatnonzero(truth.in_frame[:, 1] == 0)
    back = np.flatnonzero((truth.visible[:, 1] == 1) & (np.arange(160) > gone[0]))
    assert len(gone) > 0 and len(back) > 0
    red = np.all(video == PALETTE["red"], axis=-1)
    assert not red[gone].any(), "nothing red while the red sprite is away"
    t = back[0]
    assert truth.centres[t, 1, 0] == pytest.approx(2 * 89.6 - (40.0 + 24.0 * t / 16), abs=1e-3)
    rows, cols = np.nonzero(red[t])
    assert np.hypot(cols.mean() + 0.5 - truth.centres[t, 1, 0], rows.mean() + 0.5 - 32.0) < 1.0
    assert abs(red[t].sum() - red[0].sum()) <= 0.2 * red[0].sum(), "same shape and size on return"
    assert truth.identities == ("blue square", "red triangle")
    assert np.array_equal(truth.visible, truth.in_frame), "unoccluded: seen is what is inside"
    assert np.all(np.all(video[:, 10, 10] == PALETTE["blue"], axis=-1)), "the other sprite is untouched"


def test_occlusion_reduces_visibility_but_not_presence() -> None:
    back = Sprite("red", "circle", 6.0, (32.0, 40.0), (0.0, 0.0), (6.0, 58.0, 6.0, 58.0))
    front = roaming("blue", "square", (4.0, 40.0), (16.0, 0.0))
    truth = tracks(scene_of(back, front), 64)
    assert np.all(truth.in_frame[:, 0] == 1)
    assert truth.visible[0, 0] == 1 and truth.visible[28, 0] < 0.6 and truth.visible[:, 1].max() == 1
    thin = roaming("yellow", "cross", (4.0, 50.0), (16.0, 0.0))
    truth = tracks(scene_of(thin, pillar=Pillar("brown", 24.0, 40.0)), 64)
    hidden = np.flatnonzero(truth.visible[:, 0] == 0)
    assert len(hidden) >= 3 and np.all(truth.in_frame[hidden, 0] == 1), "behind the pillar, not away"
    assert np.all(truth.instances[:, :, 24:40] == -2)
    assert truth.visible[hidden[-1] + 12, 0] == 1, "and out again"


def _leave_return_hide(num_frames: int) -> tuple[int, int, int]:
    """How many sprites of 40 default scenes leave the frame, come back, hide (behind the pillar or
    another sprite) within the first `num_frames` frames."""
    leaves = returns = hides = 0
    for seed in range(40):
        scene = sample_scene(seed, CONFIG)
        truth = tracks(scene, num_frames)
        for k in range(len(scene.objects)):
            gone = np.flatnonzero(truth.in_frame[:, k] == 0)
            leaves += len(gone) > 0
            returns += len(gone) > 0 and bool(np.any(truth.in_frame[gone[0] :, k] == 1))
            hides += bool(np.any(truth.visible[:, k] < truth.in_frame[:, k]))
    return leaves, returns, hides


def test_sampled_scenes_leave_return_and_hide() -> None:
    """The planning gaps: in 5 s training clips sprites leave and hide; over the 30 s rollouts the
    roaming ones come back (the default sprites are slow, for the codec: issue 13)."""
    leaves, _, hides = _leave_return_hide(CONFIG.num_frames)
    assert leaves >= 8 and hides >= 20
    leaves, returns, hides = _leave_return_hide(CONFIG.long_num_frames)
    assert leaves >= 30 and returns >= 15 and hides >= 40


def test_dataset_shards_are_disjoint_and_cover_the_range() -> None:
    shards = [shard_indices(11, rank, 3) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    data = SpritesDataset(11, CONFIG, base_seed=5, num_frames=5, rank=2, world_size=3)
    assert len(data) == 3
    video, prompt, seed = data[1]
    assert seed == clip_seed(5, 5) and prompt == sample_scene(seed, CONFIG).prompt
    assert video.shape == (3, 5, 64, 64) and video.is_contiguous()
    pixels = ((video.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels, render(sample_scene(seed, CONFIG), 5))
    with pytest.raises(ValueError):
        shard_indices(11, 3, 3)
    with pytest.raises(ValueError):
        SpritesDataset(11, CONFIG, base_seed=HELDOUT_BASE_SEED)


def test_the_toy_manifests_prompt_file_is_the_worlds_heldout_set() -> None:
    """manifests/toy/prompts/sprites_heldout.txt is `heldout_prompts(64)` of the default world: a change
    of the world (its layouts, sizes, vocabulary) must rewrite it, or the toy tables would prompt
    scenes the generators never trained on."""
    path = Path(__file__).parents[1] / "manifests/toy/prompts/sprites_heldout.txt"
    expected = [p.prompt for p in heldout_prompts(64, SpritesConfig())]
    assert path.read_text().splitlines() == expected, (
        "rewrite it: write_prompt_file(heldout_prompts(64, SpritesConfig()), path), then its sha256 pins"
    )


def test_heldout_prompts_are_fixed_distinct_and_written(tmp_path: Path) -> None:
    prompts = heldout_prompts(8, CONFIG)
    assert prompts == heldout_prompts(8, CONFIG)
    assert len({item.prompt for item in prompts}) == 8
    assert all(sample_scene(item.seed, CONFIG).prompt == item.prompt for item in prompts)
    lines = write_prompt_file(prompts, tmp_path / "prompts.txt").read_text().splitlines()
    assert lines == [item.prompt for item in prompts]


def test_preview_decodes_to_the_rendered_frame_count(tmp_path: Path) -> None:
    path = write_preview(3, tmp_path / "preview.mp4", CONFIG, num_frames=17)
    reader = decord.VideoReader(str(path))
    assert len(reader) == 17 and reader[0].shape == (64, 64, 3)
    assert reader.get_avg_fps() == pytest.approx(16)


def test_config_refuses_unknown_keys_and_impossible_scenes() -> None:
    with pytest.raises(pydantic.ValidationError):
        SpritesConfig(heigth=32)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SpritesConfig(max_objects=9)
    assert sample_scene(1, SpritesConfig(height=32, width=48)).width == 48
