"""Training recipes: one YAML file per stage run, validated key by key.

Section and key names follow the official Self-Forcing / Video-Mirai configs where they exist
(`lr`, `lr_critic`, `dfake_gen_update_ratio`, `ema_weight`, `foresight_weight`, ...), so a wan-scale
recipe can be checked against the release line by line. Checkpoint paths (`init`, `teacher`,
`critic`) are relative to the runs directory given to `mirai-train fit --runs` (default `runs/`),
so a chain of recipes refers to earlier stages' outputs by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

import mirai_train
from mirai_train.checkpoint import source_version
from mirai_train.config_files import ConfigError, Strict, load_model, read_yaml
from mirai_train.spec import GeneratorSpec

Stage = Literal["teacher", "ode_init", "ar_teacher_forcing", "causal_ode", "dmd"]


class DataSpec(Strict):
    """`sprites`: the procedural world (videos + prompts); `prompts`: a text file (text-only stages);
    `latents`: precomputed latents with captions (mirai_train/latents.py), Causal-Forcing stage 1 at
    wan scale, where encoding every clip at every step would cost more than the step."""

    kind: Literal["sprites", "prompts", "latents"] = "sprites"
    num_clips: int = Field(default=2048, ge=1)  # distinct sprites clips, cycled (kind sprites only)
    base_seed: int = 0  # sprites: the first clip's seed; latents: the seed of each epoch's shuffle
    num_frames: int = 81  # video frames per clip (1 + 4k): 81 = 21 latent frames
    prompts: str | None = None  # for kind: prompts
    path: str | None = None  # for kind: latents; a `mirai-train encode` directory or an LMDB

    @model_validator(mode="after")
    def _kind_keys(self) -> DataSpec:
        if self.kind == "prompts" and not self.prompts:
            raise ValueError("data.kind 'prompts' needs data.prompts: a text file with one prompt per line")
        if self.kind == "latents" and not self.path:
            raise ValueError(
                "data.kind 'latents' needs data.path: a directory made by `mirai-train encode`, or "
                "Causal-Forcing's dataset/clean_data (an LMDB)"
            )
        if self.path is not None and self.kind != "latents":
            raise ValueError(f"data.path is for data.kind 'latents', not '{self.kind}'")
        if self.prompts is not None and self.kind == "latents":
            raise ValueError("data.prompts is not for data.kind 'latents': its captions are the dataset's")
        return self


class OptimSpec(Strict):
    lr: float = 2e-6
    lr_critic: float = 4e-7
    lr_foresight: float = 2e-6
    beta1: float = 0.0
    beta2: float = 0.999
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    batch_size: int = Field(default=1, ge=1)  # per rank and micro-step
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_steps: int = Field(default=100, ge=1)
    ema_weight: float | None = None
    ema_start_step: int = 0
    seed: int = 0


class DistributedSpec(Strict):
    """How models are spread over torchrun ranks (mirai_train/parallel.py); one process ignores it.

    `fsdp` (FSDP2: per transformer block, then the root) shards the trained models and the DMD
    real score; `ddp` keeps every model whole on every rank and all-reduces gradients. Both run
    on CPU with gloo.
    """

    strategy: Literal["fsdp", "ddp"] = "fsdp"


class PrecisionSpec(Strict):
    """Numerics and memory of training; the release trains in bf16 under FSDP with gradient
    checkpointing and TF32 (Self-Forcing's configs: `mixed_precision: true`,
    `gradient_checkpointing: true`; its train.py turns TF32 on).

    mixed_precision  bf16 compute with float32 master weights, optimiser states and losses:
                     `torch.autocast` over every step and, sharded, FSDP2's `MixedPrecisionPolicy`
                     (bf16 parameters in forward and backward, gradients reduced in float32). The
                     modules diffusers keeps in float32 (`_keep_in_fp32_modules`: the time
                     embedding, RoPE, the norms and modulation tables) stay in float32.
    tf32             TensorFloat-32 matmuls and convolutions on CUDA (ignored elsewhere).
    gradient_checkpointing  recompute each transformer block in the backward instead of keeping
                     its activations: the same gradients for about one more forward.
    """

    mixed_precision: bool = False
    tf32: bool = False
    gradient_checkpointing: bool = False


class OdeSpec(Strict):
    """Teacher trajectories for ODE regression, sampled once at the start of the stage."""

    num_trajectories: int = Field(default=256, ge=1)
    teacher_steps: int = Field(default=24, ge=4)  # Euler steps; a multiple of the student's step count
    guidance_scale: float = 3.0  # uncond + scale * (cond - uncond) (`sampling.guided`)
    negative_prompt: str = ""


class DMDSpec(Strict):
    # Real-score CFG against the negative prompt in Self-Forcing's convention, cond + scale * (cond -
    # uncond) (`losses.dmd.cfg`: 3 here is 4 in `sampling.guided`'s); the fake score has none.
    guidance_scale: float = 3.0
    negative_prompt: str = ""
    dfake_gen_update_ratio: int = Field(default=5, ge=1)  # generator every 5th step; critic every step
    min_step: int = 20
    max_step: int = 980
    last_step_only: bool = False  # exit step always the last (else uniform, shared by all blocks)


class ForesightSpec(Strict):
    """The Video-Mirai loss. Layers are the release's 0-based block indices (15 of 30: alpha = 0.5)."""

    foresight_weight: float = 0.2
    foresight_deltas: list[int] = Field(default_factory=lambda: [0, 1])  # the window Delta
    foresight_student_layer: int = 15
    foresight_teacher_layer: int = 20
    predictor_depth: int = Field(default=3, ge=0)
    replay: bool = True  # replay kept (hidden, target) pairs on critic-only steps


