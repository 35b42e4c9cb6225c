"""Rendered LaTeX and Markdown: escaping of hostile labels, balanced environments, every template kind."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mirai_eval.tables.build import Table, build_table
from mirai_eval.tables.render import latex_escape, markdown_escape, render
from mirai_eval.tables.spec import TableSpec
from tests.test_tables import BASE, MIRAI, make_rows, noisy

HOSTILE = r"a 100% cat & dog_run #1 costs $5 {x} \y ~z ^w <v>"
KINDS = ("table1", "ablation_window", "ablation_alpha", "ablation_depth", "ablation_weight")


def _table(kind: str = "table1", hostile: bool = True, **extra: object) -> Table:
    base_label = HOSTILE if hostile else BASE
    models = ((base_label, None), (MIRAI, base_label))
    fields: dict[str, object] = {
        "name": "test_table",
        "kind": kind,
        "title": f"Prompt: {HOSTILE}" if hostile else "Title",
        "groups": [{"rows": [{"model": base_label}, {"model": MIRAI, "baseline": base_label}]}],
    }
    rows = make_rows(noisy(0.02), models=models, prompts=8)
    return build_table(rows, TableSpec.model_validate(fields | extra), scale="toy", scorer_signature="sig_1%")


def _balanced(tex: str) -> None:
    """Every \\begin has its \\end in order, and unescaped braces pair up."""
    stack: list[str] = []
    for kind, name in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"\\end{{{name}}} without its \\begin"
    assert not stack, f"unclosed environments {stack}"
    depth = 0
    for brace in re.findall(r"(?<!\\)[{}]", tex.replace(r"\\", "")):
        depth += 1 if brace == "{" else -1
        assert depth >= 0, "a closing brace without an opening one"
    assert depth == 0, "unbalanced braces"


def test_latex_escape_every_special_character() -> None:
    assert latex_escape(HOSTILE) == (
        r"a 100\% cat \& dog\_run \#1 costs \$5 \{x\} \textbackslash{}y \textasciitilde{}z "
        r"\textasciicircum{}w \textless{}v\textgreater{}"
    )
    assert latex_escape("two\nlines") == "two lines"


def test_markdown_escape_keeps_table_cells_intact() -> None:
    assert markdown_escape("a|b *c* _d_ `e`") == r"a\|b \*c\* \_d\_ \`e\`"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_balanced_escaped_latex(kind: str) -> None:
    tex = render(_table(kind), "tex")
    _balanced(tex)
    assert latex_escape(HOSTILE) in tex  # the label and the title, escaped
    assert HOSTILE not in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:test-table}" in tex
    assert "sig\\_1\\%" in tex  # the scorer signature in the caption
    header = {"table1": "Method", "ablation_window": r"Window $\Delta$", "ablation_depth": "Predictor depth"}
    assert header.get(kind, "") in tex
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    assert [line.count(" & ") for line in body.strip().splitlines()] == [len(_table(kind).columns)] * 2


def test_bold_marks_and_intervals_follow_the_table() -> None:
    tex = render(_table(), "tex")
    mirai_line = next(line for line in tex.splitlines() if line.startswith(MIRAI.replace("&", r"\&")[:20]))
    assert mirai_line.count(r"\textbf{") == 6 and mirai_line.count(r"\textsuperscript{*}") == 6
    assert mirai_line.count(r"{\scriptsize[") == 6
    plain = render(_table(intervals=False, significance=False), "tex")
    assert r"\scriptsize" not in plain and r"\textsuperscript" not in plain
    assert plain.count(r"\textbf{") == 6


def test_reported_vs_reproduced_has_paper_ours_difference() -> None:
    table = _table(
        "reported_vs_reproduced",
        hostile=False,
        reported="table1",
        groups=[{"rows": [{"model": BASE}, {"model": MIRAI, "baseline": BASE}]}],
    )
    tex = render(table, "tex")
    _balanced(tex)
    assert tex.count(r"& paper & ours & $\Delta$") == 6
    assert "& 84.93 & " in tex and "NOT COMPARABLE" in tex
    md = render(table, "md")
    assert "| 85.38 |" in md and "NOT COMPARABLE" in md


def test_markdown_twin_has_one_line_per_row_and_escapes() -> None:
    md = render(_table(), "md")
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(lines) == 4  # header, rule, two rows
    assert all(line.count(" |") == 7 for line in (lines[0], lines[2], lines[3]))
    assert markdown_escape(HOSTILE) in md and "**" in md


def test_bad_format_is_refused() -> None:
    with pytest.raises(ValueError, match="use tex or md"):
        render(_table(hostile=False), "html")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine (pdflatex) installed")
def test_pdflatex_compiles_every_kind(tmp_path: Path) -> None:
    tables = [render(_table(kind), "tex") for kind in KINDS]
    tables.append(
        render(
            _table(
                "reported_vs_reproduced",
                hostile=False,
                reported="table1",
                groups=[{"rows": [{"model": BASE}, {"model": MIRAI, "baseline": BASE}]}],
            ),
            "tex",
        )
    )
    document = "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{booktabs,graphicx}",
            r"\begin{document}",
            *tables,
            r"\end{document}",
        ]
    )
    (tmp_path / "tables.tex").write_text(document)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0


def test_render_command_writes_tables_and_report_from_rows(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np
    from typer.testing import CliRunner

    from mirai_eval.cli import app

    rows = make_rows(noisy(0.02), prompts=8)
    rows_file = tmp_path / "out" / "rows.jsonl"
    rows_file.parent.mkdir()
    rows_file.write_text(rows.to_json(orient="records", lines=True))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"""
name: test
scale: toy
store: {tmp_path / "store"}
out: {tmp_path / "out"}
scoring: {{profile: toy}}
prompt_sets: {{p: {{path: prompts.txt, sha256: "{"0" * 64}"}}}}
horizons:
  5s: {{seconds: 5, prompts: p, samples_per_prompt: 2, dimensions: [subject_consistency]}}
  30s: {{seconds: 30, prompts: p, samples_per_prompt: 2, dimensions: [subject_consistency]}}
models:
  - {{label: "{BASE}", group: g, checkpoint: a}}
  - {{label: "{MIRAI}", group: g, baseline: "{BASE}", checkpoint: b}}
tables:
  - name: table1
    kind: table1
    title: Test table
    groups: [{{rows: [{{model: "{BASE}"}}, {{model: "{MIRAI}", baseline: "{BASE}"}}]}}]
"""
    )
    probes = tmp_path / "probe"  # a probe over replicates: its summary plot, then each replicate's images
    (probes / "replicate-1").mkdir(parents=True)
    for image in ("probe_replicates.png", "replicate-1/probe-0.png"):
        plt.imsave(probes / image, np.zeros((4, 4)))
    result = CliRunner().invoke(
        app, ["render", "--manifest", str(manifest), "--report", "--probes", str(probes)]
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "tables" / "report" / "index.html").read_text()
    assert html.index("probe_replicates") < html.index("replicate-1/probe-0")
    tex = (tmp_path / "out" / "tables" / "table1.tex").read_text()
    _balanced(tex)
    assert "toy:" in tex and "Test table" in tex
    assert (tmp_path / "out" / "tables" / "table1.md").read_text().startswith("**Test table**")
    assert "not found" in (tmp_path / "out" / "tables" / "report" / "index.html").read_text()
    missing = CliRunner().invoke(
        app, ["render", "--manifest", str(manifest), "--rows", str(tmp_path / "x.jsonl")]
    )
    assert missing.exit_code == 2 and "x.jsonl: no score rows" in missing.output
