"""The analysis package stays free of streamlit (and of torch outside the attention probe)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("streamlit", "torch", "umap")

# One fresh interpreter: what `import analysis` loads, then what the label-side
# modules and their figure builders add.
SCRIPT = f"""
import json, sys
watched = {WATCHED!r}
out = {{}}
import analysis
out["analysis"] = {{m: m in sys.modules for m in watched}}
import analysis.collapse, analysis.fairness, analysis.attention, analysis.metrics
import analysis.figures.collapse, analysis.figures.fairness, analysis.figures.attention
out["label_side"] = {{m: m in sys.modules for m in watched}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, dict[str, bool]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_analysis_does_not_import_streamlit_or_torch(loaded):
    assert not loaded["analysis"]["streamlit"]
    assert not loaded["analysis"]["torch"]  # torch only inside the attention probe
    assert not loaded["analysis"]["umap"]  # heavy optional import happens inside the function


def test_label_side_modules_and_figures_import_cleanly(loaded):
    assert not loaded["label_side"]["streamlit"]
    assert not loaded["label_side"]["torch"]


def _imported_roots(path: Path) -> set[str]:
    import ast

    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):  # UTF-8 source, any locale
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("forbidden", ["ingest", "lottery", "app", "streamlit"])
def test_analysis_only_reads_runs(forbidden):
    """analysis/ measures: it never imports the writers (lottery, ingest) nor the app."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "analysis").rglob("*.py"))
        if forbidden in _imported_roots(p)
    ]
    assert offenders == []
