"""The score stage of `mirai-eval run`: each stored video scored once per (dimension, scorer signature).

A scorer signature is the hash of what decides a score besides the video: the dimension, the
profile, the sha256 of every weight file the dimension loads (for the toy profile's trained models,
the digest of the recipe they are trained from, or the given file's sha256), the protocol (whole video or
clips of N seconds), the delegation mode, and the source of the scoring code. Native dimensions
share one decode of each video; dimensions of the vbench package run in its own environment on
a folder of links named VBench-style. Dimensions a profile cannot compute (the toy profile's) are
rows with NaN and the profile's reason, never stored and never a silent zero. On VBench's own
prompts (`vbench_standard`) each dimension is scored, as VBench's standard protocol does, only on the
prompts of its suite in VBench_full_info.json; the other videos are excluded from it, with that reason.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

import mirai_eval
import mirai_train
from mirai_eval.manifest import Horizon, Manifest
from mirai_eval.pipeline.plan import Job, Plan, digest
from mirai_eval.pipeline.store import ScoreRecord, Store
from mirai_eval.protocols import scoring_protocol
from mirai_eval.scoring import toy_weights
from mirai_eval.scoring.delegate import DelegationError, run_vbench, vbench_python
from mirai_eval.scoring.dimensions import DELEGATED, EXCLUDED, VBENCH_UNAVAILABLE, Profile, is_native
from mirai_eval.scoring.profiles import (
    TOY_TRAINED,
    TOY_UNAVAILABLE,
    LoadedDimensions,
    ScoringOptions,
    load_dimensions,
)
from mirai_eval.scoring.runner import score_video
from mirai_eval.scoring.weights import NEEDS, MissingWeightsError, resolve_weights
from mirai_train.checkpoint import file_sha256, source_version
from mirai_train.video import VideoError, decode

SCORING_SOURCES = (
    Path(mirai_train.__file__).parent / "video.py",
    *sorted((Path(mirai_eval.__file__).parent / "scoring").rglob("*.py")),
)
# Hashed at import, next to the import of the scoring code (as generate.GENERATION_CODE): a file edited
# later in a live checkout must not give the running (old) code the new code's signatures.
SCORING_CODE = source_version(SCORING_SOURCES)


def kind_of(profile: str, dimension: str) -> str:
    """`native`, `delegated` (the vbench package) or `unavailable` under a profile."""
    if profile == "toy":
        return "unavailable" if dimension in TOY_UNAVAILABLE else "native"
    if dimension in VBENCH_UNAVAILABLE:
        return "unavailable"
    return "native" if is_native(dimension) else "delegated"


def needed_weights(manifest: Manifest) -> list[str]:
    if manifest.scoring.profile != "vbench":
        return []
    dims = {d for h in manifest.horizons.values() for d in h.dimensions if is_native(d)}
    if manifest.scoring.static_filter and "temporal_flickering" in dims:
        dims.add("static_filter")
    return sorted({key for d in dims for key in NEEDS.get(d, ())})


OUTSIDE_SUITE = (
    "outside this dimension's prompt suite: VBench's standard protocol scores each dimension only on "
    "the prompts VBench_full_info.json lists for it"
)


def prompt_suites(manifest: Manifest) -> dict[str, frozenset[str]]:
    """prompt -> the dimensions VBench's standard protocol scores its videos on (from
    `scoring.full_info`); empty when no horizon uses a `vbench_standard` prompt set."""
    if not any(manifest.prompt_sets[h.prompts].vbench_standard for h in manifest.horizons.values()):
        return {}
    path = manifest.scoring.full_info
    if path is None:
        raise ValueError(
            "scoring.full_info: a vbench_standard prompt set needs VBench_full_info.json (shipped inside "
            "the vbench package), which says which dimensions each prompt is scored on"
        )
    try:
        entries = json.loads(Path(path).read_text())
        return {e["prompt_en"]: frozenset(e["dimension"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"scoring.full_info: {path} is not a readable VBench_full_info.json ({error}); point it at the "
            "file inside the vbench package"
        ) from None


def scoring_blockers(manifest: Manifest) -> list[str]:
    """What scoring needs before a run may start: weight files, the vbench environment, prompt suites."""
    blockers = []
    try:
        prompt_suites(manifest)
    except ValueError as error:
        blockers.append(str(error))
    try:
        resolve_weights(needed_weights(manifest), manifest.scoring.weights)
    except MissingWeightsError as error:
        blockers.append(str(error))
    if manifest.scoring.profile == "toy":
        try:
            toy_weights.identity(manifest.scoring.weights)
        except MissingWeightsError as error:
            blockers.append(str(error))
    dims = {d for h in manifest.horizons.values() for d in h.dimensions}
    if manifest.scoring.profile == "vbench" and dims & set(DELEGATED):
        try:
            vbench_python(manifest.scoring.vbench_python)
        except DelegationError as error:
            blockers.append(f"{', '.join(sorted(dims & set(DELEGATED)))}: {error}")
    return blockers


@dataclass
class Scorer:
    """Signatures per (horizon, dimension) and, once needed, the loaded scoring models."""

    manifest: Manifest
    device: str
    signatures: dict[str, dict[str, str]]
    suites: dict[str, frozenset[str]] = field(default_factory=dict)  # see prompt_suites
    _dimensions: LoadedDimensions | None = field(default=None, repr=False)

    def outside_suite(self, job: Job, dimension: str) -> bool:
        """VBench's standard protocol does not score this video on this dimension."""
        horizon = self.manifest.horizons[job.horizon]
        if not self.manifest.prompt_sets[horizon.prompts].vbench_standard:
            return False
        suite = self.suites.get(job.prompt.text)
        return suite is not None and dimension not in suite

    @property
    def profile(self) -> Profile:
        return self.manifest.scoring.profile

    def options(self) -> ScoringOptions:
        scoring = self.manifest.scoring
        return ScoringOptions.for_device(
            self.device,
            scoring.batch_size,
            scoring.flow_batch_size,
            weights=scoring.weights,
            full_info=scoring.full_info,
            static_filter=scoring.static_filter,
            store=self.manifest.store,
        )

    def native(self) -> LoadedDimensions:
        """The native dimensions' models, loaded on first use (a cached run loads nothing)."""
        if self._dimensions is None:
            dims = sorted({d for h in self.manifest.horizons.values() for d in h.dimensions})
            self._dimensions = load_dimensions(self.profile, dims, self.options())
        return self._dimensions

    def result(self, store: Store, job: Job, dimension: str) -> ScoreRecord | None:
        """A job's dimension as stored (or as the profile cannot compute it); None when not scored yet."""
        signature = self.signatures[job.horizon][dimension]
        if kind_of(self.profile, dimension) == "unavailable":
            why = (TOY_UNAVAILABLE if self.profile == "toy" else VBENCH_UNAVAILABLE)[dimension]
            reason = f"unavailable in the {self.profile} profile: {why}"
            return ScoreRecord(job.key, dimension, signature, math.nan, reason)
        record = store.get_score(job.key, dimension, signature)
        if record is None or self.stale_failure(store, record):
            return None
        return record

    @staticmethod
    def stale_failure(store: Store, record: ScoreRecord) -> bool:
        """A failure computed on other bytes than the stored video's (regenerated, replaced, or from
        before failures carried the hash) is not a result: it is scored again."""
        if record.error is None or record.error.startswith(EXCLUDED):
            return False
        return not store.has_video(record.video) or record.video_sha256 != store.video_sha256(record.video)


