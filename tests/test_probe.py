"""The foresight readout probe: readout, token/patch mapping, collapse baseline, branching, sprites, CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mirai_eval.cli import app as eval_app
from mirai_eval.generate import Generator
from mirai_eval.probe.measure import Frozen, collapse_blocks, segment_errors
from mirai_eval.probe.readout import fit_readout, latent_patches, patches_to_latents
from mirai_eval.probe.spec import ProbeSpec, ReadoutSpec
from mirai_eval.probe.sprites import sprite_positions, tally_positions
from mirai_train.cli import app as train_app
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.world import SpritesConfig, heldout_prompts, render, sample_scene, tracks
from tests.conftest import TINY_TRANSFORMER

TOY = Path(__file__).parents[1] / "mirai_train" / "configs" / "toy" / "generator_chunkwise.yaml"
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe")
    made = {}
    for label, seed in (("baseline", 0), ("mirai", 1)):
        out = root / label
        result = runner.invoke(
            train_app, ["init", "--config", str(TOY), "--out", str(out), "--seed", str(seed)]
        )
        assert result.exit_code == 0, result.output
        made[label] = out
    return made


@pytest.fixture(scope="module")
def pixel_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy generator on the weightless pixel codec, whose latents are the pixels: exact greys."""
    root = tmp_path_factory.mktemp("probe_pixel")
    spec = yaml.safe_load(TOY.read_text())
    spec["codec"] = {"kind": "pixel", "spatial_factor": 8, "temporal_factor": 4, "latent_channels": 768}
    spec["transformer"] |= {"in_channels": 768, "out_channels": 768}
    (root / "generator.yaml").write_text(yaml.safe_dump(spec))
    result = runner.invoke(
        train_app, ["init", "--config", str(root / "generator.yaml"), "--out", str(root / "ckpt")]
    )
    assert result.exit_code == 0, result.output
    return root / "ckpt"


def test_readout_recovers_a_known_function_of_the_hidden_state() -> None:
    """The future is tanh(W h): a readout fitted on 3000 tokens predicts unseen ones far below the
    variance; the same readout on targets unrelated to h does not (so the first is not luck)."""
    rng = torch.Generator().manual_seed(0)
    weights = torch.randn(16, 24, generator=rng) / 4

    def future(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h @ weights) + 0.5

    train, test = torch.randn(3000, 16, generator=rng), torch.randn(500, 16, generator=rng)
    spec = ReadoutSpec(hidden=128, steps=1000, lr=1e-2)
    readout, fit = fit_readout(train, future(train), spec, seed=0)
    variance = float(future(test).var(0).mean())
    error = float(((readout(test) - future(test)) ** 2).mean())
    assert error < 0.02 * variance
    assert fit.last_loss < 0.1 * fit.first_loss

    unrelated, _ = fit_readout(train, future(torch.randn(3000, 16, generator=rng)), spec, seed=0)
    assert float(((unrelated(test) - future(test)) ** 2).mean()) > 0.8 * variance


