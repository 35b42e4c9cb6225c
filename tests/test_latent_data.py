"""`data.kind: latents`: `mirai-train encode` writes a dataset the AR stage trains on, batch for batch
the latents the codec gives for those clips; Causal-Forcing's LMDB is read in place; bad input is an
error naming the file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from mirai_train.cli import app
from mirai_train.config_files import ConfigError
from mirai_train.data import TrainingData
from mirai_train.models.codecs import build_codec
from mirai_train.models.text_encoders import build_text_encoder
from mirai_train.recipe import DataSpec, load_recipe
from mirai_train.spec import GeneratorSpec
from mirai_train.trainer import fit
from mirai_train.video import decode, write_mp4
from mirai_train.world import SpritesConfig, sample_scene
from mirai_train.world.dataset import clip_seed
from mirai_train.world.render import render, to_tensor
from tests.training_recipes import GENERATOR, OPTIM, RECIPES

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# The tiny generator at 32x32 (decord cannot decode frames under 32 px wide): pixel codec, latents
# [C, F, h, w] = [768, 6, 4, 4], 6 latent frames = 21 video frames.
GENERATOR_32 = {**GENERATOR, "video": {**GENERATOR["video"], "height": 32, "width": 32}}
SPEC = GeneratorSpec.model_validate(GENERATOR_32)
FRAMES = 21
NAMES = ["a.mp4", "b.mp4", "nested/c.mp4"]


def write_clip(path: Path, seed: int, frames: int = FRAMES) -> None:
    config = SpritesConfig(height=32, width=32, fps=16, num_frames=frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, render(sample_scene(clip_seed(7, seed), config), frames), fps=16)


def encode(videos: Path, captions: Path, spec: Path, out: Path) -> tuple[int, str]:
    args = ["encode", "--videos", str(videos), "--captions", str(captions), "--config", str(spec)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    return result.exit_code, result.output


def codec_latents(path: Path) -> torch.Tensor:
    """What the codec gives for a clip as decoded from its file, stored as float16."""
    video = to_tensor(decode(path).frames.numpy())[None]
    return build_codec(SPEC.codec).encode(video)[0].half().float()


def training_data(path: Path, num_frames: int = FRAMES) -> TrainingData:
    spec = DataSpec(kind="latents", path=str(path), num_frames=num_frames)
    codec, text = build_codec(SPEC.codec), build_text_encoder(SPEC.text_encoder)
    return TrainingData(spec, SPEC.video, codec, text, batch_size=1, accumulation=1, codec_spec=SPEC.codec)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three rendered sprites clips as mp4, their captions and the generator spec."""
    root = tmp_path_factory.mktemp("clips")
    for seed, name in enumerate(NAMES):
        write_clip(root / "videos" / name, seed)
    lines = [json.dumps({"video": name, "prompt": f"clip {name}"}) for name in NAMES]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "generator.yaml").write_text(yaml.safe_dump(GENERATOR_32))
    return root


@pytest.fixture(scope="module")
def encoded(clips: Path) -> Path:
    out = clips / "latents"
    code, output = encode(clips / "videos", clips / "captions.jsonl", clips / "generator.yaml", out)
    assert code == 0, output
    assert "3 clip(s) encoded, 0 done before" in output
    return out


def test_encode_resumes_and_ar_trains_on_the_codec_latents(
    clips: Path, encoded: Path, tmp_path: Path
) -> None:
    out = tmp_path / "latents"
    shutil.copytree(encoded, out)
    (out / "latents/nested/c.safetensors").unlink()  # an interrupted run: one clip and the index missing
    (out / "captions.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        training_data(out)
    code, output = encode(clips / "videos", clips / "captions.jsonl", clips / "generator.yaml", out)
    assert code == 0 and "1 clip(s) encoded, 2 done before" in output, output

    data = training_data(out)
    expected = [codec_latents(clips / "videos" / name) for name in NAMES]
    seen = []
    for step in range(12):  # four epochs, each a permutation of the three clips
        (index,) = data.indices(step, 0)
        batch = data.batch(step)
        assert batch.latents is not None and torch.equal(batch.latents[0], expected[index])
        assert batch.prompts == [f"clip {NAMES[index]}"]
        seen.append(index)
    epochs = [seen[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(epoch) == [0, 1, 2] for epoch in epochs) and len({tuple(e) for e in epochs}) > 1
    ranks = [
        TrainingData(
            data.spec,
            SPEC.video,
            data.codec,
            data.text_encoder,
            batch_size=1,
            accumulation=1,
            rank=r,
            world_size=3,
        ).indices(0, 0)
        for r in range(3)
    ]
    assert sorted(i for rank in ranks for i in rank) == [0, 1, 2]  # disjoint rank shards

    recipe = {
        **RECIPES["ar"],
        "generator": GENERATOR_32,
        "data": {"kind": "latents", "path": str(out), "num_frames": FRAMES},
        "optim": {**OPTIM, "batch_size": 2, "max_steps": 2},
    }
    (tmp_path / "ar.yaml").write_text(yaml.safe_dump(recipe))
    generator = fit(tmp_path / "ar.yaml", tmp_path / "run", runs=tmp_path, progress=False)
    assert (generator / "generator.safetensors").is_file()
    logs = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [log["step"] for log in logs] == [0, 1] and all(np.isfinite(log["loss"]) for log in logs)


@pytest.mark.parametrize(
    ("frames", "problem"),
    [(None, "video not found"), (20, "20 frames; the codec encodes 1 + 4k"), (17, "17 frames, but the spec")],
)
def test_encode_errors_name_the_video(clips: Path, tmp_path: Path, frames: int | None, problem: str) -> None:
    if frames is not None:
        write_clip(tmp_path / "videos/bad.mp4", 0, frames)
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"video": "bad.mp4", "prompt": "p"}) + "\n")
    code, output = encode(tmp_path / "videos", captions, clips / "generator.yaml", tmp_path / "out")
    assert code == 1 and f"{tmp_path / 'videos/bad.mp4'}: {problem}" in output.replace("\n", ""), output


