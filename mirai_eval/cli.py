"""`mirai-eval`: generate rollouts, score them with VBench, render the paper's tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mirai_train.cli_options import CheckpointDir, Device, Seed, UseEma

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


@app.command()
def score(
    videos: Annotated[
        Path, typer.Option("--videos", help="Folder of mp4 files named VBench-style, '{prompt}-{i}.mp4'.")
    ],
    out: Annotated[Path, typer.Option("--out", help="JSON file for per-video and aggregate results.")],
    profile: Annotated[
        str, typer.Option("--profile", help="'vbench' (official weights) or 'toy'.")
    ] = "vbench",
    dims: Annotated[
        str, typer.Option("--dims", help="Comma-separated VBench dimensions; default all 16.")
    ] = "",
    device: Annotated[
        str, typer.Option("--device", help="torch device for the native backbones, e.g. cuda.")
    ] = "cpu",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Frames per backbone forward (raise on GPUs).")
    ] = 16,
    flow_batch_size: Annotated[
        int, typer.Option("--flow-batch-size", help="Frame pairs per RAFT forward.")
    ] = 2,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="KEY=PATH for a weight file (see the README).")
    ] = None,
    full_info: Annotated[
        Path | None, typer.Option("--full-info", help="VBench_full_info.json (appearance style).")
    ] = None,
    static_filter: Annotated[
        bool, typer.Option("--static-filter", help="Temporal flickering on static videos only.")
    ] = False,
    protocol: Annotated[
        str, typer.Option("--protocol", help="'whole' videos or VBench-Long 'clips'.")
    ] = "whole",
    clip_seconds: Annotated[
        float, typer.Option("--clip-seconds", help="Clip length of the 'clips' protocol.")
    ] = 2.0,
    size: Annotated[
        str | None, typer.Option("--size", help="Expected HxW; other sizes are per-video errors.")
    ] = None,
    missing: Annotated[
        str, typer.Option("--missing", help="Final score with missing dims: refuse|reweight.")
    ] = "refuse",
    vbench_python: Annotated[
        str | None, typer.Option("--vbench-python", help="Python of the vbench environment.")
    ] = None,
) -> None:
    """Score a folder of videos with VBench's dimensions; exits 1 if any video failed."""
    from mirai_eval.scoring.dimensions import DIMENSIONS
    from mirai_eval.scoring.longvideo import Protocol
    from mirai_eval.scoring.profiles import ScoringOptions
    from mirai_eval.scoring.report import print_summary, write_results
    from mirai_eval.scoring.runner import ScoreRequest, score_folder

    if profile not in ("vbench", "toy"):
        raise typer.BadParameter(f"unknown profile {profile!r}; use vbench or toy", param_hint="--profile")
    if missing not in ("refuse", "reweight"):
        raise typer.BadParameter(f"{missing!r}: use refuse or reweight", param_hint="--missing")
    names = [d.strip() for d in dims.split(",") if d.strip()] or list(DIMENSIONS)
    weights = {}
    for item in weight or []:
        key, sep, path = item.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"{item!r}: write KEY=PATH, e.g. dino_vitb16=/w/dino.pth", param_hint="--weight"
            )
        weights[key] = path
    expected = None
    if size:
        try:
            height, width = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"{size!r}: write HxW, e.g. 480x832", param_hint="--size") from None
        expected = (height, width)
    request = ScoreRequest(
        videos=videos,
        profile=profile,  # type: ignore[arg-type]
        dims=names,
        options=ScoringOptions(device, batch_size, flow_batch_size, weights, full_info, static_filter),
        protocol=Protocol(protocol, clip_seconds),
        expected_size=expected,
        missing=missing,  # type: ignore[arg-type]
        vbench_python=vbench_python,
    )
    try:
        results = score_folder(request)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    write_results(out, results)
    print_summary(results)
    typer.echo(f"results written to {out}")
    if results["failed_videos"]:
        raise typer.Exit(1)


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
        Path | None, typer.Option("--probes", help="A folder of probe images (png) to show in the report.")
    ] = None,
) -> None:
    """Render a manifest's tables (LaTeX and Markdown) from existing score rows, without generating or scoring."""
    from mirai_eval.manifest import load_manifest
    from mirai_eval.render import render
    from mirai_eval.report import drift_from_store, write_report
    from mirai_eval.store import Store
    from mirai_eval.tables import build_table, read_rows, scorer_summary
    from mirai_train.config_files import ConfigError

    try:
        spec = load_manifest(manifest).manifest
        frame = read_rows(rows or spec.out / "rows.jsonl")
        signature = scorer_summary(frame)
        tables = [build_table(frame, t, scale=spec.scale, scorer_signature=signature) for t in spec.tables]
    except (ConfigError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if not tables:
        typer.echo(
            f"error: {manifest}: no `tables:` to render; add a table spec (see mirai_eval/tables.py)",
            err=True,
        )
        raise typer.Exit(2)
    folder = out or spec.out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for table in tables:
        for fmt in ("tex", "md"):
            (folder / f"{table.spec.name}.{fmt}").write_text(render(table, fmt), encoding="utf-8")
        typer.echo(f"wrote {folder / table.spec.name}.tex and .md")
    if report:
        store = Store(spec.store)
        videos = {key: store.video_path(key) for key in frame["video"].unique()}
        clip_seconds = spec.horizons["30s"].clip_seconds if "30s" in spec.horizons else 2.0
        images = {p.stem: p for p in sorted(probes.glob("*.png"))} if probes else {}
        index = write_report(
            folder / "report",
            tables,
            frame,
            videos,
            images,
            drift_from_store(frame, spec.store, clip_seconds),
        )
        typer.echo(f"wrote {index}")
