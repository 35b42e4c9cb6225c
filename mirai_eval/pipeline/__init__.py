"""`mirai-eval run` after its manifest (mirai_eval/manifest.py), in the order it runs: plan ->
generate -> score, over the store.

plan.py   every (model, horizon, prompt, sample) job with its content-addressed video key
store.py  the content-addressed store: videos, score records and finished probes
score.py  the store's scoring stage: `scoring/`'s loop, cached per (video, dimension, scorer)
run.py    the loop over the plan's slice (generating with `mirai_eval/generate.py`), then rows ->
          `tables/` and the report
"""
