"""Attention entropy against scipy.stats.entropy, with padding, bounds and summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from analysis.attention import attention_entropy, attention_entropy_table


def random_attention(rng, shape, temperature=1.0):
    return softmax(rng.standard_normal(shape) / temperature, axis=-1)


def test_matches_scipy_entropy_rowwise():
    rng = np.random.default_rng(0)
    p = random_attention(rng, (2, 3, 5, 5))
    h = attention_entropy(p, normalize=False)
    assert h.shape == (2, 3, 5)
    np.testing.assert_allclose(h, entropy(p, axis=-1))
    np.testing.assert_allclose(attention_entropy(p), entropy(p, axis=-1) / np.log(5))


def test_padding_is_excluded_like_scipy_on_valid_keys():
    rng = np.random.default_rng(1)
    p = random_attention(rng, (2, 2, 6, 6))  # unmasked softmax: padded keys carry mass
    key_mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)  # (B, T)
    h = attention_entropy(p, key_mask[:, None, :], normalize=False)  # (B, 1, T) -> every head and query
    hn = attention_entropy(p, key_mask[:, None, :])
    for b in range(2):
        valid = key_mask[b]
        for head in range(2):
            for q in range(6):
                want = entropy(p[b, head, q, valid])  # scipy renormalises over the valid keys
                assert h[b, head, q] == pytest.approx(want)
                assert hn[b, head, q] == pytest.approx(want / np.log(valid.sum()))
    # a full-shape mask (broadcast) gives the same answer
    full = np.broadcast_to(key_mask[:, None, None, :], p.shape)
    np.testing.assert_allclose(attention_entropy(p, full), hn)


def test_normalisation_bounds():
    t = 7
    uniform = np.full((3, t, t), 1 / t)
    np.testing.assert_allclose(attention_entropy(uniform), 1.0)
    one_hot = np.broadcast_to(np.eye(t), (3, t, t))
    np.testing.assert_allclose(attention_entropy(one_hot), 0.0)
    # uniform over the 4 valid keys only is still 1 once padding is excluded
    mask = np.arange(t) < 4
    padded = np.where(mask, 0.25, 0.0) * np.ones((t, t))
    np.testing.assert_allclose(attention_entropy(padded, mask), 1.0)
    rng = np.random.default_rng(2)
    h = attention_entropy(random_attention(rng, (4, 9, 9), temperature=0.3))
    assert (h >= 0).all() and (h <= 1 + 1e-12).all()


def test_degenerate_rows():
    p = np.array([[0.2, 0.8], [0.0, 0.0]])
    assert np.isnan(attention_entropy(p)[1])  # no mass: undefined
    single = attention_entropy(np.array([[1.0, 0.0]]), np.array([True, False]))
    assert single[0] == 0.0  # one valid key: necessarily one-hot
    assert np.isnan(attention_entropy(np.array([[0.5, 0.5]]), np.array([False, False]))[0])
    with pytest.raises(ValueError):
        attention_entropy(np.array([-0.1, 1.1]))
    with pytest.raises(ValueError):
        attention_entropy(np.array([[-0.1, 1.1]]))


def test_table_summary_and_change_against_dense():
    rng = np.random.default_rng(3)
    b, h, t = 3, 4, 6
    dense = [random_attention(rng, (b, h, t, t), temperature=5.0) for _ in range(2)]  # near uniform
    # near one-hot: each row peaks on a random key among the first 4 (valid in every sequence)
    peak = np.eye(t)[rng.integers(0, 4, (2, b, h, t))]  # (2, B, H, T, T)
    sparse = [softmax(12 * peak[i] + 0.1 * rng.standard_normal((b, h, t, t)), axis=-1) for i in range(2)]
    key_mask = np.ones((b, t), bool)
    key_mask[0, 4:] = False
    table = attention_entropy_table(sparse, key_mask, dense=dense, layer_names=["blocks.0", "blocks.1"])
    assert len(table) == 2 * h and list(table["layer"].unique()) == ["blocks.0", "blocks.1"]
    assert not table.isna().any().any()
    assert table["near_one_hot"].all() and not table["near_uniform"].any()
    assert (table["entropy_change"] < -0.5).all()
    # oracle: per head, mean over the valid query rows of scipy's normalised entropy
    layer, head = 1, 2
    vals, effs = [], []
    for bi in range(b):
        valid = key_mask[bi]
        for q in np.flatnonzero(valid):
            e = entropy(sparse[layer][bi, head, q, valid])
            vals.append(e / np.log(valid.sum()))
            effs.append(np.exp(e))
    row = table[(table["layer"] == "blocks.1") & (table["head"] == head)].iloc[0]
    assert row["mean_entropy"] == pytest.approx(np.mean(vals))
    assert row["effective_tokens"] == pytest.approx(np.mean(effs))
    assert row["n_rows"] == key_mask.sum()
    dense_table = attention_entropy_table(dense, key_mask, layer_names=["blocks.0", "blocks.1"])
    assert dense_table["near_uniform"].all() and dense_table["entropy_change"].isna().all()
    again = attention_entropy_table(sparse, key_mask, dense=dense_table, layer_names=["blocks.0", "blocks.1"])
    np.testing.assert_allclose(again["entropy_change"], table["entropy_change"])
    with pytest.raises(ValueError):
        attention_entropy_table([np.ones((2, 3, 4))])


def test_attention_heatmap():
    from analysis.figures.attention import attention_entropy_heatmap

    rng = np.random.default_rng(4)
    maps = [random_attention(rng, (2, 3, 5, 5)) for _ in range(4)]
    table = attention_entropy_table(maps, dense=[random_attention(rng, (2, 3, 5, 5)) for _ in range(4)])
    fig = attention_entropy_heatmap(table)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert np.asarray(fig.data[0].z).shape == (4, 3)
    fig = attention_entropy_heatmap(table, "entropy_change")
    assert fig.data[0].zmid == 0.0


def test_key_mask_of_fewer_dimensions_applies_to_every_query():
    rng = np.random.default_rng(5)
    p = random_attention(rng, (2, 3, 4, 4))
    mask = np.array([True, True, False, True])  # (T_key,)
    want = attention_entropy(p, np.broadcast_to(mask, p.shape))
    np.testing.assert_allclose(attention_entropy(p, mask), want)


# ----------------------------------------------------------------------------- torch probe


def test_probe_attention_rebuilds_the_ticket(tmp_path):
    torch = pytest.importorskip("torch")
    from analysis.attention_probe import probe_attention
    from artifacts import run_format as rf
    from lottery.models import ModelConfig, build_model, prunable_shapes
    from lottery.train import load_state_numpy, state_numpy

    torch.manual_seed(0)
    cfg = ModelConfig("vit", (1, 8, 8), n_out=3, dim=8, depth=2, heads=2, patch=4, mlp_ratio=2)
    model = build_model(cfg)
    state = state_numpy(model)
    rng = np.random.default_rng(6)
    masks = {n: rng.random((2, *s)) < 0.5 for n, s in prunable_shapes(model).items()}
    model_json = {**cfg.__dict__, "input_shape": list(cfg.input_shape), "hidden": list(cfg.hidden)}
    entry = {
        "tickets": ["a", "b"],
        "ticket_kind": "detector",
        "routings": ["oracle"],
        "default_routing": "oracle",
    }
    rf.write_manifest(tmp_path, {"methods": {"rtl": entry}, "model": model_json})
    preds = pd.DataFrame({"sample": [0], "label": [0], "subset": [0], "pred": [0]})
    rf.write_level(tmp_path, "rtl", 1, masks=masks, predictions=preds, info={"sparsity": 0.5}, weights=state)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    (tmp_path / rf.EXTRA_DIR).mkdir()
    rf.save_tensors(tmp_path / rf.EXTRA_DIR / "probe.safetensors", {"x": x})
    run = rf.load_run(tmp_path)

    maps = probe_attention(run, "rtl", 1, ticket=1, batch_size=2)
    assert len(maps) == 2 and all(m.shape == (5, 2, 5, 5) for m in maps)
    np.testing.assert_allclose(maps[0].sum(-1), 1.0, atol=1e-5)
    # oracle: the same model with ticket 1's mask applied by hand
    ref = build_model(cfg)
    load_state_numpy(ref, {n: v * masks[n][1] if n in masks else v for n, v in state.items()})
    with torch.no_grad():
        _, want = ref.eval()(torch.as_tensor(x), return_attention=True)
    for got, w in zip(maps, want, strict=True):
        np.testing.assert_allclose(got, w.numpy(), atol=1e-6)
    other = probe_attention(run, "rtl", 1, ticket=0, inputs=x)
    assert not np.allclose(other[0], maps[0])
    with pytest.raises(ValueError):
        probe_attention(run, "rtl", 1, ticket=2)


# ----------------------------------------------------------------------------- per image, per subset (13.7)


def test_image_entropy_is_the_mean_of_scipy_entropies_per_image():
    from analysis.attention import image_entropy

    rng = np.random.default_rng(20)
    p = random_attention(rng, (4, 3, 6, 6))
    want = (entropy(p, axis=-1) / np.log(6)).mean(axis=(1, 2))
    np.testing.assert_allclose(image_entropy(p), want)
    km = np.ones((4, 6), dtype=bool)
    km[1, 4:] = False  # image 1 has 4 real tokens: padded queries and keys left out
    got = image_entropy(p, km)
    q = p[1][:, :4, :4]
    np.testing.assert_allclose(got[1], (entropy(q, axis=-1) / np.log(4)).mean())


def test_mean_interval_is_student_t():
    from scipy.stats import sem, t

    from analysis.attention import mean_interval

    v = np.array([0.81, 0.85, 0.9, 0.78, 0.88, np.nan])
    mean, lo, hi, n = mean_interval(v)
    ok = v[np.isfinite(v)]
    want = t.interval(0.95, len(ok) - 1, loc=ok.mean(), scale=sem(ok))
    assert n == 5 and mean == pytest.approx(ok.mean())
    assert (lo, hi) == pytest.approx(want)
    assert np.isnan(mean_interval(np.array([0.5]))[1])


def _tiny_vit_run(tmp_path, n_images=8, k=2):
    """A ViT run of two levels (dense, pruned) whose probe batch carries subset ids."""
    import torch

    from artifacts import run_format as rf
    from models import ModelConfig, build_model, prunable_shapes

    torch.manual_seed(0)
    cfg = ModelConfig("vit", (1, 8, 8), n_out=3, dim=8, depth=2, heads=2, patch=4, mlp_ratio=2)
    model = build_model(cfg)
    state = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    rng = np.random.default_rng(6)
    shapes = prunable_shapes(model)
    model_json = {**cfg.__dict__, "input_shape": list(cfg.input_shape), "hidden": list(cfg.hidden)}
    entry = {"tickets": [f"t{i}" for i in range(k)], "ticket_kind": "expert"}
    rf.write_manifest(tmp_path, {"methods": {"rtl": entry}, "model": model_json})
    preds = pd.DataFrame({"sample": [0], "label": [0], "subset": [0], "pred": [0]})
    for level, density in ((0, 1.0), (1, 0.5)):
        masks = {n: rng.random((k, *s)) < density for n, s in shapes.items()}
        rf.write_level(
            tmp_path,
            "rtl",
            level,
            masks=masks,
            predictions=preds,
            info={"sparsity": 1 - density},
            weights=state,
        )
    x = rng.standard_normal((n_images, 1, 8, 8)).astype(np.float32)
    subset = np.arange(n_images) % k
    (tmp_path / rf.EXTRA_DIR).mkdir()
    rf.save_tensors(
        tmp_path / rf.EXTRA_DIR / "probe.safetensors", {"x": x, "subset": subset.astype(np.int64)}
    )
    return rf.load_run(tmp_path), x, subset


def test_probe_tables_split_own_subset_and_all_images(tmp_path):
    pytest.importorskip("torch")
    from analysis.attention import image_entropy
    from analysis.attention_probe import probe_attention
    from analysis.attention_sweep import (
        ALL_IMAGES,
        ALL_LAYERS,
        OWN_IMAGES,
        attention_level_summary,
        attention_probe_tables,
    )

    run, x, subset = _tiny_vit_run(tmp_path)
    tables = attention_probe_tables(run, "rtl", [0, 1])
    heads, images = tables["heads"], tables["images"]
    assert set(heads["images"]) == {OWN_IMAGES, ALL_IMAGES}
    own = images[(images["ticket"] == "t1") & (images["images"] == OWN_IMAGES) & (images["level"] == 1)]
    assert sorted(set(own["image"])) == list(np.flatnonzero(subset == 1))  # ticket 1 on subset 1's images
    maps = probe_attention(run, "rtl", 1, ticket=1)
    want = image_entropy(maps[0])[subset == 1]
    got = own[own["layer"] == "0"].sort_values("image")["entropy"].to_numpy()
    np.testing.assert_allclose(got, want)
    # against scipy directly: image 1 (subset 1), block 0
    np.testing.assert_allclose(got[0], (entropy(maps[0][1], axis=-1) / np.log(5)).mean(), rtol=1e-6)
    summary = attention_level_summary(heads, images)
    row = summary[
        (summary["ticket"] == "t1")
        & (summary["images"] == OWN_IMAGES)
        & (summary["level"] == 1)
        & (summary["layer"] == ALL_LAYERS)
    ].iloc[0]
    per_image = own.groupby("image")["entropy"].mean()
    assert row["mean_entropy"] == pytest.approx(per_image.mean())
    assert row["ci_low"] < row["mean_entropy"] < row["ci_high"] and row["n_images"] == 4
    dense = summary[(summary["level"] == 0)]
    np.testing.assert_allclose(dense["entropy_change"], 0.0, atol=1e-12)


def test_trend_and_verdict_say_plainly_when_entropy_rises():
    from analysis.attention_sweep import OWN_IMAGES, attention_trend, attention_verdict

    sp = np.linspace(0, 0.9, 8)
    rows = []
    for ticket, slope in (("a", 0.1), ("b", 0.12), ("c", 0.0)):
        for lv, s in enumerate(sp):
            m = 0.85 + slope * s + (0.001 * (lv % 2) if slope == 0 else 0)
            rows.append((lv, s, ticket, OWN_IMAGES, "all layers", m, m - 0.005, m + 0.005, 16, np.nan))
    summary = pd.DataFrame(
        rows,
        columns=[
            "level",
            "sparsity",
            "ticket",
            "images",
            "layer",
            "mean_entropy",
            "ci_low",
            "ci_high",
            "n_images",
            "entropy_change",
        ],
    )
    trend = attention_trend(summary).set_index("ticket")
    assert trend.loc["a", "direction"] == "rises" and trend.loc["b", "direction"] == "rises"
    assert trend.loc["c", "direction"] == "no clear trend"
    assert trend.loc["a", "change"] == pytest.approx(0.09)
    text = attention_verdict(trend.reset_index())
    assert text.startswith("Attention entropy rises with sparsity (2 of 3 tickets")
    falling = summary.assign(mean_entropy=1.7 - summary["mean_entropy"])
    falling = falling.assign(ci_low=falling["mean_entropy"] - 0.005, ci_high=falling["mean_entropy"] + 0.005)
    assert "falls" in attention_verdict(attention_trend(falling))


# ----------------------------------------------------------------------------- no trainer (13.8)

NO_TRAINER = """
import json, pkgutil, sys, importlib
import analysis
for mod in pkgutil.walk_packages(analysis.__path__, "analysis."):
    if mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
