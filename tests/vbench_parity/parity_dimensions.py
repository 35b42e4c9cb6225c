"""Our native dimensions against the vbench package's own functions: same mp4 files, same weights.

Run by `nox -s vbench` (own environment with vbench 0.1.5). Per video |ours - vbench| <= 1e-4,
and the aggregates agree as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mirai_eval.scoring.base import aggregate
from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
from mirai_train.video import decode

from . import fixtures

TOL = 1e-4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="module")
def videos(workdir: Path) -> list[Path]:
    folder = workdir / "videos"
    folder.mkdir()
    return fixtures.make_videos(folder)


def _ours(name: str, videos: list[Path], weights: dict[str, str], **options: object) -> tuple[list, float]:
    plan = load_dimensions("vbench", [name], ScoringOptions(weights=weights, batch_size=5, **options))  # type: ignore[arg-type]
    dimension = plan.native[name]
    scores = [dimension.score(decode(p), fixtures.STYLE_PROMPT) for p in videos]
    return scores, aggregate(scores, dimension.aggregation)


def _compare(ours: list, agg: float, theirs: list[dict], their_agg: float, videos: list[Path]) -> None:
    assert [Path(r["video_path"]).name for r in theirs] == [p.name for p in videos]
    for mine, their in zip(ours, theirs, strict=True):
        assert abs(mine.value - float(their["video_results"])) <= TOL, (mine.value, their["video_results"])
    assert abs(agg - float(their_agg)) <= TOL


def test_subject_consistency(videos: list[Path], workdir: Path) -> None:
    from vbench.subject_consistency import subject_consistency

    weights = fixtures.dino_weights(workdir)
    if not fixtures.HUB_DINO.is_dir():
        pytest.skip(f"DINO's hub code is not at {fixtures.HUB_DINO} (VBench clones it there)")
    theirs_model = torch.hub.load(str(fixtures.HUB_DINO), "dino_vitb16", source="local", pretrained=False)
    theirs_model.load_state_dict(torch.load(weights, weights_only=True))
    their_agg, theirs = subject_consistency(theirs_model.eval(), [str(p) for p in videos], "cpu", False)
    ours, agg = _ours("subject_consistency", videos, {"dino_vitb16": str(weights)})
    assert min(s.value for s in ours) < 0.999  # the random network must still see the motion
    _compare(ours, agg, theirs, their_agg, videos)


def test_background_consistency(videos: list[Path], workdir: Path) -> None:
    import clip
    from vbench.background_consistency import background_consistency

    weights = fixtures.clip_weights(workdir, large=False)
    model, preprocess = clip.load(str(weights), device="cpu")
    their_agg, theirs = background_consistency(model, preprocess, [str(p) for p in videos], "cpu", False)
    ours, agg = _ours("background_consistency", videos, {"clip_vitb32": str(weights)})
    assert min(s.value for s in ours) < 0.999
    _compare(ours, agg, theirs, their_agg, videos)


def test_temporal_flickering(videos: list[Path]) -> None:
    from vbench.temporal_flickering import temporal_flickering

    their_agg, theirs = temporal_flickering([str(p) for p in videos])
    ours, agg = _ours("temporal_flickering", videos, {})
    _compare(ours, agg, theirs, their_agg, videos)


def test_dynamic_degree(videos: list[Path], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from easydict import EasyDict
    from vbench.dynamic_degree import DynamicDegree

    weights = fixtures.raft_weights(workdir)
    recorded: list[list[float]] = []
    original = DynamicDegree.check_move
    monkeypatch.setattr(DynamicDegree, "check_move", lambda self, s: recorded.append(s) or original(self, s))
    theirs = DynamicDegree(
        EasyDict(model=str(weights), small=False, mixed_precision=False, alternate_corr=False), "cpu"
    )
    their_moving = [theirs.infer(str(p)) for p in videos]
    plan = load_dimensions(
        "vbench", ["dynamic_degree"], ScoringOptions(weights={"raft_things": str(weights)})
    )
    dimension = plan.native["dynamic_degree"]
    for path, their_scores, moving in zip(videos, recorded, their_moving, strict=True):
        video = decode(path)
        ours = dimension.pair_scores(video)  # type: ignore[attr-defined]
        assert ours == pytest.approx(their_scores, rel=1e-4, abs=TOL)
        assert dimension.score(video, "").value == float(moving)


def test_aesthetic_quality(videos: list[Path], workdir: Path) -> None:
    import clip
    from vbench.aesthetic_quality import laion_aesthetic

    weights = fixtures.clip_weights(workdir, large=True)
    head = torch.nn.Linear(768, 1)
    fixtures.randomise(head, 5, std=1.0)
    head_path = workdir / "sa_0_4_vit_l_14_linear.pth"
    torch.save(head.state_dict(), head_path)
    model, _ = clip.load(str(weights), device="cpu")
    their_agg, theirs = laion_aesthetic(head.eval(), model, [str(p) for p in videos], "cpu")
    del model
    ours, agg = _ours(
        "aesthetic_quality", videos, {"clip_vitl14": str(weights), "aesthetic_head": str(head_path)}
    )
    _compare(ours, agg, theirs, their_agg, videos)


def test_appearance_style(videos: list[Path], workdir: Path) -> None:
    import clip
    import vbench
    from vbench.appearance_style import appearance_style

    weights = workdir / "ViT-B-32.pt"
    if not weights.is_file():
        weights = fixtures.clip_weights(workdir, large=False)
    model, _ = clip.load(str(weights), device="cpu")
    info = [
        {
            "prompt": fixtures.STYLE_PROMPT,
            "video_list": [str(p) for p in videos],
            "auxiliary_info": {"appearance_style": fixtures.STYLE},
        }
    ]
    their_agg, theirs = appearance_style(model, info, "cpu")
    full_info = Path(vbench.__file__).parent / "VBench_full_info.json"
    ours, agg = _ours("appearance_style", videos, {"clip_vitb32": str(weights)}, full_info=full_info)
    _compare(ours, agg, theirs, their_agg, videos)
    for mine, their in zip(ours, theirs, strict=True):
        assert mine.frames == pytest.approx(their["frame_results"], abs=TOL)


def test_delegation_merges_vbench_results_by_video(workdir: Path) -> None:
    """The subprocess path end to end, on the one dimension vbench computes without weights."""
    import sys

    from mirai_eval.scoring.delegate import run_vbench

    folder = workdir / "standard"
    folder.mkdir()
    paths = fixtures.make_videos(folder, prompt="In a still frame, a stop sign")
    results = run_vbench(paths, ["temporal_flickering"], Path(sys.executable))
    ours, agg = _ours("temporal_flickering", paths, {})
    delegated = results["temporal_flickering"]
    assert sorted(delegated.per_video) == sorted(p.name for p in paths)
    for path, mine in zip(paths, ours, strict=True):
        assert abs(delegated.per_video[path.name] - mine.value) <= TOL
    assert abs(delegated.aggregate - agg) <= TOL


def test_imaging_quality(videos: list[Path], workdir: Path) -> None:
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.imaging_quality import technical_quality

    from mirai_eval.scoring.backbones.musiq import Musiq

    model = Musiq()
    fixtures.randomise(model, 6)
    path = workdir / "musiq_spaq_ckpt-358bb6af.pth"
    torch.save(model.state_dict(), path)
    theirs_model = MUSIQ(pretrained_model_path=str(path))
    theirs_model.training = False
    their_agg, theirs = technical_quality(theirs_model, [str(p) for p in videos], "cpu")
    ours, agg = _ours("imaging_quality", videos, {"musiq_spaq": str(path)})
    # vbench keeps per-video values on 0-100 and divides only the aggregate by 100.
    scaled = [dict(r, video_results=r["video_results"] / 100) for r in theirs]
    _compare(ours, agg, scaled, their_agg, videos)


def test_temporal_style_and_overall_consistency(videos: list[Path], workdir: Path) -> None:
    import os
    import shutil

    import clip

    cache = os.environ.get("VBENCH_CACHE_DIR")
    if not cache:
        pytest.skip(
            "set VBENCH_CACHE_DIR (the nox session does): vbench's ViCLIP reads its BPE file from there"
        )
    bpe = Path(cache) / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz"
    bpe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz", bpe)
    from vbench.overall_consistency import overall_consistency
    from vbench.temporal_style import temporal_style
    from vbench.third_party.ViCLIP.simple_tokenizer import SimpleTokenizer
    from vbench.third_party.ViCLIP.viclip import ViCLIP

    from mirai_eval.scoring.backbones.viclip import ViClip

    model = ViClip()
    fixtures.randomise(model, 7)
    path = workdir / "ViClip-InternVid-10M-FLT.pth"
    torch.save({"model": model.state_dict()}, path)
    tokenizer = SimpleTokenizer(str(bpe))
    theirs_model = ViCLIP(tokenizer=tokenizer, pretrain=None)
    theirs_model.load_state_dict(torch.load(path, weights_only=True)["model"])
    info = [{"prompt": fixtures.STYLE_PROMPT, "video_list": [str(p) for p in videos]}]
    plan = load_dimensions(
        "vbench", ["temporal_style", "overall_consistency"], ScoringOptions(weights={"viclip": str(path)})
    )
    for name, function in (("temporal_style", temporal_style), ("overall_consistency", overall_consistency)):
        their_agg, theirs = function(theirs_model, info, tokenizer, "cpu")
        dimension = plan.native[name]
        ours = [dimension.score(decode(p), fixtures.STYLE_PROMPT) for p in videos]
        _compare(ours, aggregate(ours, dimension.aggregation), theirs, their_agg, videos)


def test_motion_smoothness(videos: list[Path], workdir: Path) -> None:
    import vbench
    from vbench.motion_smoothness import MotionSmoothness, motion_smoothness

    from mirai_eval.scoring.backbones.amt import load_amt
    from mirai_eval.scoring.motion import centred_padding
    from mirai_train.video import write_mp4

    # Besides the shared videos: an odd frame count, and the smallest sides AMT-S handles (pad to 128).
    odd = workdir / "motion" / f"{fixtures.STYLE_PROMPT}-2.mp4"
    write_mp4(odd, fixtures.moving_video(2, 11, 114, 146, 4.0), fps=8)
    paths = [*videos, odd]
    weights = fixtures.amt_weights(workdir)
    config = Path(vbench.__file__).parent / "third_party" / "amt" / "cfgs" / "AMT-S.yaml"
    theirs_model = MotionSmoothness(str(config), str(weights), "cpu")
    their_agg, theirs = motion_smoothness(theirs_model, [str(p) for p in paths])
    ours, agg = _ours("motion_smoothness", paths, {"amt_s": str(weights)})
    assert max(s.value for s in ours) < 0.99  # the random interpolator must not return a real frame
    _compare(ours, agg, theirs, their_agg, paths)

    # The interpolated frames themselves, before the uint8 truncation hides small differences.
    even = decode(paths[1]).frames[0:5:2].permute(0, 3, 1, 2) / 255.0
    even = torch.nn.functional.pad(even, centred_padding(*even.shape[-2:]), mode="replicate")
    half = torch.full((1, 1, 1, 1), 0.5)
    with torch.inference_mode():
        mine = load_amt(weights)(even[:-1], even[1:])
        their = [theirs_model.model(even[i : i + 1], even[i + 1 : i + 2], half, eval=True) for i in range(2)]
    assert (mine - torch.cat([t["imgt_pred"] for t in their])).abs().max() <= TOL


def test_vbench_format_export_reads_back_as_vbench_wrote_it(workdir: Path) -> None:
    """`mirai-eval score --vbench-format` beside the file the vbench package itself writes for the
    same videos (its `VBench.evaluate`, through our worker): the same layout, per-video values and
    aggregates read by the package's own `load_json`, hence the same final score."""
    import subprocess
    import sys

    from typer.testing import CliRunner
    from vbench.utils import load_json

    from mirai_eval.cli import app
    from mirai_eval.scoring.delegate import WORKER
    from mirai_eval.scoring.final import final_score

    folder = workdir / "export"
    folder.mkdir()
    paths = fixtures.make_videos(folder, prompt="In a still frame, a stop sign")
    theirs_dir = workdir / "export-vbench"
    command = [sys.executable, str(WORKER), "--videos", str(folder), "--out", str(theirs_dir)]
    subprocess.run([*command, "--dims", "temporal_flickering"], check=True, capture_output=True)
    out = workdir / "export-ours" / "ours.json"
    out.parent.mkdir()
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--videos",
            str(folder),
            "--out",
            str(out),
            "--dims",
            "temporal_flickering",
            "--vbench-format",
        ],
    )
    assert result.exit_code == 0, result.output
    theirs = load_json(str(theirs_dir / "delegated_eval_results.json"))
    ours = load_json(str(out.parent / "ours_eval_results.json"))
    assert sorted(ours) == sorted(theirs) == ["temporal_flickering"]
    their_agg, their_videos = theirs["temporal_flickering"]
    our_agg, our_videos = ours["temporal_flickering"]
    assert abs(our_agg - their_agg) <= TOL
    by_name = {Path(v["video_path"]).name: v["video_results"] for v in their_videos}
    assert (
        sorted(Path(v["video_path"]).name for v in our_videos)
        == sorted(by_name)
        == sorted(p.name for p in paths)
    )
    for video in our_videos:
        assert abs(video["video_results"] - by_name[Path(video["video_path"]).name]) <= TOL
    mine = final_score({d: v[0] for d, v in ours.items()}, "reweight")
    theirs_final = final_score({d: v[0] for d, v in theirs.items()}, "reweight")
    assert mine.quality is not None and theirs_final.quality is not None
    assert abs(mine.quality - theirs_final.quality) <= TOL
