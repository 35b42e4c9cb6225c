"""The foresight readout probe: how much of the future a frozen causal generator's hidden state holds.

For each checkpoint, frozen: roll it out on training prompts and keep, per segment (block of
latent frames) i, the tokens after `layer` at the block's final denoising step (the state the
foresight loss trains); fit one small MLP per look-ahead Delta from a token of segment i to the
latents of the same patch of segment i + Delta (`readout.py`); then, on held-out prompts:

1. readout vs the generator's own continuation (segment i + Delta of the same rollout), against the
   collapse baseline "segment i as the prediction", and readout vs segment i (does it only copy?);
2. from one shared context (the first `context_blocks` segments), `continuations` rollouts with
   different noise: the one-shot readout against their average and against each one. For MSE,
   distance-to-single = distance-to-average + the continuations' own spread (bias-variance), so
   the table shows the spread as well: a readout that predicts the average sits below it;
3. at toy scale, the sprites ground truth: the generator reads the true held-out video
   (teacher-forced: clean earlier segments, segment i noised to the final step's level), the
   readout's image is decoded into sprite positions (`sprites.py`) and compared with the
   tracked centres at the future frames, against the true current segment as the prediction.

Errors are in RGB: predicted and true latents go through the generator's codec, pixels in [0, 1];
MSE over the frames of the predicted segments, PSNR = 10 log10(1 / MSE) per video, then means over
videos. Seeds: training rollout i uses `seed + i`, held-out rollout j `seed + 100000 + j` (so a
continuation's shared context is that rollout's start), continuation k of held-out prompt j
branches its noise to `seed + 200000 + j * continuations + k`, the teacher-forcing noise of
held-out scene j is `seed + 300000 + j`, the readout for Delta d is fitted with `seed + d`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

from mirai_eval.generate import GENERATION_SOURCES
from mirai_eval.probe.measure import (
    HELDOUT_OFFSET,
    TEACHER_OFFSET,
    Frozen,
    load_prompts,
    measure_model,
    predicted_blocks,
    sprites_config,
    to_uint8,
    true_latents,
)
from mirai_eval.probe.readout import Readout
from mirai_eval.probe.render import Panel, draw_panel, write_tables
from mirai_eval.probe.spec import ModelProbe, ProbeResult, ProbeSpec
from mirai_eval.tables.render import TEMPLATES
from mirai_train.checkpoint import source_version
from mirai_train.world import sample_scene

__all__ = ["PROBE_CODE", "ProbeResult", "ProbeSpec", "run_probe"]

# What decides a probe's results besides its spec and checkpoints: its code, the generation code it
# rolls out with, and the templates of its tables (the store keys finished probes by it).
PROBE_CODE = source_version(
    [
        *sorted(Path(__file__).parent.glob("*.py")),
        *GENERATION_SOURCES,
        *sorted(TEMPLATES.glob("probe*.j2")),
    ]
)


def image_panels(spec: ProbeSpec, frozen: Mapping[str, tuple[Frozen, dict[int, Readout]]]) -> list[Panel]:
    """Per probed pair (or unpaired model): current / baseline readout / method readout / future, rows Delta.

    Both models read the same video so the columns are comparable: the first held-out sprites
    scene (its true frames), or with prompt files the first held-out rollout of the pair's first
    model. Each reads it teacher-forced; segment i is the last context segment; the last frame of a
    segment is shown.
    """
    panels: list[Panel] = []
    baselines = {m.baseline for m in spec.models}
    groups = [
        [m.baseline, m.model] if m.baseline else [m.model] for m in spec.models if m.model not in baselines
    ]
    for labels in groups:
        first = frozen[labels[0]][0]
        frames = first.generator.latent_frames(spec.seconds)
        _, heldout = load_prompts(spec, sprites_config(first))
        prompt = heldout[0]
        if prompt.scene_seed is not None:
            latents = true_latents(first, sample_scene(prompt.scene_seed, sprites_config(first)), frames)[0]
        else:
            latents = first.rollout(prompt.text, frames, spec.seed + HELDOUT_OFFSET)[0]
        truth = first.blocks(latents)
        i = spec.context_blocks - 1
        last = [first.first_frame(b + 1) - 1 for b in range(truth.shape[0])]
        video = to_uint8(first.pixels(truth))
        taps = {
            label: frozen[label][0].teacher_forced(prompt.text, latents, spec.seed + TEACHER_OFFSET)
            for label in labels
        }
        rows = []
        for d in spec.deltas:
            shown = [video[last[i]]]
            for label in labels:
                probe, readouts = frozen[label]
                predicted = probe.pixels(predicted_blocks(readouts[d], taps[label], truth, d))
                shown.append(to_uint8(predicted)[last[i + d]])
            rows.append((f"Δ = {d}", [*shown, video[last[i + d]]]))
        columns = ["current (segment i)", *(f"{label} readout" for label in labels), "future (segment i + Δ)"]
        caption = f"{spec.title}: {' vs '.join(labels)} on “{prompt.text}”, segment i = {i}"
        stem = f"{spec.name}-{len(panels)}"
        panels.append(Panel(caption, stem, columns, rows))
    return panels


def run_probe(
    spec: ProbeSpec,
    checkpoints: Mapping[str, Path],
    out_dir: Path,
    *,
    use_ema: Mapping[str, bool] | None = None,
    device: str = "cpu",
    on_model: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Probe every model of `spec` (labels -> checkpoint dirs); write the tables, images and probe.json.
    `on_model(label)` is called as each model is measured (a progress bar)."""
    missing = [m.model for m in spec.models if m.model not in checkpoints]
    if missing:
        raise ValueError(f"probe: no checkpoint for {missing}; checkpoints given: {sorted(checkpoints)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, ModelProbe] = {}
    frozen: dict[str, tuple[Frozen, dict[int, Readout]]] = {}
    for entry in spec.models:
        ema = (use_ema or {}).get(entry.model, False)
        models[entry.model], probe, readouts = measure_model(
            spec, entry.model, Path(checkpoints[entry.model]), ema, device
        )
        frozen[entry.model] = (probe, readouts)
        if on_model is not None:
            on_model(entry.model)
    result = ProbeResult(spec, models)
    result.tables = write_tables(result, out_dir)
    result.images = {panel.caption: draw_panel(panel, out_dir) for panel in image_panels(spec, frozen)}
    document = {"spec": spec.model_dump(mode="json"), "models": {k: asdict(v) for k, v in models.items()}}
    result.json = out_dir / "probe.json"
    result.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return result
