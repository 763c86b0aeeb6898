"""The paper table across the seeds of a run group (analysis.table.group_table_frame, the table command)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_synthetic_run
from scipy import stats
from seed_groups import build_smoke_group

from analysis.table import group_paper_markdown, group_table_frame, paper_markdown, table_frame
from artifacts import run_format as rf

TARGETS = [25.0, 50.0, 90.0]


def _oracle(values: np.ndarray) -> tuple[float, float]:
    """Mean and Student-t 95 % half-width of one cell's seed values, by numpy and scipy."""
    n = len(values)
    return float(np.mean(values)), float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def _per_seed_values(runs: list[rf.Run]) -> pd.DataFrame:
    """Each seed's single-run table (:func:`table_frame`), stacked, with the sparsity as a metric row."""
    frames = []
    for i, run in enumerate(runs):
        t = table_frame(run, targets=TARGETS)
        reached = t.drop_duplicates(["method", "target"]).assign(metric="sparsity")
        reached["value"] = reached["sparsity"]
        frames.append(pd.concat([reached, t]).assign(seed=i))
    return pd.concat(frames, ignore_index=True)


def _check_against_single_runs(table: pd.DataFrame, runs: list[rf.Run]) -> int:
    """Every cell of ``table`` against numpy/scipy on the single-run values; returns the cells checked."""
    per = _per_seed_values(runs)
    checked = 0
    for (method, target, metric), g in per.groupby(["method", "target", "metric"]):
        vals = g["value"].to_numpy(float)
        vals = vals[np.isfinite(vals)]
        row = table[(table["method"] == method) & (table["target"] == target) & (table["metric"] == metric)]
        assert len(row) == 1, (method, target, metric)
        row = row.iloc[0]
        assert row["n_seeds"] == len(vals)
        assert row["level_min"] == g["level"].min() and row["level_max"] == g["level"].max()
        if not len(vals):
            assert np.isnan(row["mean"])
            continue
        mean, half = _oracle(vals) if len(vals) > 1 else (float(vals[0]), np.nan)
        assert row["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
        if len(vals) > 1:
            assert row["half_width"] == pytest.approx(half, rel=1e-9, abs=1e-12)
            assert row["ci_low"] == pytest.approx(mean - half, abs=1e-12)
        else:
            assert np.isnan(row["half_width"])
        checked += 1
    assert len(table) == per.groupby(["method", "target", "metric"]).ngroups
    return checked


# ----------------------------------------------------------------------------- a real 2-seed digits group


@pytest.fixture(scope="module")
def smoke_group(tmp_path_factory) -> Path:
    return build_smoke_group(tmp_path_factory.mktemp("group_table") / "smoke-seeds")


@pytest.fixture(scope="module")
def smoke_table(smoke_group: Path) -> pd.DataFrame:
    return group_table_frame(smoke_group, targets=TARGETS)


def test_group_table_is_the_mean_and_t_interval_of_the_single_run_tables(smoke_group: Path, smoke_table):
    runs = rf.load_group(smoke_group).runs()
    table = smoke_table
    assert set(table["n_seeds"]) == {2} and set(table["seeds_label"]) == {"2 seeds"}
    assert _check_against_single_runs(table, runs) > 50
    spread = table[table["metric"] == "auroc"]["half_width"]
    assert (spread > 0).any()  # the seeds really differ: the check above was not trivially 0 = 0


def test_one_seed_group_reads_as_the_single_run_table(smoke_group: Path, tmp_path: Path):
    one = tmp_path / "one-seed"
    shutil.copytree(smoke_group / "seed-0", one / "seed-0")
    manifest = rf.load_group(smoke_group).manifest
    rf.write_group_manifest(one, {**manifest, "name": "one-seed", "seeds": [0], "runs": ["seed-0"]})
    run = rf.load_run(one / "seed-0")
    single = table_frame(run, targets=TARGETS)
    table = group_table_frame(one, targets=TARGETS)
    assert set(table["n_seeds"]) <= {0, 1} and table["half_width"].isna().all()
    got = table[table["metric"] != "sparsity"].set_index(["method", "target", "metric"])["mean"]
    want = single.set_index(["method", "target", "metric"])["value"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    group_text, run_text = paper_markdown(one, TARGETS), paper_markdown(run, TARGETS)
    head, _, body = group_text.partition("\n")
    assert "**one-seed** (1 seed)" in head and "±" not in group_text
    assert body == run_text.partition("\n")[2]  # the table itself is the one-run table


def test_table_command_prints_the_group_table(smoke_group: Path, smoke_table, capsys):
    from analysis.cli import main
    from analysis.table import paper_cells

    assert main(["table", str(smoke_group), "--sparsity", "25", "50", "90"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.startswith("**smoke-seeds** (2 seeds: 0, 1)") and "Student-t" in head
    table = smoke_table
    row = table[(table["method"] == "rtl") & (table["target"] == 50.0) & (table["metric"] == "auroc")].iloc[0]
    assert f"| {row['mean']:.3f} ± {row['half_width']:.3f} |" in out
    sp = table[(table["method"] == "rtl") & (table["target"] == 50.0) & (table["metric"] == "sparsity")].iloc[
        0
    ]
    assert f"{100 * sp['mean']:.1f} % ({sp['levels']})" in out
    cells = paper_cells(table, TARGETS)
    assert len(out.splitlines()) == 4 + len(cells)  # header, blank, column names, rule, one line per row
    for row in cells.itertuples(index=False):
        assert f"| {row.method} | " + " | ".join(row[2:]) + " |" in out


# ----------------------------------------------- synthetic 3-seed group: missing methods, other levels


@pytest.fixture()
def ragged_group(tmp_path: Path) -> Path:
    """Three synthetic seeds; seed 2 swept to level 2 only and without ``imp``."""
    root = tmp_path / "ragged"
    for seed, n_levels in ((0, 5), (1, 5), (2, 3)):
        write_synthetic_run(root / f"seed-{seed}", n_levels=n_levels, seed=seed)
    shutil.rmtree(root / "seed-2" / "imp")  # declared, never run: the seed lacks the method
    rf.write_group_manifest(
        root, {"name": "ragged", "seeds": [0, 1, 2], "runs": ["seed-0", "seed-1", "seed-2"]}
    )
    return root


def test_methods_missing_from_a_seed_and_different_levels(ragged_group: Path):
    group = rf.load_group(ragged_group)
    runs = group.runs()
    assert runs[2].methods == ["rtl"]
    table = group_table_frame(group, targets=TARGETS)
    assert set(table.loc[table["method"] == "imp", "n_seeds"]) == {2}
    assert set(table.loc[table["method"] == "rtl", "n_seeds"]) == {3}
    assert _check_against_single_runs(table, runs) > 30  # n = 2 and n = 3 t quantiles alike
    at90 = table[(table["method"] == "rtl") & (table["target"] == 90.0) & (table["metric"] == "sparsity")]
    assert at90["levels"].item() == "L2-4"  # seeds 0, 1 reach level 4; seed 2 stops at level 2
    text = group_paper_markdown(group, TARGETS)
    assert "**ragged** (3 seeds: 0, 1, 2)" in text
    imp_rows = [line for line in text.splitlines() if line.split("|")[2:3] == [" imp "]]
    scored = [line for line in imp_rows if "| – | – | – |" not in line]  # not the rows imp lacks
    assert scored and all(line.count("(2 of 3 seeds)") == 3 for line in scored)
    rtl_rows = [line for line in text.splitlines() if line.split("|")[2:3] == [" rtl "]]
    assert rtl_rows and not any("seeds)" in line for line in rtl_rows)  # every seed has rtl
    assert "L2-4)" in text


def test_group_report_shows_the_same_table(ragged_group: Path):
    from analysis.report import _Page, _seed_section_results
    from analysis.table import paper_cells

    page = _Page()  # the results section of build_group_report, alone (the rest is tested in test_seeds)
    _seed_section_results(page, rf.load_group(ragged_group), ["imp", "rtl"], 3)
    html = "".join(page.parts)
    cells = paper_cells(group_table_frame(ragged_group), n_seeds=3)
    assert "~90 %" in html and "sparsity (level)" in html and "(2 of 3 seeds)" in html
    shown = [c for c in cells.iloc[:, 2:].to_numpy().ravel() if c != "–"]
    assert len(shown) > 30 and all(f"<td>{c}</td>" in html for c in shown)


def test_bad_paths_get_one_error_line(tmp_path: Path, capsys):
    from analysis.cli import main

    assert main(["table", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    empty = tmp_path / "empty-group"  # a group whose runs never started
    rf.write_group_manifest(empty, {"name": "empty", "seeds": [0, 1], "runs": ["seed-0", "seed-1"]})
    assert main(["table", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no run of the group" in err[0]


def test_per_level_seed_tables_skip_a_method_a_seed_lacks(ragged_group: Path):
    from analysis.seeds import seed_table

    res = seed_table(ragged_group, "results", ["imp", "rtl"])
    assert set(res.loc[res["method"] == "imp", "n_seeds"]) == {2}
    rtl = res[res["method"] == "rtl"]
    assert set(rtl.loc[rtl["level"] <= 2, "n_seeds"]) == {3} and set(
        rtl.loc[rtl["level"] > 2, "n_seeds"]
    ) == {2}
    col = seed_table(ragged_group, "collapse", ["imp"])  # seed 2 has none of the methods asked for
    assert len(col) and set(col["n_seeds"]) == {2} and col["level"].dtype == np.int64
