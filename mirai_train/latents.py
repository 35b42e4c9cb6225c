"""Datasets of precomputed video latents with captions (`data.kind: latents`), and how to make one.

Encoding videos costs far more than a training step at wan scale (Wan's VAE on 81 frames of
480x832), so Causal-Forcing stage 1 trains on latents encoded once. Two layouts are read, told
apart by what the directory holds:

* this project's, written by `mirai-train encode` (resumable, one file per clip)::

      dataset.json               format, codec (kind and factors), num_frames, latent_shape, dtype
      captions.jsonl             one clip a line: {"latents": "latents/a.safetensors", "prompt": ..., "video": "a.mp4"}
      latents/<video>.safetensors  the tensor `latents` [C, F, h, w], normalised as the codec encodes

* Causal-Forcing's `dataset/clean_data` (CausVid's LMDB layout, `hf download
  zhuhz22/Causal-Forcing-data` then its utils/merge_and_get_clean.py): an LMDB directory
  (data.mdb) with `latents_shape` ("N 1 F C h w" or "N F C h w", ASCII), `latents_{i}_data`
  (float16 bytes, frames first; with a leading axis, its last entry is the clean latent) and
  `prompts_{i}_data` (UTF-8). Needs the `lmdb` package (the `lmdb` extra), imported only here.

Clips come back as float32 [C, F, h, w] whatever the stored dtype (the release casts the same way).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mirai_train.atomic import atomic_write, atomic_write_text
from mirai_train.cli_options import LatentDtype
from mirai_train.spec import CodecSpec, GeneratorSpec

FORMAT = "mirai-latents/1"
META, INDEX, LATENTS, KEY = "dataset.json", "captions.jsonl", "latents", "latents"
CODEC_FIELDS = ("kind", "spatial_factor", "temporal_factor", "latent_channels")  # not `path`: machine-local


class LatentClips(Protocol):
    def __len__(self) -> int: ...

    def prompt(self, index: int) -> str: ...

    def latents(self, index: int) -> Tensor:
        """Clip `index` as float32 [C, F, h, w]."""
        ...


def open_latents(path: Path, shape: tuple[int, int, int, int], codec: CodecSpec | None) -> LatentClips:
    """The dataset at `path`, every clip checked to be `shape` [C, F, h, w] before training starts.

    `codec` (the recipe's) is compared with the one a `mirai-train encode` directory records.
    """
    if not path.is_dir():
        raise FileNotFoundError(
            f"data.path: {path} is not a directory; give the output of `mirai-train encode` or "
            "Causal-Forcing's dataset/clean_data"
        )
    if (path / META).is_file():
        return LatentDirectory(path, shape, codec)
    if (path / "data.mdb").is_file():
        return ReleaseLMDB(path, shape)
    raise FileNotFoundError(
        f"data.path: {path} holds neither {META} (a directory made by `mirai-train encode`) nor "
        "data.mdb (an LMDB such as Causal-Forcing's dataset/clean_data)"
    )


class LatentDirectory:
    """This project's layout (module docstring); every file's header is checked when opened."""

    def __init__(self, root: Path, shape: tuple[int, int, int, int], codec: CodecSpec | None) -> None:
        self.root = root
        meta = json.loads((root / META).read_text())
        problems = meta_mismatch(meta, shape, codec)
        if problems:
            raise ValueError(f"{root / META}: " + "; ".join(problems))
        index = root / INDEX
        if not index.is_file():
            raise FileNotFoundError(
                f"{index} is missing: `mirai-train encode` writes it last, so encoding into {root} did "
                "not finish; run the same command again to complete it"
            )
        self.files: list[Path] = []
        self.prompts: list[str] = []
        for number, line in enumerate(index.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            entry = json.loads(line)
            if not isinstance(entry.get("latents"), str) or not isinstance(entry.get("prompt"), str):
                raise ValueError(f"{index}:{number}: needs the strings 'latents' and 'prompt'")
            file = root / entry["latents"]
            if not file.is_file():
                raise FileNotFoundError(f"{file}: latent file not found ({index}:{number} lists it)")
            check_latent_file(file, shape)
            self.files.append(file)
            self.prompts.append(entry["prompt"])
        if not self.files:
            raise ValueError(f"{index} lists no clips")

    def __len__(self) -> int:
        return len(self.files)

    def prompt(self, index: int) -> str:
        return self.prompts[index]

    def latents(self, index: int) -> Tensor:
        with safe_open(str(self.files[index]), framework="pt") as f:
            return f.get_tensor(KEY).float()


def meta_mismatch(meta: dict[str, Any], shape: tuple[int, ...], codec: CodecSpec | None) -> list[str]:
    """How a `dataset.json` disagrees with what the recipe trains on (empty if it does not)."""
    problems = []
    if meta.get("format") != FORMAT:
        problems.append(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    if list(meta.get("latent_shape", [])) != list(shape):
        problems.append(
            f"latent_shape is {meta.get('latent_shape')} but the recipe's generator spec and data.num_frames "
            f"give [C, F, h, w] = {list(shape)}"
        )
    if codec is not None:
        for field in CODEC_FIELDS:
            have, want = meta.get("codec", {}).get(field), getattr(codec, field)
            if have != want:
                problems.append(f"codec.{field} is {have!r}, the recipe's generator has {want!r}")
    return problems


def check_latent_file(file: Path, shape: tuple[int, ...]) -> None:
    """A clip file holds `latents` of the expected shape (reads the header alone)."""
    with safe_open(str(file), framework="pt") as f:
        names = list(f.keys())
        if KEY not in names:
            raise ValueError(f"{file}: no tensor '{KEY}' (it has {sorted(names)})")
        have = tuple(f.get_slice(KEY).get_shape())
    if have != tuple(shape):
        raise ValueError(f"{file}: '{KEY}' has shape {list(have)}, expected [C, F, h, w] = {list(shape)}")


class ReleaseLMDB:
    """Causal-Forcing's clean_data (module docstring), read in place; frames-first rows are transposed."""

    def __init__(self, root: Path, shape: tuple[int, int, int, int]) -> None:
        try:
            import lmdb
        except ImportError as error:
            raise ImportError(
                f"data.path: {root} is an LMDB; reading it needs the lmdb package: "
                "pip install 'video-mirai-harness[lmdb]' (or pip install lmdb)"
            ) from error
        self.file = root / "data.mdb"
        self.env = lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False)
        stored = self._get(b"latents_shape")
        dims = tuple(int(d) for d in stored.decode().split())
        channels, frames, height, width = shape
        wanted = (frames, channels, height, width)  # the release stores frames first
        if len(dims) not in (5, 6) or dims[-4:] != wanted:
            raise ValueError(
                f"{self.file}: latents_shape is {list(dims)}, expected [N, (steps,) F, C, h, w] with "
                f"[F, C, h, w] = {list(wanted)} from the recipe's generator spec and data.num_frames"
            )
        self.count, self.row = dims[0], dims[1:]
        if self.count < 1:
            raise ValueError(f"{self.file}: latents_shape {list(dims)} holds no clips")

    def _get(self, key: bytes) -> bytes:
        with self.env.begin() as txn:
            value = txn.get(key)
        if value is None:
            raise KeyError(f"{self.file}: no key {key.decode()!r}")
        return bytes(value)

    def __len__(self) -> int:
        return self.count

    def prompt(self, index: int) -> str:
        return self._get(f"prompts_{index}_data".encode()).decode()

    def latents(self, index: int) -> Tensor:
        key = f"latents_{index}_data"
        data = np.frombuffer(self._get(key.encode()), dtype=np.float16)
        if data.size != int(np.prod(self.row)):
            raise ValueError(
                f"{self.file}: {key} holds {data.size} float16 values, latents_shape says {list(self.row)}"
            )
        clean = data.reshape(self.row)[-1] if len(self.row) == 5 else data.reshape(self.row)
        return torch.from_numpy(clean.astype(np.float32)).permute(1, 0, 2, 3).contiguous()


