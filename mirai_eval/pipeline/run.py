"""`mirai-eval run`: plan -> build missing checkpoints -> generate missing videos -> score missing
(video, dimension, scorer signature) items -> per-video rows -> tables, with a progress bar per stage.

Every stage reads the store first and computes only what is absent, so a killed run resumes where
it stopped and a finished run reruns in seconds. `--shard i/n` and torchrun ranks take disjoint
strided slices of the jobs; the process that sees the whole plan (no shard; rank 0 under torchrun,
after a barrier) aggregates from the store, so shards run separately and then aggregated give the
same rows as one run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mirai_eval.pipeline.plan import Job, ModelSource, Plan, model_key, training_runs
from mirai_eval.pipeline.score import Scorer, score_jobs
from mirai_eval.pipeline.store import Store
from mirai_eval.probe.spec import ProbeSpec
from mirai_eval.scoring.dimensions import EXCLUDED
from mirai_eval.scoring.runner import OVER_STATIC_CAP, over_static_cap
from mirai_eval.tables.rows import ScoreRow, slug, to_frame
from mirai_train.atomic import atomic_write_text
from mirai_train.checkpoint import content_sha256, git_revision

PACKAGES = (
    "video-mirai-harness", "torch", "torchvision", "diffusers", "transformers", "numpy", "decord", "av",
    "pandas", "pydantic", "jinja2",
)  # fmt: skip


class RunError(RuntimeError):
    """A run that cannot start or finish; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Slice:
    """Which part of the jobs this process owns: shard i of n (job arrays), then rank r of w (torchrun)."""

    shard: int = 0
    shards: int = 1
    rank: int = 0
    world: int = 1

    @property
    def whole(self) -> bool:
        return self.shards == 1 and self.world == 1

    def take(self, jobs: Sequence[Job]) -> list[Job]:
        return list(jobs[self.shard :: self.shards][self.rank :: self.world])


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - started, 3)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def train_missing(plan: Plan, device: str, console: Console) -> None:
    """Train the chain-built checkpoints that are missing (with their prerequisites) and the toy
    profile's models when it needs them and they are missing (rank 0 only).

    The toy models train in a second process meanwhile, with this process's torch thread count (so
    they come out as they would here): toy runs use one thread, and a machine's second core would
    otherwise idle through the quick start's longest step.
    """
    from mirai_eval.scoring import toy_weights
    from mirai_eval.scoring.profiles import TOY_TRAINED
    from mirai_train.atomic import exclusive
    from mirai_train.trainer import train_chain

    scoring = plan.manifest.scoring
    dims = {d for h in plan.manifest.horizons.values() for d in h.dimensions}
    toy_models = scoring.profile == "toy" and bool(dims & set(TOY_TRAINED))
    scorers = None
    if toy_models and toy_weights.KEY not in scoring.weights:
        scorers = ToyScorers.start(plan.manifest.store)
    for label, source in plan.models.items():
        train = source.entry.train
        if source.present:
            continue
        if train is None:
            raise RunError(f"model {label!r}: {source.checkpoint} does not exist (see `mirai-eval validate`)")
        runs = training_runs(plan.manifest.store, train.chain)
        with exclusive(runs.with_suffix(".lock")):  # shards sharing a store: one trains, the others wait
            train_chain(train.chain, runs, until=train.run, replicate=source.replicate, device=device)
    if scorers is not None:
        scorers.wait(console)
    if toy_models:
        toy_weights.resolve(scoring.weights, plan.manifest.store)


