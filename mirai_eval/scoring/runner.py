"""Score a folder of videos: decode each once, run every native dimension on the shared frames,
merge delegated dimensions by video, aggregate, and say what failed, what was excluded and why.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mirai_eval.scoring.base import Excluded, VideoScore, aggregate
from mirai_eval.scoring.delegate import DelegationError, run_vbench, vbench_python
from mirai_eval.scoring.final import MissingDimensionsError, MissingPolicy, final_score
from mirai_eval.scoring.flicker import STATIC_KEEP_PER_PROMPT
from mirai_eval.scoring.longvideo import Protocol, score_clips
from mirai_eval.scoring.profiles import Profile, ScoringOptions, ScoringPlan, build_plan
from mirai_eval.scoring.videos import VideoEntry, list_videos
from mirai_train.video import VideoError, decode


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
    plan: ScoringPlan, request: ScoreRequest, entries: list[VideoEntry]
) -> tuple[dict[str, VideoRecord], dict[str, str], dict[str, dict[str, VideoScore]], dict[str, float]]:
    records: dict[str, VideoRecord] = {}
    failed: dict[str, str] = {}
    kept: dict[str, dict[str, VideoScore]] = defaultdict(dict)
    seconds: dict[str, float] = defaultdict(float)
    static_per_prompt: dict[str, int] = defaultdict(int)
    for entry in entries:
        record = records[entry.name] = VideoRecord(prompt=entry.prompt)
        started = time.perf_counter()
        try:
            video = decode(entry.path, request.expected_size)
        except VideoError as error:
            failed[entry.name] = f"{error.problem}; {error.fix}"
            continue
        seconds["decode"] += time.perf_counter() - started
        for name, dimension in plan.native.items():
            started = time.perf_counter()
            try:
                if name == "temporal_flickering" and plan.static_filter is not None:
                    if static_per_prompt[entry.prompt] >= STATIC_KEEP_PER_PROMPT:
                        record.excluded[name] = (
                            f"{STATIC_KEEP_PER_PROMPT} static videos of this prompt already kept"
                        )
                        continue
                    if not plan.static_filter.is_static(video):
                        record.excluded[name] = "not static (VBench's static filter)"
                        continue
                    static_per_prompt[entry.prompt] += 1
                if request.protocol.mode == "clips":
                    score, clip_values = score_clips(
                        dimension, video, entry.prompt, request.protocol.clip_seconds
                    )
                    record.clips[name] = clip_values
                else:
                    score = dimension.score(video, entry.prompt)
                if score.frames:
                    record.frames[name] = score.frames
                record.scores[name] = score.value
                kept[name][entry.name] = score
            except Excluded as reason:
                record.excluded[name] = str(reason)
            except (ValueError, RuntimeError) as error:
                record.errors[name] = str(error)
            seconds[name] += time.perf_counter() - started
    return records, failed, kept, seconds


def score_folder(request: ScoreRequest) -> dict[str, Any]:
    """Everything the JSON output holds; see the README's Scoring section for its fields."""
    entries = list_videos(request.videos)
    plan = build_plan(request.profile, request.dims, request.options)
    records, failed, kept, seconds = _native(plan, request, entries)
    aggregates: dict[str, float] = {}
    dimension_errors: dict[str, str] = {}
    for name, dimension in plan.native.items():
        if kept[name]:
            aggregates[name] = aggregate(list(kept[name].values()), dimension.aggregation)
        else:
            dimension_errors[name] = "no video could be scored for this dimension"
    if plan.delegated:
        if request.protocol.mode == "clips":
            for name in plan.delegated:
                dimension_errors[name] = (
                    "the clips protocol is native-only; delegated dimensions need 'whole'"
                )
        else:
            started = time.perf_counter()
            try:
                decoded = [e.path for e in entries if e.name not in failed]
                results = run_vbench(
                    decoded,
                    list(plan.delegated),
                    vbench_python(request.vbench_python),
                    request.options.device,
                )
                for name, result in results.items():
                    aggregates[name] = result.aggregate
                    for video_name, value in result.per_video.items():
                        if video_name in records:
                            records[video_name].scores[name] = value
            except DelegationError as error:
                for name in plan.delegated:
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
        "native": list(plan.native),
        "delegated": list(plan.delegated),
        "aggregate": aggregates,
        "unavailable": plan.unavailable,
        "dimension_errors": dimension_errors,
        "failed_videos": failed,
        "videos": {name: asdict(record) for name, record in records.items()},
        "final": final,
        "seconds": dict(seconds),
    }
