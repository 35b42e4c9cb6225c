"""Scenes of the sprites world: what is in a clip and how it moves, sampled from a seed.

A scene is a pure description (no pixels): sprites with an identity (a colour no other thing in
the scene has, and a shape), a start position, a constant velocity and four walls they bounce off
elastically; a static background; an optional static pillar in front of every sprite. The centre
of a sprite at any time is a closed form (a triangle wave per axis), so a frame far in the future
is as cheap and as exact as the first one, and the ground truth never accumulates error.

Units: pixels of the configured frame (x right, y down, pixel (i, j) has its centre at
(j + 0.5, i + 0.5)), seconds for time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirai_train.world.config import SpritesConfig
from mirai_train.world.vocabulary import COLOURS, SHAPES, describe_scene


def bounce(start: float, velocity: float, low: float, high: float, times: np.ndarray) -> np.ndarray:
    """Position at `times` of a point moving at `velocity` between walls `low` and `high`.

    Unfolding the bounces turns the motion into a straight line on a circle of length 2 (high - low);
    folding it back is a triangle wave.
    """
    span = high - low
    phase = np.mod(start - low + velocity * times, 2 * span)
    return low + span - np.abs(phase - span)


@dataclass(frozen=True)
class Sprite:
    colour: str
    shape: str
    radius: float  # the shape fits inside a circle of this radius around its centre
    start: tuple[float, float]  # centre at t = 0
    velocity: tuple[float, float]  # pixels per second
    walls: tuple[float, float, float, float]  # x_low, x_high, y_low, y_high that the centre bounces off

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def centres(self, times: np.ndarray) -> np.ndarray:
        """[len(times), 2] centre (x, y); outside the frame while the sprite roams."""
        x_low, x_high, y_low, y_high = self.walls
        x = bounce(self.start[0], self.velocity[0], x_low, x_high, times)
        y = bounce(self.start[1], self.velocity[1], y_low, y_high, times)
        return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class Background:
    """Bands of colour along one axis: rows for plain, floor_sky and horizontal_stripes, else columns.

    `colours` run top to bottom (sky before floor) or left to right; `edges` are the
    len(colours) - 1 band boundaries in pixels along that axis.
    """

    layout: str
    colours: tuple[str, ...]
    edges: tuple[float, ...]


@dataclass(frozen=True)
class Pillar:
    """A full-height bar in front of every sprite, between x = left and x = right."""

    colour: str
    left: float
    right: float


@dataclass(frozen=True)
class Scene:
    seed: int
    height: int
    width: int
    fps: int
    objects: tuple[Sprite, ...]  # back to front: a later sprite hides an earlier one
    background: Background
    pillar: Pillar | None

    @property
    def prompt(self) -> str:
        objects = [(sprite.colour, sprite.shape) for sprite in self.objects]
        pillar = None if self.pillar is None else self.pillar.colour
        return describe_scene(objects, self.background.layout, self.background.colours, pillar)

    def times(self, num_frames: int) -> np.ndarray:
        return np.arange(num_frames) / self.fps

    def centres(self, num_frames: int) -> np.ndarray:
        """[T, N, 2] centre (x, y) of every sprite at every frame."""
        times = self.times(num_frames)
        return np.stack([sprite.centres(times) for sprite in self.objects], axis=1)


def _background(
    rng: np.random.Generator, layout: str, colours: list[str], height: int, width: int
) -> Background:
    if layout == "plain":
        return Background(layout, (colours[0],), ())
    if layout == "floor_sky":
        return Background(layout, (colours[0], colours[1]), (float(rng.uniform(0.35, 0.65)) * height,))
    bands = int(rng.integers(2, 4))
    length = height if layout == "horizontal_stripes" else width
    return Background(layout, tuple(colours[:bands]), tuple(length * k / bands for k in range(1, bands)))


def _start(
    rng: np.random.Generator,
    radius: float,
    placed: list[Sprite],
    pillar: Pillar | None,
    height: int,
    width: int,
) -> tuple[float, float]:
    """A start inside the frame, clear of earlier sprites and of the pillar (so frame 0 shows the
    whole prompt), drawn by rejection; after 100 misses the last draw stands."""
    for _ in range(100):
        x, y = float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))
        clear = all(np.hypot(x - s.start[0], y - s.start[1]) >= radius + s.radius for s in placed)
        if pillar is not None:
            clear &= x + radius <= pillar.left or x - radius >= pillar.right
        if clear:
            break
    return x, y


def sample_scene(seed: int, config: SpritesConfig) -> Scene:
    """The scene of `seed`: the same seed and config give the same scene on every machine."""
    rng = np.random.default_rng(seed)
    height, width, side = config.height, config.width, min(config.height, config.width)
    colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))]  # distinct: identity is colour

    layout = config.layouts[int(rng.integers(len(config.layouts)))]
    background = _background(rng, layout, colours, height, width)
    colours = colours[len(background.colours) :]

    pillar = None
    if rng.random() < config.pillar_probability:
        span = float(rng.uniform(config.min_pillar_width, config.max_pillar_width)) * width
        left = float(rng.uniform(0.15 * width, 0.85 * width - span))
        pillar = Pillar(colours.pop(), left, left + span)

    objects: list[Sprite] = []
    for colour in colours[: int(rng.integers(config.min_objects, config.max_objects + 1))]:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        radius = float(rng.uniform(config.min_radius, config.max_radius)) * side
        speed = float(rng.uniform(config.min_speed, config.max_speed)) * side
        angle = float(rng.uniform(0, 2 * np.pi))
        if rng.random() < config.roam_probability:
            mx, my = config.roam_margin * width, config.roam_margin * height
            walls = (-mx, width + mx, -my, height + my)
        else:
            walls = (radius, width - radius, radius, height - radius)
        start = _start(rng, radius, objects, pillar, height, width)
        velocity = (speed * float(np.cos(angle)), speed * float(np.sin(angle)))
        objects.append(Sprite(colour, shape, radius, start, velocity, walls))
    return Scene(seed, height, width, config.fps, tuple(objects), background, pillar)
