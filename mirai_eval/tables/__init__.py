"""Per-video score rows -> tables, in the order a run builds them.

rows.py    the per-video rows a run writes (rows.jsonl) and their checks
spec.py    what a table shows (a manifest's `tables:`; free of torch and pandas)
stats.py   cluster bootstrap intervals, paired permutation tests, Holm
windows.py per-window summaries of a long video's scores (first, last, last - first, slope)
build.py   rows + spec -> cells (values, intervals, bold, significance marks)
render.py  cells -> LaTeX and Markdown through the Jinja templates in tables/templates
report.py  the HTML report: tables, videos side by side, drift curves, probe images
"""
