"""Stage `toy_scorers`: the small models of the toy scoring profile, trained on the sprites world.

Three steps, each supervised by what the world knows about every frame:
1. The sprites encoder (`mirai_eval/scoring/backbones/sprites_encoder.py`) on single frames: which
   sprites are visible (for each colour, the shape of the sprite of that colour or none), the background layout, its colours and
   the pillar's colour, and the quality of the frame after a random synthetic distortion (Gaussian
   noise, blur, off-palette colour cast, blockiness; quality target 1 - severity, clean = 1). The
   identity and background labels stay those of the clean frame, so the embeddings learn to see
   sprites through the distortions a weak generator makes.
2. The video-text model (`sprites_videotext.py`) on clips and their prompts: symmetric InfoNCE over a
   batch, on the frozen encoder's features of each clip's 8 middle-sampled frames.
3. The sprites detector (`sprites_detector.py`) on the step-1 frames and labels (per colour: the
   shape of the sprite shown, or none), cross-entropy with "none" down-weighted (most colours are
   absent from a frame), under milder distortions than step 1: a detector reads shapes.
Every frame goes through a yuv420 chroma round trip first, as a decoded mp4 does. Everything is a
function of the recipe (clips from `data.base_seed`, draws from `optim.seed`), so one recipe gives
the same weights on the same machine; the schedule is sized to train in about four minutes on one
CPU thread. The output is one weight file, `toy_scorers.safetensors`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from rich.progress import track
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

import mirai_eval.scoring.backbones.sprites_detector as detector_module
import mirai_eval.scoring.backbones.sprites_encoder as encoder_module
import mirai_eval.scoring.backbones.sprites_scorers as scorers_module
import mirai_eval.scoring.backbones.sprites_videotext as videotext_module
import mirai_train.world as world_module
from mirai_eval.scoring.backbones.sprites_detector import NONE, SpritesDetectorConfig
from mirai_eval.scoring.backbones.sprites_encoder import SHAPE_CLASSES, SpritesEncoder, SpritesEncoderConfig
from mirai_eval.scoring.backbones.sprites_scorers import build_scorers, save_scorers
from mirai_eval.scoring.backbones.sprites_videotext import SpritesVideoText, SpritesVideoTextConfig
from mirai_eval.scoring.videotext import middle_indices
from mirai_train.config_files import Strict, load_model
from mirai_train.world import SpritesConfig, clip_seed, render, sample_scene, tracks
from mirai_train.world.dataset import HELDOUT_BASE_SEED
from mirai_train.world.vocabulary import COLOURS, LAYOUTS, SHAPES

WEIGHTS_FILE = "toy_scorers.safetensors"
VISIBLE = 0.3  # a sprite counts as shown when this share of its pixels is visible


class ScorersData(Strict):
    world: SpritesConfig = SpritesConfig()
    num_clips: int = Field(default=768, ge=8)
    base_seed: int = 7
    num_frames: int = Field(default=81, ge=8)
    frames_per_clip: int = Field(default=4, ge=1)  # encoder training frames drawn from each clip


class ScorersOptim(Strict):
    seed: int = 0
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = 1e-4
    encoder_steps: int = Field(default=400, ge=1)
    encoder_batch: int = Field(default=64, ge=2)
    videotext_steps: int = Field(default=400, ge=1)
    videotext_batch: int = Field(default=128, ge=2)
    clean_fraction: float = Field(default=0.3, ge=0, le=1)  # frames left undistorted (quality 1)
    detector_lr: float = Field(default=3e-3, gt=0)
    detector_steps: int = Field(default=1000, ge=1)
    detector_batch: int = Field(default=64, ge=2)
    detector_clean_fraction: float = Field(default=0.7, ge=0, le=1)
    detector_none_weight: float = Field(default=0.2, gt=0)  # loss weight of "no sprite of this colour"


class ScorersRecipe(Strict):
    stage: Literal["toy_scorers"]
    data: ScorersData = ScorersData()
    encoder: SpritesEncoderConfig = SpritesEncoderConfig()
    videotext: SpritesVideoTextConfig = SpritesVideoTextConfig()
    detector: SpritesDetectorConfig = SpritesDetectorConfig()
    optim: ScorersOptim = ScorersOptim()
    log_every: int = Field(default=50, ge=1)


TRAINING_SOURCES = (
    Path(__file__),
    Path(encoder_module.__file__),
    Path(videotext_module.__file__),
    Path(detector_module.__file__),
    Path(scorers_module.__file__),
    # The world renders the training clips and their labels: a new world must retrain the scorers.
    *sorted(Path(world_module.__file__).parent.glob("*.py")),
)


def load_scorers_recipe(path: Path | str) -> ScorersRecipe:
    return load_model(path, ScorersRecipe)


def scorers_digest(path: Path | str) -> str:
    """sha256 of the recipe (its file and every value it resolves to, the world's defaults included)
    and of the code that renders the data and trains and defines the models: the store key."""
    recipe = load_scorers_recipe(path)
    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(recipe.model_dump_json().encode())
    for source in TRAINING_SOURCES:
        digest.update(source.name.encode() + b"\n" + source.read_bytes())
    return digest.hexdigest()


def chroma_round_trip(pixels: Tensor) -> Tensor:
    """float [B, 3, H, W] RGB in [0, 255] through BT.601 YCbCr with 2x2-averaged chroma (yuv420)."""
    r, g, b = pixels.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    chroma = torch.stack([(b - y) * 0.564, (r - y) * 0.713], dim=1)
    chroma = F.interpolate(F.avg_pool2d(chroma, 2, ceil_mode=True), size=pixels.shape[-2:], mode="nearest")
    cb, cr = chroma.unbind(1)
    return torch.stack([y + 1.403 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.773 * cb], dim=1).clamp(0, 255)


def _noise(x: Tensor, s: float, g: torch.Generator) -> Tensor:
    return x + torch.randn(x.shape, generator=g) * (4 + 60 * s)


def _blur(x: Tensor, s: float, g: torch.Generator) -> Tensor:
    sigma = 0.4 + 1.8 * s
    return gaussian_blur(x, [2 * int(np.ceil(2 * sigma)) + 1] * 2, [sigma, sigma])


def _colour(x: Tensor, s: float, g: torch.Generator) -> Tensor:
    cast = (torch.rand(3, 1, 1, generator=g) * 2 - 1) * (20 + 70 * s)
    mean = x.mean(dim=(1, 2), keepdim=True)
    return mean + (x - mean) * (1 - 0.6 * s) + cast


def _blocks(x: Tensor, s: float, g: torch.Generator) -> Tensor:
    factor = 1.5 + 4 * s
    size = x.shape[-2:]
    small = [max(2, round(side / factor)) for side in size]
    coarse = F.interpolate(x[None], size=small, mode="area")
    return F.interpolate(coarse, size=size, mode="nearest")[0]


DISTORTIONS: tuple[Callable[[Tensor, float, torch.Generator], Tensor], ...] = (
    _noise,
    _blur,
    _colour,
    _blocks,
)


def distort(pixels: Tensor, clean_fraction: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Distort each frame of float [B, 3, H, W] (0-255) with a random kind and severity.

    Returns the frames, rounded to 8 bits, and their quality targets (1 - severity; 1 when clean).
    """
    out, quality = [], []
    for frame in pixels:
        if torch.rand((), generator=g).item() < clean_fraction:
            out.append(frame)
            quality.append(1.0)
            continue
        severity = torch.rand((), generator=g).item()
        kind = DISTORTIONS[int(torch.randint(len(DISTORTIONS), (), generator=g))]
        out.append(kind(frame, severity, g))
        quality.append(1.0 - severity)
    return torch.stack(out).clamp(0, 255).round(), torch.tensor(quality)


def background_target(scene_layout: str, colours: tuple[str, ...], pillar: str | None) -> Tensor:
    """[4 + 12 + 1] layout index, background-colour multi-hot, pillar class (12 = none)."""
    multi = torch.zeros(len(COLOURS))
    multi[[COLOURS.index(c) for c in colours]] = 1.0
    pillar_class = len(COLOURS) if pillar is None else COLOURS.index(pillar)
    return torch.cat([torch.tensor([LAYOUTS.index(scene_layout)]), multi, torch.tensor([pillar_class])])


class ScorerData:
    """Frames with labels for step 1 and clips with prompts for step 2, rendered once."""

    def __init__(self, recipe: ScorersRecipe) -> None:
        data = recipe.data
        if data.base_seed == HELDOUT_BASE_SEED:
            raise ValueError(f"data.base_seed {HELDOUT_BASE_SEED} is reserved for the held-out prompts")
        rng = np.random.default_rng(recipe.optim.seed)
        frames, identities, backgrounds, clips, prompts = [], [], [], [], []
        middle = middle_indices(data.num_frames)
        for index in range(data.num_clips):
            scene = sample_scene(clip_seed(data.base_seed, index), data.world)
            video = render(scene, data.num_frames)
            visible = tracks(scene, data.num_frames).visible
            picked = rng.choice(data.num_frames, size=data.frames_per_clip, replace=False)
            frames.append(video[picked])
            for t in picked:
                labels = torch.full((len(COLOURS),), len(SHAPES))  # no sprite of this colour
                for k, sprite in enumerate(scene.objects):
                    if visible[t, k] >= VISIBLE:
                        labels[COLOURS.index(sprite.colour)] = SHAPES.index(sprite.shape)
                identities.append(labels)
            pillar = None if scene.pillar is None else scene.pillar.colour
            target = background_target(scene.background.layout, scene.background.colours, pillar)
            backgrounds.extend([target] * data.frames_per_clip)
            clips.append(video[middle])
            prompts.append(scene.prompt)
        self.frames = torch.from_numpy(np.concatenate(frames)).permute(0, 3, 1, 2)  # uint8 [N, 3, H, W]
        self.identities = torch.stack(identities)
        self.backgrounds = torch.stack(backgrounds)
        self.clips = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3)  # uint8 [C, 8, 3, H, W]
        self.prompts = prompts