def make_scorer(manifest: Manifest, device: str) -> Scorer:
    """Signatures of every (horizon, dimension); hashes each weight file once."""
    paths = resolve_weights(needed_weights(manifest), manifest.scoring.weights)
    hashes = {key: file_sha256(path) for key, path in paths.items()}
    toy = toy_weights.identity(manifest.scoring.weights) if manifest.scoring.profile == "toy" else None
    signatures: dict[str, dict[str, str]] = {}
    for name, horizon in manifest.horizons.items():
        signatures[name] = {}
        for dimension in horizon.dimensions:
            kind = kind_of(manifest.scoring.profile, dimension)
            payload = {
                "dimension": dimension,
                "profile": manifest.scoring.profile,
                "kind": kind,
                "weights": _weights_of(dimension, kind, hashes, toy),
                "protocol": scoring_protocol(horizon.piece_seconds).mode,
                "clip_seconds": horizon.piece_seconds,
                "code": SCORING_CODE,
            }
            if kind == "delegated":
                payload["mode"] = delegation_mode(manifest, horizon)
            if dimension == "temporal_flickering" and manifest.scoring.static_filter:
                payload["static_filter"] = True
            signatures[name][dimension] = f"{manifest.scoring.profile}/{dimension}/{digest(payload)[:16]}"
    return Scorer(manifest, device, signatures, prompt_suites(manifest))


