"""Runs inside the vbench package's own virtual environment (stdlib + vbench only).

Called by delegate.py as a script: evaluates the requested dimensions on a folder of
VBench-named videos with vbench's `VBench.evaluate` and leaves `{name}_eval_results.json` in
the output folder.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dims", required=True, help="comma-separated VBench dimension names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="vbench_standard", choices=["vbench_standard", "custom_input"])
    parser.add_argument("--full-info", default=None)
    args = parser.parse_args()

    import torch
    import vbench
    from vbench import VBench

    full_info = args.full_info or os.path.join(os.path.dirname(vbench.__file__), "VBench_full_info.json")
    evaluator = VBench(torch.device(args.device), full_info, args.out)
    evaluator.evaluate(
        videos_path=args.videos,
        name="delegated",
        dimension_list=args.dims.split(","),
        local=True,
        mode=args.mode,
    )


if __name__ == "__main__":
    main()
