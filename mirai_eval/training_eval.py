"""mirai-eval's in-training evaluator (a recipe's `eval:`; mirai_train/evaluation.py finds it by the
entry point `mirai-eval` in the group `mirai_train.evaluators`).

It generates held-out prompts with the checkpoint a run just exported, as `mirai-eval run` would
(`Generator`, the checkpoint's EMA weights when it has them), and scores them with the one scoring
loop (`score_video`), so a value logged during training is the value the tables would compute on
those videos. Only natively computed dimensions can run inside training.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mirai_eval import DEFAULT_STORE
from mirai_eval.generate import Generator
from mirai_eval.scoring.longvideo import Protocol
from mirai_eval.scoring.profiles import ScoringOptions, load_dimensions
from mirai_eval.scoring.runner import score_video
from mirai_train.checkpoint import EMA_WEIGHTS, read_metadata
from mirai_train.recipe import EvalSpec
from mirai_train.video import Video
from mirai_train.world import SpritesConfig, heldout_prompts


def prompts_of(spec: EvalSpec) -> list[str]:
    """The first `num_prompts` lines of `spec.prompts`, or the sprites world's held-out prompts."""
    if spec.prompts is None:
        return [p.prompt for p in heldout_prompts(spec.num_prompts, SpritesConfig())]
    path = Path(spec.prompts)
    if not path.is_file():
        raise FileNotFoundError(f"eval.prompts: {path} not found; give a text file with one prompt a line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[: spec.num_prompts]


def evaluate(checkpoint: Path, spec: EvalSpec, device: str) -> dict[str, float]:
    """`{dimension}@{seconds}s`: the mean over the prompts of each dimension at each horizon (videos
    a dimension excludes left out; NaN, with the errors printed, when a video failed)."""
    use_ema = EMA_WEIGHTS in read_metadata(checkpoint).files
    generator = Generator.load(checkpoint, use_ema=use_ema, device=device)
    store = Path(spec.store) if spec.store else DEFAULT_STORE
    loaded = load_dimensions(
        spec.profile, spec.dimensions, ScoringOptions.for_device(device, None, None, store=store)
    )
    foreign = [d for d in spec.dimensions if d not in loaded.native]
    if foreign:
        raise ValueError(
            f"eval.dimensions: {', '.join(foreign)} cannot be scored inside training under the {spec.profile} "
            "profile (delegated to the vbench package, or unavailable); name natively computed ones"
        )
    results: dict[str, float] = {}
    fps = float(generator.spec.video.fps)
    for seconds in spec.seconds:
        values: dict[str, list[float]] = {name: [] for name in spec.dimensions}
        failed: dict[str, list[str]] = {name: [] for name in spec.dimensions}
        for i, prompt in enumerate(prompts_of(spec)):
            video = Video(f"eval-{i}.mp4", generator.generate(prompt, seconds, spec.seed + i), fps)
            for name, outcome in score_video(video, prompt, loaded, spec.dimensions, Protocol()).items():
                if outcome.score is not None:
                    values[name].append(outcome.score.value)
                elif outcome.error is not None:
                    failed[name].append(outcome.error)
        for name in spec.dimensions:
            key = f"{name}@{seconds:g}s"
            if failed[name]:
                print(f"eval {key}: {len(failed[name])} video(s) failed: {failed[name][0]}", file=sys.stderr)
                results[key] = math.nan
            elif values[name]:
                results[key] = sum(values[name]) / len(values[name])
    return results
