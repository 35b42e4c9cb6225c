"""Scoring speed, side by side in one run: ours / the vbench package, and ours / the floor.

Three sides per dimension, on the same mp4 file and the same weights (random, saved in the
official formats, loaded by each side as it loads the real files):

- ours: `decode` (decord, once) plus the dimension's `score`, exactly as `mirai-eval score` runs it;
- vbench: the package's own function on the file (it decodes the file itself);
- floor: `decode` plus the same backbone run once over the frames in batches of the batch size,
  under inference mode, preprocessing included (uint8 -> float, resizing, normalisation) and
  nothing else. Temporal flickering has no backbone: its floor is the exact integer computation.

The set row: ours decodes once for all dimensions, vbench runs each function (decoding each time),
the floor decodes once; it is the sum of the per-dimension minima with one decode.

Repeats are interleaved (every repeat runs every side of every dimension, the side order rotating)
and each time is the minimum over repeats, so load from other processes reaches all sides alike;
the median over repeats of the within-repeat ratio ours / vbench is printed beside it (on this
2-core VM identical work varies by up to 25% from run to run), and the 1-minute load average with
every repeat. torch and OpenCV get the same thread
count; decord decodes with one thread on both sides. Runs in the vbench environment:

    .nox/vbench/bin/python benchmarks/score.py --threads 2 --repeat 5

Dynamic degree runs RAFT at full resolution, several seconds a pair on a CPU: `--flow-frames`
limits its clip to the first N frames (same size and content; every pair costs the same).

`--end-to-end`: the commands as users run them, each in a fresh process, on a folder of `--videos`
procedural clips (a panning texture with a moving square, H.264, `--height`x`--width`):

- ours: `python -m mirai_eval score --videos DIR --dims D --weight ...` (start-up, weight loading,
  decoding and writing the results included);
- vbench: `python benchmarks/vbench_folder.py`, a fresh Python that imports the package and runs
  its evaluation of the folder with the same weight files, and nothing of ours.

One row per dimension, and the set: every dimension in one command (we decode each video once,
vbench once per dimension). Targets: <= 1.0x per dimension, <= 0.5x for the set.

    .nox/bench_score/bin/python benchmarks/score.py --end-to-end --videos 4 --frames 33 --repeat 3
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratio_table import Row, print_ratios, verdict

from mirai_eval.scoring.backbones.musiq import Musiq
from mirai_eval.scoring.dynamic import sampled_indices
from mirai_eval.scoring.flicker import flicker_score
from mirai_eval.scoring.preprocess import clip_input, dino_input, musiq_input
from mirai_eval.scoring.profiles import ScoringOptions, batch_defaults, load_dimensions
from mirai_train.video import Video, decode
from tests.vbench_parity import fixtures

DIMS = "subject_consistency,background_consistency,temporal_flickering,dynamic_degree,imaging_quality"
SIDES = ("ours", "vbench", "floor")
E2E_SIDES = ("ours", "vbench")
E2E_PROMPT = "a panning texture with a moving square"
VBENCH_FOLDER = Path(__file__).resolve().parent / "vbench_folder.py"
FLOOR_TARGET = 1.15
BACKGROUND_TARGET = 0.5


@dataclass
class Times:
    """Per side, every repeat's total time and its time after decoding (ours and the floor decode)."""

    total: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    after_decode: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})

    def best(self, side: str) -> float:
        return min(self.total[side])

    def paired_median(self, side: str, other: str) -> float:
        """The median over repeats of side / other within a repeat: robust to one slow or lucky run."""
        return statistics.median(a / b for a, b in zip(self.total[side], self.total[other], strict=True))


