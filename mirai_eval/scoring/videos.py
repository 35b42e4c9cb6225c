"""Finding the videos of a folder and their prompts from VBench-style names `{prompt}-{i}.mp4`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)$")


@dataclass(frozen=True)
class VideoEntry:
    path: Path
    prompt: str
    index: int | None

    @property
    def name(self) -> str:
        return self.path.name


def list_videos(folder: Path) -> list[VideoEntry]:
    """Every *.mp4 in `folder`, sorted by name; a name without `-{i}` uses the whole stem as prompt."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder of videos; pass --videos DIR with *.mp4 files")
    entries = []
    for path in sorted(folder.glob("*.mp4")):
        match = _NAME.match(path.stem)
        if match:
            entries.append(VideoEntry(path, match["prompt"], int(match["index"])))
        else:
            entries.append(VideoEntry(path, path.stem, None))
    if not entries:
        raise FileNotFoundError(f"{folder}: no *.mp4 files; name them VBench-style, '{{prompt}}-{{i}}.mp4'")
    return entries
