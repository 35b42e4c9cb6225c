"""Scoring profiles: which dimensions run natively, which go to the vbench package, which cannot run.

`vbench`: official weights (see weights.py) for the native dimensions, the vbench package in its
own virtual environment for the others. `toy`: VBench's formulas with stand-ins the CPU-sized
sprites world supports: small models trained on sprites (the `toy_scorers` recipe, resolved by
toy_weights.py) for subject and background consistency, imaging quality, object class, multiple
objects, colour and overall consistency, weightless block matching for dynamic degree and motion
smoothness. The dimensions it cannot compute are in TOY_UNAVAILABLE with the reason. Toy values
are never comparable with VBench's. Both profiles compute the long-video measures (drift.py):
identity decay and repetition on the subject-consistency backbone, exposure from the pixels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mirai_eval import DEFAULT_STORE
from mirai_eval.scoring.backbones.amt import load_amt
from mirai_eval.scoring.backbones.dino import DinoViT
from mirai_eval.scoring.backbones.raft import RaftFlow, load_raft
from mirai_eval.scoring.backbones.viclip import load_viclip
from mirai_eval.scoring.base import Dimension
from mirai_eval.scoring.consistency import FeatureConsistency, background_consistency, subject_consistency
from mirai_eval.scoring.dimensions import METRICS, STATIC_FILTER_VBENCH_ONLY, VBENCH_UNAVAILABLE, Profile
from mirai_eval.scoring.drift import Exposure, IdentityDecay, Repetition
from mirai_eval.scoring.dynamic import DynamicDegree
from mirai_eval.scoring.flicker import StaticFilter, TemporalFlickering
from mirai_eval.scoring.imaging import ImagingQuality, load_musiq, musiq_batch
from mirai_eval.scoring.motion import MotionSmoothness
from mirai_eval.scoring.semantics import AestheticQuality, AppearanceStyle, aesthetic_head
from mirai_eval.scoring.videotext import VideoTextConsistency, VideoTextEmbedder
from mirai_eval.scoring.weights import NEEDS, resolve_weights
from mirai_train.video import MIN_SIDE

TOY_UNAVAILABLE = {
    "aesthetic_quality": "no meaning on sprites: there is no aesthetic preference data for the sprites world",
    "spatial_relationship": "no meaning on sprites: sprites move across each other, so the world's prompts "
    "state no spatial relation to check",
    "human_action": "no meaning on sprites: the sprites world has no people or human actions",
    "scene": "no meaning on sprites: the sprites world has one kind of background, no scene categories",
    "appearance_style": "no meaning on sprites: sprites are rendered in one style",
    "temporal_style": "no meaning on sprites: the camera never moves and prompts name no temporal style",
}
# Toy dimensions computed with the trained models (their scores depend on the weight file).
TOY_TRAINED = (
    "subject_consistency",
    "identity_decay",
    "repetition",
    "background_consistency",
    "imaging_quality",
    "object_class",
    "multiple_objects",
    "color",
    "overall_consistency",
)


EXPOSURE = ("luminance", "clipped", "saturation")
# Measures on the subject-consistency backbone's features (scoring/drift.py), by name.
SUBJECT_FEATURES: dict[str, Callable[[FeatureConsistency], Dimension]] = {
    "subject_consistency": lambda backbone: backbone,
    "identity_decay": lambda backbone: IdentityDecay(backbone.features),
    "repetition": lambda backbone: Repetition(backbone.features),
}


def batch_defaults(device: str) -> tuple[int, int]:
    """(frames per image-backbone forward, frame pairs per flow forward) when not given: on a GPU
    large batches remove launch overhead (VBench's frame-by-frame DINO loop is launch-bound there);
    on a CPU the forwards are compute-bound and large batches only add memory traffic (RAFT and
    AMT-S at full resolution run fastest one pair at a time)."""
    return (16, 1) if device == "cpu" else (64, 8)


@dataclass
class ScoringOptions:
    """Run settings; `for_device` fills the batch sizes the caller leaves open."""

    device: str = "cpu"
    batch_size: int = 16  # frames per DINO / CLIP / sprites-model / MUSIQ forward (MUSIQ on a CPU: 1)
    flow_batch_size: int = 1  # frame pairs per RAFT / AMT forward
    weights: dict[str, str] = field(default_factory=dict)
    full_info: Path | None = None
    static_filter: bool = False
    store: Path = DEFAULT_STORE  # where the toy profile's models are trained when missing

    @classmethod
    def for_device(
        cls, device: str, batch_size: int | None, flow_batch_size: int | None, **rest: Any
    ) -> ScoringOptions:
        frames, pairs = batch_defaults(device)
        return cls(device, batch_size or frames, flow_batch_size or pairs, **rest)


@dataclass
class LoadedDimensions:
    native: dict[str, Dimension]
    delegated: tuple[str, ...]
    unavailable: dict[str, str]
    static_filter: StaticFilter | None = None


def load_dino(path: Path, device: str) -> DinoViT:
    model = DinoViT()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    return model.eval().to(device)


def load_clip(path: Path, device: str) -> torch.nn.Module:
    import clip

    model, _ = clip.load(str(path), device=device, jit=False)
    return model.eval()


def load_styles(full_info: Path | None) -> dict[str, str]:
    """prompt -> appearance-style text, from VBench_full_info.json."""
    if full_info is None:
        raise ValueError(
            "appearance_style needs each prompt's style text: pass --full-info pointing to "
            "VBench_full_info.json (shipped inside the vbench package)"
        )
    entries = json.loads(Path(full_info).read_text())
    return {
        e["prompt_en"]: e["auxiliary_info"]["appearance_style"]["appearance_style"]
        for e in entries
        if "appearance_style" in e.get("dimension", []) and "auxiliary_info" in e
    }


def load_dimensions(profile: Profile, dims: list[str], options: ScoringOptions) -> LoadedDimensions:
    """Load what the requested dimensions need; a missing weight file fails before any video is read."""
    for name in dims:
        if name not in METRICS:
            raise ValueError(f"unknown dimension {name!r}; valid: {', '.join(METRICS)}")
    if profile == "toy":
        return toy_dimensions(dims, options)
    if profile != "vbench":
        raise ValueError(f"unknown profile {profile!r}; valid: vbench, toy")
    needed = [key for n in dims for key in NEEDS.get(n, ())]
    if options.static_filter:
        needed += list(NEEDS["static_filter"])
    paths = resolve_weights(needed, options.weights)
    device, batch = options.device, options.batch_size
    clip_b = load_clip(paths["clip_vitb32"], device) if "clip_vitb32" in paths else None
    flow = RaftFlow(load_raft(str(paths["raft_things"])).to(device)) if "raft_things" in paths else None
    embedder = (
        VideoTextEmbedder(load_viclip(str(paths["viclip"])).to(device), device) if "viclip" in paths else None
    )
    dino = load_dino(paths["dino_vitb16"], device) if "dino_vitb16" in paths else None
    native: dict[str, Dimension] = {}
    for name in dims:
        if name in EXPOSURE:
            native[name] = Exposure(name)
        elif dino is not None and name in SUBJECT_FEATURES:
            native[name] = SUBJECT_FEATURES[name](subject_consistency(dino, batch, device))
        elif name == "background_consistency" and clip_b is not None:
            native[name] = background_consistency(clip_b, batch, device)
        elif name == "temporal_flickering":
            native[name] = TemporalFlickering()
        elif name == "motion_smoothness":
            amt = load_amt(paths["amt_s"]).to(device)
            native[name] = MotionSmoothness(amt, options.flow_batch_size, device)
        elif name == "dynamic_degree" and flow is not None:
            native[name] = DynamicDegree(flow, options.flow_batch_size, device)
        elif name == "aesthetic_quality":
            clip_l = load_clip(paths["clip_vitl14"], device)
            native[name] = AestheticQuality(
                clip_l, aesthetic_head(str(paths["aesthetic_head"])).to(device), 32, device
            )
        elif name in ("temporal_style", "overall_consistency") and embedder is not None:
            native[name] = VideoTextConsistency(name, embedder)
        elif name == "imaging_quality":
            musiq = load_musiq(str(paths["musiq_spaq"])).to(device)
            native[name] = ImagingQuality(musiq, musiq_batch(device, batch), device)
        elif name == "appearance_style" and clip_b is not None:
            native[name] = AppearanceStyle(clip_b, load_styles(options.full_info), 32, device)
    static = StaticFilter(flow, options.flow_batch_size, device) if options.static_filter and flow else None
    unavailable = {n: VBENCH_UNAVAILABLE[n] for n in dims if n in VBENCH_UNAVAILABLE}
    delegated = tuple(n for n in dims if n not in native and n not in unavailable)
    return LoadedDimensions(native=native, delegated=delegated, unavailable=unavailable, static_filter=static)


def toy_dimensions(dims: list[str], options: ScoringOptions) -> LoadedDimensions:
    """The toy profile: VBench's formulas on the sprites stand-ins (see the module docstring)."""
    # Imported here, not with the module: the sprites models pull in the toy text encoder
    # (transformers) and the world, half a second of start-up a vbench-profile run never needs.
    from mirai_eval.scoring.backbones.block_matching import BilateralInterpolator, BlockMatchingFlow
    from mirai_eval.scoring.backbones.sprites_encoder import SpritesQuality
    from mirai_eval.scoring.backbones.sprites_scorers import load_scorers
    from mirai_eval.scoring.objects import OBJECT_DIMENSIONS, SpriteDetections
    from mirai_eval.scoring.planning_gap import PLANNING_GAP, PlanningGapMeasure, SpriteBlobs
    from mirai_eval.scoring.toy_motion import InterpolatorSmoothness
    from mirai_eval.scoring.toy_weights import resolve as resolve_toy_weights
    from mirai_eval.scoring.videotext import SpritesVideoTextEmbedder

    if options.static_filter:
        raise ValueError(STATIC_FILTER_VBENCH_ONLY)
    device, batch = options.device, options.batch_size
    trained = any(name in TOY_TRAINED for name in dims)
    scorers = load_scorers(resolve_toy_weights(options.weights, options.store), device) if trained else None
    native: dict[str, Dimension] = {}
    detections: SpriteDetections | None = None  # shared by the three detection dimensions
    blobs = SpriteBlobs()  # shared by the planning-gap measures
    for name in dims:
        if name in EXPOSURE:
            native[name] = Exposure(name)
        elif name in PLANNING_GAP:
            native[name] = PlanningGapMeasure(blobs, name)
        elif scorers is not None and name in SUBJECT_FEATURES:
            subject = FeatureConsistency(name, scorers.encoder.subject, _pixels, batch, device)
            native[name] = SUBJECT_FEATURES[name](subject)
        elif name == "temporal_flickering":
            native[name] = TemporalFlickering()
        elif name == "dynamic_degree":
            native[name] = DynamicDegree(BlockMatchingFlow(), batch, device, min_side=MIN_SIDE)
        elif name == "motion_smoothness":
            native[name] = InterpolatorSmoothness(BilateralInterpolator(), batch)
        elif scorers is not None and name == "background_consistency":
            native[name] = FeatureConsistency(name, scorers.encoder.background, _pixels, batch, device)
        elif scorers is not None and name == "imaging_quality":
            native[name] = ImagingQuality(SpritesQuality(scorers.encoder), batch, device)
        elif scorers is not None and name == "overall_consistency":
            native[name] = VideoTextConsistency(name, SpritesVideoTextEmbedder(scorers, device))
        elif scorers is not None and name in OBJECT_DIMENSIONS:
            detections = detections or SpriteDetections(scorers.detector, device)
            native[name] = OBJECT_DIMENSIONS[name](detections)
    unavailable = {n: TOY_UNAVAILABLE[n] for n in dims if n in TOY_UNAVAILABLE}
    return LoadedDimensions(native=native, delegated=(), unavailable=unavailable)


def _pixels(pixels: torch.Tensor) -> torch.Tensor:
    """The sprites encoder takes pixels in [0, 255] as they are (it resizes them itself)."""
    return pixels
