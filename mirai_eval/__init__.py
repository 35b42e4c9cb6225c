"""The evaluation harness: manifests -> videos -> VBench scores -> the paper's tables (see ARCHITECTURE.md)."""

from pathlib import Path

DEFAULT_STORE = Path("runs/store")  # the content-addressed store runs, manifests and the toy scorers share
