"""Sprite masks: which pixel centres a shape covers, from their offsets to the sprite's centre.

Every shape fits inside the circle of its radius and is symmetric about its centre, or (the
triangle) has its centroid there, so the mean position of a sprite's pixels is its tracked centre.
Masks are hard (no antialiasing): a pixel is one sprite's exact palette colour or not at all,
which keeps edges crisp for small models and makes pixels checkable against the tracks.
"""

from __future__ import annotations

import numpy as np

SQRT3 = float(np.sqrt(3.0))


def inside(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Boolean mask, broadcast over dx, dy and radius (e.g. [T, 1, W] and [T, H, 1] give [T, H, W])."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "ring":
        squared = dx * dx + dy * dy
        return (squared <= radius * radius) & (squared >= (0.55 * radius) ** 2)
    if shape == "square":
        return np.maximum(ax, ay) <= 0.7 * radius
    if shape == "diamond":
        return ax + ay <= radius
    if shape == "triangle":  # equilateral, apex up, inscribed in the circle: centroid at the centre
        return (dy <= 0.5 * radius) & (ax * SQRT3 <= dy + radius)
    if shape == "cross":
        arm, reach = 0.3 * radius, 0.95 * radius
        return ((ax <= arm) & (ay <= reach)) | ((ay <= arm) & (ax <= reach))
    raise ValueError(f"unknown shape {shape!r}")
