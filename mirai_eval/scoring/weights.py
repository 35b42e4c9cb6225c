"""Where the `vbench` profile finds official weights, and the error when one is missing.

Search order per file: a path given in the manifest (or on the command line), then the caches
VBench itself fills: $VBENCH_CACHE_DIR (default ~/.cache/vbench), ~/.cache/clip and the torch
hub cache. Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    key: str
    what: str
    relative: tuple[str, ...]  # candidate locations, relative to the caches below


WEIGHT_FILES = {
    w.key: w
    for w in (
        WeightFile(
            "dino_vitb16",
            "DINO ViT-B/16 (dino_vitbase16_pretrain.pth) for subject consistency",
            (
                "vbench:dino_model/dino_vitbase16_pretrain.pth",
                "torchhub:checkpoints/dino_vitbase16_pretrain.pth",
            ),
        ),
        WeightFile(
            "clip_vitb32",
            "OpenAI CLIP ViT-B/32 (ViT-B-32.pt) for background consistency and appearance style",
            ("vbench:clip_model/ViT-B-32.pt", "clip:ViT-B-32.pt"),
        ),
        WeightFile(
            "clip_vitl14",
            "OpenAI CLIP ViT-L/14 (ViT-L-14.pt) for aesthetic quality",
            ("vbench:clip_model/ViT-L-14.pt", "clip:ViT-L-14.pt"),
        ),
        WeightFile(
            "aesthetic_head",
            "LAION aesthetic linear head (sa_0_4_vit_l_14_linear.pth) for aesthetic quality",
            ("vbench:aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",),
        ),
        WeightFile(
            "musiq_spaq",
            "MUSIQ SPAQ checkpoint (musiq_spaq_ckpt-358bb6af.pth, pyiqa) for imaging quality",
            ("vbench:pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
        ),
        WeightFile(
            "viclip",
            "ViCLIP ViT-L/14 (ViClip-InternVid-10M-FLT.pth) for temporal style and overall consistency",
            ("vbench:ViCLIP/ViClip-InternVid-10M-FLT.pth",),
        ),
        WeightFile(
            "amt_s",
            "AMT-S frame interpolator (amt-s.pth) for motion smoothness",
            ("vbench:amt_model/amt-s.pth",),
        ),
        WeightFile(
            "raft_things",
            "RAFT raft-things.pth for dynamic degree and the static filter",
            ("vbench:raft_model/models/raft-things.pth",),
        ),
    )
}

NEEDS = {
    "subject_consistency": ("dino_vitb16",),
    "identity_decay": ("dino_vitb16",),
    "repetition": ("dino_vitb16",),
    "background_consistency": ("clip_vitb32",),
    "appearance_style": ("clip_vitb32",),
    "aesthetic_quality": ("clip_vitl14", "aesthetic_head"),
    "motion_smoothness": ("amt_s",),
    "dynamic_degree": ("raft_things",),
    "imaging_quality": ("musiq_spaq",),
    "temporal_style": ("viclip",),
    "overall_consistency": ("viclip",),
    "static_filter": ("raft_things",),
}


class MissingWeightsError(FileNotFoundError):
    """Lists every expected path of every missing file, and what each file is."""


def cache_roots(env: Mapping[str, str] | None = None) -> dict[str, Path]:
    env = os.environ if env is None else env
    home = Path(env.get("HOME", str(Path.home())))
    torch_home = Path(env.get("TORCH_HOME", str(home / ".cache" / "torch")))
    return {
        "vbench": Path(env.get("VBENCH_CACHE_DIR", str(home / ".cache" / "vbench"))),
        "clip": home / ".cache" / "clip",
        "torchhub": torch_home / "hub",
    }


def candidates(key: str, env: Mapping[str, str] | None = None) -> list[Path]:
    roots = cache_roots(env)
    return [roots[root] / rest for root, rest in (c.split(":", 1) for c in WEIGHT_FILES[key].relative)]


def resolve_weights(
    keys: Iterable[str], given: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Path of each weight file; one error naming everything that is missing."""
    given = given or {}
    found, problems = {}, []
    for key in dict.fromkeys(keys):
        if key in given:
            path = Path(given[key]).expanduser()
            if path.is_file():
                found[key] = path
            else:
                problems.append(f"- {key}: {WEIGHT_FILES[key].what}\n    given path does not exist: {path}")
            continue
        paths = candidates(key, env)
        hit = next((p for p in paths if p.is_file()), None)
        if hit is None:
            tried = "\n".join(f"    {p}" for p in paths)
            problems.append(f"- {key}: {WEIGHT_FILES[key].what}\n  expected at one of:\n{tried}")
        else:
            found[key] = hit
    if problems:
        raise MissingWeightsError(
            "missing weight files for the vbench profile (nothing is downloaded; copy them to one of "
            "the paths, or give a path under `weights:` in the manifest / --weight KEY=PATH):\n"
            + "\n".join(problems)
        )
    return found
