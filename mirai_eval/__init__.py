"""The evaluation harness: manifests -> videos -> VBench scores -> the paper's tables (see ARCHITECTURE.md)."""

from pathlib import Path
from typing import Literal

DEFAULT_STORE = Path("runs/store")  # the content-addressed store runs, manifests and the toy scorers share
# How videos are scored: whole, VBench-Long's clips (a video's score is its clips' mean) or windows (the
# same pieces, W seconds each, whose first and last values, difference and slope tables can show:
# tables/windows.py). Pieces are native-only.
HorizonProtocol = Literal["whole", "clips", "windows"]
