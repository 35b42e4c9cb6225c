"""The vbench package's evaluation of a folder of videos, as `VBench.evaluate` runs it, for the
end-to-end mode of `benchmarks/score.py` (one fresh process per command; imports nothing of ours).

`VBench.build_full_info_json(..., mode="custom_input")` lists the folder, then each dimension's
`compute_<dim>` (vbench 0.1.5, `vbench/__init__.py`) runs on the given weight files. Only the model
loading of subject consistency differs: vbench's `init_submodules` hands `torch.hub.load` the DINO
repository on GitHub; here the same hub entry point is built from a local copy of that repository
(no network) and loaded with the weight file, then the package's `subject_consistency` runs over
the folder's list, as `compute_subject_consistency` does.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", required=True, help="comma-separated dimensions")
    parser.add_argument("--videos", type=Path, required=True, help="folder of mp4 files")
    parser.add_argument("--weights", type=Path, required=True, help="JSON: weight key -> file")
    parser.add_argument("--hub", type=Path, required=True, help="local copy of facebookresearch/dino")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from vbench import VBench
    from vbench.subject_consistency import subject_consistency
    from vbench.utils import load_dimension_info

    dims = args.dims.split(",")
    weights = json.loads(args.weights.read_text())
    bench = VBench(args.device, None, str(args.videos.parent / "vbench-out"))
    info = bench.build_full_info_json(str(args.videos), "bench", dims, mode="custom_input")
    submodules: dict[str, object] = {
        "background_consistency": [weights["clip_vitb32"], False],
        "imaging_quality": {"model_path": weights["musiq_spaq"]},
        "dynamic_degree": {"model": weights["raft_things"]},
        "temporal_flickering": [],
    }
    for dim in dims:
        if dim == "subject_consistency":
            dino = torch.hub.load(str(args.hub), "dino_vitb16", source="local", pretrained=False)
            dino.load_state_dict(torch.load(weights["dino_vitb16"], weights_only=True))
            video_list, _ = load_dimension_info(info, dimension=dim, lang="en")
            subject_consistency(dino.to(args.device), video_list, args.device, False)
        else:
            compute = getattr(importlib.import_module(f"vbench.{dim}"), f"compute_{dim}")
            compute(info, args.device, submodules[dim])


if __name__ == "__main__":
    main()