def test_readout_is_a_function_of_its_data_and_seed() -> None:
    inputs, targets = torch.randn(200, 8), torch.randn(200, 5)
    spec = ReadoutSpec(hidden=16, steps=20)
    state = torch.random.get_rng_state()
    a, fit_a = fit_readout(inputs, targets, spec, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    b, fit_b = fit_readout(inputs, targets, spec, seed=3)
    c, _ = fit_readout(inputs, targets, spec, seed=4)
    probe = torch.randn(10, 8)
    assert torch.equal(a(probe), b(probe)) and fit_a == fit_b
    assert not torch.equal(a(probe), c(probe))


def test_tokens_are_the_models_patches_in_its_order() -> None:
    """Token n of the patch embedding is a linear function of patch n of `latent_patches` alone."""
    model = CausalWanTransformer(**TINY_TRANSFORMER, num_frame_per_block=3)
    latents = torch.randn(2, 16, 6, 8, 10)
    tokens = model.patch_embedding(latents).flatten(2).transpose(1, 2)
    conv = model.patch_embedding
    patches = latent_patches(latents, model.patch)
    assert torch.allclose(tokens, patches @ conv.weight.flatten(1).T + conv.bias, atol=1e-5)
    assert torch.equal(patches_to_latents(patches, 16, 6, 8, 10, model.patch), latents)


def test_collapse_baseline_and_frame_window(pixel_checkpoint: Path) -> None:
    """Segment b of a constant grey (b / 10 in [0, 1]): showing segment i as segment i + Delta errs by
    (Delta / 10)^2 on every future frame, so its PSNR is 20 log10(10 / Delta); a perfect readout errs 0."""
    probe = Frozen(Generator.load(pixel_checkpoint), None)
    n_blocks = 5
    grey = torch.arange(n_blocks, dtype=torch.float32) / 10 * 2 - 1  # latents in [-1, 1]
    latents = grey.view(1, 1, n_blocks, 1, 1, 1).expand(1, 768, n_blocks, 3, 8, 8).flatten(2, 3)
    truth = probe.blocks(latents)
    for delta in (1, 2, 3):
        errors = segment_errors(probe, truth, truth, delta)
        assert errors.readout_future == 0
        assert errors.current_future == pytest.approx((delta / 10) ** 2, rel=1e-6)
        assert errors.readout_current == pytest.approx((delta / 10) ** 2, rel=1e-6)
        shifted = collapse_blocks(truth, delta)
        assert torch.equal(shifted[:delta], truth[:delta]) and torch.equal(shifted[delta:], truth[:-delta])
    assert probe.first_frame(1) == 9 and probe.first_frame(2) == 21  # 1 + 4 + 4 frames, then 12 per segment


def test_branches_share_their_context_and_differ_after(checkpoints: dict[str, Path]) -> None:
    probe = Frozen(Generator.load(checkpoints["baseline"]), None)
    assert (probe.layer, probe.tap) == (2, 3)  # mid-depth of 4 blocks, as the toy recipes' student layer
    prompt = "a red circle moving on a blue background"
    a_latents, a_taps = probe.rollout(prompt, 6, seed=5, branch=(1, 100))
    b_latents, b_taps = probe.rollout(prompt, 6, seed=5, branch=(1, 101))
    again, _ = probe.rollout(prompt, 6, seed=5, branch=(1, 100))
    assert torch.equal(a_latents[:, :, :3], b_latents[:, :, :3]) and torch.equal(a_taps[0], b_taps[0])
    assert not torch.allclose(a_latents[:, :, 3:], b_latents[:, :, 3:])
    assert torch.equal(a_latents, again)


def test_teacher_forced_taps_see_only_the_past(checkpoints: dict[str, Path]) -> None:
    """Changing the last segment changes no earlier segment's tokens: the readout cannot peek."""
    probe = Frozen(Generator.load(checkpoints["baseline"]), None)
    channels = probe.generator.codec.latent_channels
    latents = torch.randn(1, channels, 9, 8, 8)
    edited = latents.clone()
    edited[:, :, 6:] = torch.randn(1, channels, 3, 8, 8)
    a = probe.teacher_forced("a red circle", latents, seed=0)
    b = probe.teacher_forced("a red circle", edited, seed=0)
    assert torch.allclose(a[:2], b[:2], atol=1e-5) and not torch.allclose(a[2], b[2])


def test_sprite_positions_from_pixels() -> None:
    config = SpritesConfig()
    scene = sample_scene(heldout_prompts(1, config)[0].seed, config)
    video, track = render(scene, 41), tracks(scene, 41)
    colours = [sprite.colour for sprite in scene.objects]
    exact = tally_positions(video, track.centres, track.visible, colours)
    assert exact.detection_rate == 1.0 and exact.mean_error is not None and exact.mean_error < 0.5
    moved = np.concatenate([video[:, :, :1].repeat(5, axis=2), video[:, :, :-5]], axis=2)  # 5 px right
    before, after = sprite_positions(video, colours), sprite_positions(moved, colours)
    reach = config.max_radius * config.width + 1  # a sprite's half-width, and a pixel
    inside = (before[..., 0] > reach) & (before[..., 0] < config.width - 5 - reach)  # clear of both edges
    assert inside.sum() > 10
    assert np.allclose(after[inside] - before[inside], [5.0, 0.0], atol=1e-3)
    noise = np.random.default_rng(0).integers(0, 256, video.shape, dtype=np.uint8)
    assert np.isnan(sprite_positions(noise, colours)).all()  # scattered matches are no sprite


CONFIG = """
seconds: 1.5
max_delta: 2
train_prompts: 2
heldout_prompts: 2
average_prompts: 1
continuations: 2
readout: {hidden: 32, steps: 20}
"""


def test_probe_command_writes_tables_images_and_json(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "probe"
    args = ["probe", "--checkpoint", str(checkpoints["mirai"]), "--baseline", str(checkpoints["baseline"])]
    result = runner.invoke(eval_app, [*args, "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "probe.json").read_text())
    assert list(document["models"]) == ["baseline", "mirai"]
    for model in document["models"].values():
        assert [d["delta"] for d in model["deltas"]] == [1, 2]
        for d in model["deltas"]:
            each, average, spread = (d[k]["value"] for k in ("readout_single", "readout_average", "spread"))
            assert each == pytest.approx(average + spread, rel=1e-6)  # bias-variance: windows agree
            # PSNR is averaged per video: by Jensen at least the PSNR of the mean MSE
            assert d["current_future"]["value"] >= 10 * math.log10(1 / d["current_future_mse"]) - 1e-9
    markdown = (out / "probe.md").read_text()
    assert "| baseline | 1 |" in markdown and "| mirai | 1 |" in markdown and "|  | 2 |" in markdown
    assert (out / "probe-0.png").stat().st_size > 0
    again = runner.invoke(eval_app, [*args, "--config", str(config), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "probe.json").read_text())["models"] == document["models"]
    if shutil.which("pdflatex"):
        tex = (out / "probe.tex").read_text()
        (tmp_path / "t.tex").write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\begin{document}" + tex + "\\end{document}"
        )
        compiled = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert compiled.returncode == 0, compiled.stdout[-2000:]


def test_probe_spec_rejects_unknown_keys_and_bad_baselines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extra"):
        ProbeSpec.model_validate({"models": [{"model": "a"}], "delta": 2})
    with pytest.raises(ValueError, match="not another probed model"):
        ProbeSpec.model_validate({"models": [{"model": "a", "baseline": "b"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_delta: 0\n")
    result = runner.invoke(
        eval_app, ["probe", "--checkpoint", str(tmp_path), "--config", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "bad.yaml:1: max_delta" in result.output
