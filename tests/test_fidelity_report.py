"""`mirai-eval fidelity` on tiny random checkpoints: the ceilings, the windows, the grids and the targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirai_eval.fidelity import fidelity_report
from mirai_eval.tables.report import write_report
from mirai_train.checkpoint import Provenance, save_checkpoint
from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.spec import CodecSpec, GeneratorSpec, TextEncoderSpec, TransformerSpec, VideoSpec
from tests.conftest import TINY_TRANSFORMER
from tests.test_tables import make_rows, noisy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_checkpoint(out: Path, stage: str) -> Path:
    spec = GeneratorSpec(
        transformer=TransformerSpec(**{**TINY_TRANSFORMER, "in_channels": 192, "out_channels": 192}),
        codec=CodecSpec(kind="pixel", spatial_factor=4, latent_channels=192),
        text_encoder=TextEncoderSpec(kind="toy", dim=32, max_length=32),
        # 32x32: at 16x16 a sprite is a few pixels, and noise shows "sprites" of the named colours
        video=VideoSpec(height=32, width=32),
    )
    weights = CausalWanTransformer(**spec.transformer_kwargs()).state_dict()
    save_checkpoint(out, spec, weights, provenance=Provenance(source=f"mirai-train fit, stage {stage}"))
    return out


def test_report_of_a_teacher_and_a_student(tmp_path: Path) -> None:
    checkpoints = {
        "teacher": (tiny_checkpoint(tmp_path / "teacher", "teacher"), "teacher"),
        "student": (tiny_checkpoint(tmp_path / "student", "dmd"), "dmd"),
    }
    markdown = fidelity_report(checkpoints, tmp_path / "report", num=2, steps=4)
    rows = {
        (r["label"], r["window"]): r
        for r in json.loads((tmp_path / "report" / "fidelity.json").read_text())["rows"]
    }
    assert rows["real clips", "5s"]["measures"]["visible_of_real"] == 1.0
    pixel = rows["codec pixel", "5s"]  # the pixel codec is lossless: its ceiling is the real clips'
    assert pixel["measures"]["visible_of_real"] == 1.0 and pixel["misses"] == []
    assert rows["teacher", "30s_last_5s"]["unavailable"].startswith("many-step sampler")
    student = rows["student", "30s_last_5s"]
    assert student["measures"]["off_palette"] > 0.2  # random weights draw noise
    assert any(miss.startswith("visible_of_real") for miss in student["misses"])
    for row in rows.values():
        assert (row["grid"] is None) == (row["kind"] == "real" or row["unavailable"] is not None)
        if row["grid"]:
            assert (tmp_path / "report" / row["grid"]).is_file()
    text = markdown.read_text()
    assert "| codec pixel | 5s | " in text and "met |" in text and "missed: visible\\_of\\_real" in text
    # The HTML report shows the same table and every grid, copied next to index.html.
    index = write_report(
        tmp_path / "html", [], make_rows(noisy(0.0), prompts=2), {}, fidelity=tmp_path / "report"
    )
    html = index.read_text()
    assert "Ground-truth fidelity (toy scale)" in html and "<td>codec pixel</td>" in html
    grids = [Path(row["grid"]).name for row in rows.values() if row["grid"]]
    assert grids and all((tmp_path / "html" / "fidelity" / name).is_file() for name in grids)
    assert all(f'src="fidelity/{name}"' in html for name in grids)
