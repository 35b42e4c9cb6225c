"""`mirai-eval`: generate rollouts, score them with VBench, render the paper's tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mirai_eval import DEFAULT_STORE
from mirai_eval.cli_options import (
    BatchSize,
    ClipSeconds,
    DeviceOverride,
    Dims,
    FlowBatchSize,
    FullInfo,
    Limit,
    ManifestPath,
    Missing,
    ProfileChoice,
    ProfileOverride,
    ProtocolChoice,
    Size,
    StaticFilter,
    StoreDir,
    VbenchFormat,
    VbenchPython,
    Weights,
    WindowSeconds,
)
from mirai_train.cli_options import CheckpointDir, Device, Seed, UseEma

if TYPE_CHECKING:
    from mirai_eval.pipeline.plan import Plan
    from mirai_eval.pipeline.score import Scorer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.command()
def generate(
    checkpoint: CheckpointDir,
    prompt: Annotated[str, typer.Option("--prompt", help="The text prompt.")],
    out: Annotated[Path, typer.Option("--out", help="The mp4 file to write.")],
    seconds: Annotated[
        float,
        typer.Option("--seconds", help="Length; past the training horizon the Rolling Sink takes over."),
    ] = 5.0,
    seed: Seed = 0,
    device: Device = "cpu",
    ema: UseEma = False,
) -> None:
    """Generate one video from a checkpoint (5 s in the training horizon; e.g. 30 s with the Rolling Sink)."""
    from rich.progress import Progress

    from mirai_eval.generate import Generator
    from mirai_train.checkpoint import CheckpointError

    try:
        generator = Generator.load(checkpoint, use_ema=ema, device=device)
    except CheckpointError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error
    frames = generator.latent_frames(seconds)
    mode = "Rolling Sink" if generator.past_horizon(frames) else "KV cache"
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{frames} latent frames ({mode})", total=None)
        video = generator.generate(
            prompt,
            seconds,
            seed,
            on_block=lambda done, total: progress.update(task, completed=done, total=total),
        )
    generator.write(video, out)
    fps = generator.spec.video.fps
    typer.echo(
        f"wrote {out}: {video.shape[0]} frames at {fps} fps ({video.shape[0] / fps:.2f} s), seed {seed}"
    )


@app.command("train-scorers")
def train_scorers_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for toy_scorers.safetensors and log.jsonl.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="A toy_scorers recipe; default the shipped one.")
    ] = None,
) -> None:
    """Train the toy scoring profile's models (sprites encoder, video-text model, detector) into OUT.

    `run` and `score --profile toy` do this into the store when the weights are missing; this command
    is for training them elsewhere, or from an edited recipe (`--weight toy_scorers=PATH` uses them).
    """
    from mirai_eval.scoring.toy_training import train_scorers
    from mirai_eval.scoring.toy_weights import RECIPE
    from mirai_train.config_files import ConfigError

    try:
        weights = train_scorers(config or RECIPE, out, log=typer.echo)
    except (ConfigError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error
    typer.echo(f"{out}: done; toy scoring models {weights}")


@app.command()
def fidelity(
    chains: Annotated[
        list[Path],
        typer.Option("--chain", help="Toy chain file(s); every run trained into the store is measured."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for fidelity.md, fidelity.json and grids/.")],
    store: StoreDir = DEFAULT_STORE,
    num: Annotated[int, typer.Option("--num", help="Held-out sprites prompts (one video each).")] = 16,
    steps: Annotated[int, typer.Option("--steps", help="Euler steps of the teacher and base model.")] = 48,
    seed: Seed = 0,
    device: Device = "cpu",
) -> None:
    """Toy scale: the ground-truth fidelity report of every trained run of the chains, beside real
    clips and codec reconstructions (named sprites visible, unnamed colours, off-palette, background,
    sprites FD), with frame grids."""
    from rich.console import Console

    from mirai_eval.fidelity import chain_checkpoints, fidelity_report
    from mirai_eval.pipeline.lock import write_report_lock
    from mirai_eval.pipeline.run import torch_threads

    checkpoints, missing = chain_checkpoints(chains, store)
    for name in missing:
        typer.echo(f"skipping {name}: run its manifest first")
    if not checkpoints:
        typer.echo(f"error: no trained run of {', '.join(map(str, chains))} in {store}", err=True)
        raise typer.Exit(code=1)
    console = Console()
    with torch_threads(1):  # byte for byte on machines of the committed kind (toy_machine.txt)
        report = fidelity_report(
            checkpoints, out, num=num, seed=seed, steps=steps, device=device, progress=console.log
        )
    if missing:
        typer.echo(f"no lock written beside {report}: it leaves runs out")
    else:  # what the report was computed from, so CI can tell it stale without computing it again
        options = {"num": num, "steps": steps, "seed": seed, "device": device}
        typer.echo(f"wrote {write_report_lock(out, [str(c) for c in chains], options)}")
    typer.echo(report.read_text())


@app.command()
def score(
    videos: Annotated[
        Path, typer.Option("--videos", help="Folder of mp4 files named VBench-style, '{prompt}-{i}.mp4'.")
    ],
    out: Annotated[Path, typer.Option("--out", help="JSON file for per-video and aggregate results.")],
    profile: ProfileChoice = "vbench",
    dims: Dims = "",
    device: Device = "cpu",
    batch_size: BatchSize = None,
    flow_batch_size: FlowBatchSize = None,
    weight: Weights = None,
    full_info: FullInfo = None,
    static_filter: StaticFilter = False,
    protocol: ProtocolChoice = "whole",
    clip_seconds: ClipSeconds = 2.0,
    window_seconds: WindowSeconds = 5.0,
    size: Size = None,
    missing: Missing = "refuse",
    vbench_python: VbenchPython = None,
    store: StoreDir = DEFAULT_STORE,
    vbench_format: VbenchFormat = False,
) -> None:
    """Score a folder of videos with VBench's dimensions; exits 1 if any video failed."""
    from mirai_eval.protocols import piece_seconds, scoring_protocol
    from mirai_eval.scoring.dimensions import DIMENSIONS
    from mirai_eval.scoring.profiles import ScoringOptions
    from mirai_eval.scoring.results import print_summary, write_results
    from mirai_eval.scoring.runner import ScoreRequest, score_folder
    from mirai_eval.tables.windows import folder_summaries, print_windows

    options = ScoringOptions.for_device(
        device, batch_size, flow_batch_size, weights=_weights(weight), full_info=full_info,
        static_filter=static_filter, store=store,
    )  # fmt: skip
    request = ScoreRequest(
        videos, profile, [d.strip() for d in dims.split(",") if d.strip()] or list(DIMENSIONS), options,
        scoring_protocol(piece_seconds(protocol, clip_seconds, window_seconds)), _size(size), missing,
        vbench_python,
    )  # fmt: skip
    try:
        results = score_folder(request)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if protocol == "windows":
        results["protocol"] = {"mode": "windows", "window_seconds": window_seconds}
        results["windows"] = folder_summaries(results["videos"], window_seconds)
    write_results(out, results)
    print_summary(results)
    if protocol == "windows":
        print_windows(results["windows"])
    typer.echo(f"results written to {out}")
    if vbench_format:
        typer.echo(f"vbench's layout: {_write_vbench_format(results, out)}")
    if results["failed_videos"]:
        raise typer.Exit(1)


