"""The content-addressed store: videos by video key, scores by (video key, dimension, scorer signature).

    videos/ab/<key>.mp4          a finished video (present = done)
    videos/ab/<key>.json         what it is: model, prompt, seed, checkpoint, seconds, time taken
    scores/ab/<key>/<dimension>-<sha256(signature)[:16]>.json    one scored (video, dimension)
    probes/ab/<key>/             a finished probe (tables, images, probe.json) by checkpoints, spec, code

Every file is written under a temporary name in its final directory and renamed into place, so a
run killed at any moment leaves either the finished file or nothing (plus a stray temporary
dot-file named by the dead process's host and pid, which `clean_strays` removes at the next run's
start). A finished item is never written again; several ranks or shards can share one store
because they own disjoint keys.

Reads are checked: an entry that cannot be parsed, or that disagrees with where it is stored, is
moved aside into `quarantine/` (same relative path, plus `<name>.reason.txt`), reported once on
stderr, and from then on is absent, so the run recomputes it and goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mirai_train.atomic import atomic_write, atomic_write_text, left_by_dead_writer, temporary


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
    clips: list[float] | None = None  # per-piece values under the clips and windows protocols
    seconds: float = 0.0
    # A failure (NaN with an error) holds for the video bytes it was computed on: their sha256, so a
    # regenerated or replaced video is scored again instead of inheriting the failure.
    video_sha256: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["value"] = None if math.isnan(self.value) else self.value
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ScoreRecord:
        data = json.loads(text)
        data["value"] = math.nan if data["value"] is None else float(data["value"])
        return cls(**data)


def score_file_name(dimension: str, signature: str) -> str:
    """Signatures hold "/": the file is named by the dimension and the signature's hash."""
    return f"{dimension}-{hashlib.sha256(signature.encode()).hexdigest()[:16]}.json"


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.quarantined: list[Path] = []  # moved aside by this process, in order

    def quarantine(self, path: Path, reason: str) -> None:
        """Move a damaged entry to quarantine/ with its reason and say so once; it is then absent."""
        target = self.root / "quarantine" / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.replace(target)
        atomic_write_text(target.with_name(target.name + ".reason.txt"), reason + "\n")
        self.quarantined.append(path)
        print(f"store: {path}: {reason}; moved to {target}, it will be recomputed", file=sys.stderr)

    def clean_strays(self) -> list[Path]:
        """Remove the temporary files of writers on this host that are gone (killed mid-write)."""
        removed = []
        for folder in ("videos", "scores", "probes"):
            for path in sorted((self.root / folder).rglob(".*.tmp")):
                if left_by_dead_writer(path):
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def probe_dir(self, key: str) -> Path:
        return self.root / "probes" / key[:2] / key

    def put_probe(self, key: str, write: Callable[[Path], object]) -> Path:
        """Run `write(folder)` into a temporary folder, then rename it into place (present = done)."""
        final = self.probe_dir(key)
        tmp = temporary(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def video_path(self, key: str) -> Path:
        return self.root / "videos" / key[:2] / f"{key}.mp4"

    def has_video(self, key: str) -> bool:
        """The video and a readable sidecar are there (a damaged sidecar quarantines both)."""
        path = self.video_path(key)
        return path.is_file() and self._sidecar(path) is not None

    def _sidecar(self, video: Path) -> dict[str, Any] | None:
        info, problem = _read_sidecar(video.with_suffix(".json"))
        if problem is not None:
            self.quarantine(video, f"its sidecar is {problem}")
            self.quarantine(video.with_suffix(".json"), problem)
        return info

    def quarantine_video(self, key: str, reason: str) -> None:
        """A video that does not decode: it and its sidecar go aside, to be generated again."""
        path = self.video_path(key)
        self.quarantine(path, reason)
        self.quarantine(path.with_suffix(".json"), f"the sidecar of a quarantined video ({reason})")

    def put_video(self, key: str, write: Callable[[Path], None], info: dict[str, Any]) -> Path:
        """Store a video; `info` (the sidecar) goes first, so a present video always has its sidecar."""
        path = self.video_path(key)
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=1, sort_keys=True) + "\n")
        atomic_write(path, write)
        return path

    def video_sha256(self, key: str) -> str:
        digest = hashlib.sha256(self.video_path(key).read_bytes())
        return digest.hexdigest()

    def score_path(self, key: str, dimension: str, signature: str) -> Path:
        return self.root / "scores" / key[:2] / key / score_file_name(dimension, signature)

    def get_score(self, key: str, dimension: str, signature: str) -> ScoreRecord | None:
        path = self.score_path(key, dimension, signature)
        if not path.is_file():
            return None
        return self._record(path)

    def _record(self, path: Path) -> ScoreRecord | None:
        record, problem = _read_record(path)
        if problem is not None:
            self.quarantine(path, problem)
        return record

    def put_score(self, record: ScoreRecord) -> None:
        atomic_write_text(self.score_path(record.video, record.dimension, record.signature), record.to_json())

    def videos(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every finished video's key and sidecar."""
        for path in sorted((self.root / "videos").glob("*/*.mp4")):
            info = self._sidecar(path)
            if info is not None:
                yield path.stem, info

    def scores_of(self, key: str) -> list[ScoreRecord]:
        paths = sorted((self.root / "scores" / key[:2] / key).glob("*.json"))
        return [record for path in paths if (record := self._record(path)) is not None]

    def damage(self) -> list[tuple[Path, str]]:
        """Every damaged entry of the whole store with what is wrong, moving nothing (`mirai-eval ls
        --check`): unreadable sidecars and score records, records stored under another item's path,
        videos without a sidecar and videos that do not decode."""
        from mirai_train.video import VideoError, decode

        found = []
        for video in sorted((self.root / "videos").glob("*/*.mp4")):
            problem = _read_sidecar(video.with_suffix(".json"))[1]
            if problem is None:
                try:
                    decode(video)
                except VideoError as error:
                    problem = f"does not decode ({error})"
            else:
                problem = f"its sidecar is {problem}"
            if problem is not None:
                found.append((video, problem))
        for path in sorted((self.root / "scores").glob("*/*/*.json")):
            problem = _read_record(path)[1]
            if problem is not None:
                found.append((path, problem))
        return found


def _read_sidecar(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the sidecar, None) or (None, what is wrong with it)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as error:
        return None, f"unreadable ({type(error).__name__}: {error})"
    if not isinstance(info, dict):
        return None, f"not a JSON object but {type(info).__name__}"
    return info, None


def _read_record(path: Path) -> tuple[ScoreRecord | None, str | None]:
    """(the score record, None) or (None, what is wrong with it), checked against its path."""
    try:
        record = ScoreRecord.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        return None, f"unreadable score record ({type(error).__name__}: {error})"
    if path.parent.name != record.video or path.name != score_file_name(record.dimension, record.signature):
        return (
            None,
            f"it records {record.video} {record.dimension} {record.signature}, not the item of its path",
        )
    return record, None