class TeacherForcingSpec(Strict):
    """AR-diffusion training (Causal-Forcing stage 1): flow matching with clean context, each frame's
    loss weighted by its timestep (`losses.timestep_weights`), no prompt dropout, as in Causal-Forcing's
    `model/diffusion.py`."""

    text_dropout: float = 0.0
    terminal_share: float = Field(default=0.0, ge=0.0, le=1.0)  # pure-noise draws (losses/flow_matching.py)
    timestep_weighting: bool = True  # False: the plain MSE


class TeacherSpec(Strict):
    """Toy bidirectional teacher pre-training (the wan scale uses pretrained Wan)."""

    text_dropout: float = 0.1  # empty prompt, so classifier-free guidance works
    terminal_share: float = Field(default=0.0, ge=0.0, le=1.0)  # pure-noise draws (losses/flow_matching.py)


class EvalSpec(Strict):
    """In-training evaluation (`eval:`). After every `every` steps the run saves, exports its generator
    (with its EMA weights, which are then used, when the recipe keeps them) and hands it to `evaluator`,
    an entry point of the group `mirai_train.evaluators` (mirai_train/evaluation.py): mirai-eval's
    generates `num_prompts` held-out prompts at each of `seconds` and scores `dimensions` with
    `profile`. Results go to the run's log.jsonl and TensorBoard under `eval/`."""

    every: int = Field(gt=0)
    evaluator: str = "mirai-eval"
    dimensions: list[str] = Field(min_length=1)  # computed in-process: native ones only
    seconds: list[float] = Field(default_factory=lambda: [5.0], min_length=1)
    num_prompts: int = Field(default=2, gt=0)
    prompts: str | None = None  # a text file, one prompt a line; None: the sprites world's held-out prompts
    seed: int = 0  # prompt i is generated with seed + i
    profile: Literal["toy", "vbench"] = "toy"
    store: str | None = None  # where the toy profile's models are (trained when missing); None: runs/store


class Recipe(Strict):
    stage: Stage
    generator: GeneratorSpec  # the model this stage trains (for `teacher`, the teacher itself)
    init: str | None = None  # checkpoint to start from; None = random init
    teacher: str | None = None  # ODE trajectory teacher; real score and foresight encoder for DMD
    critic: str | None = None  # DMD fake score init (default: `init`)
    data: DataSpec = DataSpec()
    optim: OptimSpec = OptimSpec()
    distributed: DistributedSpec = DistributedSpec()
    precision: PrecisionSpec = PrecisionSpec()
    ode: OdeSpec | None = None
    dmd: DMDSpec | None = None
    foresight: ForesightSpec | None = None
    teacher_forcing: TeacherForcingSpec | None = None
    pretrain: TeacherSpec | None = None
    log_every: int = Field(default=10, ge=1)
    save_every: int = Field(default=100, ge=1)
    eval: EvalSpec | None = None

    @model_validator(mode="after")
    def _stage_sections(self) -> Recipe:
        needs = {
            "teacher": ["pretrain"],
            "ode_init": ["ode", "teacher"],
            "causal_ode": ["ode", "teacher", "init"],
            "ar_teacher_forcing": ["teacher_forcing"],
            "dmd": ["dmd", "teacher", "init"],
        }[self.stage]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"stage '{self.stage}' needs: {', '.join(missing)}")
        if self.foresight is not None and self.stage != "dmd":
            raise ValueError("foresight is an option of the dmd stage")
        if self.stage == "causal_ode" and self.data.kind == "prompts":
            raise ValueError(
                "stage 'causal_ode' forces its teacher on clean training clips: set data.kind to "
                "'latents' (Causal-Forcing's dataset/clean_data, as stage 1) or 'sprites'"
            )
        return self


