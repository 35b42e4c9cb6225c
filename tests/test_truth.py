"""Ground-truth fidelity reads a clean render back exactly and tells it from noise and from a wrong scene."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mirai_train.world import SpritesConfig, render, sample_scene
from mirai_train.world.shapes import inside
from mirai_train.world.truth import fit_radii, measure, shape_fit
from mirai_train.world.vocabulary import COLOURS, PALETTE, SHAPES

# One sprite bouncing inside the frame, no pillar: every frame shows it whole.
INSIDE = SpritesConfig(min_objects=1, max_objects=1, roam_probability=0.0, pillar_probability=0.0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [64 * SpritesConfig().min_radius, 64 * SpritesConfig().max_radius])
def test_each_shape_fits_its_own_template_best(shape: str, radius: float) -> None:
    grid = np.arange(64) + 0.5
    blob = inside(shape, grid[None, :] - 30.3, grid[:, None] - 27.8, radius)
    fit = shape_fit(blob, fit_radii(SpritesConfig()))
    assert SHAPES[int(fit.argmax())] == shape
    assert fit.max() >= 0.9


def test_a_clean_render_shows_its_sprite_in_every_frame() -> None:
    scene = sample_scene(3, INSIDE)
    fidelity = measure(render(scene, 17), scene, INSIDE)
    assert fidelity.visible == 1.0 and fidelity.colour_visible == 1.0
    assert fidelity.unnamed == 0.0 and fidelity.off_palette == 0.0
    assert fidelity.background > 0.95  # below 1 where the slow sprite covers a pixel in most frames


def test_the_wrong_shape_or_colour_is_not_visible() -> None:
    scene = sample_scene(3, INSIDE)
    video = render(scene, 17)
    sprite = scene.objects[0]
    other_shape = next(s for s in SHAPES if s != sprite.shape)
    wrong_shape = dataclasses.replace(scene, objects=(dataclasses.replace(sprite, shape=other_shape),))
    fidelity = measure(video, wrong_shape, INSIDE)
    assert fidelity.visible == 0.0 and fidelity.colour_visible == 1.0
    unused = next(c for c in COLOURS if c != sprite.colour and c not in scene.background.colours)
    wrong_colour = dataclasses.replace(scene, objects=(dataclasses.replace(sprite, colour=unused),))
    fidelity = measure(video, wrong_colour, INSIDE)
    assert fidelity.visible == 0.0 and fidelity.colour_visible == 0.0
    assert fidelity.unnamed == 1.0  # the drawn sprite's colour is now one the scene does not use


def test_noise_and_a_foreign_blob() -> None:
    scene = sample_scene(3, INSIDE)
    noise = np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    fidelity = measure(noise, scene, INSIDE)
    assert fidelity.visible == 0.0 and fidelity.off_palette > 0.5 and fidelity.background < 0.1
    video = render(scene, 9)
    used = {scene.objects[0].colour, *scene.background.colours}
    video[4, :8, :8] = PALETTE[next(c for c in COLOURS if c not in used)]  # one frame, 64 pixels
    assert measure(video, scene, INSIDE).unnamed == pytest.approx(1 / 9)
