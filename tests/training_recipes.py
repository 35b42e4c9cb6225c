"""Tiny recipes of every stage, written into a directory: the toy chain shrunk to seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GENERATOR: dict[str, Any] = {
    "transformer": {
        "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 768, "out_channels": 768,
        "text_dim": 16, "freq_dim": 32, "ffn_dim": 32, "num_layers": 2, "rope_max_seq_len": 32,
        "num_frame_per_block": 3,
    },
    "codec": {"kind": "pixel", "spatial_factor": 8, "temporal_factor": 4, "latent_channels": 768},
    "text_encoder": {"kind": "toy", "dim": 16, "max_length": 8},
    "video": {"fps": 16, "height": 16, "width": 16, "train_latent_frames": 6},
}  # fmt: skip
TEACHER = {
    **GENERATOR,
    "transformer": {**GENERATOR["transformer"], "num_layers": 3, "num_frame_per_block": 1},
}
DATA = {"kind": "sprites", "num_clips": 16, "num_frames": 21}  # 6 latent frames: two chunks
OPTIM = {"lr": 1e-3, "lr_critic": 1e-3, "lr_foresight": 1e-3, "batch_size": 1, "max_steps": 2, "seed": 0}
ODE = {"num_trajectories": 2, "teacher_steps": 4, "guidance_scale": 2.0}

RECIPES = {
    "teacher": {"stage": "teacher", "generator": TEACHER, "pretrain": {}},
    "ode_init": {"stage": "ode_init", "generator": GENERATOR, "teacher": "teacher/generator", "ode": ODE},
    "ar": {"stage": "ar_teacher_forcing", "generator": GENERATOR, "teacher_forcing": {}},
    "causal_ode": {
        "stage": "causal_ode", "generator": GENERATOR, "init": "ar/generator", "teacher": "ar/generator", "ode": ODE,
    },
    "dmd": {
        "stage": "dmd", "generator": GENERATOR, "init": "ode_init/generator", "teacher": "teacher/generator",
        "dmd": {"dfake_gen_update_ratio": 2},
    },
    "dmd_mirai": {
        "stage": "dmd", "generator": GENERATOR, "init": "ode_init/generator", "teacher": "teacher/generator",
        "dmd": {"dfake_gen_update_ratio": 2},
        "foresight": {"foresight_student_layer": 0, "foresight_teacher_layer": 1, "predictor_depth": 1},
    },
}  # fmt: skip


def write_recipes(
    directory: Path, max_steps: int = 2, strategy: str = "fsdp", **optim: float
) -> dict[str, Path]:
    """Every recipe; `strategy` is `distributed.strategy` (what runs under torchrun)."""
    paths = {}
    for name, recipe in RECIPES.items():
        body = {
            "data": DATA, "optim": {**OPTIM, "max_steps": max_steps, **optim}, "distributed": {"strategy": strategy},
            "save_every": 1, **recipe,
        }  # fmt: skip
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(body))
    return paths