def _weights_of(dimension: str, kind: str, hashes: dict[str, str], toy: str | None) -> dict[str, str]:
    """The weight hashes a dimension's scores depend on; `toy`: the toy models' identity, if that profile."""
    if toy is not None:
        return {toy_weights.KEY: toy} if dimension in TOY_TRAINED else {}
    return {k: hashes[k] for k in NEEDS.get(dimension, ()) if kind == "native" and k in hashes}


def delegation_mode(manifest: Manifest, horizon: Horizon) -> str:
    return "vbench_standard" if manifest.prompt_sets[horizon.prompts].vbench_standard else "custom_input"


def _score_native(plan: Plan, job: Job, dims: list[str], store: Store, scorer: Scorer) -> None:
    """The one scoring loop (`scoring.runner.score_video`) on a stored video; each outcome stored."""
    horizon = plan.manifest.horizons[job.horizon]
    started = time.perf_counter()
    try:
        video = decode(store.video_path(job.key))
    except VideoError as error:  # a stored video always decoded when written: it was damaged since
        store.quarantine_video(job.key, f"does not decode ({error})")
        return
    decoded = time.perf_counter() - started
    protocol = scoring_protocol(horizon.piece_seconds)
    for dimension, outcome in score_video(video, job.prompt.text, scorer.native(), dims, protocol).items():
        signature = scorer.signatures[job.horizon][dimension]
        if outcome.score is not None:
            score = outcome.score
            record = ScoreRecord(
                job.key, dimension, signature, score.value, None, score.total, score.count, outcome.clips,
                round(decoded + outcome.seconds, 3),
            )  # fmt: skip
        elif outcome.excluded is not None:
            record = ScoreRecord(job.key, dimension, signature, math.nan, EXCLUDED + outcome.excluded)
        else:
            record = ScoreRecord(
                job.key, dimension, signature, math.nan, outcome.error,
                video_sha256=store.video_sha256(job.key),
            )  # fmt: skip
        store.put_score(record)


def _score_delegated(plan: Plan, jobs: list[Job], dims: list[str], store: Store, scorer: Scorer) -> None:
    """One vbench run over links named `{prompt}-{k}.mp4` (one model and horizon, so names are unique)."""
    horizon = plan.manifest.horizons[jobs[0].horizon]
    python = vbench_python(plan.manifest.scoring.vbench_python)
    with tempfile.TemporaryDirectory(prefix="mirai-delegate-") as folder:
        links = []
        for job in jobs:
            links.append(Path(folder) / job.name)
            links[-1].symlink_to(store.video_path(job.key).resolve())
        started = time.perf_counter()
        results = run_vbench(links, dims, python, scorer.device, delegation_mode(plan.manifest, horizon))
    seconds = round((time.perf_counter() - started) / len(jobs), 3)
    for dimension in dims:
        per_video = results[dimension].per_video if dimension in results else {}
        for job in jobs:
            value = per_video.get(job.name)
            error = None if value is not None else f"vbench returned no {dimension} value for {job.name}"
            signature = scorer.signatures[job.horizon][dimension]
            value = math.nan if value is None else value
            failed = store.video_sha256(job.key) if error is not None else None
            store.put_score(
                ScoreRecord(job.key, dimension, signature, value, error, seconds=seconds, video_sha256=failed)
            )


def score_jobs(plan: Plan, jobs: list[Job], store: Store, scorer: Scorer, progress: Progress) -> int:
    """Score what the store lacks for `jobs`; returns the number of (video, dimension) items computed."""
    task = progress.add_task("score", total=len(jobs))
    delegated: dict[tuple[str, str, tuple[str, ...]], list[Job]] = defaultdict(list)
    computed = 0
    for job in jobs:
        dims = plan.manifest.horizons[job.horizon].dimensions
        missing = [d for d in dims if scorer.result(store, job, d) is None]
        outside = {d for d in missing if scorer.outside_suite(job, d)}
        for dimension in outside:
            signature = scorer.signatures[job.horizon][dimension]
            store.put_score(ScoreRecord(job.key, dimension, signature, math.nan, EXCLUDED + OUTSIDE_SUITE))
        missing = [d for d in missing if d not in outside]
        native = [d for d in missing if kind_of(scorer.profile, d) == "native"]
        if native:
            _score_native(plan, job, native, store, scorer)
        others = tuple(d for d in missing if kind_of(scorer.profile, d) == "delegated")
        if others:
            delegated[job.model, job.horizon, others].append(job)
        computed += len(native) + len(others)
        progress.advance(task)
    for (_, _, dims_), group in delegated.items():
        _score_delegated(plan, group, list(dims_), store, scorer)
    return computed
