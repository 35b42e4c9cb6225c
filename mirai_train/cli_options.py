"""Typed CLI options shared by `mirai-train` and `mirai-eval`: one definition, one help text each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

ConfigFile = Annotated[
    Path, typer.Option("--config", help="YAML file: a generator spec or a training recipe.", exists=False)
]
CheckpointDir = Annotated[
    Path,
    typer.Option("--checkpoint", help="A checkpoint directory (config.json, generator.safetensors, ...)."),
]
OutDir = Annotated[Path, typer.Option("--out", help="Directory to create; it must not exist.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
Device = Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")]
UseEma = Annotated[
    bool, typer.Option("--ema/--no-ema", help="Use the EMA weights when the checkpoint has them.")
]
Runs = Annotated[Path, typer.Option("--runs", help="Root that recipes' checkpoint paths are relative to.")]
LatentDtype = Literal["float16", "bfloat16", "float32"]  # how `mirai-train encode` stores latents
StoredDtype = Annotated[
    LatentDtype,
    typer.Option("--dtype", help="Stored latent dtype; float16 is what Causal-Forcing's data holds."),
]