def scratch(prefix: str) -> Path:
    """A folder for the clips and the random weights (about 1 GB), removed when the benchmark exits."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def random_weights(folder: Path) -> dict[str, str]:
    """Random weights in the official file formats, keyed as `mirai-eval score --weight` keys them."""
    weights = {
        "dino_vitb16": str(fixtures.dino_weights(folder)),
        "clip_vitb32": str(fixtures.clip_weights(folder, large=False)),
        "raft_things": str(fixtures.raft_weights(folder)),
        "musiq_spaq": str(folder / "musiq_spaq_ckpt-358bb6af.pth"),
    }
    musiq = Musiq()
    fixtures.randomise(musiq, 6)
    torch.save(musiq.state_dict(), weights["musiq_spaq"])
    return weights


def panning_video(seed: int, frames: int, height: int, width: int) -> torch.Tensor:
    """[T, H, W, 3] uint8: a texture panning 3 px a frame under a square moving 6 px a frame, with
    mild noise, so every frame differs everywhere (H.264 decodes real motion, RAFT sees flow)."""
    g = torch.Generator().manual_seed(seed)
    texture = torch.nn.functional.interpolate(
        torch.rand(1, 3, height // 8, (width + 3 * frames) // 8 + 1, generator=g) * 255,
        size=(height, ((width + 3 * frames) // 8 + 1) * 8),
        mode="bilinear",
    )[0]
    out = []
    for t in range(frames):
        frame = texture[:, :, 3 * t : 3 * t + width].clone()
        x = int(10 + 6 * t) % (width - 60)
        frame[:, 40:100, x : x + 60] = torch.tensor([250.0, 40.0, 40.0])[:, None, None]
        frame += torch.randn(frame.shape, generator=g) * 3
        out.append(frame.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0))
    return torch.stack(out)


def end_to_end(args: argparse.Namespace) -> None:
    """Time `mirai-eval score` against the vbench package's evaluation, whole commands, fresh processes."""
    dims = args.dims.split(",")
    if unknown := sorted(set(dims) - set(DIMS.split(","))):
        raise SystemExit(f"--dims: {', '.join(unknown)} not timed here; choose from {DIMS}")
    if "subject_consistency" in dims and not (fixtures.HUB_DINO / "hubconf.py").is_file():
        raise SystemExit(
            f"subject_consistency: vbench builds DINO from its hub code, not found at {fixtures.HUB_DINO}; "
            "put a copy of github.com/facebookresearch/dino there, or leave the dimension out with --dims"
        )
    work = scratch("score-e2e-")
    videos = work / "videos"
    videos.mkdir()
    for i in range(args.videos):
        fixtures.write_mp4(
            videos / f"{E2E_PROMPT}-{i}.mp4",
            panning_video(i, args.frames, args.height, args.width),
            fps=args.fps,
        )
    weights = random_weights(work)
    (work / "weights.json").write_text(json.dumps(weights))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env["VBENCH_CACHE_DIR"] = str(work / "vbench-cache")  # nothing of the user's cache is read or written
    rows = {name: [name] for name in dims} | {"the set": dims}
    commands: dict[str, dict[str, list[str]]] = {}
    for row, row_dims in rows.items():
        joined = ",".join(row_dims)
        ours = [sys.executable, "-m", "mirai_eval", "score", "--videos", str(videos), "--dims", joined]
        ours += ["--out", str(work / f"ours-{row.replace(' ', '_')}.json"), "--device", args.device]
        ours += [f"--weight={key}={path}" for key, path in weights.items()]
        for option, value in (("--batch-size", args.batch_size), ("--flow-batch-size", args.flow_batch_size)):
            ours += [option, str(value)] if value else []
        theirs = [sys.executable, str(VBENCH_FOLDER), "--dims", joined, "--videos", str(videos)]
        theirs += [
            "--weights",
            str(work / "weights.json"),
            "--hub",
            str(fixtures.HUB_DINO),
            "--device",
            args.device,
        ]
        commands[row] = {"ours": ours, "vbench": theirs}

    times: dict[str, dict[str, list[float]]] = {row: {side: [] for side in E2E_SIDES} for row in rows}
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}: load average {os.getloadavg()[0]:.2f}", flush=True)
        for row in rows:
            for side in E2E_SIDES[repeat % 2 :] + E2E_SIDES[: repeat % 2]:
                started = time.perf_counter()
                done = subprocess.run(commands[row][side], env=env, capture_output=True, text=True)
                elapsed = time.perf_counter() - started
                if done.returncode:
                    raise SystemExit(f"{side} failed on {row}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                times[row][side].append(elapsed)
                print(f"  {row:24} {side:6} {elapsed:8.2f} s", flush=True)

    console = Console()
    console.print(
        f"{args.videos} videos of {args.frames} frames {args.height}x{args.width} at {args.fps} fps; "
        f"{args.threads} thread(s), device {args.device}; whole commands in fresh processes, best of "
        f"{args.repeat} interleaved repeats"
    )
    console.print(f"{'dimension':26} {'ours s':>8} {'vbench s':>9} {'ours/vbench':>12} {'median pair':>12}")
    ratios: list[Row] = []
    for row in rows:
        ours_s, theirs_s = min(times[row]["ours"]), min(times[row]["vbench"])
        pair = statistics.median(a / b for a, b in zip(times[row]["ours"], times[row]["vbench"], strict=True))
        console.print(f"{row:26} {ours_s:8.2f} {theirs_s:9.2f} {ours_s / theirs_s:12.2f} {pair:12.2f}")
        target = 0.5 if row == "the set" else 1.0
        ratios.append(
            (
                f"{row}: ours / vbench",
                f"{ours_s / theirs_s:.2f}x",
                f"<= {target}x",
                verdict(ours_s / theirs_s <= target),
            )
        )
    print_ratios(console, ratios)


def timed_decode(path: Path) -> tuple[Video, float]:
    started = time.perf_counter()
    return decode(path), time.perf_counter() - started


def on_frames(
    prepare: Callable[[torch.Tensor], torch.Tensor],
    model: Callable[[torch.Tensor], object],
    batch: int,
    device: str,
) -> Callable[[Video], None]:
    """A floor: the backbone over every frame in batches, uint8 -> float on the device included."""

    def run(video: Video) -> None:
        with torch.inference_mode():
            for start in range(0, video.frames.shape[0], batch):
                pixels = video.frames[start : start + batch].to(device).permute(0, 3, 1, 2).float()
                model(prepare(pixels))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=81, help="frames of the test video (Wan: 81)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--fps", type=int, default=16, help="dynamic degree samples every round(fps/8)")
    parser.add_argument("--flow-frames", type=int, default=9, help="frames of dynamic degree's clip")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads, every side")
    parser.add_argument("--device", default="cpu", help="torch device of every side, e.g. cuda")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per DINO/CLIP/MUSIQ forward (MUSIQ on cpu: 1); default: the device's",
    )
    parser.add_argument(
        "--flow-batch-size",
        type=int,
        default=None,
        help="frame pairs per RAFT forward; default: the device's",
    )
    parser.add_argument("--dims", default=DIMS, help="comma-separated dimensions")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repeats; the minimum counts")
    parser.add_argument("--end-to-end", action="store_true", help="whole commands on a folder (see above)")
    parser.add_argument("--videos", type=int, default=4, help="clips in the end-to-end folder")
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args)
        return
    frames_default, pairs_default = batch_defaults(args.device)  # what `mirai-eval score` uses
    args.batch_size = args.batch_size or frames_default
    args.flow_batch_size = args.flow_batch_size or pairs_default
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    import clip
    from easydict import EasyDict
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.background_consistency import background_consistency
    from vbench.dynamic_degree import DynamicDegree
    from vbench.imaging_quality import technical_quality
    from vbench.subject_consistency import subject_consistency
    from vbench.temporal_flickering import temporal_flickering

    dims = args.dims.split(",")
    device = args.device
    work = scratch("score-bench-")
    frames = fixtures.moving_video(0, args.frames, args.height, args.width, 6.0)
    video_path = work / "a moving square-0.mp4"
    flow_path = work / "a moving square-1.mp4"
    fixtures.write_mp4(video_path, frames, fps=args.fps)
    fixtures.write_mp4(flow_path, frames[: args.flow_frames], fps=args.fps)
    path_of = {name: flow_path if name == "dynamic_degree" else video_path for name in dims}

    weights = random_weights(work)
    options = ScoringOptions(
        device=device, batch_size=args.batch_size, flow_batch_size=args.flow_batch_size, weights=weights
    )
    plan = load_dimensions("vbench", dims, options)

    vbench_runs: dict[str, Callable[[], object]] = {}
    floors: dict[str, Callable[[Video], object]] = {}
    batch = args.batch_size
    if "subject_consistency" in dims:
        hub = torch.hub.load(str(fixtures.HUB_DINO), "dino_vitb16", source="local", pretrained=False)
        hub.load_state_dict(torch.load(weights["dino_vitb16"], weights_only=True))
        hub = hub.eval().to(device)
        paths = [str(video_path)]
        vbench_runs["subject_consistency"] = lambda: subject_consistency(hub, paths, device, False)
        dino = plan.native["subject_consistency"].encode  # type: ignore[attr-defined]
        floors["subject_consistency"] = on_frames(dino_input, dino, batch, device)
    if "background_consistency" in dims:
        their_clip, preprocess = clip.load(weights["clip_vitb32"], device=device)
        paths = [str(video_path)]
        vbench_runs["background_consistency"] = lambda: background_consistency(
            their_clip, preprocess, paths, device, False
        )
        ours_clip = plan.native["background_consistency"].encode  # type: ignore[attr-defined]
        floors["background_consistency"] = on_frames(clip_input, ours_clip, batch, device)
    if "temporal_flickering" in dims:
        vbench_runs["temporal_flickering"] = lambda: temporal_flickering([str(video_path)])
        floors["temporal_flickering"] = lambda video: flicker_score(video.frames)
    if "dynamic_degree" in dims:
        raft_args = EasyDict(
            model=weights["raft_things"], small=False, mixed_precision=False, alternate_corr=False
        )
        their_raft = DynamicDegree(raft_args, device)
        vbench_runs["dynamic_degree"] = lambda: their_raft.infer(str(flow_path))
        flow = plan.native["dynamic_degree"].flow  # type: ignore[attr-defined]
        pairs = args.flow_batch_size

        def floor_flow(video: Video) -> None:
            picked = video.frames[sampled_indices(video.frames.shape[0], video.fps)]
            with torch.inference_mode():
                pixels = picked.to(device).permute(0, 3, 1, 2).float()
                for start in range(0, pixels.shape[0] - 1, pairs):
                    stop = min(start + pairs, pixels.shape[0] - 1)
                    flow(pixels[start:stop], pixels[start + 1 : stop + 1])

        floors["dynamic_degree"] = floor_flow
    if "imaging_quality" in dims:
        their_musiq = MUSIQ(pretrained_model_path=weights["musiq_spaq"]).to(device)
        their_musiq.training = False
        paths = [str(video_path)]
        vbench_runs["imaging_quality"] = lambda: technical_quality(their_musiq, paths, device)
        imaging = plan.native["imaging_quality"]
        model, frames_per_forward = imaging.model, imaging.batch_size  # type: ignore[attr-defined]
        floors["imaging_quality"] = on_frames(musiq_input, model, frames_per_forward, device)

    times = {name: Times() for name in dims}
    decode_best = float("inf")
    loads = []
    for repeat in range(args.repeat):
        loads.append(os.getloadavg()[0])
        print(f"repeat {repeat + 1}/{args.repeat}: load average {loads[-1]:.2f}", flush=True)
        decode_best = min(decode_best, timed_decode(video_path)[1])  # the set's one decode
        for name in dims:
            order = SIDES[repeat % 3 :] + SIDES[: repeat % 3]
            for side in order:
                started = time.perf_counter()
                if side == "vbench":
                    vbench_runs[name]()
                    decoded = 0.0
                else:
                    video, decoded = timed_decode(path_of[name])
                    if side == "ours":
                        plan.native[name].score(video, "")
                    else:
                        floors[name](video)
                total = time.perf_counter() - started
                times[name].total[side].append(total)
                times[name].after_decode[side].append(total - decoded)
                print(f"  {name:24} {side:6} {total:8.3f} s", flush=True)
    loads.append(os.getloadavg()[0])

    console = Console()
    clip_note = f"dynamic degree on the first {args.flow_frames} frames" if "dynamic_degree" in dims else ""
    console.print(
        f"video: {args.frames} frames {args.height}x{args.width} at {args.fps} fps ({clip_note}); "
        f"{args.threads} thread(s), device {device}, batch {args.batch_size}, flow batch "
        f"{args.flow_batch_size}; best of {args.repeat} interleaved repeats; decode {decode_best:.2f} s; "
        f"load average (1 min) per repeat: {', '.join(f'{x:.2f}' for x in loads)}"
    )
    console.print(
        f"{'dimension':26} {'ours s':>8} {'vbench s':>9} {'floor s':>8} {'ours/vbench':>12} {'ours/floor':>11}"
        f" {'median pair ours/vbench':>24}"
    )
    set_times = dict.fromkeys(SIDES, 0.0)
    rows: list[Row] = []
    for name in dims:
        entry = times[name]
        ours, theirs, floor = (entry.best(side) for side in SIDES)
        for side in SIDES:
            set_times[side] += entry.best(side) if side == "vbench" else min(entry.after_decode[side])
        console.print(
            f"{name:26} {ours:8.3f} {theirs:9.3f} {floor:8.3f} {ours / theirs:12.2f} {ours / floor:11.2f}"
            f" {entry.paired_median('ours', 'vbench'):24.2f}"
        )
        vs_vbench = ours / theirs
        target = BACKGROUND_TARGET if name == "background_consistency" else 1.0
        rows.append(
            (f"{name}: ours / vbench", f"{vs_vbench:.2f}x", f"<= {target}x", verdict(vs_vbench <= target))
        )
        rows.append(
            (
                f"{name}: ours / floor",
                f"{ours / floor:.2f}x",
                f"<= {FLOOR_TARGET}x",
                verdict(ours / floor <= FLOOR_TARGET),
            )
        )
    set_times["ours"] += decode_best
    set_times["floor"] += decode_best
    ours, theirs, floor = (set_times[side] for side in SIDES)
    console.print(
        f"{'the set (one decode)':26} {ours:8.3f} {theirs:9.3f} {floor:8.3f} {ours / theirs:12.2f} {ours / floor:11.2f}"
    )
    rows.append(("the set: ours / vbench", f"{ours / theirs:.2f}x", "<= 1.0x", verdict(ours <= theirs)))
    rows.append(
        (
            "the set: ours / floor",
            f"{ours / floor:.2f}x",
            f"<= {FLOOR_TARGET}x",
            verdict(ours / floor <= FLOOR_TARGET),
        )
    )
    print_ratios(console, rows)


if __name__ == "__main__":
    main()