def test_bad_latent_datasets_are_errors_naming_the_file(encoded: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents"
    shutil.copytree(encoded, out)
    with pytest.raises(ValueError, match=r"latent_shape is \[768, 6, 4, 4\] but .* \[768, 5, 4, 4\]"):
        training_data(out, num_frames=17)
    wrong = out / "latents/b.safetensors"
    save_file({"latents": torch.zeros(768, 5, 4, 4)}, str(wrong))
    with pytest.raises(ValueError, match=rf"{wrong}: 'latents' has shape \[768, 5, 4, 4\], expected"):
        training_data(out)
    wrong.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{wrong}: latent file not found .*captions.jsonl:2"):
        training_data(out)
    with pytest.raises(FileNotFoundError, match=r"neither dataset.json .* nor data.mdb"):
        training_data(tmp_path)


def test_recipe_validation_of_the_latents_kind(tmp_path: Path) -> None:
    def problems(data: dict[str, object]) -> str:
        path = tmp_path / "ar.yaml"
        path.write_text(yaml.safe_dump({**RECIPES["ar"], "data": data}))
        with pytest.raises(ConfigError) as error:
            load_recipe(path)
        return str(error.value)

    assert "needs data.path" in problems({"kind": "latents"})
    assert "data.prompts is not for data.kind 'latents'" in problems(
        {"kind": "latents", "path": "x", "prompts": "p"}
    )
    assert "data.path is for data.kind 'latents'" in problems({"kind": "sprites", "path": "x"})
    assert "datapath" in problems({"kind": "latents", "datapath": "x"})  # extra=forbid


def write_release_lmdb(root: Path, rows: list[np.ndarray], shape: str) -> None:
    """Causal-Forcing's clean_data layout: float16 frames-first rows, prompts, ASCII shapes."""
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(root), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, row in enumerate(rows):
            txn.put(f"latents_{i}_data".encode(), row.astype(np.float16).tobytes())
            txn.put(f"prompts_{i}_data".encode(), f"prompt {i}".encode())
        txn.put(b"latents_shape", shape.encode())
        txn.put(b"prompts_shape", str(len(rows)).encode())
    env.close()


def test_release_lmdb_is_read_in_place(tmp_path: Path) -> None:
    rows = [np.random.default_rng(i).standard_normal((1, 6, 768, 4, 4)) for i in range(3)]  # [1, F, C, h, w]
    write_release_lmdb(tmp_path / "clean_data", rows, "3 1 6 768 4 4")
    data = training_data(tmp_path / "clean_data")
    for step in range(3):
        (index,) = data.indices(step, 0)
        batch = data.batch(step)
        want = torch.from_numpy(rows[index][-1].astype(np.float16).astype(np.float32)).permute(1, 0, 2, 3)
        assert batch.latents is not None and torch.equal(batch.latents[0], want)
        assert batch.prompts == [f"prompt {index}"]

    write_release_lmdb(tmp_path / "wrong", rows, "3 1 5 768 4 4")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'wrong/data.mdb'}: latents_shape is \[3, 1, 5, 768"):
        training_data(tmp_path / "wrong")


def test_an_lmdb_without_the_lmdb_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data.mdb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)  # as if not installed
    with pytest.raises(ImportError, match=r"is an LMDB; .* pip install 'video-mirai-harness\[lmdb\]'"):
        training_data(tmp_path)
