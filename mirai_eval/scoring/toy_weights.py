"""Where the `toy` profile's weight file comes from: a path given, or the store, trained when missing.

The file is what the `toy_scorers` recipe (mirai_eval/scoring/toy_scorers.yaml) trains. Unless a
path is given (`--weight toy_scorers=PATH`, or `scoring.weights` in a manifest) it lives in the
store under the recipe's content digest (the recipe and the code that trains and defines the
models), `<store>/training/toy_scorers-<digest[:16]>/toy_scorers.safetensors`, as chain-built
generators do; a missing file is trained there first (about 6 minutes on one CPU thread), under a
lock, so runs and `mirai-eval score` commands sharing a store train it once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from mirai_eval.scoring.weights import MissingWeightsError

KEY = "toy_scorers"
RECIPE = Path(__file__).with_name("toy_scorers.yaml")


def stored_weights(store: Path, recipe: Path = RECIPE) -> Path:
    from mirai_eval.scoring.toy_training import WEIGHTS_FILE, scorers_digest

    return Path(store) / "training" / f"{recipe.stem}-{scorers_digest(recipe)[:16]}" / WEIGHTS_FILE


def _given(given: Mapping[str, str]) -> Path:
    path = Path(given[KEY]).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"- {KEY}: the toy profile's models (`mirai-eval train-scorers --out DIR` writes "
            f"toy_scorers.safetensors)\n    given path does not exist: {path}"
        )
    return path


def identity(given: Mapping[str, str]) -> str:
    """What scores depend on: the given file's sha256, or the recipe's digest (the file is a function of it)."""
    from mirai_eval.scoring.toy_training import scorers_digest
    from mirai_train.checkpoint import file_sha256  # here: it imports diffusers, absent from vbench's venv

    return f"sha256:{file_sha256(_given(given))}" if KEY in given else f"recipe:{scorers_digest(RECIPE)}"


def resolve(given: Mapping[str, str], store: Path) -> Path:
    """The weight file: the given path, or the store's, trained into it first when missing."""
    if KEY in given:
        return _given(given)
    path = stored_weights(store)
    if not path.is_file():
        print(f"training the toy profile's models ({RECIPE}) into {path.parent}", file=sys.stderr)
    return train_into_store(store, log=lambda line: print(line, file=sys.stderr, flush=True))


def train_into_store(store: Path, log: Callable[[str], None]) -> Path:
    """The store's weight file, trained first unless it is there once the lock beside it is held
    (another process may have trained it meanwhile); `log` gets the training's progress lines."""
    from mirai_eval.scoring.toy_training import train_scorers
    from mirai_train.atomic import exclusive

    path = stored_weights(store)
    with exclusive(path.parent.with_suffix(".lock")):
        if not path.is_file():
            train_scorers(RECIPE, path.parent, log=log)
    return path