@dataclass
class ToyScorers:
    """The toy profile's models, trained into the store by a second process (`start`, then `wait`)."""

    process: Any  # multiprocessing's SpawnProcess
    log: Path

    @classmethod
    def start(cls, store: Path) -> ToyScorers | None:
        """The training process, or None when the store has the models already."""
        import multiprocessing

        import torch

        from mirai_eval.scoring.toy_weights import stored_weights

        weights = stored_weights(store)
        if weights.is_file():
            return None
        log = weights.parent.with_suffix(".log")
        # spawn, not fork: a forked child inherits the parent's OpenMP state and can hang in it.
        process = multiprocessing.get_context("spawn").Process(
            target=train_toy_scorers, args=(store, log, torch.get_num_threads()), daemon=True
        )
        process.start()
        print(f"training the toy profile's models in a second process (log: {log})", file=sys.stderr)
        return cls(process, log)

    def wait(self, console: Console) -> None:
        """Until the training process ends, showing its last log line; RunError if it failed."""
        with console.status("toy profile's models") as status:
            while self.process.is_alive():
                lines = self.log.read_text().splitlines() if self.log.is_file() else []
                status.update(f"toy profile's models: {lines[-1] if lines else 'starting'}")
                self.process.join(timeout=1.0)
        if self.process.exitcode != 0:
            tail = "\n".join(self.log.read_text().splitlines()[-15:]) if self.log.is_file() else ""
            raise RunError(
                f"training the toy profile's models failed (exit {self.process.exitcode}); {self.log}:\n{tail}"
            )


def train_toy_scorers(store: Path, log: Path, threads: int) -> None:
    """The second process of `ToyScorers`: train the store's toy models unless another run has."""
    import torch

    from mirai_eval.scoring.toy_weights import train_into_store

    torch.set_num_threads(threads)
    with log.open("a") as out:
        train_into_store(store, log=lambda line: print(line, file=out, flush=True))


def built_checkpoints(sources: dict[str, ModelSource]) -> dict[str, ModelSource]:
    """The sources with every checkpoint present and its content sha256 read."""
    built = dict(sources)
    for label, source in sources.items():
        if source.present:
            continue
        built[label] = dataclasses.replace(
            source, content_sha256=content_sha256(source.checkpoint), present=True
        )
    return built


def generate_jobs(plan: Plan, jobs: list[Job], store: Store, device: str, progress: Progress) -> int:
    """Generate the videos of `jobs` that are not in the store, `generation.batch_size` prompts per
    rollout (one model and horizon per batch); returns how many were made."""
    import torch

    from mirai_eval.generate import Generator

    todo = [j for j in jobs if not store.has_video(j.key)]
    task = progress.add_task("generate", total=len(jobs), completed=len(jobs) - len(todo))
    size, dtype = plan.manifest.generation.batch_size, plan.manifest.generation.torch_dtype()
    batches = []
    for _, same in itertools.groupby(todo, key=lambda j: (j.model, j.horizon)):
        group = list(same)
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    loaded: tuple[str, Generator] | None = None
    for batch in batches:
        first = batch[0]
        source = plan.models[first.model]
        if loaded is None or loaded[0] != first.model:
            base = Generator.load(
                source.checkpoint, use_ema=source.entry.ema, device=device, dtype=getattr(torch, dtype)
            )
            loaded = first.model, base
        base = loaded[1]
        horizon = plan.manifest.horizons[first.horizon]
        spec = base.spec.model_copy(
            update={
                "sampler": base.spec.sampler.model_copy(
                    update=source.entry.sampler.model_dump(exclude_none=True)
                ),
                "rolling_sink": base.spec.rolling_sink.model_copy(
                    update=horizon.rolling_sink.model_dump(exclude_none=True)
                ),
            }
        )
        generator = dataclasses.replace(base, spec=spec)
        started = time.perf_counter()
        videos = generator.generate_batch(
            [j.prompt.generate for j in batch], horizon.seconds, [j.seed for j in batch]
        )
        seconds = (time.perf_counter() - started) / len(batch)
        for job, frames in zip(batch, videos, strict=True):
            info = {
                "model": job.model,
                "checkpoint": str(source.checkpoint),
                "checkpoint_sha256": source.content_sha256,
                "horizon": job.horizon,
                "seconds": horizon.seconds,
                "prompt": job.prompt.text,
                "generated_from": job.prompt.generate,
                "seed": job.seed,
                "frames": int(frames.shape[0]),
                "device": device,
                "dtype": dtype,
                "batch_size": len(batch),
                "generation_seconds": round(seconds, 3),  # per video: the batch's time / its size
            }
            store.put_video(job.key, lambda tmp, f=frames, g=generator: g.write(f, tmp), info)  # type: ignore[misc]
            progress.advance(task)
    return len(todo)


