"""The manifest: one YAML file that says everything a table run needs, checked before anything starts.

A manifest names the models (a checkpoint, or the mirai-train chain run that builds it), the prompt
sets (by path and sha256), the horizons (seconds, samples per prompt, seed rule, dimensions) and
the scoring profile. `load_manifest` reports every problem at once, each as
`file:line: field: what is wrong`, covering the schema (unknown keys, wrong types, bad sha256
strings) and the cross-references (a baseline or prompt set that does not exist). Files are
checked by `plan.py`, which reads them. Relative paths are taken from the directory the command
runs in (the repository root in the README), as the generator specs' weight paths are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from mirai_eval import DEFAULT_STORE
from mirai_eval.probe.spec import ProbeSpec
from mirai_eval.protocols import HorizonProtocol, piece_seconds
from mirai_eval.scoring.dimensions import (
    DELEGATED,
    METRICS,
    STATIC_FILTER_VBENCH_ONLY,
    Profile,
)
from mirai_eval.tables.spec import TableSpec
from mirai_train.config_files import ConfigError, Strict, describe, read_yaml

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]
Label = Annotated[str, Field(min_length=1)]


class SamplerOverrides(Strict):
    """Fields of the checkpoint's `SamplerSpec` to replace for this model; unset fields keep the checkpoint's."""

    denoising_step_list: list[float] | None = None
    warp_denoising_step: bool | None = None
    timestep_shift: float | None = None
    num_train_timesteps: int | None = None
    context_noise: float | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None


class RollingSinkOverrides(Strict):
    """Fields of the checkpoint's `RollingSinkSpec` to replace past the training horizon."""

    window_frames: int | None = None
    sweep_frames: int | None = None
    repeat_block_noise: bool | None = None


class TrainSource(Strict):
    """A model trained by mirai-train: run `run` of the chain file `chain`, with its prerequisites.

    `replicates` > 1 trains the run that many times, each with its own noise and data seeds
    (`mirai_train.recipe.replicate`; replicate 0 is the recipe as written), from the same
    prerequisites. Tables then pool the model's videos over replicates and prompts, with intervals
    from a hierarchical bootstrap (tables/stats.py); a baseline and its method pair replicate by replicate.
    """

    chain: Path
    run: str
    replicates: int = Field(default=1, ge=1)


class ModelEntry(Strict):
    """One table row. `checkpoint` is used when present; otherwise `train` builds it with mirai-train."""

    label: Label
    group: Label  # the baseline pair this row belongs to; a method shares its baseline's group
    baseline: str | None = None  # label of the model this one is compared with; none for a baseline
    checkpoint: Path | None = None
    sha256: Sha256 | None = None  # the checkpoint's content sha256 (metadata.json); checked when given
    train: TrainSource | None = None  # trained into the store (`mirai-train chain --until run`) when missing
    ema: bool = False
    sampler: SamplerOverrides = SamplerOverrides()

    @model_validator(mode="after")
    def _source(self) -> ModelEntry:
        if self.checkpoint is None and self.train is None:
            raise ValueError(
                "give `checkpoint:` (a checkpoint directory) or `train:` (a chain run that builds one)"
            )
        return self


class PromptSet(Strict):
    """A prompt file, one prompt per line. With `extended`, line i of it is what the generator sees
    while the video is named and scored by line i of `path` (Self-Forcing's VBench protocol)."""

    path: Path
    sha256: Sha256
    extended: Path | None = None
    extended_sha256: Sha256 | None = None
    limit: int | None = Field(default=None, gt=0)  # the first `limit` prompts (after `indices`)
    indices: list[Annotated[int, Field(ge=0)]] | None = None  # a subset, by 0-based line index
    vbench_standard: bool = False  # VBench's own prompts: delegated dimensions use its standard mode

    @model_validator(mode="after")
    def _pairing(self) -> PromptSet:
        if (self.extended is None) != (self.extended_sha256 is None):
            raise ValueError("`extended:` and `extended_sha256:` go together")
        return self


