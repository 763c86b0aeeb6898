"""The dashboard on imported runs (issue 15): heatmaps, logged accuracy curves, advice that applies.

Runs are converted by the importer from an OpenLTH tree, a folder of
torch.nn.utils.prune checkpoints and a single checkpoint; the oracles are the
masks and accuracies that went into them (scipy's Jaccard for the heatmap).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from streamlit.testing.v1 import AppTest

from artifacts.run_format import load_run
from ingest import import_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import _array, _charts, _messages, _no_exception  # noqa: E402
from test_importers import make_openlth, make_torch_prune  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
TIMEOUT = 180
METHOD = "imported"


@pytest.fixture(scope="module")
def imported_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("imports")
    lth = make_openlth(root / "open_lth_data", replicates=(1, 2, 3), levels=4)
    (root / "tickets").mkdir()
    for k in range(3):
        make_torch_prune(root / "tickets" / f"t{k}.pt", seed=k)
    runs = root / "runs"
    return {
        "root": runs,
        "lth": import_checkpoints([root / "open_lth_data"], runs / "lth"),
        "lth_src": lth,
        "folder": import_checkpoints([root / "tickets"], runs / "folder"),
        "single": import_checkpoints([root / "tickets" / "t0.pt"], runs / "single"),
    }


def _app(monkeypatch: pytest.MonkeyPatch, runs_dir: Path, run: Path) -> AppTest:
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(run)
    at.run()
    _no_exception(at, "overview")
    return at


def _heatmap_matches_jaccard(at: AppTest, run_dir: Path, level: int) -> None:
    heat = [t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap"]
    assert heat, "no heatmap on the Similarity page: " + _messages(at)
    labels = list(heat[0]["x"])
    run = load_run(run_dir)
    assert sorted(labels) == sorted(run.ticket_names(METHOD))
    masks = run.masks(METHOD, level)
    flat = np.concatenate([m.reshape(m.shape[0], -1) for m in masks.values()], axis=1)
    idx = [run.ticket_names(METHOD).index(t) for t in labels]
    oracle = 1 - squareform(pdist(flat[idx], "jaccard"))
    np.testing.assert_allclose(_array(heat[0]["z"]).reshape(len(labels), len(labels)), oracle, atol=1e-12)


@pytest.mark.parametrize("name", ["lth", "folder"])
def test_similarity_heatmap_of_a_multi_ticket_import(monkeypatch, imported_runs, name):
    run_dir = imported_runs[name]
    at = _app(monkeypatch, imported_runs["root"], run_dir)
    assert at.multiselect(key="sidebar.tickets").options == load_run(run_dir).ticket_names(METHOD)
    at.switch_page("views/similarity.py").run()
    _no_exception(at, f"{name}/similarity")
    level = 0
    if name == "lth":  # the sidebar's sparsity target picks the level nearest it
        level = 2
        target = round(float(load_run(run_dir).sparsity(METHOD, level)), 2)
        at.select_slider(key="sidebar.sparsity").set_value(target).run()
    _heatmap_matches_jaccard(at, run_dir, level)
    # the ticket filter narrows the heatmap
    names = load_run(run_dir).ticket_names(METHOD)
    at.multiselect(key="sidebar.tickets").set_value(names[:2]).run()
    heat = next(t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap")
    assert sorted(heat["x"]) == sorted(names[:2])


def test_openlth_accuracy_in_the_overview_table_and_figure(monkeypatch, imported_runs):
    src = imported_runs["lth_src"]
    at = _app(monkeypatch, imported_runs["root"], imported_runs["lth"])
    levels = [0, 1, 2, 3]
    run = load_run(imported_runs["lth"])
    targets = [round(float(run.sparsity(METHOD, lv)), 2) for lv in levels]
    at.select_slider(key="sidebar.sparsity").set_value(targets[0]).run()
    at.multiselect(key="overview.targets").set_value(targets[1:]).run()
    table = next(d.value for d in at.dataframe if "test_accuracy" in d.value.columns)
    want = [np.mean([rep["acc"][lv] for rep in src.values()]) for lv in levels]
    assert list(table["level"]) == levels
    np.testing.assert_allclose(table["test_accuracy"].to_numpy(float), want, atol=1e-12)
    assert at.selectbox(key="overview.metric").value == "test_accuracy"
    ys = [_array(t["y"]) for c in _charts(at) for t in c["data"] if "y" in t]
    assert any(len(y) == 4 and np.allclose(y, want, atol=1e-12) for y in ys), "no test_accuracy curve"
    assert "record none" not in _messages(at)  # the alarm is scored against the logged accuracy
    alarm = next(d.value for d in at.dataframe if "alarm_level" in d.value.columns)
    assert list(alarm["metric"]) == ["test_accuracy"]


def test_openlth_accuracy_curves_on_the_collapse_page(monkeypatch, imported_runs):
    src = imported_runs["lth_src"]
    at = _app(monkeypatch, imported_runs["root"], imported_runs["lth"])
    at.switch_page("views/collapse.py").run()
    _no_exception(at, "collapse")
    assert at.selectbox(key="collapse.metric").value == "test_accuracy"
    ys = [_array(t["y"]) for c in _charts(at) for t in c["data"] if "y" in t]
    mean = [np.mean([rep["acc"][lv] for rep in src.values()]) for lv in range(4)]
    assert any(len(y) == 4 and np.allclose(y, mean, atol=1e-12) for y in ys), "no mean accuracy curve"
    for rep in src.values():  # one labelled curve per ticket on the all-tickets figure
        assert any(len(y) == 4 and np.allclose(y, rep["acc"], atol=1e-12) for y in ys)
    # each ticket on its own
    at.selectbox(key="collapse.ticket").set_value("replicate_2").run()
    _no_exception(at, "collapse replicate_2")
    ys = [_array(t["y"]) for c in _charts(at) for t in c["data"] if "y" in t]
    assert any(len(y) == 4 and np.allclose(y, src["replicate_2"]["acc"], atol=1e-12) for y in ys)


def test_single_ticket_import_gets_advice_that_applies(monkeypatch, imported_runs):
    at = _app(monkeypatch, imported_runs["root"], imported_runs["single"])
    for page in ("similarity", "projection", "attention", "overview"):
        at.switch_page(f"views/{page}.py").run()
        _no_exception(at, page)
        text = _messages(at) + " ".join(str(c.value) for c in at.caption)
        assert "`rtl`" not in text and "`independent`" not in text, (page, text)
        assert "`?`" not in text and "? partition" not in text, (page, text)
    at.switch_page("views/similarity.py").run()
    assert "import several checkpoints together" in _messages(at)
    at.switch_page("views/attention.py").run()
    assert "imported from checkpoints" in _messages(at)


def test_single_ticket_method_of_a_trained_run_points_to_its_own_methods(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.multiselect(key="sidebar.methods").set_value(["imp"]).run()
    at.switch_page("views/similarity.py").run()
    text = _messages(at)
    assert "Choose `rtl` in the sidebar" in text and "independent" not in text  # the run has no independent
