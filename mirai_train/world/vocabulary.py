"""The closed vocabulary of the sprites world: named colours, shapes, background layouts, prompts.

Everything a prompt can say is listed here, so a toy text encoder can enumerate the words and a
scorer can map each word back to pixels (a colour name to one exact RGB value, a shape name to one
mask). Colours are far apart in RGB so a small model cannot blur two of them into one identity.
"""

from __future__ import annotations

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (50, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 80, 220),
    "purple": (140, 60, 200),
    "pink": (245, 130, 200),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
    "brown": (130, 80, 40),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
PALETTE_RGB: np.ndarray = np.array(list(PALETTE.values()), dtype=np.uint8)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")

# plain: one colour; floor_sky: sky above a horizon, floor below; stripes: equal-width bands.
LAYOUTS: tuple[str, ...] = ("plain", "floor_sky", "horizontal_stripes", "vertical_stripes")

CONNECTIVES: tuple[str, ...] = (
    "a", "an", "and", "moving", "on", "over", "under", "background", "floor", "sky",
    "horizontal", "vertical", "stripes", "passing", "behind", "pillar",
)  # fmt: skip
PROMPT_WORDS: frozenset[str] = frozenset(COLOURS + SHAPES + CONNECTIVES)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _listing(items: list[str]) -> str:
    """English list: 'x', 'x and y', 'x, y and z'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_background(layout: str, colours: tuple[str, ...]) -> str:
    if layout == "plain":
        return f"on {_article(colours[0])} {colours[0]} background"
    if layout == "floor_sky":
        sky, floor = colours
        return f"over {_article(floor)} {floor} floor under {_article(sky)} {sky} sky"
    orientation = layout.removesuffix("_stripes")
    return f"over {_listing(list(colours))} {orientation} stripes"


def describe_scene(
    objects: list[tuple[str, str]], layout: str, background: tuple[str, ...], pillar: str | None
) -> str:
    """'a red circle and a blue square moving over a green floor under a grey sky, passing behind ...'.

    `objects` are (colour, shape) pairs; `pillar` is the pillar's colour or None.
    """
    things = _listing([f"{_article(colour)} {colour} {shape}" for colour, shape in objects])
    prompt = f"{things} moving {describe_background(layout, background)}"
    if pillar is not None:
        prompt += f", passing behind {_article(pillar)} {pillar} pillar"
    return prompt


def named_objects(prompt: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a sprites prompt names, in order: the inverse of `describe_scene`.

    Raises ValueError for a text `describe_scene` cannot have written.
    """
    things, moving, _ = prompt.partition(" moving ")
    objects = []
    for item in things.replace(" and ", ", ").split(", ") if moving else []:
        words = item.split()
        if len(words) == 3 and words[0] in ("a", "an") and words[1] in PALETTE and words[2] in SHAPES:
            objects.append((words[1], words[2]))
        else:
            objects = []
            break
    if not objects:
        raise ValueError(
            f"not a sprites prompt: {prompt!r} (expected 'a <colour> <shape>[, ... and a <colour> <shape>] "
            "moving ...')"
        )
    return objects