def _write_vbench_format(results: dict[str, Any], out: Path) -> Path:
    """`{out's stem}_eval_results.json` beside `out`: the aggregates and per-video values just scored."""
    from mirai_eval.tables.vbench_format import VideoValue, eval_results, write_eval_results

    folder = Path(results["videos_dir"])
    per_video = {
        dimension: [
            VideoValue(str(folder / name), record["scores"][dimension])
            for name, record in results["videos"].items()
            if dimension in record["scores"]
        ]
        for dimension in results["aggregate"]
    }
    return write_eval_results(out.parent, out.stem, eval_results(per_video, results["aggregate"]))


def _weights(items: list[str] | None) -> dict[str, str]:
    weights = {}
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"{item!r}: write KEY=PATH, e.g. dino_vitb16=/w/dino.pth", param_hint="--weight"
            )
        weights[key] = path
    return weights


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write HxW, e.g. 480x832", param_hint="--size") from None
    return height, width


def _plan_or_exit(
    manifest: Path, limit: int | None, profile: str | None = None, device: str | None = None
) -> Plan:
    """The plan, or exit 2 with one line per problem in the manifest and its files."""
    from mirai_eval.pipeline.run import load_plan
    from mirai_train.config_files import ConfigError

    try:
        return load_plan(manifest, limit=limit, profile=profile, device=device)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _show_plan(plan: Plan, blockers: list[str], scorer: Scorer | None) -> None:
    from rich.console import Console

    from mirai_eval.pipeline.run import plan_table
    from mirai_eval.pipeline.store import Store

    console = Console()
    console.print(plan_table(plan, Store(plan.manifest.store), scorer))
    for name, horizon in plan.manifest.horizons.items():
        prompt_set = plan.manifest.prompt_sets[horizon.prompts]
        extended = f", generated from {prompt_set.extended}" if prompt_set.extended else ""
        console.print(
            f"{name}: {horizon.seconds:g} s, prompt set {horizon.prompts} ({prompt_set.path}{extended}), "
            f"{len(plan.prompts[horizon.prompts][: plan.limit])} prompts x {horizon.samples_per_prompt} samples, "
            f"seeds {horizon.seed_base} + i*{horizon.samples_per_prompt} + k; dimensions: "
            f"{', '.join(horizon.dimensions)} ({plan.manifest.scoring.profile} profile, {horizon.protocol})"
        )
    for blocker in blockers:
        console.print(f"[bold]needed before running:[/bold] {blocker}", markup=True, highlight=False)


