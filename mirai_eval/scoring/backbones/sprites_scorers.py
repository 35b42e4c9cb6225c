"""The toy profile's weight file: the sprites encoder, video-text model and detector in one safetensors file.

Tensors are prefixed `encoder.`, `videotext.` and `detector.`; the file's metadata holds the three
configurations (JSON) and the provenance the trainer wrote, so the file alone rebuilds the models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mirai_eval.scoring.backbones.sprites_detector import SpritesDetector, SpritesDetectorConfig
from mirai_eval.scoring.backbones.sprites_encoder import SpritesEncoder, SpritesEncoderConfig
from mirai_eval.scoring.backbones.sprites_videotext import SpritesVideoText, SpritesVideoTextConfig
from mirai_train.atomic import atomic_write
from mirai_train.world.vocabulary import COLOURS


@dataclass
class SpritesScorers:
    encoder: SpritesEncoder
    videotext: SpritesVideoText
    detector: SpritesDetector

    def modules(self) -> dict[str, nn.Module]:
        """By the prefix of their tensors in the weight file."""
        return {"encoder": self.encoder, "videotext": self.videotext, "detector": self.detector}

    def eval(self) -> SpritesScorers:
        for module in self.modules().values():
            module.eval().requires_grad_(False)
        return self


def build_scorers(
    encoder: SpritesEncoderConfig, videotext: SpritesVideoTextConfig, detector: SpritesDetectorConfig
) -> SpritesScorers:
    """The detector is built last: adding it left the seeded initial weights of the other two as they were."""
    frame_dim = len(COLOURS) * encoder.slot_dim + encoder.embed_dim
    return SpritesScorers(
        SpritesEncoder(encoder), SpritesVideoText(videotext, frame_dim), SpritesDetector(detector)
    )


def save_scorers(path: Path, scorers: SpritesScorers, provenance: Mapping[str, object]) -> None:
    """Write the file under a temporary name and rename it into place."""
    tensors = {
        f"{name}.{k}": v.contiguous()
        for name, m in scorers.modules().items()
        for k, v in m.state_dict().items()
    }
    metadata = {
        "encoder": scorers.encoder.config.model_dump_json(),
        "videotext": scorers.videotext.config.model_dump_json(),
        "detector": scorers.detector.config.model_dump_json(),
        "provenance": json.dumps(provenance, sort_keys=True),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_provenance(path: Path) -> dict[str, object]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(json.loads(handle.metadata()["provenance"]))


def load_scorers(path: Path | str, device: str = "cpu") -> SpritesScorers:
    """The models of a toy-profile weight file, in eval mode on `device`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "encoder" not in metadata or "videotext" not in metadata:
        raise ValueError(f"{path}: not a toy-profile weight file (no encoder/videotext configuration in it)")
    if "detector" not in metadata:
        raise ValueError(
            f"{path}: a toy-profile weight file from before the sprites detector; retrain it with "
            "`mirai-eval train-scorers --out DIR` (or delete it "
            "from the store and let `mirai-eval` train the current recipe)"
        )
    scorers = build_scorers(
        SpritesEncoderConfig.model_validate_json(metadata["encoder"]),
        SpritesVideoTextConfig.model_validate_json(metadata["videotext"]),
        SpritesDetectorConfig.model_validate_json(metadata["detector"]),
    )
    tensors = load_file(str(path))
    for name, module in scorers.modules().items():
        prefix = f"{name}."
        module.load_state_dict(
            {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        )
        module.to(device)
    return scorers.eval()