def collect_rows(plan: Plan, store: Store, scorer: Scorer) -> list[ScoreRow]:
    """Every job's row per dimension, from the store; `RunError` naming what is still missing."""
    rows, missing_videos, missing_scores = [], 0, 0
    for job in plan.jobs:
        if not store.has_video(job.key):
            missing_videos += 1
            continue
        source, horizon = plan.models[job.model], plan.manifest.horizons[job.horizon]
        for dimension in horizon.dimensions:
            record = scorer.result(store, job, dimension)
            if record is None:
                missing_scores += 1
                continue
            rows.append(
                ScoreRow(
                    model=source.entry.label,
                    baseline=source.entry.baseline,
                    group=source.entry.group,
                    horizon=job.horizon,
                    prompt=job.prompt.text,
                    prompt_index=job.prompt.index,
                    sample=job.sample,
                    seed=job.seed,
                    dimension=dimension,
                    value=record.value,
                    error=record.error,
                    profile=scorer.profile,
                    scorer=record.signature,
                    video=job.key,
                    windows=record.clips,
                    window_seconds=horizon.piece_seconds if record.clips is not None else None,
                    replicate=source.replicate,
                )
            )
    if plan.manifest.scoring.static_filter:
        rows = cap_static(rows)
    if missing_videos or missing_scores:
        raise RunError(
            f"the store {store.root} lacks {missing_videos} video(s) and {missing_scores} score(s) of this plan; "
            "run the remaining shards (or the whole manifest without --shard) first"
        )
    return rows


def cap_static(rows: list[ScoreRow]) -> list[ScoreRow]:
    """VBench's static filter keeps a prompt's first static videos only, per model and horizon, in the
    order `mirai-eval score` reads a folder of them (scoring/runner.py, `over_static_cap`)."""
    capped = list(rows)
    static: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        if row.dimension == "temporal_flickering" and row.error is None:
            static.setdefault((row.model, row.horizon), []).append(i)
    for indices in static.values():
        for i, over in zip(indices, over_static_cap([rows[i].prompt for i in indices]), strict=True):
            if over:
                capped[i] = dataclasses.replace(rows[i], value=math.nan, error=EXCLUDED + OVER_STATIC_CAP)
    return capped


def write_rows(out: Path, rows: list[ScoreRow]) -> Path:
    """Per-video rows as JSONL, full float precision, NaN as null (pandas reads it back with read_json)."""
    lines = []
    for row in rows:
        data = dataclasses.asdict(row)
        data["value"] = None if math.isnan(row.value) else row.value
        lines.append(json.dumps(data) + "\n")
    path = out / "rows.jsonl"
    atomic_write_text(path, "".join(lines))
    return path


def write_vbench_format(plan: Plan, rows: list[ScoreRow], store: Store, console: Console) -> dict[str, Any]:
    """`out/vbench/{model}-{horizon}_eval_results.json` per model and horizon (`tables.vbench_format`).

    Each file holds VBench's aggregate of the videos the tables use (the excluded ones left out, as
    VBench leaves them out). A horizon scored under another protocol than whole videos, or a
    dimension whose frame pooling the store cannot redo (vbench-delegated scores keep no frame
    counts), is left out with its reason, printed and returned.
    """
    from mirai_eval.tables.vbench_format import VideoValue, eval_results, pooled, write_eval_results

    folder, written, left_out = plan.manifest.out / "vbench", [], {}
    names = {job.key: job.name for job in plan.jobs}
    groups: dict[tuple[str, str], dict[str, list[VideoValue]]] = {}
    for row in rows:
        if row.error is not None:
            continue
        record = store.get_score(row.video, row.dimension, row.scorer)
        total, count = (record.total, record.count) if record is not None else (None, None)
        value = VideoValue(names[row.video], row.value, total, count)
        groups.setdefault((model_key(row.model, row.replicate), row.horizon), {}).setdefault(
            row.dimension, []
        ).append(value)
    for (model, horizon), per_video in groups.items():
        name = f"{slug(model)}-{horizon}"
        if plan.manifest.horizons[horizon].protocol != "whole":
            left_out[name] = (
                f"horizon {horizon} is scored per piece; VBench's layout holds whole-video scores"
            )
            continue
        aggregates = {d: a for d, values in per_video.items() if (a := pooled(values)) is not None}
        for dimension in sorted(set(per_video) - set(aggregates)):
            left_out[f"{name}/{dimension}"] = "no frame counts stored (a vbench-delegated score)"
        written.append(str(write_eval_results(folder, name, eval_results(per_video, aggregates))))
    for what, why in left_out.items():
        console.print(f"[yellow]vbench format: {what} left out: {why}[/yellow]")
    return {"files": written, "left_out": left_out}


