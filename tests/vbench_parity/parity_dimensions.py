"""Our native dimensions against the vbench package's own functions: same mp4 files, same weights.

Run by `nox -s vbench` (own environment with vbench 0.1.5). Per video |ours - vbench| <= 1e-4,
and the aggregates agree as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mirai_eval.scoring.base import aggregate
from mirai_eval.scoring.profiles import ScoringOptions, build_plan
from mirai_eval.video import decode

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
    plan = build_plan("vbench", [name], ScoringOptions(weights=weights, batch_size=5, **options))  # type: ignore[arg-type]
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
    plan = build_plan("vbench", ["dynamic_degree"], ScoringOptions(weights={"raft_things": str(weights)}))
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
