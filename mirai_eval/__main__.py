"""`python -m mirai_eval`: the `mirai-eval` command, also under `torchrun -m mirai_eval run ...`."""

from mirai_eval.cli import app

app(prog_name="mirai-eval")
