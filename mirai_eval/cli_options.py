"""Typed options of `mirai-eval`, defined once (with `mirai_train.cli_options` for those both CLIs
share); choices are Literal types, so typer lists and checks them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mirai_eval.protocols import HorizonProtocol
from mirai_eval.scoring.dimensions import Profile
from mirai_eval.scoring.final import MissingPolicy

ManifestPath = Annotated[Path, typer.Option("--manifest", help="A manifest YAML file (see manifests/).")]
Limit = Annotated[
    int | None, typer.Option("--limit", help="Only the first N prompts of each horizon (a quick check).")
]
StoreDir = Annotated[
    Path, typer.Option("--store", help="The content-addressed store (videos, scores, trained models).")
]
ProfileChoice = Annotated[
    Profile, typer.Option("--profile", help="vbench (official weights) or toy (the sprites world).")
]
ProfileOverride = Annotated[
    Profile | None, typer.Option("--profile", help="Score with this profile instead (e.g. toy on a CPU).")
]
DeviceOverride = Annotated[str | None, typer.Option("--device", help="Override the manifest's device.")]
Dims = Annotated[str, typer.Option("--dims", help="Comma-separated VBench dimensions; default all 16.")]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Frames per DINO/CLIP/MUSIQ forward (MUSIQ on cpu: 1); default 16 on cpu, else 64.",
    ),
]
FlowBatchSize = Annotated[
    int | None,
    typer.Option("--flow-batch-size", help="Frame pairs per RAFT/AMT forward; default 1 on cpu, else 8."),
]
Weights = Annotated[
    list[str] | None, typer.Option("--weight", help="KEY=PATH for a weight file (see the README).")
]
FullInfo = Annotated[
    Path | None, typer.Option("--full-info", help="VBench_full_info.json (appearance style).")
]
StaticFilter = Annotated[
    bool, typer.Option("--static-filter", help="Temporal flickering on static videos only (VBench's filter).")
]
ProtocolChoice = Annotated[
    HorizonProtocol,
    typer.Option(
        "--protocol", help="whole videos, VBench-Long clips, or windows (with per-window summaries)."
    ),
]
ClipSeconds = Annotated[float, typer.Option("--clip-seconds", help="Clip length of the clips protocol.")]
WindowSeconds = Annotated[
    float, typer.Option("--window-seconds", help="Window length of the windows protocol.")
]
Size = Annotated[
    str | None, typer.Option("--size", help="Expected HxW, e.g. 480x832; other sizes are per-video errors.")
]
Missing = Annotated[
    MissingPolicy,
    typer.Option("--missing", help="The final score with missing dimensions: refuse or reweight."),
]
VbenchFormat = Annotated[
    bool,
    typer.Option(
        "--vbench-format", help="Also write the scores as vbench writes them: {name}_eval_results.json."
    ),
]
VbenchPython = Annotated[
    str | None, typer.Option("--vbench-python", help="Python of the vbench environment.")
]
