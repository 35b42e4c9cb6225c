"""`mirai-eval run` end to end on tiny checkpoints: SIGKILL and resume, shards, cached reruns, and the wan
Table 1 manifest through every stage with tiny stand-ins for its checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mirai_eval.cli import app
from mirai_eval.manifest import TrainSource, load_manifest
from mirai_eval.pipeline.score import OUTSIDE_SUITE
from mirai_eval.scoring.dimensions import EXCLUDED
from mirai_eval.scoring.profiles import TOY_UNAVAILABLE
from mirai_eval.scoring.toy_weights import stored_weights
from mirai_eval.tables.rows import slug
from mirai_eval.tables.windows import summaries
from mirai_train.cli import app as train_app
from tests.test_probe import CONFIG as PROBE_CONFIG

runner = CliRunner()
ROOT = Path(__file__).parents[1]
SHARED_PROMPTS = Path("/work/shared/data/prompts")
SPEC = """\
transformer: {patch_size: [1, 2, 2], num_attention_heads: 2, attention_head_dim: 12, in_channels: 192,
  out_channels: 192, text_dim: 32, freq_dim: 32, ffn_dim: 32, num_layers: 2, rope_max_seq_len: 32,
  num_frame_per_block: 3}
codec: {kind: pixel, spatial_factor: 4, temporal_factor: 4, latent_channels: 192}
text_encoder: {kind: toy, dim: 32, max_length: 16}
video: {fps: 16, height: 32, width: 32, train_latent_frames: 3}
rolling_sink: {window_frames: 6, sweep_frames: 3}
"""
# "long" rolls past the 3-latent-frame training horizon, so it goes through the Rolling Sink.
MANIFEST = """\
name: tiny
scale: toy
store: {store}
out: {out}
generation: {{batch_size: {batch_size}}}
scoring: {{profile: toy}}
prompt_sets:
  p: {{path: prompts.txt, sha256: {sha}}}
horizons:
  5s: {{seconds: 0.5, prompts: p, samples_per_prompt: 2, dimensions: [temporal_flickering, human_action]}}
  30s: {{seconds: 1.5, prompts: p, samples_per_prompt: 1, seed_base: 100, dimensions: [temporal_flickering]}}
models:
  - {{label: Base, group: g, checkpoint: ck/base}}
  - {{label: Base + Video-Mirai, group: g, baseline: Base, checkpoint: ck/method}}
tables:
  - name: tiny
    kind: table1
    title: Tiny
    columns: [{{metric: temporal_flickering, horizon: 5s}}, {{metric: temporal_flickering, horizon: 30s}}]
    groups: [{{rows: [{{model: Base}}, {{model: Base + Video-Mirai, baseline: Base}}]}}]
"""
VIDEOS = 2 * (2 * 2 + 2 * 1)  # models x (prompts x samples, per horizon)
KILLER = """\
import os, signal, sys
from mirai_eval.cli import app
from mirai_eval.generate import Generator
from mirai_eval.scoring.flicker import TemporalFlickering

stage, after = sys.argv[1], int(sys.argv[2])
calls = [0]
if stage == "generate":
    original = Generator.generate_batch
    def generate_batch(self, prompts, seconds, seeds, on_block=None):
        calls[0] += 1
        def die(done, total):
            if calls[0] > after and done >= 1:
                os.kill(os.getpid(), signal.SIGKILL)  # in the middle of this rollout
        return original(self, prompts, seconds, seeds, on_block=die)
    Generator.generate_batch = generate_batch
else:
    score = TemporalFlickering.score
    def killing_score(self, video, prompt):
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)  # the video is decoded, its score not yet written
        return score(self, video, prompt)
    TemporalFlickering.score = killing_score
app(sys.argv[3:])
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "spec.yaml").write_text(SPEC)
    for name, seed in (("base", "0"), ("method", "1")):
        out = str(root / "ck" / name)
        result = runner.invoke(
            train_app, ["init", "--config", str(root / "spec.yaml"), "--out", out, "--seed", seed]
        )
        assert result.exit_code == 0, result.output
    (root / "prompts.txt").write_text("a red circle\na blue square\n")
    return root


