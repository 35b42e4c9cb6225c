"""Manifest -> jobs: every (model, horizon, prompt, sample) video with the content key it is stored under.

A video's key is the hash of everything that decides its pixels: the checkpoint's content sha256,
the text the generator sees, the seed, the manifest's sampler and rolling-sink overrides, the
length, whether EMA weights are used, and the source of the code that generates it. Change any of
them and the key changes; change none and the stored video is reused. The plan also checks the
files the manifest names (prompt files and their sha256, checkpoints, recipes), reporting every
problem as file:line: field, and lists what a real run still needs (`blockers`), which a dry run
only reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mirai_eval.generate import GENERATION_CODE
from mirai_eval.manifest import Horizon, Manifest, ManifestFile, ModelEntry, PromptSet, TrainSource
from mirai_train.checkpoint import CheckpointError, content_sha256, file_sha256
from mirai_train.config_files import ConfigError
from mirai_train.recipe import chain_digest, replicate_name


def digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Prompt:
    index: int  # line index in the prompt file: the cluster for statistics, and the seed rule's idx
    text: str  # names and scores the video
    generate: str  # what the generator sees (the extended twin, or `text`)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's checkpoint is and what is known of it before loading any weights."""

    entry: ModelEntry
    checkpoint: Path
    content_sha256: str | None  # None while the checkpoint is absent and the manifest gives none
    present: bool
    replicate: int = 0  # the training replicate (`train.replicates`); 0: the recipe as written


def model_key(label: str, replicate: int) -> str:
    """The plan's name of one training replicate of a model: its label, for replicate 0."""
    return label if replicate == 0 else f"{label} [replicate {replicate}]"


@dataclass(frozen=True)
class Job:
    model: str  # label
    horizon: str
    prompt: Prompt
    sample: int
    seed: int
    key: str  # the video's key in the store (`video_key`)

    @property
    def name(self) -> str:
        """VBench's file name for this video (the original prompt, not the extended one)."""
        return f"{self.prompt.text}-{self.sample}.mp4"


@dataclass(frozen=True)
class Plan:
    """What a run will do. `jobs` holds the videos of every model whose checkpoint content is known, in
    a fixed order (model, horizon, prompt, sample); `with_models` gives the plan once the missing
    checkpoints are built. `models` is keyed by `model_key`: one entry per training replicate."""

    file: ManifestFile
    manifest: Manifest  # the file's manifest with any command-line overrides applied
    models: dict[str, ModelSource]
    prompts: dict[str, list[Prompt]]
    blockers: tuple[str, ...]  # what a real run needs first (missing checkpoints, untrained recipes)
    generation_code: str
    limit: int | None  # the first N prompts of each horizon (--limit)
    jobs: tuple[Job, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self._jobs()))

    def samples(self, horizon: str) -> list[tuple[Prompt, int, int]]:
        """(prompt, sample, seed) of every video a model makes at `horizon`, in order."""
        spec = self.manifest.horizons[horizon]
        return [
            (prompt, sample, spec.seed(prompt.index, sample))
            for prompt in self.prompts[spec.prompts][: self.limit]
            for sample in range(spec.samples_per_prompt)
        ]

    def with_models(self, models: dict[str, ModelSource]) -> Plan:
        return replace(self, models=models)

    def _jobs(self) -> list[Job]:
        dtype = self.manifest.generation.torch_dtype()
        jobs = []
        for label, source in self.models.items():
            if source.content_sha256 is None:
                continue
            for name, horizon in self.manifest.horizons.items():
                for prompt, sample, seed in self.samples(name):
                    key = video_key(
                        source.content_sha256,
                        source.entry,
                        horizon,
                        prompt,
                        seed,
                        self.generation_code,
                        dtype,
                    )
                    jobs.append(Job(label, name, prompt, sample, seed, key))
        return jobs


def video_key(
    checkpoint: str, entry: ModelEntry, horizon: Horizon, prompt: Prompt, seed: int, code: str, dtype: str
) -> str:
    """What decides a video's frames (not the batch size: a batched video equals its batch-1 twin):
    the checkpoint's content sha256, the sampler and Rolling Sink settings, the prompt, seed, length,
    dtype and the generation code."""
    return digest(
        {
            "checkpoint": checkpoint,
            "dtype": dtype,
            "ema": entry.ema,
            "prompt": prompt.generate,
            "seed": seed,
            "seconds": horizon.seconds,
            "sampler": entry.sampler.model_dump(exclude_none=True),
            "rolling_sink": horizon.rolling_sink.model_dump(exclude_none=True),
            "code": code,
        }
    )


def _read_lines(path: Path, where: str, problems: list[str]) -> list[str] | None:
    if not path.is_file():
        problems.append(f"{where}: {path} not found; see the manifest's comment for where to get it")
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        problems.append(f"{where}: {path} has empty lines {empty[:5]}; one prompt per line, no blank lines")
        return None
    return lines


def _check_sha(path: Path, expected: str, where: str, problems: list[str]) -> None:
    actual = file_sha256(path)
    if actual != expected:
        problems.append(
            f"{where}: {path} has sha256 {actual}, not {expected}; this is a different file "
            "(get the one the manifest names, or update the sha256 if you meant to change the prompts)"
        )


