"""The dashboard under AppTest: every page on every run; the sidebar changes what pages show."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from streamlit.testing.v1 import AppTest

from analysis import find_runs, load_run

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
# The seven pages of the brief; any other page file under app/views/ is rendered too.
CORE_PAGES = ["overview", "similarity", "collapse", "fairness", "attention", "projection", "coding"]
PAGES = CORE_PAGES + sorted(p.stem for p in (REPO / "app" / "views").glob("*.py") if p.stem not in CORE_PAGES)
TIMEOUT = 180


def _loadable(path: Path) -> bool:
    try:
        load_run(path)
    except Exception:  # noqa: BLE001 - a run still being written is simply not offered
        return False
    return True


def _one_per_group(paths: list[Path]) -> list[Path]:
    """The single runs and the first seed of each group: every seed of a group renders alike.

    Random-partition controls (``*-null``, stored without scores: the scoreless path is
    tested on a copy of the smoke run) and variants of a group's description (``*-count``)
    are left out: their pages draw from the same code as their group's. So is
    ``adult-mlp-cluster-sweep`` (the same kind of run as the fashion group, 40 s of pages):
    its Fairness page is tested below.
    """
    seen, out = set(), []
    for p in paths:
        key = p.parent if (p.parent / "group.json").is_file() else p
        if key.name.endswith(("-null", "-count")) or key.name == "adult-mlp-cluster-sweep":
            continue
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


EMBEDDED = [p for p in find_runs(REPO / "artifacts") if _loadable(p)]
EMBEDDED_PAGES = _one_per_group(EMBEDDED)


# The pages that draw an "Across seeds" checkbox for a run of a group (app/seeds.py).
SEED_PAGES = ("overview", "similarity", "collapse", "fairness", "attention")


def _app(monkeypatch: pytest.MonkeyPatch, runs_dir: Path, run: Path, across_seeds: bool = True) -> AppTest:
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(run)
    if not across_seeds:  # the sidebar's seed alone (the remembered value of the checkbox)
        for page in SEED_PAGES:
            at.session_state[f"keep:{page}.seeds"] = False
    return at.run()


def _no_exception(at: AppTest, where: str) -> None:
    assert not at.exception, f"{where}: " + "\n".join(str(e.value) for e in at.exception)
    assert not at.error, f"{where}: " + "\n".join(str(e.value) for e in at.error)


def _messages(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.info, at.warning) for e in kind)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _array(a) -> np.ndarray:
    """A plotly JSON array: a list, or plotly 6's base64 typed array."""
    if isinstance(a, dict) and "bdata" in a:
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=np.dtype(a["dtype"]))
        shape = a.get("shape")
        return out.reshape([int(s) for s in str(shape).split(",")]) if shape else out
    return np.asarray(a, dtype=float)


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert frames, f"no table with a {column!r} column"
    return frames[0]


# ----------------------------------------------------------------------------- every page renders


def _all_pages(at: AppTest, name: str) -> AppTest:
    _no_exception(at, f"{name}/overview")
    for page in PAGES[1:]:
        at.switch_page(f"views/{page}.py").run()
        _no_exception(at, f"{name}/{page}")
        assert at.title, f"{name}/{page}: no title"
    return at


# The embedded runs when there are any, else a smoke run trained for the session.
REAL_RUNS = EMBEDDED_PAGES or ["smoke"]


def _run_id(p) -> str:
    return (
        p if isinstance(p, str) else (f"{p.parent.name}/{p.name}" if p.name.startswith("seed-") else p.name)
    )


