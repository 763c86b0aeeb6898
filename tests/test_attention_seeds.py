"""Attention entropy across seeds: the analysis table, the group report and the Attention page.

One real 2-seed group of a tiny ViT on digits (weights kept at every level, a
16-image probe batch), trained once for the module (a few CPU seconds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from seed_groups import build_smoke_group, write_mask_run

pytest.importorskip("torch")

VIT_OVERRIDES = [
    "model.name=vit",
    "model.dim=8",
    "model.depth=2",
    "model.heads=2",
    "model.patch=4",
    "model.mlp_ratio=1",
    "probe_size=16",
    "keep_weights=true",
    "methods=imp,rtl",
    "data.partition=kmeans",
    "data.k=3",
    "rtl.ticket_kind=expert",
    "prune.levels=2",
    "train.epochs=1",
    "rtl.retrain_epochs=1",
]
TICKETS = (0, 2)  # two of rtl's three cluster tickets
TIMEOUT = 180


@pytest.fixture(scope="module")
def vit_root(tmp_path_factory, one_torch_thread) -> Path:
    """A folder holding ``vit-seeds``, a real 2-seed tiny-ViT group (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("attention_seeds")
    build_smoke_group(root / "vit-seeds", seeds=(0, 1), overrides=VIT_OVERRIDES)
    return root


def _per_seed_oracle(run_dir: Path, method: str, tickets) -> pd.DataFrame:
    """One seed's summary, computed directly with analysis.attention_sweep (dense reference included)."""
    from analysis.attention_sweep import attention_level_summary, attention_probe_tables
    from analysis.levels import dense_reference
    from artifacts.run_format import load_run

    run = load_run(run_dir)
    tables = attention_probe_tables(run, method, list(tickets), reference=dense_reference(run, method))
    return attention_level_summary(tables["heads"], tables["images"], reference=tables["reference"])


def test_mean_and_interval_are_those_of_the_seed_values(vit_root):
    from analysis.attention import image_entropy
    from analysis.attention_probe import probe_attention
    from analysis.attention_sweep import ALL_IMAGES, ALL_LAYERS
    from analysis.seeds import seed_table
    from artifacts.run_format import load_run

    group = vit_root / "vit-seeds"
    names = [load_run(group / "seed-0").ticket_names("rtl")[t] for t in TICKETS]
    table = seed_table(group, "attention", ["rtl"], tickets=TICKETS)
    keys = ["level", "ticket", "images", "layer"]
    seeds = [
        _per_seed_oracle(group / f"seed-{s}", "rtl", TICKETS).set_index(keys).sort_index() for s in (0, 1)
    ]
    assert set(table["method"]) == {"rtl"} and set(table["ticket"]) == set(names)
    assert ALL_LAYERS in set(table["layer"]) and set(table["measure"]) == {"mean_entropy", "entropy_change"}
    assert (table["n_seeds"] == 2).all() and set(table["seeds_label"]) == {"2 seeds"}
    assert len(table) == 2 * len(seeds[0])  # one row per key and measure
    for measure in ("mean_entropy", "entropy_change"):
        got = table[table["measure"] == measure].set_index(keys).sort_index()
        values = np.column_stack([s[measure].reindex(got.index).to_numpy() for s in seeds])  # (rows, 2)
        mean = values.mean(axis=1)
        lo, hi = stats.t.interval(0.95, 1, loc=mean, scale=stats.sem(values, axis=1))
        np.testing.assert_allclose(got["mean"], mean, rtol=1e-12)
        np.testing.assert_allclose(got["ci_low"], lo, rtol=1e-9)
        np.testing.assert_allclose(got["ci_high"], hi, rtol=1e-9)
        assert (got["ci_low"] < got["ci_high"]).any()  # the seeds differ somewhere
    # the sparsity of each level is the runs' own
    run0 = load_run(group / "seed-0")
    for level, sp in table.groupby("level")["sparsity"].first().items():
        assert sp == pytest.approx(run0.sparsity("rtl", int(level)), abs=1e-3)
    # one cell against the probe itself: ticket 2, level 2, all images, mean over blocks then images
    cell = table[
        (table["level"] == 2)
        & (table["ticket"] == names[1])  # ticket index TICKETS[1] = 2
        & (table["images"] == ALL_IMAGES)
        & (table["layer"] == ALL_LAYERS)
        & (table["measure"] == "mean_entropy")
    ]
    direct = [
        np.mean([image_entropy(m) for m in probe_attention(load_run(group / f"seed-{s}"), "rtl", 2, 2)], 0)
        for s in (0, 1)
    ]
    assert cell["mean"].item() == pytest.approx(np.mean([d.mean() for d in direct]), rel=1e-6)


def test_one_seed_and_skipped_seeds_are_marked(vit_root, tmp_path):
    from analysis.seeds import attention_skipped, seed_table
    from artifacts.run_format import load_run

    group = vit_root / "vit-seeds"
    alone = seed_table(load_run(group / "seed-1"), "attention", ["rtl"], tickets=TICKETS)
    assert (alone["n_seeds"] == 1).all() and set(alone["seeds_label"]) == {"1 seed"}
    assert alone[["ci_low", "ci_high", "half_width"]].isna().all().all()
    keys = ["level", "ticket", "images", "layer"]
    own = _per_seed_oracle(group / "seed-1", "rtl", TICKETS).set_index(keys)
    got = alone[alone["measure"] == "mean_entropy"].set_index(keys)
    assert len(got) == len(own)
    np.testing.assert_allclose(got["mean"], own["mean_entropy"].reindex(got.index), rtol=1e-12)
    # a seed whose levels kept no weights is left out, with the reason
    slim = tmp_path / "slim"
    shutil.copytree(group / "seed-0", slim)
    for f in (slim / "rtl").glob("level_*/weights.safetensors"):
        f.unlink()
    slim_run = load_run(slim)
    assert "kept no trained weights" in attention_skipped(slim_run, ["rtl"])["rtl"]
    mixed = seed_table([slim_run, load_run(group / "seed-1")], "attention", ["rtl"], tickets=TICKETS)
    assert (mixed["n_seeds"] == 1).all()
    both = mixed.set_index([*keys, "measure"])["mean"]
    np.testing.assert_allclose(both, alone.set_index([*keys, "measure"])["mean"].reindex(both.index))
    # a model without attention gives no rows and says why
    mlp = load_run(write_mask_run(tmp_path / "mlp", seed=0, shared=True))
    assert "no attention layers" in attention_skipped(mlp)["rtl"]
    assert seed_table(mlp, "attention").empty


def test_group_report_has_the_attention_section(vit_root):
    from analysis.report import build_group_report

    text = build_group_report(vit_root / "vit-seeds")
    section = text[text.index('id="attention-across-seeds"') :]
    assert "rtl: attention entropy, all layers, own subset" in section
    assert "imp: attention entropy, all layers, all images" in section
    assert "mean over 2 seeds" in section and '"fill":"toself"' in section
    assert "1 seed" not in section


# ----------------------------------------------------------------------------- the Attention page


def _traces(at) -> list[dict]:
    return [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]


def _attention_page(monkeypatch, root: Path, run: Path):
    """The Attention page of ``run`` (runs found under ``root``), opened straight away."""
    import threading

    from streamlit.testing.v1 import AppTest

    import app.data

    entry = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
    monkeypatch.setenv("RTL_RUNS_DIR", str(root))
    # no background UMAP warm-up (a Projection page nicety) competing with this test for the CPU
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    monkeypatch.setattr(app.data, "_warm_thread", app.data._warm_thread or done)
    at = AppTest.from_file(str(entry), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(run)
    at.switch_page("views/attention.py").run()  # straight to the page (its url is its file name)
    assert not at.exception, "\n".join(str(e.value) for e in at.exception)
    assert not at.error, "\n".join(str(e.value) for e in at.error)
    return at


def _captions(at) -> str:
    return " ".join(str(c.value) for c in at.caption)


def test_attention_page_draws_the_band_across_seeds(monkeypatch, vit_root):
    from analysis.seeds import seed_table
    from artifacts.run_format import load_run

    at = _attention_page(monkeypatch, vit_root, vit_root / "vit-seeds" / "seed-0")
    box = at.checkbox(key="attention.seeds")
    assert box.label == "Across seeds" and box.value is True
    assert "2 seeds (0, 1)" in _captions(at) and "95 % Student-t interval" in _captions(at)
    bands = [t for t in _traces(at) if t.get("fill") == "toself"]
    assert bands, "no 95 % band drawn"
    # each ticket's line is the across-seed mean of the analysis table
    method = at.selectbox(key="attention.method").value
    images = at.radio(key="attention.images").value
    layer = at.selectbox(key="attention.layer").value
    lines = [t for t in _traces(at) if t.get("mode") == "lines+markers" and t.get("legendgroup")]
    assert lines
    names = load_run(vit_root / "vit-seeds" / "seed-0").ticket_names(method)
    tickets = [names.index(line["name"]) for line in lines]
    table = seed_table(vit_root / "vit-seeds", "attention", [method], tickets=tickets)
    rows = table[
        (table["images"] == images) & (table["layer"] == layer) & (table["measure"] == "mean_entropy")
    ]
    for line in lines:
        want = rows[rows["ticket"] == line["name"]].sort_values("sparsity")
        np.testing.assert_allclose(line["y"], want["mean"].to_numpy(), rtol=1e-9)
        np.testing.assert_allclose(line["x"], 100 * want["sparsity"].to_numpy(), rtol=1e-9)
    box.uncheck().run()
    assert not at.exception
    assert not [t for t in _traces(at) if t.get("fill") == "toself"]
    assert "The sidebar's seed alone (the group has 2 seeds)" in _captions(at)


def test_attention_page_marks_a_run_alone_as_one_seed(monkeypatch, vit_root, tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(vit_root / "vit-seeds" / "seed-1", alone)
    at = _attention_page(monkeypatch, tmp_path, alone)
    assert "1 seed: no interval across seeds" in _captions(at)
    assert not at.checkbox and not [t for t in _traces(at) if t.get("fill") == "toself"]
    assert any(t.get("error_y") for t in _traces(at))  # the single run's intervals over probe images