def read_prompt_set(
    file: ManifestFile, name: str, prompt_set: PromptSet, problems: list[str]
) -> list[Prompt]:
    """The prompts of a set in order, after `indices` and `limit`; problems appended, [] if unreadable."""
    texts = _read_lines(prompt_set.path, file.where("prompt_sets", name, "path"), problems)
    if texts is None:
        return []
    _check_sha(prompt_set.path, prompt_set.sha256, file.where("prompt_sets", name, "sha256"), problems)
    generate = texts
    if prompt_set.extended is not None and prompt_set.extended_sha256 is not None:
        where = file.where("prompt_sets", name, "extended")
        extended = _read_lines(prompt_set.extended, where, problems)
        if extended is None:
            return []
        _check_sha(
            prompt_set.extended,
            prompt_set.extended_sha256,
            file.where("prompt_sets", name, "extended_sha256"),
            problems,
        )
        if len(extended) != len(texts):
            problems.append(
                f"{where}: {len(extended)} lines but {prompt_set.path} has {len(texts)}; the extended "
                "prompts pair with the originals line by line"
            )
            return []
        generate = extended
    indices = list(range(len(texts))) if prompt_set.indices is None else prompt_set.indices
    outside = [i for i in indices if i >= len(texts)]
    if outside:
        problems.append(
            f"{file.where('prompt_sets', name, 'indices')}: {outside[:5]} past the last line ({len(texts) - 1})"
        )
        return []
    if prompt_set.limit is not None:
        indices = indices[: prompt_set.limit]
    return [Prompt(i, texts[i], generate[i]) for i in indices]


def trained_checkpoint(store: Path, source: TrainSource, replicate: int = 0) -> Path:
    """Where a chain-built checkpoint lives: the chain's runs directory in the store, by content."""
    return training_runs(store, source.chain) / replicate_name(source.run, replicate) / "generator"


def training_runs(store: Path, chain: Path) -> Path:
    return store / "training" / f"{chain.stem}-{chain_digest(chain)[:16]}"


def resolve_model(
    file: ManifestFile,
    manifest: Manifest,
    i: int,
    problems: list[str],
    blockers: list[str],
    replicate: int = 0,
) -> ModelSource:
    source = _resolve_model(file, manifest, i, problems, blockers, replicate)
    return replace(source, replicate=replicate)


def _resolve_model(
    file: ManifestFile, manifest: Manifest, i: int, problems: list[str], blockers: list[str], replicate: int
) -> ModelSource:
    entry = manifest.models[i]
    if entry.train is not None and not entry.train.chain.is_file():
        problems.append(f"{file.where('models', i, 'train', 'chain')}: {entry.train.chain} not found")
    checkpoint = entry.checkpoint
    if checkpoint is None:
        assert entry.train is not None  # the schema requires checkpoint or train
        if not entry.train.chain.is_file():
            return ModelSource(entry, Path(), entry.sha256, False)
        try:
            checkpoint = trained_checkpoint(manifest.store, entry.train, replicate)
        except (ConfigError, ValueError) as error:
            problems.append(f"{file.where('models', i, 'train', 'chain')}: {error}")
            return ModelSource(entry, Path(), entry.sha256, False)
    if not checkpoint.exists():
        if entry.train is None:
            blockers.append(
                f"{file.where('models', i, 'checkpoint')}: {checkpoint} does not exist; put the checkpoint "
                "there (mirai-train import / fit) or give `train:` (a chain run that builds it)"
            )
        return ModelSource(entry, checkpoint, entry.sha256, False)
    try:
        actual = content_sha256(checkpoint)
    except CheckpointError as error:
        problems.append(f"{file.where('models', i, 'checkpoint')}: {error}")
        return ModelSource(entry, checkpoint, None, True)
    if entry.sha256 is not None and actual != entry.sha256:
        problems.append(
            f"{file.where('models', i, 'sha256')}: {checkpoint} has content sha256 {actual}, not "
            f"{entry.sha256}; it is a different checkpoint (fix the path, or the sha256 if it was retrained)"
        )
    return ModelSource(entry, checkpoint, actual, True)


def build_plan(file: ManifestFile, manifest: Manifest | None = None, limit: int | None = None) -> Plan:
    """The plan of a manifest (with overrides applied); `limit` keeps the first N prompts of each horizon.
    Raises `ConfigError` listing every file problem; blockers are left to the caller."""
    manifest = manifest or file.manifest
    problems: list[str] = []
    blockers: list[str] = []
    prompts = {name: read_prompt_set(file, name, ps, problems) for name, ps in manifest.prompt_sets.items()}
    models = {
        model_key(m.label, k): resolve_model(file, manifest, i, problems, blockers, k)
        for i, m in enumerate(manifest.models)
        for k in range(m.train.replicates if m.train is not None else 1)
    }
    problems = list(dict.fromkeys(problems))  # a model's replicates share its entry's problems
    if problems:
        raise ConfigError(file.path, problems)
    return Plan(file, manifest, models, prompts, tuple(blockers), GENERATION_CODE, limit)