class Horizon(Strict):
    """Rollouts of one length, scored on some dimensions. Seed of (prompt i, sample k):
    `seed_base + i * samples_per_prompt + k`, the VBench maintainers' rule."""

    seconds: float = Field(gt=0)
    prompts: str  # a key of `prompt_sets`
    samples_per_prompt: int = Field(gt=0)
    seed_base: int = 0
    rolling_sink: RollingSinkOverrides = RollingSinkOverrides()
    dimensions: list[str] = Field(min_length=1)
    protocol: HorizonProtocol = "whole"  # `clips` and `windows` are native only
    clip_seconds: float = Field(default=2.0, gt=0)  # the clips protocol's piece
    window_seconds: float = Field(default=5.0, gt=0)  # the windows protocol's piece

    @property
    def piece_seconds(self) -> float | None:
        """The length of the pieces each video is scored on (mirai_eval/protocols.py); None for whole videos."""
        return piece_seconds(self.protocol, self.clip_seconds, self.window_seconds)

    def seed(self, prompt_index: int, sample: int) -> int:
        return self.seed_base + prompt_index * self.samples_per_prompt + sample


class Scoring(Strict):
    """How videos are scored; `weights` maps weight keys (see scoring/weights.py) to local files."""

    profile: Profile
    weights: dict[str, str] = {}
    full_info: Path | None = None  # VBench_full_info.json, for appearance style
    batch_size: int | None = Field(default=None, gt=0)  # None: the device's default (scoring/profiles.py)
    flow_batch_size: int | None = Field(default=None, gt=0)
    vbench_python: str | None = None  # python of the vbench environment (delegated dimensions)
    # Temporal flickering on static videos only (VBench's static filter: RAFT, vbench profile), the
    # first 5 static videos of each prompt per model and horizon.
    static_filter: bool = False


class Generation(Strict):
    device: str = "cpu"  # under torchrun, "cuda" means each rank's own GPU
    # torch's intra-op threads for training, generation and scoring; None: 1 at the toy scale (CPU
    # kernels sum in an order that depends on the thread count, and the committed toy tables must
    # come out bit for bit on machines of the kind that made them), torch's default at the wan scale.
    threads: int | None = Field(default=None, gt=0)
    # Prompts per rollout. Each video draws its own seed's noise and is decoded alone, so it equals
    # its batch-1 twin up to the rounding of batched kernels (not part of a video's key).
    batch_size: int = Field(default=1, gt=0)
    # The generator's and codec's dtype; None: bfloat16 on CUDA (as the releases generate), float32
    # elsewhere. Part of every video's key.
    dtype: Literal["float32", "bfloat16"] | None = None

    def torch_dtype(self) -> str:
        """The dtype generation runs in on this manifest's device."""
        return self.dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")


class Manifest(Strict):
    name: Label
    scale: Literal["toy", "wan"]
    store: Path = DEFAULT_STORE  # content-addressed videos and scores, shared by manifests
    out: Path  # results.json, per-video rows and rendered tables
    generation: Generation = Generation()
    scoring: Scoring
    prompt_sets: dict[str, PromptSet] = Field(min_length=1)
    horizons: dict[str, Horizon] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)
    tables: list[TableSpec] = []
    probe: ProbeSpec | None = None  # the foresight readout probe on some of the models

    def model(self, label: str) -> ModelEntry:
        return next(m for m in self.models if m.label == label)