def manifest(project: Path, name: str, batch_size: int = 1) -> Path:
    sha = hashlib.sha256((project / "prompts.txt").read_bytes()).hexdigest()
    path = project / f"{name}.yaml"
    path.write_text(MANIFEST.format(store=f"store-{name}", out=f"out-{name}", sha=sha, batch_size=batch_size))
    return path


def run(project: Path, name: str, *args: str, batch_size: int = 1) -> dict[str, object] | None:
    os.chdir(project)
    result = runner.invoke(app, ["run", "--manifest", str(manifest(project, name, batch_size)), *args])
    assert result.exit_code == 0, result.output
    path = project / f"out-{name}" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def snapshot(store: Path) -> dict[str, tuple[int, int]]:
    """Every finished file with its inode and mtime: a rewrite would change them."""
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in store.rglob("*")
        if p.suffix in (".mp4", ".json")
    }


@pytest.fixture(scope="module")
def reference(project: Path) -> bytes:
    cwd = os.getcwd()
    try:
        results = run(project, "reference")
    finally:
        os.chdir(cwd)
    assert results is not None
    assert results["timings"]["counts"]["generated"] == VIDEOS  # type: ignore[index]
    assert (project / "out-reference" / "tables" / "tiny.md").is_file()
    return (project / "out-reference" / "rows.jsonl").read_bytes()


