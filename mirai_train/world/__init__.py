"""The sprites world: procedural videos with prompts and ground truth, for the toy scale.

A clip shows a few sprites (identity = a colour unique in the scene + a shape) moving at constant
velocity over a static background, optionally behind a static pillar; the prompt names them all.

Why a generator that forgets drifts here, and how the ground truth exposes it:
- Identity is persistent and unique: a sprite keeps its colour and shape for the whole clip and no
  other thing in the scene has its colour, so an identity swap, a duplicate or a vanished sprite
  shows as a colour count or a colour at the wrong tracked position.
- Sprites leave the frame and come back: about half of them (roam_probability) bounce off walls
  outside the frame (roam_margin), stay out for a while, and re-enter with the same identity at the
  position the reflected motion implies; the model has to remember what left and where it went.
  The default sprites are slow (the toy codec keeps them), so this happens over the 30 s
  rollouts (in 40 scenes, 22 of 80 sprites come back), not inside one 5 s clip.
- Occlusion hides sprites for a while: sprites pass behind each other (fixed depth order) and
  behind the pillar, which hides a narrow sprite entirely; what went in must come out, unchanged.
- The background is static, so background consistency has a ground truth of exactly zero change,
  and motion is closed-form (elastic bounces), so late frames are as predictable as early ones:
  errors at 30 s (489 frames) are the model's drift, not the world's randomness.
"""

from mirai_train.world.config import SpritesConfig
from mirai_train.world.dataset import (
    HELDOUT_BASE_SEED,
    HeldoutPrompt,
    SpritesDataset,
    clip_seed,
    heldout_prompts,
    shard_indices,
    write_prompt_file,
)
from mirai_train.world.preview import write_preview
from mirai_train.world.render import paint, render, to_tensor
from mirai_train.world.scene import Background, Pillar, Scene, Sprite, sample_scene
from mirai_train.world.tracks import Tracks, tracks
from mirai_train.world.vocabulary import COLOURS, LAYOUTS, PALETTE, PROMPT_WORDS, SHAPES

__all__ = [
    "COLOURS",
    "HELDOUT_BASE_SEED",
    "LAYOUTS",
    "PALETTE",
    "PROMPT_WORDS",
    "SHAPES",
    "Background",
    "HeldoutPrompt",
    "Pillar",
    "Scene",
    "Sprite",
    "SpritesConfig",
    "SpritesDataset",
    "Tracks",
    "clip_seed",
    "heldout_prompts",
    "paint",
    "render",
    "sample_scene",
    "shard_indices",
    "to_tensor",
    "tracks",
    "write_preview",
    "write_prompt_file",
]