def _references(manifest: Manifest) -> list[tuple[tuple[Any, ...], str]]:
    """Problems across fields, as (location, message): what the schema alone cannot see."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    labels = [m.label for m in manifest.models]
    for i, model in enumerate(manifest.models):
        if labels.index(model.label) != i:
            problems.append(
                (("models", i, "label"), f"{model.label!r} is used twice; labels name table rows")
            )
        if model.baseline is None:
            continue
        if model.baseline not in labels or model.baseline == model.label:
            problems.append(
                (
                    ("models", i, "baseline"),
                    f"{model.baseline!r} is not another model's label; labels: {labels}",
                )
            )
            continue
        base = manifest.model(model.baseline)
        if base.baseline is not None:
            problems.append((("models", i, "baseline"), f"{base.label!r} is itself a method, not a baseline"))
        if base.group != model.group:
            problems.append(
                (("models", i, "group"), f"{model.group!r} differs from its baseline's group {base.group!r}")
            )
    if manifest.scoring.profile == "toy" and manifest.scoring.static_filter:
        problems.append((("scoring", "static_filter"), STATIC_FILTER_VBENCH_ONLY))
    for name, horizon in manifest.horizons.items():
        if horizon.prompts not in manifest.prompt_sets:
            sets = ", ".join(manifest.prompt_sets)
            problems.append(
                (("horizons", name, "prompts"), f"no prompt set {horizon.prompts!r}; sets: {sets}")
            )
        delegated = manifest.scoring.profile == "vbench" and set(horizon.dimensions) & set(DELEGATED)
        if horizon.protocol != "whole" and delegated:
            problems.append(
                (
                    ("horizons", name, "protocol"),
                    f"the {horizon.protocol} protocol scores pieces natively; the delegated dimensions "
                    f"({', '.join(sorted(delegated))}) need 'whole': put them in another horizon",
                )
            )
        for j, dimension in enumerate(horizon.dimensions):
            if dimension not in METRICS:
                problems.append(
                    (
                        ("horizons", name, "dimensions", j),
                        f"unknown dimension {dimension!r}; valid: " + ", ".join(METRICS),
                    )
                )
        if not math.isfinite(horizon.seconds):
            problems.append((("horizons", name, "seconds"), "must be a finite number of seconds"))
    loc: tuple[Any, ...]
    for p, probed in enumerate(manifest.probe.models if manifest.probe is not None else []):
        for field_name in ("model", "baseline"):
            label = getattr(probed, field_name)
            if label is not None and label not in labels:
                loc = ("probe", "models", p, field_name)
                problems.append((loc, f"{label!r} is not a model label of this manifest; labels: {labels}"))
    if manifest.probe is not None:  # replicate k of every probed model is probed together (pipeline/run.py)
        names = {m.model for m in manifest.probe.models} | {m.baseline for m in manifest.probe.models}
        counts = {
            m.label: m.train.replicates if m.train is not None else 1
            for m in manifest.models
            if m.label in names
        }
        if len(set(counts.values())) > 1:
            problems.append(
                (
                    ("probe", "models"),
                    f"the probed models are trained as different numbers of replicates ({counts}); "
                    "probe models with the same `train.replicates`",
                )
            )
    for t, table in enumerate(manifest.tables):
        for g, group in enumerate(table.groups):
            for r, row in enumerate(group.rows):
                if row.model not in labels:
                    loc = ("tables", t, "groups", g, "rows", r, "model")
                    problems.append(
                        (loc, f"{row.model!r} is not a model label of this manifest; labels: {labels}")
                    )
        for c, column in enumerate(table.columns):
            if column.horizon not in manifest.horizons:
                loc = ("tables", t, "columns", c, "horizon")
                problems.append(
                    (loc, f"no horizon {column.horizon!r}; horizons: {', '.join(manifest.horizons)}")
                )
            elif column.summary is not None and manifest.horizons[column.horizon].protocol == "whole":
                loc = ("tables", t, "columns", c, "summary")
                problems.append(
                    (
                        loc,
                        f"horizon {column.horizon!r} scores whole videos, which have no windows; "
                        "give it `protocol: windows` or drop the summary",
                    )
                )
    return problems


@dataclass(frozen=True)
class ManifestFile:
    """A validated manifest with where it came from, so later checks can point at its lines."""

    path: Path
    manifest: Manifest
    lines: dict[tuple[Any, ...], int]
    sha256: str  # of the file's bytes, echoed in results.json

    def where(self, *loc: Any) -> str:
        """`file:line: field` for a location such as ("models", 0, "checkpoint")."""
        line = next((self.lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in self.lines), 1)
        return f"{self.path}:{line}: {'.'.join(map(str, loc))}"


def load_manifest(path: Path | str) -> ManifestFile:
    """The validated manifest; a `ConfigError` listing every problem with its file:line otherwise."""
    path = Path(path)
    data, lines = read_yaml(path)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        raise ConfigError(path, describe(error, path, lines)) from error
    loaded = ManifestFile(path, manifest, lines, hashlib.sha256(path.read_bytes()).hexdigest())
    problems = [f"{loaded.where(*loc)}: {message}" for loc, message in _references(manifest)]
    if problems:
        raise ConfigError(path, problems)
    return loaded
