"""Seconds per dashboard page, cold and warm, on the embedded runs (Streamlit AppTest).

    python benchmarks/bench_app.py [RUN_DIR ...] [--pages overview,similarity,...]

Cold: every Streamlit cache cleared right before the page is opened, so the
page pays for everything it shows (the sidebar's run facts included). Warm:
the same page opened again. Budgets: under 15 s cold, under 2 s warm. UMAP's
numba kernels compile once per machine and load from numba's disk cache in
every later process (:func:`analysis.projection.import_umap`; the app loads them
in a background thread from the first page); the first cold Projection visit
includes whatever of that is left.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES = ["overview", "similarity", "collapse", "fairness", "attention", "projection", "coding"]
PAGES += sorted(p.stem for p in (REPO / "app" / "views").glob("*.py") if p.stem not in PAGES)
COLD_BUDGET, WARM_BUDGET = 15.0, 2.0


def bench_run(run: Path, pages: list[str]) -> list[tuple[str, float, float, str]]:
    """(page, cold seconds, warm seconds, problems) for each page of one run."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["RTL_RUNS_DIR"] = str(run.parent)
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=600)
    at.session_state["sidebar.run"] = str(run)
    at.run()  # registers the pages (and starts the UMAP warm-up)
    rows = []
    for page in pages:
        st.cache_data.clear()
        st.cache_resource.clear()
        at.switch_page(f"views/{page}.py")
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        problems = "; ".join(str(e.value)[:120] for e in [*at.exception, *at.error])
        rows.append((page, cold, warm, problems))
    return rows


def run_label(run: Path) -> str:
    """``GROUP/seed-N`` for a run inside a run group, else the run folder's name."""
    from artifacts.run_format import is_group

    return f"{run.parent.name}/{run.name}" if is_group(run.parent) else run.name


def main(argv: list[str] | None = None) -> int:
    """Print one line per run and page; exit 1 if a page failed or missed a budget."""
    from analysis import find_runs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders (default: every embedded run)")
    p.add_argument("--pages", default=",".join(PAGES))
    args = p.parse_args(argv)
    runs = args.runs or find_runs(REPO / "artifacts")
    if not runs:
        print("no run to benchmark (no embedded run under artifacts/)")
        return 1
    pages = [x for x in args.pages.split(",") if x]
    bad = 0
    print(f"{'run':<36} {'page':<12} {'cold s':>8} {'warm s':>8}  status")
    for run in (Path(r).resolve() for r in runs):
        name = run_label(run)
        for page, cold, warm, problems in bench_run(run, pages):
            status = "ok"
            if problems:
                status = f"ERROR {problems}"
            elif cold > COLD_BUDGET or warm > WARM_BUDGET:
                status = f"over budget ({COLD_BUDGET:.0f} s cold, {WARM_BUDGET:.0f} s warm)"
            bad += status != "ok"
            print(f"{name:<36} {page:<12} {cold:8.2f} {warm:8.2f}  {status}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
