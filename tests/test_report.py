"""The HTML report: its files, its escaping, and (with Debian's chromium) that tables render and videos load."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirai_eval.tables.build import build_table
from mirai_eval.tables.report import write_report
from mirai_eval.tables.spec import TableSpec
from mirai_train.video import write_mp4
from tests.test_tables import BASE, MIRAI, make_rows, noisy

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = 'Causal-Forcing <b>&</b> "chunk"'


def _video(path: Path, shift: int) -> None:
    """A square moving over 16 frames at 64x64, so a browser has something to decode."""
    frames = np.full((16, 64, 64, 3), 40, dtype=np.uint8)
    for t in range(16):
        frames[t, 20:36, 2 * t + shift : 2 * t + shift + 16] = (200, 60, 60)
    write_mp4(path, frames, fps=8)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    models = ((HOSTILE, None), (MIRAI, HOSTILE))
    rows = make_rows(noisy(0.02), models=models, prompts=8)
    videos = {}
    for i, key in enumerate(rows.loc[rows["prompt_index"] == 0, "video"].unique()):
        videos[key] = tmp / "store" / f"video-{i}.mp4"
        _video(videos[key], shift=i)
    group = {"rows": [{"model": HOSTILE}, {"model": MIRAI, "label": "+ Video-Mirai", "baseline": HOSTILE}]}
    table1 = TableSpec(name="table1", kind="table1", title="Table 1", groups=[group])  # type: ignore[arg-type]
    rvr = TableSpec(
        name="rvr",
        kind="reported_vs_reproduced",
        title="Reported vs reproduced",
        groups=[group],  # type: ignore[list-item]
        reported="table1",
    )
    tables = [build_table(rows, spec, scale="toy", scorer_signature="toy-sig") for spec in (table1, rvr)]
    # Crafted per-window consistency at 30 s: the method drifts less than its baseline.
    windowed = (rows["horizon"] == "30s") & rows["dimension"].isin(
        ["subject_consistency", "background_consistency"]
    )
    slopes = rows["model"].map({HOSTILE: 0.02, MIRAI: 0.01})
    rows["windows"] = [
        [0.95 - slope * c for c in range(6)] if on else None
        for on, slope in zip(windowed, slopes, strict=True)
    ]
    rows["window_seconds"] = [5.0 if on else None for on in windowed]
    probe = tmp / "probe.png"
    import matplotlib.pyplot as plt

    plt.imsave(probe, np.linspace(0, 1, 32 * 96).reshape(32, 96), cmap="viridis")
    return write_report(tmp / "out", tables, rows, videos, probe_images={"Readout at look-ahead 1..3": probe})


def test_report_is_self_contained_and_escaped(report: Path) -> None:
    html = report.read_text()
    sources = re.findall(r'<video [^>]*src="([^"]+)"', html)
    assert len(sources) == 8  # 2 (prompt, seed) pairs x 2 horizons x (baseline, method)
    assert all((report.parent / src).is_file() for src in sources)
    assert html.count("<table>") == 2 and html.count("<tbody>") == 2
    assert (report.parent / "plots" / "drift-0.png").is_file()
    assert (report.parent / "probes" / "probe-0.png").is_file()
    assert "Causal-Forcing &lt;b&gt;&amp;&lt;/b&gt; &#34;chunk&#34;" in html and "<b>&</b>" not in html
    assert "not comparable with the paper" in html
    assert html.count('class="best"') >= 6


def test_missing_videos_are_named_not_hidden(tmp_path: Path) -> None:
    rows = make_rows(noisy(0.0), models=((BASE, None), (MIRAI, BASE)), prompts=2, samples=1)
    index = write_report(tmp_path, [], rows, videos={})
    html = index.read_text()
    assert html.count("not found</p>") == 8 and "<video" not in html
    assert "No drift data" in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium")
def test_chromium_renders_tables_and_loads_videos(report: Path) -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--virtual-time-budget=8000"]
    url = report.as_uri()
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert dom.count("<table>") == 2
    cells = re.findall(r"<td>", dom)
    assert len(cells) == 2 * 6 + 2 * 18  # table 1: 6 columns; reported vs reproduced: 3 per column
    assert dom.count('data-loaded="yes"') == 8, re.findall(r"<video[^>]*>", dom)
    screenshot = Path(os.environ.get("REPORT_SCREENSHOT", report.parent / "screenshot.png"))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(CHROMIUM),
            *flags,
            "--hide-scrollbars",
            "--window-size=1400,3700",
            f"--screenshot={screenshot}",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def test_a_rescored_horizon_adds_no_video_row(tmp_path: Path) -> None:
    """A horizon that rescores another's videos (per clip) shows each video once, beside the others."""
    from mirai_eval.tables.report import side_by_side

    rows = make_rows(noisy(0.02), prompts=2, samples=1)
    clips = rows[rows["horizon"] == "30s"].assign(horizon="30s_clips")
    pairs = side_by_side(pd.concat([rows, clips]), {}, tmp_path)
    assert pairs and all([c.horizon for c, _ in pair.rows] == ["5s", "30s"] for pair in pairs)
