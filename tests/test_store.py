"""Content keys change with every input that decides a video, and only then; writes are atomic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mirai_eval.manifest import Horizon, ModelEntry, RollingSinkOverrides, SamplerOverrides
from mirai_eval.plan import ModelSource, Prompt, video_key
from mirai_eval.store import ScoreRecord, Store, atomic_write_text

ENTRY = ModelEntry(label="A", group="g", checkpoint=Path("ck"))
HORIZON = Horizon(seconds=5, prompts="p", samples_per_prompt=5, dimensions=["temporal_flickering"])
PROMPT = Prompt(0, "a cat", "a cat, extended")


def key(**change: object) -> str | None:
    entry = change.get("entry", ENTRY)
    source = ModelSource(entry, Path("ck"), str(change.get("sha", "a" * 64)), True)  # type: ignore[arg-type]
    return video_key(
        source,
        change.get("horizon", HORIZON),  # type: ignore[arg-type]
        change.get("prompt", PROMPT),  # type: ignore[arg-type]
        int(change.get("seed", 3)),  # type: ignore[call-overload]
        str(change.get("code", "c")),
    )


def test_every_input_changes_the_key() -> None:
    base = key()
    changed = [
        key(sha="b" * 64),
        key(prompt=Prompt(0, "a cat", "a dog, extended")),
        key(seed=4),
        key(entry=ENTRY.model_copy(update={"sampler": SamplerOverrides(guidance_scale=3.0)})),
        key(entry=ENTRY.model_copy(update={"ema": True})),
        key(horizon=HORIZON.model_copy(update={"seconds": 30.0})),
        key(horizon=HORIZON.model_copy(update={"rolling_sink": RollingSinkOverrides(sweep_frames=9)})),
        key(code="d"),
    ]
    assert base is not None and len({base, *changed}) == len(changed) + 1
    # What does not decide the pixels does not change the key: the label, the scored name.
    assert key(entry=ENTRY.model_copy(update={"label": "B"})) == base
    assert key(prompt=Prompt(7, "another name", "a cat, extended")) == base
    unknown = ModelSource(ENTRY, Path("ck"), None, False)
    assert video_key(unknown, HORIZON, PROMPT, 3, "c") is None


def test_score_records_round_trip_nan(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = ScoreRecord("k" * 64, "color", "toy/color/x", math.nan, "unavailable")
    store.put_score(record)
    back = store.get_score("k" * 64, "color", "toy/color/x")
    assert back is not None and math.isnan(back.value) and back.error == "unavailable"
    assert store.get_score("k" * 64, "color", "toy/color/y") is None


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    store = Store(tmp_path / "s")
    with pytest.raises(OSError):
        store.put_video("ab" * 32, broken, {"model": "A"})
    assert not store.has_video("ab" * 32)
    assert path.read_text() == "old"
    assert not [p for p in (tmp_path / "s").rglob("*.tmp")]