@dataclass(frozen=True)
class Clip:
    video: str  # relative to the videos directory
    prompt: str

    @property
    def latent_file(self) -> str:
        return f"{LATENTS}/{Path(self.video).with_suffix('.safetensors').as_posix()}"


def read_captions(path: Path) -> list[Clip]:
    """`--captions`: JSONL, one clip a line: {"video": "<path under --videos>", "prompt": "..."}."""
    if not path.is_file():
        raise FileNotFoundError(f"--captions: {path} not found")
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from error
        if not isinstance(entry, dict) or set(entry) != {"video", "prompt"}:
            raise ValueError(f'{path}:{number}: expected {{"video": ..., "prompt": ...}}, got {line[:200]}')
        if not isinstance(entry["video"], str) or not isinstance(entry["prompt"], str):
            raise ValueError(f"{path}:{number}: 'video' and 'prompt' must be strings")
        if entry["video"] in seen:
            raise ValueError(
                f"{path}:{number}: {entry['video']} is listed again (line {seen[entry['video']]})"
            )
        seen[entry["video"]] = number
        clips.append(Clip(entry["video"], entry["prompt"]))
    if not clips:
        raise ValueError(f"{path} lists no clips")
    return clips


@dataclass(frozen=True)
class EncodeResult:
    encoded: int
    skipped: int  # already in the output directory (a resumed run)


