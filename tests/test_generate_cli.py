"""`mirai-train init` then `mirai-eval generate`, decoded back with decord."""

from __future__ import annotations

from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mirai_eval.cli import app as eval_app
from mirai_eval.generate import Generator
from mirai_train.cli import app as train_app

TOY = Path(__file__).parents[1] / "mirai_train" / "configs" / "toy" / "generator_chunkwise.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "toy"
    result = runner.invoke(train_app, ["init", "--config", str(TOY), "--out", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    return out


def _generate(checkpoint: Path, out: Path, seconds: float, seed: int) -> np.ndarray:
    args = ["generate", "--checkpoint", str(checkpoint), "--prompt", "a red circle over a green floor"]
    result = runner.invoke(
        eval_app, [*args, "--seconds", str(seconds), "--seed", str(seed), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    reader = decord.VideoReader(str(out))
    assert reader.get_avg_fps() == pytest.approx(16.0)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def test_five_seconds_is_81_frames_at_16_fps(checkpoint: Path, tmp_path: Path) -> None:
    frames = _generate(checkpoint, tmp_path / "a.mp4", 5, seed=0)
    assert frames.shape == (81, 64, 64, 3)  # 5.06 s: Wan's 1 + 4 * 20 frames


def test_same_seed_same_frames(checkpoint: Path, tmp_path: Path) -> None:
    a = _generate(checkpoint, tmp_path / "a.mp4", 1, seed=3)
    b = _generate(checkpoint, tmp_path / "b.mp4", 1, seed=3)
    c = _generate(checkpoint, tmp_path / "c.mp4", 1, seed=4)
    assert a.shape == (21, 64, 64, 3)  # 1 s -> 6 latent frames (two blocks of 3) -> 21 frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_a_batched_rollout_gives_each_prompt_its_batch_one_video(
    checkpoint: Path, guidance_scale: float
) -> None:
    """Frames within one level of the batch-1 twin's, on a few pixels at most (the rounding of batched
    kernels; measured: 1e-5 of the pixels), with and without guidance's negative branch."""
    generator = Generator.load(checkpoint)
    sampler = generator.spec.sampler.model_copy(update={"guidance_scale": guidance_scale})
    generator.spec = generator.spec.model_copy(update={"sampler": sampler})
    prompts, seeds = ["a red circle", "a blue square over a green floor", "a purple star"], [3, 4, 5]
    videos = generator.generate_batch(prompts, 1, seeds)
    for prompt, seed, video in zip(prompts, seeds, videos, strict=True):
        difference = (video.int() - generator.generate(prompt, 1, seed).int()).abs()
        assert difference.max() <= 1 and (difference > 0).float().mean() < 1e-3
    assert not torch.equal(videos[0], videos[1])
    with pytest.raises(ValueError, match="one seed per prompt"):
        generator.generate_batch(prompts, 1, seeds[:2])


def test_bf16_generation_tracks_float32(checkpoint: Path) -> None:
    """The generator and codec in bfloat16 (how the releases generate on GPUs): frames a level or so
    from float32's on average (measured 1.1 of 255 on this random model)."""
    video = Generator.load(checkpoint).generate("a red circle", 1, 3)
    half = Generator.load(checkpoint, dtype=torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert (half.generate("a red circle", 1, 3).float() - video.float()).abs().mean() < 3


@pytest.mark.slow
def test_thirty_seconds_through_the_rolling_sink(checkpoint: Path, tmp_path: Path) -> None:
    frames = _generate(checkpoint, tmp_path / "long.mp4", 30, seed=0)
    assert frames.shape == (489, 64, 64, 3)  # 123 latent frames, as Rolling Sink's 30 s clips


def test_bad_checkpoint_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "metadata.json"):
        (broken / name).write_bytes((checkpoint / name).read_bytes())
    args = ["generate", "--checkpoint", str(broken), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 1
    assert "generator.safetensors" in result.output
    assert not (tmp_path / "x.mp4").exists()
