"""`python -m mirai_train`: the `mirai-train` command, also under `torchrun -m mirai_train fit ...`."""

from mirai_train.cli import app

app(prog_name="mirai-train")