def encode_videos(
    videos: Path,
    captions: Path,
    spec: GeneratorSpec,
    out: Path,
    *,
    device: str = "cpu",
    dtype: LatentDtype = "float16",
    advance: Callable[[str, bool], None] = lambda video, skipped: None,
) -> EncodeResult:
    """Encode every captioned clip with the spec's codec into `out` (this project's layout).

    Clips must be `spec.video` sized with codec.pixel_frames(train_latent_frames) frames (81 at wan
    scale). Missing videos are found before anything is encoded; a clip's frame count and size
    before it is (an error names the file; fix it and run again). Each latent file is written whole
    (temporary name, then renamed) and clips already written are skipped, so an interrupted run is
    finished by the same command; `captions.jsonl` comes last. `advance(video, skipped)` is called
    after each clip (the CLI's progress bar).
    """
    from mirai_train.models.codecs import build_codec
    from mirai_train.video import decode
    from mirai_train.world.render import to_tensor

    clips = read_captions(captions)
    for clip in clips:
        if not (videos / clip.video).is_file():
            raise FileNotFoundError(f"{videos / clip.video}: video not found (listed in {captions})")
    factor, s = spec.codec.temporal_factor, spec.codec.spatial_factor
    frames = 1 + (spec.video.train_latent_frames - 1) * factor
    shape = (
        spec.codec.latent_channels,
        spec.video.train_latent_frames,
        spec.video.height // s,
        spec.video.width // s,
    )
    meta = {
        "format": FORMAT,
        "codec": {field: getattr(spec.codec, field) for field in CODEC_FIELDS},
        "num_frames": frames,
        "latent_shape": list(shape),
        "dtype": dtype,
    }
    out.mkdir(parents=True, exist_ok=True)
    if (out / META).is_file():
        earlier = json.loads((out / META).read_text())
        if earlier != meta:
            raise ValueError(
                f"{out / META}: this directory was encoded as {earlier}, this command would write {meta}; "
                "resume with the same spec and --dtype, or choose another --out"
            )
    else:
        (out / META).write_text(json.dumps(meta, indent=1) + "\n")
    codec = build_codec(spec.codec, device=device)
    encoded = skipped = 0
    for clip in clips:
        target = out / clip.latent_file
        if target.is_file():
            check_latent_file(target, shape)
            skipped += 1
            advance(clip.video, True)
            continue
        video = decode(videos / clip.video, min_frames=1)
        count, height, width = video.frames.shape[:3]
        if count < 1 or (count - 1) % factor:
            raise ValueError(
                f"{video.path}: {count} frames; the codec encodes 1 + {factor}k frames, and this spec "
                f"trains on {frames} (video.train_latent_frames {spec.video.train_latent_frames})"
            )
        if count != frames:
            raise ValueError(
                f"{video.path}: {count} frames, but the spec trains on {frames} "
                f"(video.train_latent_frames {spec.video.train_latent_frames}); cut clips to {frames} frames"
            )
        if (height, width) != (spec.video.height, spec.video.width):
            raise ValueError(
                f"{video.path}: frames are {height}x{width} (HxW), the spec's video is "
                f"{spec.video.height}x{spec.video.width}; resize the clips first"
            )
        with torch.no_grad():
            latents = codec.encode(to_tensor(video.frames.numpy())[None].to(device))[0]
        stored = {KEY: latents.to(getattr(torch, dtype)).contiguous().cpu()}

        def write(tmp: Path, tensors: dict[str, Tensor] = stored) -> None:
            save_file(tensors, str(tmp))

        atomic_write(target, write)
        encoded += 1
        advance(clip.video, False)
    lines = [json.dumps({"latents": c.latent_file, "prompt": c.prompt, "video": c.video}) for c in clips]
    atomic_write_text(out / INDEX, "".join(line + "\n" for line in lines))
    return EncodeResult(encoded, skipped)
