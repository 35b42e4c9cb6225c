"""The one scoring loop: `score_video` scores a decoded video on every requested native dimension,
sharing its frames; `mirai-eval score` runs it over a folder (`score_folder`), `mirai-eval run` over
the store (pipeline/score.py), so both give the same values. `score_folder` then merges delegated
dimensions by video, aggregates, and says what failed, what was excluded and why.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mirai_eval.scoring.base import Excluded, VideoScore, aggregate
from mirai_eval.scoring.delegate import DelegationError, run_vbench, vbench_python
from mirai_eval.scoring.dimensions import CLIPS_NATIVE_ONLY, Profile
from mirai_eval.scoring.final import MissingDimensionsError, MissingPolicy, final_score
from mirai_eval.scoring.flicker import STATIC_KEEP_PER_PROMPT
from mirai_eval.scoring.longvideo import Protocol, score_clips
from mirai_eval.scoring.profiles import LoadedDimensions, ScoringOptions, load_dimensions
from mirai_eval.scoring.videos import VideoEntry, list_videos
from mirai_train.video import Video, VideoError, decode

NOT_STATIC = "not static (VBench's static filter)"


@dataclass(frozen=True)
class Outcome:
    """One video's result on one dimension: its score, or why it has none."""

    score: VideoScore | None = None
    clips: list[float] | None = None  # per-clip values under the clips protocol
    excluded: str | None = None  # the dimension's own rule leaves the video out (VBench does too)
    error: str | None = None  # it could not be computed
    seconds: float = 0.0


def score_video(
    video: Video, prompt: str, loaded: LoadedDimensions, dims: Sequence[str], protocol: Protocol
) -> dict[str, Outcome]:
    """Every dimension of `dims` (loaded natively) on the same decoded frames: whole, or averaged over
    clips; temporal flickering only on a static video when VBench's static filter is loaded."""
    outcomes = {}
    for name in dims:
        dimension, started = loaded.native[name], time.perf_counter()
        try:
            static = loaded.static_filter
            if name == "temporal_flickering" and static is not None and not static.is_static(video):
                raise Excluded(NOT_STATIC)
            if protocol.mode == "clips":
                score, clips = score_clips(dimension, video, prompt, protocol.clip_seconds)
                outcome = Outcome(score=score, clips=clips)
            else:
                outcome = Outcome(score=dimension.score(video, prompt))
        except Excluded as reason:
            outcome = Outcome(excluded=str(reason))
        except (ValueError, RuntimeError) as error:
            outcome = Outcome(error=f"{type(error).__name__}: {error}")
        outcomes[name] = replace(outcome, seconds=time.perf_counter() - started)
    return outcomes


def over_static_cap(prompts: Sequence[str]) -> list[bool]:
    """VBench's static filter keeps at most STATIC_KEEP_PER_PROMPT static videos of a prompt: given the
    prompts of the static videos in order, whether each comes after its prompt's first ones."""
    seen: dict[str, int] = defaultdict(int)
    over = []
    for prompt in prompts:
        over.append(seen[prompt] >= STATIC_KEEP_PER_PROMPT)
        seen[prompt] += 1
    return over


OVER_STATIC_CAP = f"{STATIC_KEEP_PER_PROMPT} static videos of this prompt already kept"


@dataclass
class VideoRecord:
    prompt: str
    scores: dict[str, float] = field(default_factory=dict)
    frames: dict[str, list[float]] = field(default_factory=dict)
    clips: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass
class ScoreRequest:
    videos: Path
    profile: Profile
    dims: list[str]
    options: ScoringOptions = field(default_factory=ScoringOptions)
    protocol: Protocol = field(default_factory=Protocol)
    expected_size: tuple[int, int] | None = None
    missing: MissingPolicy = "refuse"
    vbench_python: str | None = None