def render_tables(plan: Plan, rows: list[ScoreRow], console: Console) -> dict[str, list[str]]:
    """The manifest's tables into `out/tables` (the Markdown also on the console)."""
    from mirai_eval.tables.render import FORMATS, table_path, write_tables

    manifest, folder = plan.manifest, plan.manifest.out / "tables"
    written: dict[str, list[str]] = {}
    for table in write_tables(to_frame(rows), manifest.tables, manifest.scale, folder):
        name = table.spec.name
        written[name] = [str(table_path(folder, name, fmt)) for fmt in FORMATS]
        console.print(table_path(folder, name, "md").read_text(encoding="utf-8"))
    return written


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu_kind() -> str:
    """The processor and the kernels torch picks for it, in one line.

    CPU libraries choose their kernels by the processor they find (ATen's AVX-512 or AVX2 loops,
    oneMKL's code path per vendor and generation), and each sums in its own order. So a toy run gives
    the same bytes on machines of one kind only: on one Xeon, 20 toy training steps give other weights
    with ATen's AVX2 loops than with its AVX-512 ones (README, "The toy tables and the machine").
    Runs and CI record this line so that a toy table that does not reproduce can be traced to the
    machine.
    """
    import torch

    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown processor"
    vendor = fields.get("vendor_id", "")
    family = f", family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else ""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()} {name} ({vendor}{family}); torch {torch.__version__} CPU capability {capability}"


