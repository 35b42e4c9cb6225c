"""Shared fixtures: tiny configurations of the real model classes (diffusers' Wan geometry at toy width)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _same_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test leaves the working directory where it found it: several change into a project
    folder, and a later module reading `manifests/...` from the repository must not depend on the
    order the modules ran in."""
    monkeypatch.chdir(Path.cwd())


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny forwards are launch-bound: one thread is several times faster on a shared CPU.

    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_rank_group() -> Iterator[None]:
    """A gloo process group of this process alone, so FSDP2 code paths run in-process on the CPU."""
    import socket

    import torch.distributed as dist

    from mirai_train import parallel

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    parallel._mesh.cache_clear()  # its mesh belonged to the group just destroyed


@pytest.fixture(scope="session")
def toy_scorers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy profile's weight file, trained once per session on a reduced schedule of its recipe."""
    from mirai_eval.scoring.toy_training import train_scorers
    from mirai_eval.scoring.toy_weights import RECIPE

    folder = tmp_path_factory.mktemp("toy_scorers")
    recipe = RECIPE.read_text()
    for full, reduced in TOY_SCORERS_SCHEDULE.items():
        assert full in recipe, f"{RECIPE} no longer has {full!r}; update the reduced schedule"
        recipe = recipe.replace(full, reduced)
    (folder / "scorers.yaml").write_text(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_scorers(folder / "scorers.yaml", folder)
    finally:
        torch.set_num_threads(threads)


TOY_SCORERS_SCHEDULE = {
    "num_clips: 768": "num_clips: 192",
    "encoder_steps: 400": "encoder_steps: 200",
    "videotext_steps: 300": "videotext_steps: 120",
    "detector_steps: 1000": "detector_steps: 700",
}
