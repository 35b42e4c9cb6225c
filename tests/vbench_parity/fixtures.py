"""Shared inputs of the parity tests: real mp4 files and random weights saved as the official files.

Only the `vbench` nox session imports this (its files are named parity_*.py, which the default
suite does not collect), because it needs the vbench package and its pinned environment.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mirai_eval.scoring.backbones.amt import AmtS
from mirai_eval.scoring.backbones.dino import DinoViT
from mirai_train.video import write_mp4

HUB_DINO = Path(torch.hub.get_dir()) / "facebookresearch_dino_main"
STYLE_PROMPT = "A beautiful coastal beach in spring, waves lapping on sand, Van Gogh style"
STYLE = "Van Gogh style"


def moving_video(seed: int, frames: int, height: int, width: int, speed: float) -> torch.Tensor:
    """Textured background with a bright square moving `speed` px per frame, plus mild noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(
        torch.rand(1, 3, height // 8, width // 8, generator=g) * 255, size=(height, width), mode="bilinear"
    )[0]
    out = []
    for t in range(frames):
        frame = base.clone()
        x = int(10 + speed * t) % (width - 30)
        frame[:, 20:50, x : x + 30] = torch.tensor([250.0, 40.0, 40.0])[:, None, None]
        frame += torch.randn(frame.shape, generator=g) * 3
        out.append(frame.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0))
    return torch.stack(out)


def make_videos(folder: Path, prompt: str = STYLE_PROMPT) -> list[Path]:
    """Two non-square videos (sides not multiples of 8 or 16: exercises padding and DINO's resizing)."""
    paths = []
    for i, (speed, size) in enumerate([(0.0, (132, 236)), (9.0, (136, 250))]):
        path = folder / f"{prompt}-{i}.mp4"
        write_mp4(path, moving_video(i, 12, size[0], size[1], speed), fps=8)
        paths.append(path)
    return paths


def randomise(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Non-trivial random values for every floating tensor (so no zero-initialised part hides a bug)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ln_1.weight", "ln_2.weight")):
                tensor.copy_(1 + torch.randn(tensor.shape, generator=g) * 0.1)
            elif "logit_scale" in name:
                continue
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=g) * std)


def dino_weights(folder: Path) -> Path:
    model = DinoViT()
    randomise(model, 1, std=0.1)  # at the usual 0.02 a random DINO sees every frame alike
    path = folder / "dino_vitbase16_pretrain.pth"
    torch.save(model.state_dict(), path)
    return path


def clip_weights(folder: Path, large: bool) -> Path:
    import clip
    from clip.model import CLIP

    if large:
        model = CLIP(768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12)
    else:
        model = CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)
    randomise(model, 2 if large else 3, std=0.02 if large else 0.1)  # 0.02 makes B/32 frames look alike
    path = folder / ("ViT-L-14.pt" if large else "ViT-B-32.pt")
    # The official files are TorchScript archives, and `clip.load` reads nothing else reliably.
    example = (torch.zeros(1, 3, 224, 224), clip.tokenize(["a"]))
    torch.jit.trace(model.eval(), example, check_trace=False).save(str(path))
    return path


def raft_weights(folder: Path) -> Path:
    from easydict import EasyDict
    from vbench.third_party.RAFT.core.raft import RAFT

    torch.manual_seed(4)  # RAFT's own initialisation: random weights beyond it make its flow chaotic
    model = RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
    path = folder / "raft-things.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    return path


def amt_weights(folder: Path) -> Path:
    """A random AMT-S saved like the official amt-s.pth: a training checkpoint with `state_dict`."""
    model = AmtS()
    randomise(model, 8)  # at 0.02 the prediction depends on both frames and is rarely clamped
    # ... but the correlation features must be larger for the correlation look-ups to matter.
    randomise(model.feat_encoder.conv2, 9, std=0.2)
    path = folder / "amt-s.pth"
    torch.save({"epoch": 300, "state_dict": model.state_dict()}, path)
    return path
