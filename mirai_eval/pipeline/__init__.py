"""`mirai-eval run`, in the order it runs: manifest -> plan -> generate -> score, over the store.

manifest.py  the YAML a run is declared in (validated without torch)
plan.py      every (model, horizon, prompt, sample) job with its content-addressed video key
store.py     the content-addressed store: videos, score records and finished probes
score.py     the store's scoring stage: `scoring/`'s loop, cached per (video, dimension, scorer)
run.py       the loop over the plan's slice (generating with `mirai_eval/generate.py`), then rows ->
             `tables/` and the report
"""