def load_recipe(path: Path | str) -> Recipe:
    """A recipe file; `generator:` may name a generator spec file (relative to the recipe) instead."""
    path = Path(path)
    data, _ = read_yaml(path)
    if isinstance(data, dict) and data.get("stage") == "toy_scorers":
        raise ConfigError(
            path,
            ["stage: toy_scorers is the toy scoring profile's recipe, not a generator's: train it with "
             f"`mirai-eval train-scorers --config {path} --out DIR`"],
        )  # fmt: skip
    if isinstance(data, dict) and isinstance(data.get("generator"), str):
        spec = load_model(path.parent / data["generator"], GeneratorSpec)
        return load_model(path, Recipe, substitute={"generator": spec.model_dump(mode="json")})
    return load_model(path, Recipe)


class ChainRun(Strict):
    """A recipe with a shorter schedule (a quick variant of a chain shares the full chain's recipes)."""

    recipe: str
    max_steps: int = Field(ge=1)


class Chain(Strict):
    """Runs in order, by name: each recipe path is relative to the chain file."""

    runs: dict[str, str | ChainRun]


def load_chain(path: Path | str) -> list[tuple[str, Path, int | None]]:
    """(run name, recipe path, max_steps override) in order; every recipe is validated first."""
    path = Path(path)
    chain = load_model(path, Chain)
    runs: list[tuple[str, Path, int | None]] = []
    for name, run in chain.runs.items():
        if isinstance(run, str):
            runs.append((name, path.parent / run, None))
        else:
            runs.append((name, path.parent / run.recipe, run.max_steps))
    for _, recipe, _ in runs:
        load_recipe(recipe)
    return runs


def replicate(recipe: Recipe, k: int) -> Recipe:
    """Training replicate `k` of a recipe: the same recipe with its own randomness.

    Replicate 0 is the recipe itself. Replicate k draws its noise from `optim.seed + k` and its
    data from `data.base_seed + k * num_clips` (new sprites clips; for latents, a new shuffle), so
    two recipes that share seeds (a baseline and its Video-Mirai arm) stay paired replicate by
    replicate: same warm start, same clips in the same order (issue 17's seed pairs).
    """
    if k < 0:
        raise ValueError(f"replicate {k}: replicates count from 0 (the recipe itself)")
    if k == 0:
        return recipe
    data = recipe.data.model_copy(update={"base_seed": recipe.data.base_seed + k * recipe.data.num_clips})
    optim = recipe.optim.model_copy(update={"seed": recipe.optim.seed + k})
    return recipe.model_copy(update={"data": data, "optim": optim})


def replicate_name(run: str, k: int) -> str:
    """The run directory of replicate `k` of chain run `run` (replicate 0 is the run itself)."""
    return run if k == 0 else f"{run}-replicate{k}"


# The code a chain trains with, hashed at import with the code itself: every mirai_train module.
TRAINING_CODE = source_version(sorted(Path(mirai_train.__file__).parent.rglob("*.py")))


def chain_digest(path: Path | str) -> str:
    """sha256 of a chain, everything it trains from (recipes and the generator specs they name) and
    the training code.

    Built checkpoints are stored under it: editing any of those files trains anew.
    """
    path = Path(path)
    digest = hashlib.sha256(TRAINING_CODE.encode())
    digest.update(path.read_bytes())
    for _, recipe, _ in load_chain(path):
        digest.update(recipe.read_bytes())
        data, _ = read_yaml(recipe)
        if isinstance(data, dict) and isinstance(data.get("generator"), str):
            digest.update((recipe.parent / data["generator"]).read_bytes())
    return digest.hexdigest()
