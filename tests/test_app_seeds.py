"""The dashboard across seeds (AppTest): bands and "n seeds" captions on a real 2-seed group; the null."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from seed_groups import build_smoke_group, description
from streamlit.testing.v1 import AppTest

from artifacts import run_format as rf

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
TIMEOUT = 180


@pytest.fixture(scope="session")
def smoke_seeds_root(tmp_path_factory) -> Path:
    """A folder holding one real 2-seed group of the shrunk smoke preset (trained here, ~10 s)."""
    root = tmp_path_factory.mktemp("app_seeds")
    build_smoke_group(root / "smoke-seeds")
    return root


@pytest.fixture(scope="session")
def null_root(tmp_path_factory) -> Path:
    """Two synthetic groups side by side: ``real`` and its random-partition control ``real-null``."""
    from conftest import write_synthetic_run

    root = tmp_path_factory.mktemp("app_null")
    for name, partition, offset in (("real", "class", 0), ("real-null", "random", 10)):
        out = root / name
        out.mkdir()
        rf.write_group_manifest(
            out,
            {
                "name": name,
                "seeds": [0, 1],
                "runs": ["seed-0", "seed-1"],
                "methods": ["imp", "rtl"],
                "description": description(partition),
            },
        )
        for s in (0, 1):
            write_synthetic_run(out / f"seed-{s}", seed=offset + s)
    return root


def _app(monkeypatch, root: Path, run: Path, page: str) -> AppTest:
    monkeypatch.setenv("RTL_RUNS_DIR", str(root))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(run)
    at.run()
    if page != "overview":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, "\n".join(str(e.value) for e in at.exception)
    assert not at.error, "\n".join(str(e.value) for e in at.error)
    return at


def _traces(at: AppTest) -> list[dict]:
    return [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]


def _bands(at: AppTest) -> list[dict]:
    return [t for t in _traces(at) if t.get("fill") == "toself"]


def _captions(at: AppTest) -> str:
    return " ".join(str(c.value) for c in at.caption)


def test_similarity_shows_the_band_across_two_seeds(monkeypatch, smoke_seeds_root):
    at = _app(monkeypatch, smoke_seeds_root, smoke_seeds_root / "smoke-seeds" / "seed-0", "similarity")
    box = at.checkbox(key="similarity.seeds")
    assert box.label == "Across seeds" and box.value is True
    assert "2 seeds (0, 1)" in _captions(at)
    bands = _bands(at)
    assert bands, "no 95 % band drawn"
    # the band encloses the mean line of its method
    lines = {t["name"]: t for t in _traces(at) if t.get("mode") == "lines+markers"}
    assert set(lines) >= {"rtl", "independent"}
    assert "No random-partition control was found" in _captions(at)
    assert "data.partition=random" in _captions(at)
    box.uncheck().run()
    assert not _bands(at) and "The sidebar's seed alone (the group has 2 seeds)" in _captions(at)


def test_collapse_and_overview_across_seeds(monkeypatch, smoke_seeds_root):
    at = _app(monkeypatch, smoke_seeds_root, smoke_seeds_root / "smoke-seeds" / "seed-1", "overview")
    assert at.checkbox(key="overview.seeds").value is True
    table = next(d.value for d in at.dataframe if "seeds" in d.value.columns)
    assert set(table["seeds"]) == {"2 seeds"}
    cells = table.drop(columns=["method", "level", "sparsity", "seeds"]).astype(str)
    assert cells.apply(lambda c: c.str.contains(" ± ")).to_numpy().any()
    at.switch_page("views/collapse.py").run()
    assert not at.exception and at.checkbox(key="collapse.seeds").value is True
    titles = [
        json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")
    ]
    assert any("mean across 2 seeds" in t for t in titles)
    assert _bands(at)
    assert "No random-partition control was found beside this group" in _captions(at)
    at.switch_page("views/fairness.py").run()
    assert not at.exception and at.checkbox(key="fairness.seeds").value is True
    layouts = [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]
    assert any("mean across 2 seeds" in lay.get("title", {}).get("text", "") for lay in layouts)
    assert _bands(at)


def test_one_seed_run_is_marked(monkeypatch, tmp_path, smoke_seeds_root):
    import shutil

    alone = tmp_path / "alone"
    shutil.copytree(smoke_seeds_root / "smoke-seeds" / "seed-0", alone)
    at = _app(monkeypatch, tmp_path, alone, "similarity")
    assert "1 seed" in _captions(at) and not _bands(at)
    assert "not part of a run group" in _captions(at)


def test_null_control_band_on_similarity_and_projection(monkeypatch, null_root):
    at = _app(monkeypatch, null_root, null_root / "real" / "seed-0", "similarity")
    names = [t.get("name") for t in _traces(at)]
    assert "rtl · null" in names, names
    null_bands = [t for t in _bands(at) if t.get("legendgroup") == "rtl · null"]
    assert null_bands
    assert "random-partition control `real-null` (2 seeds)" in _captions(at)
    at.switch_page("views/projection.py").run()
    assert not at.exception
    assert "rtl · null" in [t.get("name") for t in _traces(at)]
    # the Collapse page draws the control's curve of the same method and signal beside the real one
    at.switch_page("views/collapse.py").run()
    assert not at.exception and at.checkbox(key="collapse.seeds").value is True
    traces = _traces(at)
    method = at.selectbox(key="collapse.method").value
    real = [t for t in traces if t.get("name") == method]
    null = [t for t in traces if t.get("name") == f"{method} · null"]
    assert real and null, [t.get("name") for t in traces]
    assert [t for t in _bands(at) if t.get("legendgroup") == f"{method} · null"]
    assert not np.allclose(np.asarray(real[0]["y"], float)[:2], np.asarray(null[0]["y"], float)[:2])
    assert "random-partition control `real-null` (2 seeds" in _captions(at)
    at = _app(monkeypatch, null_root, null_root / "real-null" / "seed-1", "similarity")
    assert "`real-null` is itself a random-partition control" in _captions(at)


def test_seeds_that_do_not_align_are_a_warning(monkeypatch, tmp_path):
    from seed_groups import write_mask_run

    out = tmp_path / "mixed"
    out.mkdir()
    rf.write_group_manifest(
        out, {"name": "mixed", "seeds": [0, 1], "runs": ["seed-0", "seed-1"], "description": description()}
    )
    write_mask_run(out / "seed-0", seed=0, shared=True, fraction=0.3)
    write_mask_run(out / "seed-1", seed=1, shared=True, fraction=0.5)
    monkeypatch.setenv("RTL_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(out / "seed-0")
    at.run()
    at.switch_page("views/similarity.py").run()
    assert not at.exception
    assert any("do not prune alike" in str(w.value) for w in at.warning)