imported = "lottery" in sys.modules or any(m.startswith("lottery.") for m in sys.modules)
from analysis.attention_probe import probe_attention
from artifacts.run_format import load_run
maps = probe_attention(load_run(sys.argv[1]), "rtl", 1, ticket=0)
probed = "lottery" in sys.modules or any(m.startswith("lottery.") for m in sys.modules)
print(json.dumps({"import": imported, "probe": probed, "blocks": len(maps)}))
"""


def test_analysis_and_its_probe_never_import_lottery(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("torch")
    run, _, _ = _tiny_vit_run(tmp_path)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", NO_TRAINER, str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"import": False, "probe": False, "blocks": 2}


def test_entropy_change_is_measured_from_the_dense_reference(tmp_path):
    # the run's dense model (a one-level "dense" method) is the reference, not rtl's own level 0
    pytest.importorskip("torch")
    import torch

    from analysis.attention import image_entropy
    from analysis.attention_probe import probe_attention
    from analysis.attention_sweep import (
        ALL_LAYERS,
        OWN_IMAGES,
        attention_level_summary,
        attention_probe_tables,
    )
    from analysis.levels import dense_reference
    from artifacts import run_format as rf

    run, x, subset = _tiny_vit_run(tmp_path)
    manifest = dict(run.manifest)
    manifest["methods"] = {**manifest["methods"], "dense": {"tickets": ["all"], "ticket_kind": "single"}}
    manifest["dense_reference"] = {"method": "dense", "level": 0}
    rf.write_manifest(tmp_path, manifest)
    torch.manual_seed(1)  # other weights than rtl's: a different attention
    weights = {n: 3 * v + np.float32(0.5) for n, v in run.weights("rtl", 0).items()}
    masks = {n: np.ones((1, *m.shape[1:]), bool) for n, m in run.masks("rtl", 0).items()}
    preds = pd.DataFrame({"sample": [0], "label": [0], "subset": [0], "pred": [0]})
    rf.write_level(
        tmp_path, "dense", 0, masks=masks, predictions=preds, info={"sparsity": 0.0}, weights=weights
    )
    run = rf.load_run(tmp_path)
    ref = dense_reference(run, "rtl")
    assert ref == ("dense", 0)
    tables = attention_probe_tables(run, "rtl", [0, 1], reference=ref)
    assert tables["dense"] == ("dense", 0)
    summary = attention_level_summary(tables["heads"], tables["images"], reference=tables["reference"])
    dense_maps = probe_attention(run, "dense", 0, ticket=0)
    for level in (0, 1):
        maps = probe_attention(run, "rtl", level, ticket=1)
        own = subset == 1
        want = (
            np.mean([image_entropy(m)[own] for m in maps], axis=0).mean()
            - np.mean([image_entropy(m)[own] for m in dense_maps], axis=0).mean()
        )
        row = summary[
            (summary["ticket"] == "t1")
            & (summary["images"] == OWN_IMAGES)
            & (summary["level"] == level)
            & (summary["layer"] == ALL_LAYERS)
        ]
        assert row["entropy_change"].item() == pytest.approx(want, abs=1e-9)
    # rtl's own level 0 is no longer read as zero change
    lv0 = summary[(summary["level"] == 0) & (summary["layer"] == ALL_LAYERS)]
    assert (lv0["entropy_change"].abs() > 1e-6).all()
    # the per-head change of the sweep table compares with the same reference
    heads = tables["heads"]
    assert (heads[heads["level"] == 0]["entropy_change"].abs() > 0).any()