def results(
    plan: Plan, scorer: Scorer, slice_: Slice, timings: Timings, extra: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to say what was run, on what, with which code: the manifest echo, hashes, seeds,
    scorer signatures, package versions and timings."""
    manifest = plan.manifest
    return {
        "manifest": {
            "path": str(plan.file.path),
            "sha256": plan.file.sha256,
            "echo": manifest.model_dump(mode="json"),
        },
        "command": extra,
        "git_revision": git_revision(),
        "versions": versions(),
        "machine": cpu_kind(),
        "generation_code": plan.generation_code,
        "models": {
            label: {"checkpoint": str(s.checkpoint), "content_sha256": s.content_sha256, "ema": s.entry.ema}
            for label, s in plan.models.items()
        },
        "prompt_sets": {
            name: {
                "path": str(ps.path),
                "sha256": ps.sha256,
                "extended": None if ps.extended is None else str(ps.extended),
                "extended_sha256": ps.extended_sha256,
                "prompts": len(plan.prompts[name]),
            }
            for name, ps in manifest.prompt_sets.items()
        },
        "seeds": {
            name: {
                "rule": f"{h.seed_base} + prompt_index * {h.samples_per_prompt} + sample",
                "seeds": sorted({j.seed for j in plan.jobs if j.horizon == name}),
            }
            for name, h in manifest.horizons.items()
        },
        "scoring": {"profile": scorer.profile, "signatures": scorer.signatures},
        "videos": {
            job.key: {
                "model": job.model,
                "horizon": job.horizon,
                "prompt_index": job.prompt.index,
                "seed": job.seed,
            }
            for job in plan.jobs
        },
        "slice": dataclasses.asdict(slice_),
        "timings": {"stages_seconds": timings.stages, "counts": timings.counts},
    }


def execute(
    plan: Plan,
    scorer: Scorer,
    slice_: Slice,
    console: Console,
    command: dict[str, Any],
    vbench_format: bool = False,
) -> Path | None:
    """Run this process's slice, then (when it sees the whole plan) aggregate and render; returns
    results.json. `vbench_format`: also write the scores in vbench's own files (`write_vbench_format`)."""
    threads = plan.manifest.generation.threads or (1 if plan.manifest.scale == "toy" else None)
    with torch_threads(threads):
        return _execute(plan, scorer, slice_, console, command, vbench_format)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` (None: unchanged) for the block, then restored."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _execute(
    plan: Plan, scorer: Scorer, slice_: Slice, console: Console, command: dict[str, Any], vbench_format: bool
) -> Path | None:
    store, timings = Store(plan.manifest.store), Timings()
    from mirai_train.parallel import join_torchrun

    # torchrun's group carries one barrier (below), on the CPU, while the other ranks may still generate.
    device = join_torchrun(plan.manifest.generation.device, backend="gloo", timeout=timedelta(days=2))
    with timings.stage("checkpoints"):
        if slice_.rank == 0:
            train_missing(plan, device, console)
        if slice_.world > 1:
            import torch.distributed as dist

            dist.barrier()
        plan = plan.with_models(built_checkpoints(plan.models))
    mine = slice_.take(plan.jobs)
    timings.counts["stray_files_removed"] = len(store.clean_strays())
    timings.counts["generated"] = timings.counts["scored"] = 0
    with progress_bar(console) as progress:
        for _ in range(3):  # a video quarantined while scoring is generated and scored again
            quarantined = len(store.quarantined)
            with timings.stage("generate"):
                timings.counts["generated"] += generate_jobs(plan, mine, store, device, progress)
            with timings.stage("score"):
                timings.counts["scored"] += score_jobs(plan, mine, store, scorer, progress)
            if len(store.quarantined) == quarantined:
                break
    timings.counts["quarantined"] = len(store.quarantined)
    timings.counts["jobs_in_slice"] = len(mine)
    if slice_.world > 1:
        import torch.distributed as dist

        dist.barrier()
    if slice_.shards > 1 or slice_.rank != 0:
        console.print(
            f"shard {slice_.shard}/{slice_.shards} rank {slice_.rank}/{slice_.world}: {len(mine)} jobs done; "
            "aggregate with the same command without --shard once every shard has finished"
        )
        return None
    with timings.stage("aggregate"):
        rows = collect_rows(plan, store, scorer)
        out = plan.manifest.out
        rows_path = write_rows(out, rows)
        vbench = write_vbench_format(plan, rows, store, console) if vbench_format else None
    with timings.stage("render"):
        tables = render_tables(plan, rows, console)
    probe_files: dict[str, str] = {}
    if plan.manifest.probe is not None:
        with timings.stage("probe"), progress_bar(console) as progress:
            probe_files = stored_probe(plan, store, out / "probe", device, timings, progress)
    document = results(
        plan,
        scorer,
        slice_,
        timings,
        {**command, "rows": str(rows_path), "tables": tables, "probe": probe_files, "vbench_format": vbench},
    )
    path = out / "results.json"
    atomic_write_text(path, json.dumps(document, indent=1) + "\n")
    return path


def stored_probe(
    plan: Plan, store: Store, out: Path, device: str, timings: Timings, progress: Progress | None = None
) -> dict[str, str]:
    """The manifest's probe from the store, computed first when absent; its files are copied to `out`.

    Models trained as several replicates are probed replicate by replicate (`out/replicate-K/`, each
    stored alone), then summarised over replicates (`probe/replicates.py`) into `out`. `progress`
    shows the probed checkpoints."""
    from mirai_eval.probe.replicates import write_summary

    spec = plan.manifest.probe
    assert spec is not None
    probed = sorted({m.model for m in spec.models} | {m.baseline for m in spec.models if m.baseline})
    train = plan.models[probed[0]].entry.train
    replicates = train.replicates if train is not None else 1  # the same for every probed model (manifest)
    timings.counts["probed"] = 0
    task = progress.add_task("probe", total=replicates * len(spec.models)) if progress is not None else None

    def probed_one(label: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=f"probe: {label}")

    if replicates == 1:
        sources = {label: plan.models[label] for label in probed}
        return _stored_probe(spec, sources, store, out, device, timings, probed_one)
    documents = []
    for k in range(replicates):
        sources = {label: plan.models[model_key(label, k)] for label in probed}
        title = f"{spec.title} (training replicate {k})"
        folder = out / f"replicate-{k}"
        replicate_k = spec.model_copy(update={"title": title})
        _stored_probe(replicate_k, sources, store, folder, device, timings, probed_one)
        documents.append(json.loads((folder / "probe.json").read_text(encoding="utf-8")))
    files = write_summary(spec, documents, out)
    return {fmt: str(path) for fmt, path in files.items()} | {"replicates": str(out)}


def _stored_probe(
    spec: ProbeSpec,
    sources: dict[str, ModelSource],
    store: Store,
    out: Path,
    device: str,
    timings: Timings,
    on_model: Callable[[str], None],
) -> dict[str, str]:
    """One probe of `sources` (label -> checkpoint) from the store (keyed by its spec, the checkpoints'
    content and the probe's code), computed first when absent; copied to `out`. `on_model(label)`
    after each probed model (all of them at once when the probe was stored)."""
    import shutil

    from mirai_eval.pipeline.plan import digest
    from mirai_eval.probe.experiment import PROBE_CODE, run_probe

    key = digest(
        {
            "spec": spec.model_dump(mode="json"),
            "models": {label: [s.content_sha256, s.entry.ema] for label, s in sources.items()},
            "code": PROBE_CODE,
        }
    )
    folder = store.probe_dir(key)
    if not (folder / "probe.json").is_file():
        store.put_probe(
            key,
            lambda tmp: run_probe(
                spec, {label: s.checkpoint for label, s in sources.items()}, tmp,
                use_ema={label: s.entry.ema for label, s in sources.items()}, device=device,
                on_model=on_model,
            ),
        )  # fmt: skip
        timings.counts["probed"] += 1
    else:
        for entry in spec.models:
            on_model(entry.model)
    shutil.copytree(folder, out, dirs_exist_ok=True)
    files = {path.suffix[1:]: str(out / path.name) for path in sorted(folder.glob(f"{spec.name}.*"))}
    return files | {"json": str(out / "probe.json")}


def load_plan(
    manifest_path: Path, *, limit: int | None = None, profile: str | None = None, device: str | None = None
) -> Plan:
    """Validate the manifest, apply command-line overrides, check its files; `ConfigError` lists problems."""
    from mirai_eval.manifest import load_manifest
    from mirai_eval.pipeline.plan import build_plan

    file = load_manifest(manifest_path)
    manifest = file.manifest
    if profile is not None:
        manifest = manifest.model_copy(
            update={"scoring": manifest.scoring.model_copy(update={"profile": profile})}
        )
    if device is not None:
        manifest = manifest.model_copy(
            update={"generation": manifest.generation.model_copy(update={"device": device})}
        )
    return build_plan(file, manifest, limit)


def plan_table(plan: Plan, store: Store, scorer: Scorer | None) -> Table:
    """Per model and horizon: prompts x samples, videos cached / to do, scores cached / to do."""
    videos = {name: len(plan.samples(name)) for name in plan.manifest.horizons}
    total = len(plan.models) * sum(videos.values())
    table = Table(title=f"{plan.manifest.name}: {total} videos, store {store.root}")
    for column in (
        "model",
        "horizon",
        "prompts x samples",
        "videos cached",
        "to do",
        "scores cached",
        "to do",
    ):
        table.add_column(column, justify="left" if column in ("model", "horizon") else "right")
    for label, source in plan.models.items():
        for name, horizon in plan.manifest.horizons.items():
            jobs = [j for j in plan.jobs if j.model == label and j.horizon == name]  # none before it is built
            cached = [j for j in jobs if store.has_video(j.key)]
            scored = "?" if scorer is None else str(sum(
                scorer.result(store, j, d) is not None for j in cached for d in horizon.dimensions
            ))  # fmt: skip
            note = "" if source.present else " (checkpoint absent)"
            prompts = videos[name] // horizon.samples_per_prompt
            todo_scores = "?" if scorer is None else str(videos[name] * len(horizon.dimensions) - int(scored))
            table.add_row(
                label + note, name, f"{prompts} x {horizon.samples_per_prompt}",
                str(len(cached)), str(videos[name] - len(cached)), scored, todo_scores,
            )  # fmt: skip
    return table


def parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ValueError(f"--shard {text!r}: write i/n with 0 <= i < n, e.g. 0/4")
    return int(index), int(count)


def torchrun_slice(shard: int, shards: int) -> Slice:
    """The process's slice: the shard given, and torchrun's RANK / WORLD_SIZE when launched by it."""
    return Slice(shard, shards, int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