def _encoder_loss(
    encoder: SpritesEncoder, pixels: Tensor, ids: Tensor, bg: Tensor, quality: Tensor
) -> Tensor:
    slots, pooled = encoder.encode(pixels)
    shapes = encoder.shape_logits(slots)
    background = encoder.background_logits(encoder.background_proj(pooled))
    layouts, colours = len(LAYOUTS), len(COLOURS)
    losses = (
        F.cross_entropy(shapes.reshape(-1, SHAPE_CLASSES), ids.reshape(-1)),
        F.cross_entropy(background[:, :layouts], bg[:, 0].long()),
        F.binary_cross_entropy_with_logits(background[:, layouts : layouts + colours], bg[:, 1:-1]),
        F.cross_entropy(background[:, layouts + colours :], bg[:, -1].long()),
        F.binary_cross_entropy_with_logits(encoder.quality_logit(pixels), quality),
    )
    return torch.stack(losses).sum()


def _contrastive_loss(model: SpritesVideoText, videos: Tensor, words: Tensor) -> Tensor:
    logits = model.logit_scale.exp() * model.encode_video(videos) @ model.encode_words(words).T
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _fit(
    module: nn.Module,
    lr: float,
    weight_decay: float,
    steps: int,
    loss: Callable[[], Tensor],
    name: str,
    logged: Callable[[str, int, int, Tensor], None],
) -> None:
    """AdamW with a cosine schedule over `steps`, with a progress bar; the module is frozen in eval
    mode afterwards."""
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in track(range(steps), description=f"toy scorers: {name}", transient=True):
        value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        schedule.step()
        logged(name, step, steps, value)
    module.eval().requires_grad_(False)