@pytest.mark.parametrize("run", REAL_RUNS, ids=[_run_id(p) for p in REAL_RUNS])
def test_every_page_on_real_runs(monkeypatch, request, tmp_path, run):
    if run == "smoke":
        run = request.getfixturevalue("smoke_run_dir")
    # every page of one seed; the views across seeds are drawn on the smoke group
    # (test_every_page_on_synthetic_runs) and on fashion-mlp-class-sweep (the similarity test below)
    at = _app(monkeypatch, tmp_path, run, across_seeds=False)
    for i, page in enumerate(PAGES):  # one pass: each page rendered once
        if i:
            at.switch_page(f"views/{page}.py").run()
        _no_exception(at, f"{run.name}/{page}")
        assert at.title, f"{run.name}/{page}: no title"
        assert _charts(at) or _messages(at), f"{run.name}/{page}: neither a chart nor a message"


@pytest.mark.parametrize("name", ["multi", "groups"])
def test_every_page_on_synthetic_runs(monkeypatch, synthetic_runs_dir, name):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / name)
    _all_pages(at, name)
    at.switch_page("views/attention.py").run()
    assert "no attention layers" in _messages(at)


# ----------------------------------------------------------------------------- the sidebar drives the pages


def _target(run, level: int, method: str = "rtl") -> float:
    """The sidebar's sparsity option of a method's level."""
    return round(float(run.sparsity(method, level)), 2)


def test_sparsity_target_sets_each_methods_level(monkeypatch, synthetic_runs_dir):
    run_dir = synthetic_runs_dir / "multi"
    run = load_run(run_dir)
    at = _app(monkeypatch, synthetic_runs_dir, run_dir)
    at.multiselect(key="overview.targets").set_value([]).run()
    for level in (1, 4):
        at.select_slider(key="sidebar.sparsity").set_value(_target(run, level)).run()
        _no_exception(at, f"level {level}")
        table = _frame(at, "balanced_accuracy")
        assert list(table["level"]) == [level, level]
        expected = [run.sparsity(m, level) for m in ("imp", "rtl")]
        np.testing.assert_allclose(table["sparsity"], expected)


