"""How a horizon's videos are scored, in one place for manifests, `mirai-eval score` and the run.

`whole` scores each video as one; `clips` cuts it into VBench-Long's pieces (a video's score is its
clips' mean); `windows` scores the same pieces, W seconds each, and lets tables show how a rollout
changes from window to window (tables/windows.py). Windows of W seconds and clips of W seconds are
one computation with one stored score. Torch-free at import: a manifest validates without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mirai_eval.scoring.longvideo import Protocol

HorizonProtocol = Literal["whole", "clips", "windows"]


def piece_seconds(protocol: HorizonProtocol, clip_seconds: float, window_seconds: float) -> float | None:
    """The length of the pieces each video is scored on; None for whole videos."""
    return {"whole": None, "clips": clip_seconds, "windows": window_seconds}[protocol]


def scoring_protocol(seconds: float | None) -> Protocol:
    """What the scoring loop runs for pieces of `seconds` (None: whole videos)."""
    from mirai_eval.scoring.longvideo import Protocol

    return Protocol() if seconds is None else Protocol("clips", seconds)
