"""What a probe run asks for (`ProbeSpec`, a manifest's `probe:` section) and what it reports.

Kept free of torch so that validating a manifest stays fast; the work is in `experiment.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mirai_eval.tables.spec import Bootstrap
from mirai_train.config_files import Strict

Label = Annotated[str, Field(min_length=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]


class PromptFile(Strict):
    path: Path
    sha256: Sha256


class PromptFiles(Strict):
    """Prompt files (one prompt per line) for checkpoints outside the sprites world."""

    train: PromptFile
    heldout: PromptFile


class ProbeModel(Strict):
    """A probed checkpoint by label; `baseline` shows it beside that model in the images."""

    model: Label
    baseline: str | None = None


class ReadoutSpec(Strict):
    """The MLP and its training; with fixed seeds a readout is a pure function of its data."""

    hidden: int = Field(default=256, gt=0)
    steps: int = Field(default=400, gt=0)
    batch_size: int = Field(default=256, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)


class ProbeSpec(Strict):
    """The probe's settings; the seeds derive from `seed` as `experiment.py` describes."""

    name: Label = "probe"  # stem of the table and image files
    title: str = "Foresight readout probe"
    models: list[ProbeModel] = Field(min_length=1)
    layer: int | None = Field(default=None, ge=0)  # official 0-based index; None: mid-depth (alpha 0.5)
    max_delta: int = Field(default=3, ge=1)  # look-ahead Delta = 1..max_delta segments
    seconds: float = Field(default=5.0, gt=0)  # rollout length
    prompts: Literal["sprites"] | PromptFiles = "sprites"
    train_prompts: int = Field(default=32, ge=2)
    heldout_prompts: int = Field(default=16, ge=1)
    train_base_seed: int = 11  # sprites training scenes are clip_seed(train_base_seed, i)
    seed: int = 0
    readout: ReadoutSpec = ReadoutSpec()
    train_tokens_per_block: int | None = Field(default=None, gt=0)  # a seeded subset per block (memory)
    continuations: int = Field(default=4, ge=2)
    context_blocks: int = Field(default=1, ge=1)  # shared context of the continuations
    average_prompts: int = Field(default=4, ge=1)  # held-out prompts that get continuations
    bootstrap: Bootstrap = Bootstrap()  # the intervals over training replicates (`replicates.py`)

    @model_validator(mode="after")
    def _check(self) -> ProbeSpec:
        labels = [m.model for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"models: a label is listed twice: {labels}")
        for m in self.models:
            if m.baseline is not None and (m.baseline not in labels or m.baseline == m.model):
                raise ValueError(
                    f"models: baseline {m.baseline!r} of {m.model!r} is not another probed model"
                )
            if m.baseline is not None and next(b for b in self.models if b.model == m.baseline).baseline:
                raise ValueError(f"models: {m.baseline!r} is itself compared with a baseline")
        if self.average_prompts > self.heldout_prompts:
            raise ValueError("average_prompts cannot exceed heldout_prompts")
        return self

    @property
    def deltas(self) -> list[int]:
        return list(range(1, self.max_delta + 1))


@dataclass(frozen=True)
class Value:
    """A reported number, or None with the reason it could not be computed."""

    value: float | None
    reason: str | None = None


@dataclass(frozen=True)
class FitReport:
    """Training MSE (latent units) over the first and last 10% of steps: did the readout learn."""

    first_loss: float
    last_loss: float


@dataclass
class DeltaResult:
    """Every number of one model at one look-ahead Delta (MSE of pixels in [0, 1], PSNR in dB)."""

    delta: int
    readout_future: Value  # PSNR, readout vs the rollout's own segment i + Delta
    current_future: Value  # PSNR, segment i as the prediction (the collapse baseline)
    readout_current: Value  # PSNR, readout vs segment i
    readout_future_mse: float
    current_future_mse: float
    readout_future_mses: list[float]  # per held-out video, in prompt order (the replicate summary's data)
    current_future_mses: list[float]
    readout_average: Value  # MSE to the mean of the continuations
    readout_single: Value  # mean MSE to each continuation
    spread: Value  # mean MSE of a continuation to their mean
    current_average: Value  # MSE of segment i (the shared context's last) to the mean
    position_readout: Value  # px: sprites decoded from the readout vs the tracks
    position_current: Value  # px: sprites of the true segment i vs the tracks at i + Delta
    detection_readout: Value  # share of visible (frame, sprite) pairs found in the readout
    fit: FitReport


@dataclass
class ModelProbe:
    label: str
    checkpoint: str
    content_sha256: str
    layer: int  # official 0-based index
    tap: int  # blocks run before the tap (`tap_layer`)
    deltas: list[DeltaResult]


@dataclass
class ProbeResult:
    spec: ProbeSpec
    models: dict[str, ModelProbe]
    tables: dict[str, Path] = field(default_factory=dict)  # format -> file
    images: dict[str, Path] = field(default_factory=dict)  # caption -> png (write_report's probe_images)
    json: Path | None = None