def test_method_filter_limits_the_results(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    assert set(_frame(at, "balanced_accuracy")["method"]) == {"imp", "rtl"}
    at.multiselect(key="sidebar.methods").set_value(["rtl"]).run()
    assert set(_frame(at, "balanced_accuracy")["method"]) == {"rtl"}


def test_heatmap_is_jaccard_of_the_chosen_level_and_tickets(monkeypatch, synthetic_runs_dir):
    run_dir = synthetic_runs_dir / "multi"
    run = load_run(run_dir)
    at = _app(monkeypatch, synthetic_runs_dir, run_dir)
    at.switch_page("views/similarity.py").run()
    for level, tickets in ((4, ["s0", "s1", "s2", "s3"]), (2, ["s1", "s3", "s0"])):
        at.select_slider(key="sidebar.sparsity").set_value(_target(run, level))
        at.multiselect(key="sidebar.tickets").set_value(tickets).run()
        _no_exception(at, f"level {level}")
        heat = next(t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap")
        labels = list(heat["x"])
        assert sorted(labels) == sorted(tickets) and list(heat["y"]) == labels
        masks = run.masks("rtl", level)
        flat = np.concatenate([m.reshape(m.shape[0], -1) for m in masks.values()], axis=1)
        idx = [run.ticket_names("rtl").index(t) for t in labels]
        oracle = 1 - squareform(pdist(flat[idx], "jaccard"))  # scipy: the oracle
        np.testing.assert_allclose(_array(heat["z"]).reshape(len(labels), len(labels)), oracle, atol=1e-12)


def test_pair_drilldown_follows_the_pair_choice(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.switch_page("views/similarity.py").run()
    at.selectbox(key="similarity.pair").set_value(("s1", "s2")).run()
    titles = [c["layout"].get("title", {}).get("text", "") for c in _charts(at)]
    assert any("s1 × s2" in t for t in titles)


def test_choices_survive_page_switches(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    target = _target(load_run(synthetic_runs_dir / "multi"), 3)
    at.select_slider(key="sidebar.sparsity").set_value(target).run()
    at.switch_page("views/similarity.py").run()
    at.radio(key="similarity.measure").set_value("phi").run()
    at.switch_page("views/coding.py").run()
    at.switch_page("views/similarity.py").run()
    assert at.radio(key="similarity.measure").value == "phi"
    assert at.select_slider(key="sidebar.sparsity").value == target


def test_label_free_toggle_hides_labelled_quantities(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.switch_page("views/collapse.py").run()

    def names() -> set[str]:
        return {str(t.get("name", "")) for c in _charts(at) for t in c["data"]}

    assert any("balanced accuracy" in n for n in names())
    at.toggle(key="collapse.label_free").set_value(True).run()
    _no_exception(at, "label-free")
    shown = names()
    assert shown and not any("accuracy" in n or n in {"hit", "late", "miss"} for n in shown)
    assert not [s for s in at.selectbox if s.key == "collapse.metric"]


def test_fairness_group_column_changes_the_groups(monkeypatch, synthetic_runs_dir):
    run_dir = synthetic_runs_dir / "groups"
    at = _app(monkeypatch, synthetic_runs_dir, run_dir)
    at.switch_page("views/fairness.py").run()
    assert set(_frame(at, "ci_low")["group"]) == {"F", "M"}
    at.multiselect(key="fairness.group_by").set_value(["class", "sex"]).run()
    groups = set(_frame(at, "ci_low")["group"])
    preds = load_run(run_dir).predictions("imp", 0)
    assert groups == set(preds["class"] + " & " + preds["sex"])


# ----------------------------------------------------------------------------- clear messages


def test_run_without_groups_says_so(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.switch_page("views/fairness.py").run()
    assert "no group column" in _messages(at)
    assert not _charts(at)


def test_single_ticket_similarity_says_so(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.multiselect(key="sidebar.methods").set_value(["imp"]).run()
    at.switch_page("views/similarity.py").run()
    assert "single ticket" in _messages(at)


def test_run_query_parameter_opens_that_run(monkeypatch, synthetic_runs_dir):
    monkeypatch.setenv("RTL_RUNS_DIR", str(synthetic_runs_dir))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.query_params["run"] = "groups"
    at.run()
    _no_exception(at, "?run=groups")
    assert at.selectbox(key="sidebar.run").value == str(synthetic_runs_dir / "groups")
    assert at.title[0].value.endswith("groups")


def test_no_runs_explains_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr("app.data.EMBEDDED_DIR", tmp_path / "nothing")
    monkeypatch.setenv("RTL_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT).run()
    _no_exception(at, "no runs")
    assert "python -m lottery train" in _messages(at)


# ----------------------------------------------------------------------------- downloads and the house rules


def test_every_table_and_figure_downloads(monkeypatch, synthetic_runs_dir):
    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "groups")
    for page in CORE_PAGES:
        if page != "overview":
            at.switch_page(f"views/{page}.py").run()
        keys = [b.key for b in at.get("download_button")]
        assert sum(k.endswith(".csv") for k in keys) >= len(at.dataframe), page
        assert sum(k.endswith(".html") for k in keys) >= len(_charts(at)), page
    at.switch_page("views/overview.py").run()
    assert "overview.report" in [b.key for b in at.get("download_button")]


def test_runs_dir_argument_and_environment(monkeypatch, tmp_path):
    from app import data

    assert data.runs_dir_argument(["--runs-dir", "/x/runs"]) == "/x/runs"
    assert data.runs_dir_argument(["--other"]) is None
    monkeypatch.setenv("RTL_RUNS_DIR", str(tmp_path))
    roots = data.run_roots()
    assert roots[0] == str(data.EMBEDDED_DIR) and str(tmp_path.resolve()) in roots


def test_discovery_checks_a_run_once_per_version_and_sees_a_later_corruption(monkeypatch, tmp_path):
    from conftest import write_synthetic_run

    from app import data
    from artifacts import run_format as rf

    run_dir = write_synthetic_run(tmp_path / "runs" / "r", seed=4)
    opened = []
    real = data.load_run
    monkeypatch.setattr(data, "load_run", lambda p: opened.append(str(p)) or real(p))
    data._checked_run.clear()
    roots = (str(tmp_path / "runs"),)
    for _ in range(2):  # the second time past discovery's time-to-live
        data.discover_runs.clear()
        assert data.discover_runs(roots) == ([str(run_dir)], [])
    assert opened == [str(run_dir)]  # opened (and checked) once
    (rf.level_dir(run_dir, "rtl", 1) / rf.LEVEL_JSON).write_text("{broken")
    data.discover_runs.clear()
    good, bad = data.discover_runs(roots)
    assert good == [] and [p for p, _ in bad] == [str(run_dir)] and "level.json" in bad[0][1]
    assert opened == [str(run_dir)] * 2


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_bytes())  # source is UTF-8 whatever the locale
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("path", sorted((REPO / "app").rglob("*.py")), ids=lambda p: p.name)
def test_app_never_imports_lottery_nor_numpy(path):
    # The app calls analysis and renders: no training code, no array arithmetic of its own.
    assert not _imports(path) & {"lottery", "numpy", "torch"}


def test_only_the_data_module_caches():
    for path in (REPO / "app").rglob("*.py"):
        if path.name != "data.py":
            assert "st.cache_" not in path.read_text(), path


VIT = [p for p in EMBEDDED if load_run(p).manifest.get("model", {}).get("name") == "vit"]


@pytest.mark.skipif(not VIT, reason="no embedded transformer run")
def test_attention_heatmap_is_layers_by_heads(monkeypatch, tmp_path):
    run = load_run(VIT[0])
    at = _app(monkeypatch, tmp_path, VIT[0], across_seeds=False)  # the band is tested in test_attention_seeds
    first = run.ticket_names("rtl")[0]
    at.multiselect(key="sidebar.tickets").set_value([first]).run()  # one ticket probed: a quarter of the cost
    at.switch_page("views/attention.py").run()
    _no_exception(at, "attention")
    heat = next(t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap")
    z = _array(heat["z"])
    model = run.manifest["model"]
    assert z.size == model["depth"] * model["heads"]
    assert np.nanmin(z) >= 0 and np.nanmax(z) <= 1  # normalised entropy
    at.radio(key="attention.value").set_value("entropy_change").run()
    _no_exception(at, "attention change")
    change = _array(next(t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap")["z"])
    assert change.size == z.size and not np.allclose(change, z)
    assert np.nanmax(np.abs(change)) <= 1  # a difference of two normalised entropies


# ----------------------------------------------------------------------------- fairer measures (issue 13)


def _embedded(name: str) -> Path:
    path = REPO / "artifacts" / name
    if path not in EMBEDDED:
        pytest.skip(f"no embedded run {name}")
    return path


def test_similarity_page_shows_the_layer_mean_and_names_disjoint_heads(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path, _embedded("fashion-mlp-class-sweep/seed-0"), across_seeds=False)
    at.multiselect(key="sidebar.methods").set_value(["rtl"]).run()  # one method: the null of one
    at.session_state["keep:similarity.seeds"] = True  # across seeds on this page only
    at.switch_page("views/similarity.py").run()
    _no_exception(at, "similarity")
    titles = [c["layout"].get("title", {}).get("text", "") for c in _charts(at)]
    assert any("mean across 3 seeds" in t for t in titles)  # a group opens across its seeds
    at.checkbox(key="similarity.seeds").uncheck().run()  # this seed alone
    _no_exception(at, "similarity, one seed")
    assert "head.weight" in _messages(at) and "disjoint by construction" in _messages(at)
    names = [t.get("name", "") for c in _charts(at) for t in c["data"]]
    assert any(n.endswith("J* (equal layer weights)") for n in names)
    options = at.selectbox(key="similarity.layer").options
    assert "__layer_mean__" in options or "layer mean (equal weights)" in options


def test_fairness_page_flags_groups_by_the_count_the_metric_rests_on(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path, _embedded("adult-mlp-cluster-sweep/seed-0"), across_seeds=False)
    at.multiselect(key="sidebar.methods").set_value(["rtl"])  # the gaps of one method
    # the page's choices as remembered values: the page is computed once, with them
    at.session_state["keep:fairness.group_by"] = ["sex", "race"]
    at.session_state["keep:fairness.metric"] = "true_positive_rate"
    at.switch_page("views/fairness.py").run()
    _no_exception(at, "fairness")
    assert at.multiselect(key="fairness.group_by").value == ["sex", "race"]
    assert at.selectbox(key="fairness.metric").value == "true_positive_rate"
    assert "Female & Amer-Indian-Eskimo (n=66, 3 counted)" in _messages(at)
    gap = next(
        c
        for c in _charts(at)
        if c["layout"].get("yaxis", {}).get("title", {}).get("text", "").endswith("difference")
    )
    assert all(t.get("error_y", {}).get("visible") for t in gap["data"])


def test_attention_page_states_the_trend(monkeypatch, tmp_path):
    if not VIT:
        pytest.skip("no embedded transformer run")
    at = _app(monkeypatch, tmp_path, VIT[0], across_seeds=False)
    at.switch_page("views/attention.py").run()
    _no_exception(at, "attention")
    text = " ".join(str(m.value) for m in at.markdown)
    assert "Attention entropy rises with sparsity" in text
    assert at.radio(key="attention.images").options == ["own subset", "all images"]


def test_dense_reference_is_offered_but_not_chosen(monkeypatch, tmp_path):
    # a run with rtl but no imp carries a one-level "dense" method: a reference point, not a sweep
    import shutil

    from conftest import write_synthetic_run

    from artifacts import run_format as rf

    run_dir = write_synthetic_run(tmp_path / "runs" / "withdense", seed=3)
    manifest = rf.read_json(run_dir / rf.MANIFEST)
    manifest["methods"] = {"rtl": manifest["methods"]["rtl"], "dense": manifest["methods"]["imp"]}
    manifest["dense_reference"] = {"method": "dense", "level": 0}
    rf.write_manifest(run_dir, manifest)
    (run_dir / "imp").rename(run_dir / "dense")
    for lv in rf.completed_levels(run_dir, "dense")[1:]:
        shutil.rmtree(rf.level_dir(run_dir, "dense", lv))
    info_path = rf.level_dir(run_dir, "rtl", 1) / rf.LEVEL_JSON  # the engine's overlap record of one level
    info = rf.read_json(info_path)
    info["overlap"] = {"histogram": [10, 20, 30, 40], "mean": 3.0, "max": 4}
    rf.write_json(info_path, info)
    at = _app(monkeypatch, tmp_path / "runs", run_dir)
    _no_exception(at, "overview")
    shared = _frame(at, "mean_c")
    assert list(shared["level"]) == [1] and shared["c=4"].item() == pytest.approx(0.4)
    box = at.multiselect(key="sidebar.methods")
    assert box.value == ["rtl"]
    assert "dense (reference)" in box.options
    for page in ("collapse", "fairness"):
        at.switch_page(f"views/{page}.py").run()
        _no_exception(at, page)


def test_every_page_on_a_run_without_scores(monkeypatch, tmp_path, smoke_run_dir):
    # the shipped random-partition controls keep masks and class records, not ticket scores
    import shutil

    from artifacts import run_format as rf

    run = tmp_path / "runs" / "no-scores"
    shutil.copytree(smoke_run_dir, run)
    assert rf.drop_scores(run) > 0
    assert not any(c.startswith("score_") for c in load_run(run).predictions("rtl", 1).columns)
    _all_pages(_app(monkeypatch, tmp_path / "runs", run), "no-scores")