@app.command("validate")
def validate_command(manifest: ManifestPath, limit: Limit = None) -> None:
    """Check a manifest and its files and print the plan; exit 1 if a run could not start yet."""
    from mirai_eval.pipeline.score import scoring_blockers

    plan = _plan_or_exit(manifest, limit)
    blockers = [*plan.blockers, *scoring_blockers(plan.manifest)]
    _show_plan(plan, blockers, None)
    if blockers:
        raise typer.Exit(1)
    typer.echo(f"{manifest}: valid")


@app.command("run")
def run_command(
    manifest: ManifestPath,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (cached vs to do); run nothing.")
    ] = False,
    limit: Limit = None,
    shard: Annotated[
        str, typer.Option("--shard", help="i/n: run the i-th of n disjoint job slices (job arrays).")
    ] = "0/1",
    profile: ProfileOverride = None,
    device: DeviceOverride = None,
    vbench_format: VbenchFormat = False,
) -> None:
    """Regenerate a manifest's tables: generate, score, aggregate, render. Resumes; --shard / torchrun split it."""
    from rich.console import Console

    from mirai_eval.pipeline.run import RunError, execute, parse_shard, torchrun_slice
    from mirai_eval.pipeline.score import make_scorer, scoring_blockers
    from mirai_eval.scoring.delegate import DelegationError

    try:
        slice_ = torchrun_slice(*parse_shard(shard))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--shard") from None
    plan = _plan_or_exit(manifest, limit, profile, device)
    blockers = [*plan.blockers, *scoring_blockers(plan.manifest)]
    scorer = None if blockers else make_scorer(plan.manifest, plan.manifest.generation.device)
    if dry_run or blockers:
        _show_plan(plan, blockers, scorer)
        if blockers and not dry_run:
            typer.echo("error: nothing was started; see 'needed before running' above", err=True)
            raise typer.Exit(1)
        return
    assert scorer is not None
    command = {"limit": limit, "shard": shard, "profile": profile, "device": device}
    try:
        results = execute(plan, scorer, slice_, Console(), command, vbench_format)
    except (RunError, DelegationError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if results is not None:
        typer.echo(f"results: {results}")


@app.command("ls")
def ls_command(
    store: StoreDir = DEFAULT_STORE,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Show this manifest's plan against the store instead.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Walk the whole store (decoding every video) and list damaged entries."),
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="With --check: move damaged entries to <store>/quarantine/.")
    ] = False,
) -> None:
    """What the store holds: videos per model and length, and how many scores each has."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from mirai_eval.pipeline.store import Store

    if check or repair:
        content = Store(store)
        damaged = content.damage()
        for path, problem in damaged:
            typer.echo(f"{path}: {problem}")
            if repair:
                content.quarantine(path, problem)
                if path.suffix == ".mp4":  # its sidecar goes with it, so the video is generated again
                    content.quarantine(path.with_suffix(".json"), "the sidecar of a quarantined video")
        verdict = "moved to quarantine/" if repair else "run with --repair to quarantine them"
        typer.echo(
            f"{store}: {len(damaged)} damaged entr{'y' if len(damaged) == 1 else 'ies'}"
            + (f"; {verdict}" if damaged else "")
        )
        raise typer.Exit(1 if damaged and not repair else 0)

    if manifest is not None:
        from mirai_eval.pipeline.score import make_scorer, scoring_blockers

        plan = _plan_or_exit(manifest, None)
        blockers = [*plan.blockers, *scoring_blockers(plan.manifest)]
        _show_plan(plan, blockers, None if blockers else make_scorer(plan.manifest, "cpu"))
        return
    content = Store(store)
    videos: Counter[tuple[str, str, float]] = Counter()
    scores: Counter[tuple[str, str, float]] = Counter()
    for key, info in content.videos():
        group = (info["model"], (info["checkpoint_sha256"] or "")[:12], info["seconds"])
        videos[group] += 1
        scores[group] += len(content.scores_of(key))
    table = Table(title=f"{store}: {sum(videos.values())} videos")
    for column in ("model", "checkpoint", "seconds", "videos", "scores"):
        table.add_column(column)
    for group in sorted(videos):
        table.add_row(group[0], group[1], f"{group[2]:g}", str(videos[group]), str(scores[group]))
    Console().print(table)


@app.command("render")
def render_command(
    manifest: Annotated[
        Path, typer.Option("--manifest", help="The manifest whose `tables:` to render (scale, out, store).")
    ],
    rows: Annotated[
        Path | None,
        typer.Option("--rows", help="Score rows (JSONL/parquet); default: the manifest's out/rows.jsonl."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for <table>.tex and .md; default: the manifest's out/tables."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also write <out>/report/index.html (videos from the store).")
    ] = False,
    probes: Annotated[
        Path | None,
        typer.Option(
            "--probes", help="A probe's folder: its images (png, subfolders too) are shown in the report."
        ),
    ] = None,
    fidelity: Annotated[
        Path | None,
        typer.Option(
            "--fidelity", help="A `mirai-eval fidelity` folder whose table and grids to show in the report."
        ),
    ] = None,
) -> None:
    """Render a manifest's tables (LaTeX and Markdown) from existing score rows, without generating or scoring."""
    from mirai_eval.manifest import load_manifest
    from mirai_eval.pipeline.store import Store
    from mirai_eval.tables.build import read_rows
    from mirai_eval.tables.render import write_tables
    from mirai_eval.tables.report import write_report
    from mirai_train.config_files import ConfigError

    try:
        spec = load_manifest(manifest).manifest
        frame = read_rows(rows or spec.out / "rows.jsonl")
        if not spec.tables:
            raise ValueError(
                f"{manifest}: no `tables:` to render; add a table spec (see mirai_eval/tables/spec.py)"
            )
        folder = out or spec.out / "tables"
        tables = write_tables(frame, spec.tables, spec.scale, folder)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for table in tables:
        typer.echo(f"wrote {folder / table.spec.name}.tex and .md")
    if report:
        store = Store(spec.store)
        videos = {key: store.video_path(key) for key in frame["video"].unique()}
        images = (
            {str(p.relative_to(probes).with_suffix("")): p for p in sorted(probes.rglob("*.png"))}
            if probes
            else {}
        )
        index = write_report(
            folder / "report",
            tables,
            frame,
            videos,
            images,
            fidelity,
        )
        typer.echo(f"wrote {index}")