def _native(
    loaded: LoadedDimensions, request: ScoreRequest, entries: list[VideoEntry]
) -> tuple[dict[str, VideoRecord], dict[str, str], dict[str, dict[str, VideoScore]], dict[str, float]]:
    records: dict[str, VideoRecord] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = defaultdict(float)
    outcomes: dict[str, dict[str, Outcome]] = {}
    for entry in entries:
        records[entry.name] = VideoRecord(prompt=entry.prompt)
        started = time.perf_counter()
        try:
            video = decode(entry.path, request.expected_size)
        except VideoError as error:
            failed[entry.name] = f"{error.problem}; {error.fix}"
            continue
        seconds["decode"] += time.perf_counter() - started
        outcomes[entry.name] = score_video(video, entry.prompt, loaded, list(loaded.native), request.protocol)
    if loaded.static_filter is not None and "temporal_flickering" in loaded.native:
        static = [n for n in outcomes if outcomes[n]["temporal_flickering"].score is not None]
        for name, over in zip(static, over_static_cap([records[n].prompt for n in static]), strict=True):
            if over:
                outcomes[name]["temporal_flickering"] = Outcome(excluded=OVER_STATIC_CAP)
    kept: dict[str, dict[str, VideoScore]] = defaultdict(dict)
    for name, by_dimension in outcomes.items():
        record = records[name]
        for dimension, outcome in by_dimension.items():
            seconds[dimension] += outcome.seconds
            if outcome.score is not None:
                record.scores[dimension] = outcome.score.value
                kept[dimension][name] = outcome.score
                if outcome.score.frames:
                    record.frames[dimension] = outcome.score.frames
                if outcome.clips is not None:
                    record.clips[dimension] = outcome.clips
            elif outcome.excluded is not None:
                record.excluded[dimension] = outcome.excluded
            elif outcome.error is not None:
                record.errors[dimension] = outcome.error
    return records, failed, kept, seconds


def score_folder(request: ScoreRequest) -> dict[str, Any]:
    """Everything the JSON output holds; see the README's Scoring section for its fields."""
    entries = list_videos(request.videos)
    loaded = load_dimensions(request.profile, request.dims, request.options)
    records, failed, kept, seconds = _native(loaded, request, entries)
    aggregates: dict[str, float] = {}
    dimension_errors: dict[str, str] = {}
    for name, dimension in loaded.native.items():
        if kept[name]:
            aggregates[name] = aggregate(list(kept[name].values()), dimension.aggregation)
        else:
            dimension_errors[name] = "no video could be scored for this dimension"
    if loaded.delegated:
        if request.protocol.mode == "clips":
            for name in loaded.delegated:
                dimension_errors[name] = CLIPS_NATIVE_ONLY
        else:
            started = time.perf_counter()
            try:
                decoded = [e.path for e in entries if e.name not in failed]
                results = run_vbench(
                    decoded,
                    list(loaded.delegated),
                    vbench_python(request.vbench_python),
                    request.options.device,
                )
                for name, result in results.items():
                    aggregates[name] = result.aggregate
                    for video_name, value in result.per_video.items():
                        if video_name in records:
                            records[video_name].scores[name] = value
            except DelegationError as error:
                for name in loaded.delegated:
                    dimension_errors[name] = str(error)
            seconds["delegated"] = time.perf_counter() - started
    try:
        final = (
            asdict(final_score(aggregates, request.missing)) if aggregates else {"refused": "no dimension"}
        )
    except MissingDimensionsError as error:
        final = {"refused": str(error)}
    return {
        "videos_dir": str(request.videos),
        "profile": request.profile,
        "dimensions": request.dims,
        "protocol": asdict(request.protocol),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request.options).items()},
        "native": list(loaded.native),
        "delegated": list(loaded.delegated),
        "aggregate": aggregates,
        "unavailable": loaded.unavailable,
        "dimension_errors": dimension_errors,
        "failed_videos": failed,
        "videos": {name: asdict(record) for name, record in records.items()},
        "final": final,
        "seconds": dict(seconds),
    }