def test_sigkill_mid_generation_and_mid_scoring_then_resume(
    project: Path, reference: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    killer = project / "killer.py"
    killer.write_text(KILLER)
    path = manifest(project, "killed")
    store = project / "store-killed"

    def killed_run(stage: str, after: int) -> None:
        command = [sys.executable, str(killer), stage, str(after), "run", "--manifest", str(path)]
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
        assert done.returncode == -9, done.stdout + done.stderr

    killed_run("generate", 3)
    assert len(list(store.glob("videos/*/*.mp4"))) == 3
    finished = snapshot(store)
    killed_run("score", 4)  # generates the other videos, scores 4 of them, dies on the fifth
    assert len(list(store.glob("videos/*/*.mp4"))) == VIDEOS
    assert len(list(store.glob("scores/*/*/*.json"))) == 4
    assert all(snapshot(store)[p] == stamp for p, stamp in finished.items())
    finished = snapshot(store)
    results = run(project, "killed")
    assert results is not None
    counts = results["timings"]["counts"]  # type: ignore[index]
    assert counts["generated"] == 0 and counts["scored"] == VIDEOS - 4
    after = snapshot(store)
    assert all(after[p] == stamp for p, stamp in finished.items())  # nothing finished was rewritten
    assert (project / "out-killed" / "rows.jsonl").read_bytes() == reference


def test_two_shards_then_aggregate_equal_one_run(
    project: Path, reference: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(project, "sharded", "--shard", "0/2") is None  # a shard does not aggregate
    assert run(project, "sharded", "--shard", "1/2") is None
    results = run(project, "sharded")
    assert results is not None
    counts = {
        "stray_files_removed": 0,
        "generated": 0,
        "scored": 0,
        "quarantined": 0,
        "jobs_in_slice": VIDEOS,
    }
    assert results["timings"]["counts"] == counts  # type: ignore[index]
    assert (project / "out-sharded" / "rows.jsonl").read_bytes() == reference
    assert (project / "out-sharded" / "tables" / "tiny.md").read_text() == (
        project / "out-reference" / "tables" / "tiny.md"
    ).read_text()


def test_batched_generation_gives_the_batch_one_rows(project: Path, reference: bytes) -> None:
    """Three prompts per rollout (batches never mix models or horizons): the same video keys, and
    scores equal to batch 1's up to the rounding of batched kernels (frames within one level)."""
    results = run(project, "batched", batch_size=3)
    assert results is not None
    assert results["timings"]["counts"]["generated"] == VIDEOS  # type: ignore[index]
    ours = [json.loads(line) for line in (project / "out-batched" / "rows.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in reference.decode().splitlines()]
    assert [(r["video"], r["dimension"], r["error"]) for r in ours] == [
        (r["video"], r["dimension"], r["error"]) for r in theirs
    ]
    sidecars = (project / "store-batched").glob("videos/*/*.json")
    # Per (model, horizon): the 4 videos at 5 s in batches of 3 and 1, the 2 at 30 s in one batch.
    assert sorted(json.loads(p.read_text())["batch_size"] for p in sidecars) == [
        1,
        1,
        2,
        2,
        2,
        2,
        3,
        3,
        3,
        3,
        3,
        3,
    ]
    for a, b in zip(ours, theirs, strict=True):
        if a["error"] is None:
            assert a["value"] == pytest.approx(b["value"], abs=1e-4)


def test_damaged_entries_are_quarantined_and_recomputed(
    project: Path, reference: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garbage in a score file, a truncated video and a killed writer's temporary file: the run names
    each damaged entry, moves it to quarantine/, recomputes it and gives the reference rows."""
    store = project / "store-damaged"
    shutil.copytree(project / "store-reference", store)
    videos = sorted(store.glob("videos/*/*.mp4"))
    scores = sorted(store.glob("scores/*/*/*.json"))
    scores[0].write_text("{not json")
    videos[1].write_bytes(videos[1].read_bytes()[:200])  # truncated before it was scored
    shutil.rmtree(store / "scores" / videos[1].stem[:2] / videos[1].stem)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stray = videos[2].with_name(
        f".{videos[2].name}.{socket.gethostname().replace('.', '-')}.{dead.stdout.strip()}.tmp"
    )
    stray.write_bytes(b"half a video")
    results = run(project, "damaged")
    assert results is not None
    counts = results["timings"]["counts"]  # type: ignore[index]
    assert counts["stray_files_removed"] == 1 and not stray.exists()
    assert counts["generated"] == 1 and counts["quarantined"] == 3  # the score, the video and its sidecar
    quarantine = store / "quarantine"
    assert (
        "unreadable score record"
        in (quarantine / scores[0].relative_to(store)).with_suffix(".json.reason.txt").read_text()
    )
    assert (
        "does not decode"
        in (quarantine / videos[1].relative_to(store)).with_suffix(".mp4.reason.txt").read_text()
    )
    assert (project / "out-damaged" / "rows.jsonl").read_bytes() == reference
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["ls", "--store", str(store), "--check"])
    assert result.exit_code == 0 and "0 damaged entries" in result.output


# test_probe's small probe, as a manifest section over this manifest's two models.
PROBE = "probe:\n" + textwrap.indent(
    PROBE_CONFIG.strip() + "\nmodels: [{model: Base}, {model: Base + Video-Mirai, baseline: Base}]\n", "  "
)


def test_a_finished_probe_is_reused_from_the_store(project: Path, reference: bytes) -> None:
    """The probe is keyed by its spec, the checkpoints' content and its code: a rerun computes nothing."""
    path = manifest(project, "probed")
    path.write_text(path.read_text() + PROBE)

    def probed() -> object:
        os.chdir(project)
        result = runner.invoke(app, ["run", "--manifest", str(path)])
        assert result.exit_code == 0, result.output
        document = json.loads((project / "out-probed" / "results.json").read_text())
        return document["timings"]["counts"]["probed"]

    assert probed() == 1
    probe_json = (project / "out-probed" / "probe" / "probe.json").read_bytes()
    shutil.rmtree(project / "out-probed")
    assert probed() == 0
    assert (project / "out-probed" / "probe" / "probe.json").read_bytes() == probe_json
    assert (project / "out-probed" / "probe" / "probe.md").is_file()
    assert (project / "out-probed" / "rows.jsonl").read_bytes() == reference


def test_a_probe_over_replicates_probes_each_and_pairs_them(project: Path) -> None:
    """Models trained as replicates are probed replicate by replicate, each stored alone, then summarised.
    Replicate 1 here swaps the two checkpoints, so its method is replicate 0's baseline and the other
    way round: the paired gain differences of the two replicates cancel exactly."""
    from mirai_eval.pipeline.plan import model_key
    from mirai_eval.pipeline.run import Timings, load_plan, stored_probe
    from mirai_eval.pipeline.store import Store
    from mirai_eval.probe.replicates import summarise

    path = manifest(project, "probed-replicates")
    path.write_text(path.read_text() + PROBE)
    os.chdir(project)
    plan = load_plan(path)
    train = TrainSource(chain=Path("chain.yaml"), run="dmd", replicates=2)
    models = {}
    for label, other in (("Base", "Base + Video-Mirai"), ("Base + Video-Mirai", "Base")):
        entry = plan.models[label].entry.model_copy(update={"train": train})
        models[label] = dataclasses.replace(plan.models[label], entry=entry)
        models[model_key(label, 1)] = dataclasses.replace(plan.models[other], entry=entry, replicate=1)
    plan = dataclasses.replace(plan, models=models)
    store, out = Store(project / "store-probed-replicates"), project / "out-probed-replicates" / "probe"

    timings = Timings()
    files = stored_probe(plan, store, out, "cpu", timings)
    assert timings.counts["probed"] == 2
    documents = [json.loads((out / f"replicate-{k}" / "probe.json").read_text()) for k in range(2)]
    assert documents[1]["models"]["Base"]["deltas"] == documents[0]["models"]["Base + Video-Mirai"]["deltas"]
    assert "(training replicate 1)" in (out / "replicate-1" / "probe.md").read_text()
    assert {Path(files[f]).name for f in ("md", "tex", "png")} == {
        f"probe_replicates.{f}" for f in ("md", "tex", "png")
    }
    assert plan.manifest.probe is not None
    for row in summarise(plan.manifest.probe, documents):
        if row.difference is not None:
            assert row.difference.value == pytest.approx(0.0, abs=1e-9)
    again = Timings()
    stored_probe(plan, store, out, "cpu", again)
    assert again.counts["probed"] == 0


def test_changed_checkpoint_is_refused_by_sha256(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = manifest(project, "pinned")
    text = path.read_text().replace("checkpoint: ck/base}", "checkpoint: ck/base, sha256: " + "ab" * 32 + "}")
    path.write_text(text)
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["run", "--manifest", str(path)])
    assert result.exit_code == 2
    assert "models.0.sha256" in result.output and "different checkpoint" in result.output
    assert not (project / "store-pinned").exists()


# One tiny chunk-wise generator spec stands in for every wan checkpoint: the wan video length rule
# (21 latent frames of training horizon) and its Rolling Sink, at 32x32 pixels.
STAND_IN = SPEC.replace("train_latent_frames: 3", "train_latent_frames: 21").replace(
    "rolling_sink: {window_frames: 6, sweep_frames: 3}", "rolling_sink: {window_frames: 21, sweep_frames: 18}"
)


def test_wan_table1_runs_every_stage_with_tiny_stand_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_scorers: Path
) -> None:
    """manifests/table1.yaml unchanged, from a folder holding its prompt files and tiny checkpoints at its
    checkpoint paths (and the toy profile's models in its store): --limit 2 with the toy profile on the
    CPU trains nothing, generates, scores, aggregates and renders both tables."""
    if not SHARED_PROMPTS.is_dir():
        pytest.skip(f"{SHARED_PROMPTS} (the VBench and MovieGen prompt files) is not on this machine")
    manifest = ROOT / "manifests" / "table1.yaml"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts").symlink_to(SHARED_PROMPTS)
    (tmp_path / "stand_in.yaml").write_text(STAND_IN)
    monkeypatch.chdir(tmp_path)
    stored = stored_weights(tmp_path / "runs" / "store")
    stored.parent.mkdir(parents=True)
    shutil.copy(toy_scorers, stored)
    models = load_manifest(manifest).manifest.models
    for seed, model in enumerate(models):
        assert model.checkpoint is not None
        command = ["init", "--config", "stand_in.yaml", "--out", str(model.checkpoint), "--seed", str(seed)]
        result = runner.invoke(train_app, command)
        assert result.exit_code == 0, result.output

    command = ["run", "--manifest", str(manifest), "--limit", "2", "--profile", "toy", "--device", "cpu"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "table1"
    results = json.loads((out / "results.json").read_text())
    per_model = {"5s": 2 * 5, "30s": 2 * 1}  # --limit 2 prompts x samples per prompt
    assert results["timings"]["counts"]["generated"] == len(models) * sum(per_model.values())
    assert results["manifest"]["echo"]["scoring"]["profile"] == "toy"
    # The machine, since toy numbers reproduce only on its kind: the kernels torch picked for this CPU.
    assert results["machine"].endswith(f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    frames = Counter(
        (v["horizon"], v["frames"]) for v in map(json.loads, _sidecars(tmp_path / "runs" / "store"))
    )
    assert frames == {("5s", 81): len(models) * 10, ("30s", 489): len(models) * 2}  # 21 and 123 latent frames

    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    videos = Counter((r["model"], r["horizon"]) for r in rows if r["dimension"] == "temporal_flickering")
    assert videos == {(m.label, "5s"): per_model["5s"] for m in models}
    assert len(rows) == len(models) * (per_model["5s"] * 16 + per_model["30s"] * 3)
    suites = {
        e["prompt_en"]: e["dimension"]
        for e in json.loads((SHARED_PROMPTS / "vbench_full_info.json").read_text())
    }
    for row in rows:  # n/a with the reason: what the toy profile cannot compute, what VBench does not score
        if row["dimension"] in TOY_UNAVAILABLE:
            assert row["value"] is None and row["error"].startswith("unavailable in the toy profile"), row
        elif row["horizon"] == "5s" and row["dimension"] not in suites[row["prompt"]]:
            assert row["value"] is None and row["error"] == EXCLUDED + OUTSIDE_SUITE, row
        else:
            assert row["value"] is not None and row["error"] is None, row
    assert {r["dimension"] for r in rows if r["value"] is not None and r["horizon"] == "5s"} == {
        "temporal_flickering"  # the first two VBench prompts are in its suite only
    }
    for table in ("table1", "table1_reported"):
        assert (out / "tables" / f"{table}.tex").read_text().count("Video-Mirai") >= 3
        assert (out / "tables" / f"{table}.md").is_file()

    again = runner.invoke(app, command)  # a finished run is reused, not recomputed
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["timings"]["counts"]["generated"] == 0


def _sidecars(store: Path) -> list[str]:
    return [p.read_text() for p in store.glob("videos/*/*.json")]


# Stands in for the vbench environment's Python (argv: worker --videos D --out O --dims ... --mode M):
# every video scores its name's length, so a row shows which file its value came from.
FAKE_VBENCH = """\
#!{python}
import json, pathlib, sys
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
videos = sorted(pathlib.Path(args["--videos"]).iterdir())
per_video = [{{"video_path": str(v), "video_results": len(v.name)}} for v in videos]
result = {{dim: [0.0, per_video] for dim in args["--dims"].split(",")}}
pathlib.Path(args["--out"], "delegated_eval_results.json").write_text(json.dumps(result))
"""


def test_delegated_dimensions_are_scored_by_file_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the vbench profile, dimensions of the vbench package get each video under its VBench name
    (`{prompt}-{sample}.mp4`) and their values come back to that video's rows."""
    fake = project / "fake_vbench_python"
    fake.write_text(FAKE_VBENCH.format(python=sys.executable))
    fake.chmod(0o755)
    path = manifest(project, "delegated")
    text = path.read_text().replace("{profile: toy}", f"{{profile: vbench, vbench_python: {fake}}}")
    path.write_text(
        text.replace("[temporal_flickering, human_action]", "[color]").replace("temporal_flickering", "color")
    )
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["run", "--manifest", str(path)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (project / "out-delegated" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == VIDEOS
    assert all(r["value"] == len(f"{r['prompt']}-{r['sample']}.mp4") and r["error"] is None for r in rows)


def same_vbench_layout(run_file: Path, score_file: Path) -> None:
    """Two `{name}_eval_results.json` files hold the same dimensions, aggregates and per-video values
    (matched by file name; the run's rows name videos as VBench does)."""
    ran, scored = json.loads(run_file.read_text()), json.loads(score_file.read_text())
    assert sorted(ran) == sorted(scored) and ran
    for dimension, (aggregate, videos) in scored.items():
        assert ran[dimension][0] == pytest.approx(aggregate, rel=1e-12)
        theirs = {Path(v["video_path"]).name: v["video_results"] for v in videos}
        assert {v["video_path"]: v["video_results"] for v in ran[dimension][1]} == theirs


SAME_LOOP_DIMS = [
    "temporal_flickering",
    "subject_consistency",
    "color",
    "dynamic_degree",
    "human_action",
    "luminance",
    "identity_decay",
]


@pytest.mark.parametrize("protocol", ["whole", "windows"])
def test_run_and_score_give_the_same_values(project: Path, toy_scorers: Path, protocol: str) -> None:
    """One scoring loop: `mirai-eval score` on a folder of a run's stored videos gives the run's
    per-video values, exclusions and error texts, dimension by dimension, and under the windows
    protocol the same per-window values and summaries (windows are scored as clips of their length:
    test_windows.py)."""
    name = f"same-{protocol}"
    piece = f"{'window' if protocol == 'windows' else 'clip'}_seconds"
    path = manifest(project, name)
    dims = ", ".join(SAME_LOOP_DIMS)
    text = path.read_text().replace(
        "scoring: {profile: toy}", f"scoring: {{profile: toy, weights: {{toy_scorers: {toy_scorers}}}}}"
    )
    text = text.replace(
        "dimensions: [temporal_flickering, human_action]}",
        f"dimensions: [{dims}], protocol: {protocol}, {piece}: 0.25}}",
    )
    text = text.replace(
        "dimensions: [temporal_flickering]}",
        f"dimensions: [{dims}], protocol: {protocol}, {piece}: 0.25}}",
    )
    path.write_text(text)
    os.chdir(project)
    result = runner.invoke(app, ["run", "--manifest", str(path), "--vbench-format"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (project / f"out-{name}" / "rows.jsonl").read_text().splitlines()]
    kinds: Counter[str] = Counter()
    for model in ("Base", "Base + Video-Mirai"):
        for horizon in ("5s", "30s"):
            mine = [r for r in rows if r["model"] == model and r["horizon"] == horizon]
            folder = project / f"folder-{name}-{model}-{horizon}".replace(" ", "_")
            folder.mkdir()
            for row in mine:
                link = folder / f"{row['prompt']}-{row['sample']}.mp4"
                if not link.exists():
                    link.symlink_to(
                        project / f"store-{name}" / "videos" / row["video"][:2] / f"{row['video']}.mp4"
                    )
            out = folder.with_suffix(".json")
            command = ["score", "--videos", str(folder), "--out", str(out), "--profile", "toy", "--dims"]
            command += [",".join(SAME_LOOP_DIMS), "--weight", f"toy_scorers={toy_scorers}"]
            command += ["--protocol", protocol, f"--{piece.replace('_', '-')}", "0.25", "--vbench-format"]
            result = runner.invoke(app, command)
            assert result.exit_code == 0, result.output
            scored = json.loads(out.read_text())
            videos = scored["videos"]
            exported = project / f"out-{name}" / "vbench" / f"{slug(model)}-{horizon}_eval_results.json"
            if protocol == "whole":  # the run's VBench-layout file equals the folder's, value for value
                same_vbench_layout(exported, folder.with_name(f"{folder.name}_eval_results.json"))
            else:
                assert not exported.exists()
            for row in mine:
                video = videos[f"{row['prompt']}-{row['sample']}.mp4"]
                dimension, error = row["dimension"], row["error"]
                if error is None:
                    kinds["value"] += 1
                    assert video["scores"][dimension] == row["value"], (row, video)
                    assert row["windows"] == video["clips"].get(dimension), (row, video)
                    if protocol == "windows":
                        kinds["windows"] += 1
                        name_ = f"{row['prompt']}-{row['sample']}.mp4"
                        found = scored["windows"]["per_video"][name_][dimension]
                        assert found == pytest.approx(summaries(row["windows"], 0.25), nan_ok=True)
                elif error.startswith(EXCLUDED):
                    kinds["excluded"] += 1
                    assert video["excluded"][dimension] == error.removeprefix(EXCLUDED), (row, video)
                elif error.startswith("unavailable"):
                    kinds["unavailable"] += 1
                    assert dimension not in video["scores"] and dimension not in video["errors"]
                else:
                    kinds["error"] += 1
                    assert video["errors"][dimension] == error, (row, video)
    assert kinds["value"] > 0 and kinds["unavailable"] > 0, kinds
    assert (kinds["windows"] > 0) == (protocol == "windows"), kinds


def test_a_failed_toy_scorers_process_stops_the_run_with_its_exit(tmp_path: Path) -> None:
    """The toy models train in a second process (pipeline/run.py, `ToyScorers`); when it dies, the
    run says so instead of scoring with models that are not there."""
    from rich.console import Console

    from mirai_eval.pipeline.run import RunError, ToyScorers

    store = tmp_path / "store"
    store.write_text("a file where the store's folder should be")  # the process cannot write its log
    scorers = ToyScorers.start(store)
    assert scorers is not None
    with pytest.raises(RunError, match=r"training the toy profile's models failed \(exit 1\)"):
        scorers.wait(Console(quiet=True))
