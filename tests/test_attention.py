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
