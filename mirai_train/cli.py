"""`mirai-train`: make, import and export generator checkpoints, and train them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mirai_train.cli_options import ConfigFile, Device, OutDir, Runs, Seed, StoredDtype

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def fail(error: Exception) -> typer.Exit:
    """Print a known error without a traceback; the message already names the file and the fix."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=1)


@app.command()
def init(config: ConfigFile, out: OutDir, seed: Seed = 0) -> None:
    """Write a randomly initialised generator checkpoint for a generator spec."""
    import torch

    from mirai_train.checkpoint import CheckpointError, Provenance, save_checkpoint
    from mirai_train.config_files import ConfigError, load_model
    from mirai_train.models.causal_wan import CausalWanTransformer
    from mirai_train.spec import GeneratorSpec

    try:
        spec = load_model(config, GeneratorSpec)
        torch.manual_seed(seed)
        model = CausalWanTransformer(**spec.transformer_kwargs())
        meta = save_checkpoint(
            out,
            spec,
            model.state_dict(),
            provenance=Provenance(source=f"init from {config} with seed {seed}"),
        )
    except (ConfigError, CheckpointError, FileExistsError) as error:
        raise fail(error) from error
    typer.echo(f"wrote {out} (content sha256 {meta.content_sha256})")


@app.command()
def fit(
    config: ConfigFile,
    out: Annotated[Path, typer.Option("--out", help="Run directory; an existing run is resumed.")],
    runs: Runs = Path("runs"),
    device: Device = "cpu",
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this step (the run stays resumable).")
    ] = None,
) -> None:
    """Train one recipe (any stage); writes state.pt, log.jsonl and the exported generator/."""
    from mirai_train.config_files import ConfigError
    from mirai_train.trainer import fit as run_fit

    try:
        generator = run_fit(config, out, runs=runs, device=device, max_steps=max_steps)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise fail(error) from error
    typer.echo(
        f"{out}: done; generator checkpoint {generator}" if generator.exists() else f"{out}: stopped early"
    )


@app.command()
def chain(
    config: ConfigFile,
    runs: Runs = Path("runs/toy"),
    until: Annotated[str | None, typer.Option(help="Stop after this run (its prerequisites only).")] = None,
    replicate: Annotated[
        int,
        typer.Option(
            min=0,
            help="Train run --until as this training replicate (new noise and data seeds; 0: as written).",
        ),
    ] = 0,
    device: Device = "cpu",
) -> None:
    """Run a chain of recipes in order (each into RUNS/<name>); finished runs are skipped, others resumed."""
    from mirai_train.config_files import ConfigError
    from mirai_train.trainer import train_chain

    try:
        done = train_chain(config, runs, until=until, replicate=replicate, device=device)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise fail(error) from error
    for name, generator in done.items():
        typer.echo(f"{name}: {generator}")


@app.command()
def encode(
    videos: Annotated[Path, typer.Option("--videos", help="Directory the captions' video paths are under.")],
    captions: Annotated[
        Path,
        typer.Option(
            "--captions", help='JSONL, one clip a line: {"video": "<path under --videos>", "prompt": "..."}.'
        ),
    ],
    config: ConfigFile,
    out: Annotated[
        Path,
        typer.Option("--out", help="Dataset directory; an unfinished one is completed (done clips skipped)."),
    ],
    device: Device = "cpu",
    dtype: StoredDtype = "float16",
) -> None:
    """Encode captioned mp4 clips with a generator spec's codec into a latents dataset (data.kind: latents)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mirai_train.config_files import ConfigError, load_model
    from mirai_train.latents import encode_videos, read_captions
    from mirai_train.spec import GeneratorSpec

    columns = (TextColumn("[bold]encode"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        spec = load_model(config, GeneratorSpec)
        total = len(read_captions(captions))
        with Progress(*columns, TextColumn("{task.fields[clip]}")) as bar:
            task = bar.add_task("encode", total=total, clip="")
            result = encode_videos(
                videos, captions, spec, out, device=device, dtype=dtype,
                advance=lambda video, skipped: bar.update(
                    task, advance=1, clip=f"{video} (done before)" if skipped else video
                ),
            )  # fmt: skip
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise fail(error) from error
    typer.echo(f"wrote {out}: {result.encoded} clip(s) encoded, {result.skipped} done before")


@app.command()
def export(
    run: Annotated[Path, typer.Option("--run", help="A `mirai-train fit` run directory.")],
    out: OutDir,
) -> None:
    """Write the generator alone (with its EMA weights if kept); the critic and predictor are dropped."""
    from mirai_train.checkpoint import CheckpointError
    from mirai_train.trainer import export as run_export

    try:
        run_export(run, out)
    except (CheckpointError, FileNotFoundError, FileExistsError) as error:
        raise fail(error) from error
    typer.echo(f"wrote {out}")


@app.command("import")
def import_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="Wan-family weights: a Wan2.1 release folder or file (original or diffusers layout), a "
            "Self-Forcing / Causal-Forcing / Video-Mirai model.pt, or a flat generator state dict."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to create (must not exist).")],
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            help="GeneratorSpec YAML/JSON. codec and text_encoder are required; transformer fields the "
            "weights determine are filled in (and checked if given); give num_frame_per_block here.",
        ),
    ],
    ema: Annotated[bool, typer.Option("--ema", help="Import generator_ema instead of generator.")] = False,
    attention_head_dim: Annotated[
        int,
        typer.Option(
            help="Head width for inferring the head count when the config gives neither (Wan2.1: 128)."
        ),
    ] = 128,
) -> None:
    """Convert a Wan-family checkpoint into the project's checkpoint format."""
    from mirai_train.checkpoint import CheckpointError, import_checkpoint  # torch + diffusers: not for --help

    try:
        meta = import_checkpoint(
            source, out, config_path=config, ema=ema, attention_head_dim=attention_head_dim
        )
    except (CheckpointError, FileExistsError) as error:
        raise fail(error) from error
    for note in meta.provenance.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {out} (content sha256 {meta.content_sha256})")