def train_scorers(
    recipe_path: Path | str, out_dir: Path | str, log: Callable[[str], None] = lambda line: None
) -> Path:
    """Train the recipe's models into OUT/toy_scorers.safetensors (with OUT/log.jsonl); returns the file."""
    recipe, out = load_scorers_recipe(recipe_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    optim = recipe.optim
    with torch.random.fork_rng():
        torch.manual_seed(optim.seed)
        scorers = build_scorers(recipe.encoder, recipe.videotext, recipe.detector)
    data = ScorerData(recipe)
    g = torch.Generator().manual_seed(optim.seed)
    lines: list[dict[str, float | int | str]] = [
        {"step": "data", "seconds": round(time.perf_counter() - started, 2)}
    ]

    def logged(name: str, step: int, steps: int, loss: Tensor) -> None:
        if step % recipe.log_every == 0 or step + 1 == steps:
            lines.append({"step": step, f"{name}_loss": round(loss.item(), 5)})
            log(f"{name} step {step}: loss {loss.item():.4f}")

    encoder = scorers.encoder

    def encoder_loss() -> Tensor:
        pick = torch.randint(len(data.frames), (optim.encoder_batch,), generator=g)
        pixels, quality = distort(data.frames[pick].float(), optim.clean_fraction, g)
        return _encoder_loss(
            encoder, chroma_round_trip(pixels), data.identities[pick], data.backgrounds[pick], quality
        )

    _fit(encoder, optim.lr, optim.weight_decay, optim.encoder_steps, encoder_loss, "encoder", logged)

    with torch.no_grad():
        features = torch.stack(
            [SpritesVideoText.frame_features(encoder, chroma_round_trip(clip.float())) for clip in data.clips]
        )
    videotext = scorers.videotext
    words = videotext.word_vectors(data.prompts)
    batch = min(optim.videotext_batch, len(data.prompts))

    def videotext_loss() -> Tensor:
        pick = torch.randperm(len(data.prompts), generator=g)[:batch]
        return _contrastive_loss(videotext, features[pick], words[pick])

    _fit(videotext, optim.lr, optim.weight_decay, optim.videotext_steps, videotext_loss, "videotext", logged)

    detector = scorers.detector
    class_weights = torch.ones(SHAPE_CLASSES)
    class_weights[NONE] = optim.detector_none_weight

    def detector_loss() -> Tensor:
        pick = torch.randint(len(data.frames), (optim.detector_batch,), generator=g)
        pixels, _ = distort(data.frames[pick].float(), optim.detector_clean_fraction, g)
        logits = detector(chroma_round_trip(pixels))
        return F.cross_entropy(logits.flatten(0, 1), data.identities[pick].flatten(), weight=class_weights)

    _fit(
        detector,
        optim.detector_lr,
        optim.weight_decay,
        optim.detector_steps,
        detector_loss,
        "detector",
        logged,
    )

    seconds = round(time.perf_counter() - started, 2)
    lines.append({"step": "done", "seconds": seconds})
    (out / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    path = out / WEIGHTS_FILE
    provenance = {
        "source": "mirai-train fit, stage toy_scorers",
        "recipe": recipe.model_dump(mode="json"),
        "digest": scorers_digest(recipe_path),
    }
    save_scorers(path, scorers.eval(), provenance)
    return path
