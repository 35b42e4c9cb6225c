"""The toy profile's weight file: the sprites encoder and the video-text model in one safetensors file.

Tensors are prefixed `encoder.` and `videotext.`; the file's metadata holds both configurations
(JSON) and the provenance the trainer wrote, so the file alone rebuilds the models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mirai_eval.scoring.backbones.sprites_encoder import SpritesEncoder, SpritesEncoderConfig
from mirai_eval.scoring.backbones.sprites_videotext import SpritesVideoText, SpritesVideoTextConfig
from mirai_train.world.vocabulary import COLOURS


@dataclass
class SpritesScorers:
    encoder: SpritesEncoder
    videotext: SpritesVideoText

    def eval(self) -> SpritesScorers:
        self.encoder.eval().requires_grad_(False)
        self.videotext.eval().requires_grad_(False)
        return self


def build_scorers(encoder: SpritesEncoderConfig, videotext: SpritesVideoTextConfig) -> SpritesScorers:
    frame_dim = len(COLOURS) * encoder.slot_dim + encoder.embed_dim
    return SpritesScorers(SpritesEncoder(encoder), SpritesVideoText(videotext, frame_dim))


def save_scorers(path: Path, scorers: SpritesScorers, provenance: Mapping[str, object]) -> None:
    """Write the file under a temporary name and rename it into place."""
    tensors = {f"encoder.{k}": v.contiguous() for k, v in scorers.encoder.state_dict().items()}
    tensors |= {f"videotext.{k}": v.contiguous() for k, v in scorers.videotext.state_dict().items()}
    metadata = {
        "encoder": scorers.encoder.config.model_dump_json(),
        "videotext": scorers.videotext.config.model_dump_json(),
        "provenance": json.dumps(provenance, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_provenance(path: Path) -> dict[str, object]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(json.loads(handle.metadata()["provenance"]))


def load_scorers(path: Path | str, device: str = "cpu") -> SpritesScorers:
    """The models of a toy-profile weight file, in eval mode on `device`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "encoder" not in metadata or "videotext" not in metadata:
        raise ValueError(f"{path}: not a toy-profile weight file (no encoder/videotext configuration in it)")
    scorers = build_scorers(
        SpritesEncoderConfig.model_validate_json(metadata["encoder"]),
        SpritesVideoTextConfig.model_validate_json(metadata["videotext"]),
    )
    tensors = load_file(str(path))
    for prefix, module in (("encoder.", scorers.encoder), ("videotext.", scorers.videotext)):
        module.load_state_dict(
            {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        )
        module.to(device)
    return scorers.eval()
