"""`mirai-train`: make, import and export generator checkpoints, and train them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error
    for note in meta.provenance.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {out} (content sha256 {meta.content_sha256})")