@app.command("lock")
def lock_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="A manifest too slow for CI to regenerate.")],
    out: Annotated[Path, typer.Option("--out", help="The tables folder (tables/generated).")],
    check: Annotated[
        bool, typer.Option("--check", help="Only say whether the committed tables are stale (exit 1 if so).")
    ] = False,
) -> None:
    """Commit a run's tables with its score rows and a lock of what they were computed from (or
    `--check` the lock): how CI catches a table it cannot regenerate going stale (pipeline/lock.py)."""
    from mirai_eval.pipeline.lock import check_lock, paths, write_lock
    from mirai_train.config_files import ConfigError

    try:
        if check:
            stale = check_lock(paths(manifest, out)[0])
            for line in stale:
                typer.echo(f"stale: {line}", err=True)
            if stale:
                raise typer.Exit(1)
            typer.echo(f"{manifest}: the committed tables are current")
            return
        for path in write_lock(manifest, out):
            typer.echo(f"wrote {path}")
    except (ConfigError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command("probe")
def probe_command(
    checkpoint: CheckpointDir,
    out: Annotated[Path, typer.Option("--out", help="Folder for the probe table, images and probe.json.")],
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="A baseline checkpoint to probe beside it.")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Row label; default: the folder name.")] = None,
    baseline_label: Annotated[
        str | None,
        typer.Option("--baseline-label", help="The baseline's row label; default: its folder name."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML of probe settings (ProbeSpec in mirai_eval/probe/spec.py, no models)."
        ),
    ] = None,
    device: Device = "cpu",
    ema: UseEma = False,
) -> None:
    """Foresight readout probe: how much of the future a frozen generator's hidden state holds."""
    from pydantic import ValidationError
    from rich.progress import Progress

    from mirai_eval.probe.experiment import run_probe
    from mirai_eval.probe.spec import ProbeSpec
    from mirai_train.checkpoint import CheckpointError
    from mirai_train.config_files import ConfigError, describe, read_yaml

    method = label or checkpoint.name
    checkpoints = {method: checkpoint}
    models: list[dict[str, str]] = [{"model": method}]
    if baseline is not None:
        base = baseline_label or baseline.name
        if base == method:
            raise typer.BadParameter(f"both checkpoints are labelled {base!r}; pass --label/--baseline-label")
        checkpoints[base] = baseline
        models = [{"model": base}, {"model": method, "baseline": base}]
    try:
        data, lines = read_yaml(config) if config is not None else ({}, {})
        if not isinstance(data, dict) or "models" in data:
            raise ConfigError(
                str(config), [f"{config}:1: a mapping of probe settings without `models:` is expected"]
            )
        try:
            spec = ProbeSpec.model_validate({**data, "models": models})
        except ValidationError as error:
            raise ConfigError(str(config), describe(error, config or "options", lines)) from error
        with Progress(transient=True) as progress:
            task = progress.add_task("probe", total=len(checkpoints))
            result = run_probe(
                spec, checkpoints, out, use_ema={name: ema for name in checkpoints}, device=device,
                on_model=lambda name: progress.update(task, advance=1, description=f"probe: {name}"),
            )  # fmt: skip
    except (ConfigError, CheckpointError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    assert result.tables and result.json is not None
    typer.echo(result.tables["md"].read_text(encoding="utf-8"))
    typer.echo(
        f"wrote {', '.join(str(p) for p in result.tables.values())}, {len(result.images)} image(s), {result.json}"
    )
