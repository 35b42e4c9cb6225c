"""The content-addressed store: videos by video key, scores by (video key, dimension, scorer signature).

    videos/ab/<key>.mp4          a finished video (present = done)
    videos/ab/<key>.json         what it is: model, prompt, seed, checkpoint, seconds, time taken
    scores/ab/<key>/<dimension>-<sha256(signature)[:16]>.json    one scored (video, dimension)

Every file is written under a temporary name in its final directory and renamed into place, so a
run killed at any moment leaves either the finished file or nothing (plus a stray temporary
dot-file named by the dead process's pid, which nothing reads). A finished item is never written
again; several ranks or shards can share one store because they own disjoint keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, flush it to disk, and rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


@dataclass(frozen=True)
class ScoreRecord:
    """One dimension of one video; `value` NaN (null in JSON) with `error` when it could not be computed."""

    video: str
    dimension: str
    signature: str
    value: float
    error: str | None
    total: float | None = None  # VBench's frame weighting (sum and count), to re-aggregate exactly
    count: int | None = None
    clips: list[float] | None = None  # per-clip values under the clips protocol (drift curves)
    seconds: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["value"] = None if math.isnan(self.value) else self.value
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ScoreRecord:
        data = json.loads(text)
        data["value"] = math.nan if data["value"] is None else float(data["value"])
        return cls(**data)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def video_path(self, key: str) -> Path:
        return self.root / "videos" / key[:2] / f"{key}.mp4"

    def has_video(self, key: str) -> bool:
        return self.video_path(key).is_file()

    def put_video(self, key: str, write: Callable[[Path], None], info: dict[str, Any]) -> Path:
        """Store a video; `info` (the sidecar) goes first, so a present video always has its sidecar."""
        path = self.video_path(key)
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=1, sort_keys=True) + "\n")
        atomic_write(path, write)
        return path

    def video_info(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self.video_path(key).with_suffix(".json").read_text(encoding="utf-8")))

    def score_path(self, key: str, dimension: str, signature: str) -> Path:
        tag = hashlib.sha256(signature.encode()).hexdigest()[
            :16
        ]  # signatures hold "/"; keep file names plain
        return self.root / "scores" / key[:2] / key / f"{dimension}-{tag}.json"

    def get_score(self, key: str, dimension: str, signature: str) -> ScoreRecord | None:
        path = self.score_path(key, dimension, signature)
        if not path.is_file():
            return None
        return ScoreRecord.from_json(path.read_text(encoding="utf-8"))

    def put_score(self, record: ScoreRecord) -> None:
        atomic_write_text(self.score_path(record.video, record.dimension, record.signature), record.to_json())

    def videos(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every finished video's key and sidecar."""
        for path in sorted((self.root / "videos").glob("*/*.mp4")):
            sidecar = path.with_suffix(".json")
            if sidecar.is_file():
                yield path.stem, json.loads(sidecar.read_text(encoding="utf-8"))

    def scores_of(self, key: str) -> list[ScoreRecord]:
        return [
            ScoreRecord.from_json(p.read_text(encoding="utf-8"))
            for p in sorted((self.root / "scores" / key[:2] / key).glob("*.json"))
        ]
