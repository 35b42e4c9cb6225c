"""Files written whole or not at all: written under a temporary name beside the target, flushed to
disk, then renamed into place, so a reader never sees half a file.

A writer killed mid-write leaves the old file (or none) and a stray temporary dot-file named by its
host and pid, `.<name>.<host>.<pid>.tmp`; `left_by_dead_writer` recognises such a file once its
writer is gone, so a later run can remove it. `exclusive` is the lock that makes processes sharing a
store build a file once.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STRAY = re.compile(r"^\..+\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")


def host() -> str:
    """This machine's name as it appears in temporary names (no dots, so names parse back)."""
    return socket.gethostname().replace(".", "-")


def temporary(path: Path) -> Path:
    """This process's temporary name for `path` (a file or a directory), in the same directory."""
    return path.with_name(f".{path.name}.{host()}.{os.getpid()}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, flush it to disk, and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def left_by_dead_writer(path: Path) -> bool:
    """A temporary name of a writer on this host whose process is gone (killed mid-write)."""
    match = STRAY.match(path.name)
    if match is None or match["host"] != host():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing): runs sharing a store train a model once.
    The kernel drops it when its process dies, so a killed run never leaves it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
