import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import hypergeom

from analysis.figures.similarity import similarity_heatmap, similarity_vs_sparsity
from analysis.similarity import (
    GLOBAL,
    PAIR_COLUMNS,
    chance_jaccard,
    cluster_order,
    hypergeometric_z,
    layer_groups,
    level_similarity_summary,
    overlap_counts,
    packed_overlap,
    pair_matrix,
    pairwise_iomin,
    pairwise_jaccard,
    pairwise_phi,
    similarity_frame,
    similarity_matrices,
    similarity_table,
    ticket_similarity_summary,
)
from artifacts.run_format import load_run, write_level, write_manifest


def scipy_jaccard(x: np.ndarray) -> np.ndarray:
    return 1.0 - squareform(pdist(x, "jaccard"))


def random_masks(rng, k, n, density):
    return rng.random((k, n)) < density


def fixed_size_masks(rng, k, n, size):
    """K masks of exactly ``size`` kept weights each, uniformly at random."""
    m = np.zeros((k, n), dtype=bool)
    for i in range(k):
        m[i, rng.choice(n, size, replace=False)] = True
    return m


def make_run(path, levels, tickets, method="rtl"):
    write_manifest(path, {"name": "test", "methods": {method: {"tickets": list(tickets)}}})
    for level, masks in levels.items():
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.size for m in masks.values())
        write_level(
            path,
            method,
            level,
            masks=masks,
            predictions=pd.DataFrame({"sample": [0]}),
            info={"sparsity": 1.0 - kept / total},
        )
    return load_run(path)


# ----------------------------------------------------------------------------- Jaccard


@pytest.mark.parametrize("density", [0.01, 0.3, 0.9])
def test_jaccard_equals_scipy_exactly(density):
    rng = np.random.default_rng(1)
    x = random_masks(rng, 7, 1003, density)  # N not a multiple of 8 or 64
    expected = scipy_jaccard(x)
    np.testing.assert_array_equal(pairwise_jaccard(x), expected)
    # Tiny chunks: many partial words, counts summed over chunks.
    np.testing.assert_array_equal(pairwise_jaccard(x, chunk_bytes=7 * 64), expected)


def test_packed_overlap_against_explicit_counts():
    rng = np.random.default_rng(2)
    x = random_masks(rng, 5, 333, 0.4)
    inter, sizes = packed_overlap(np.packbits(x, axis=1))
    expected = (x[:, None, :] & x[None, :, :]).sum(axis=-1)
    np.testing.assert_array_equal(inter, expected)
    np.testing.assert_array_equal(sizes, x.sum(axis=1))


def test_dict_of_layers_equals_flattened_concat():
    rng = np.random.default_rng(3)
    k = 5
    layers = {
        "conv": rng.random((k, 4, 3, 3, 3)) < 0.5,
        "fc1": rng.random((k, 17, 9)) < 0.1,
        "bias": rng.random((k, 13)) < 0.8,
    }
    flat = np.concatenate([m.reshape(k, -1) for m in layers.values()], axis=1)
    np.testing.assert_array_equal(pairwise_jaccard(layers), pairwise_jaccard(flat))
    np.testing.assert_array_equal(pairwise_jaccard(layers), scipy_jaccard(flat))
    np.testing.assert_array_equal(
        overlap_counts(layers, chunk_bytes=k * 64).intersection, overlap_counts(flat).intersection
    )


def test_empty_masks_follow_scipy():
    rng = np.random.default_rng(4)
    x = random_masks(rng, 4, 100, 0.5)
    x[1] = False
    x[3] = False
    j = pairwise_jaccard(x)
    np.testing.assert_array_equal(j, scipy_jaccard(x))
    assert j[1, 3] == 1.0  # empty vs empty: scipy distance 0
    assert j[0, 1] == 0.0  # empty vs non-empty


def test_single_ticket():
    x = np.ones((1, 50), dtype=bool)
    np.testing.assert_array_equal(pairwise_jaccard(x), [[1.0]])
    df = similarity_frame({"a": x, "b": x[:, :10]}, ["solo"])
    assert df.empty and list(df.columns) == PAIR_COLUMNS
    summary = ticket_similarity_summary(df)
    assert summary.empty


def test_rejects_bad_masks():
    with pytest.raises(ValueError, match="disagree"):
        pairwise_jaccard({"a": np.ones((2, 3), bool), "b": np.ones((3, 3), bool)})
    with pytest.raises(ValueError, match="bool"):
        pairwise_jaccard(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="no layers"):
        pairwise_jaccard({})
    # 0/1 integers are accepted as masks.
    x = np.array([[1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(pairwise_jaccard(x), scipy_jaccard(x.astype(bool)))


# ----------------------------------------------------------------------------- IoMin and phi


def test_iomin_by_hand():
    n = 10
    a = np.isin(np.arange(n), [0, 1, 2, 3])
    b = np.isin(np.arange(n), [2, 3, 4])
    c = np.isin(np.arange(n), [0, 1])  # inside a
    empty = np.zeros(n, dtype=bool)
    io = pairwise_iomin(np.stack([a, b, c, empty]))
    assert io[0, 1] == pytest.approx(2 / 3)
    assert io[0, 2] == 1.0
    assert io[1, 2] == 0.0
    assert np.isnan(io[0, 3]) and np.isnan(io[3, 3])
    np.testing.assert_array_equal(np.diag(io)[:3], 1.0)


def test_phi_equals_corrcoef():
    rng = np.random.default_rng(5)
    x = np.concatenate([random_masks(rng, 4, 500, 0.2), random_masks(rng, 3, 500, 0.7)])
    x[6] = x[0] | (rng.random(500) < 0.1)  # a correlated pair
    np.testing.assert_allclose(pairwise_phi(x), np.corrcoef(x), rtol=0, atol=1e-12)
    x[2] = True  # constant row: undefined, NaN as np.corrcoef
    phi = pairwise_phi(x)
    assert np.isnan(phi[2]).all() and np.isnan(phi[:, 2]).all()


# ----------------------------------------------------------------------------- chance level


@pytest.mark.parametrize("d", [0.05, 0.2, 0.5, 0.9])
def test_chance_for_uniform_density_is_d_over_2_minus_d(d):
    rng = np.random.default_rng(6)
    n = 2000
    layers = {
        "a": fixed_size_masks(rng, 3, n, int(d * n)),
        "b": fixed_size_masks(rng, 3, n // 2, int(d * n / 2)),
    }
    np.testing.assert_allclose(chance_jaccard(layers), d / (2 - d), rtol=1e-12)


def test_chance_pools_layers_by_their_own_densities():
    rng = np.random.default_rng(7)
    a1, b1, n1 = 30, 60, 100  # layer 1 sizes
    a2, b2, n2 = 500, 100, 1000  # layer 2 sizes
    layers = {
        "l1": np.stack([fixed_size_masks(rng, 1, n1, a1)[0], fixed_size_masks(rng, 1, n1, b1)[0]]),
        "l2": np.stack([fixed_size_masks(rng, 1, n2, a2)[0], fixed_size_masks(rng, 1, n2, b2)[0]]),
    }
    e_inter = a1 * b1 / n1 + a2 * b2 / n2
    e_union = a1 + b1 + a2 + b2 - e_inter
    assert chance_jaccard(layers)[0, 1] == pytest.approx(e_inter / e_union)


def test_random_masks_sit_at_chance_and_identical_masks_at_one():
    rng = np.random.default_rng(8)
    n, k = 4000, 30
    layers = {
        "dense": random_masks(rng, k, n, 0.6),
        "sparse": random_masks(rng, k, n // 4, 0.1),
    }
    m = similarity_matrices(layers)
    iu = np.triu_indices(k, 1)
    # Monte Carlo: the mean Jaccard of independent masks is the chance level ...
    assert m["jaccard"][iu].mean() == pytest.approx(m["jaccard_chance"][iu].mean(), abs=0.005)
    # ... so J* is about 0, while identical masks have J* = 1.
    assert abs(m["jaccard_star"][iu].mean()) < 0.01
    same = similarity_matrices({name: np.repeat(x[:1], 2, axis=0) for name, x in layers.items()})
    assert same["jaccard_star"][0, 1] == pytest.approx(1.0)
    assert same["jaccard"][0, 1] == 1.0


def test_jaccard_star_undefined_for_full_masks():
    m = similarity_matrices(np.ones((2, 64), dtype=bool))
    assert m["jaccard"][0, 1] == 1.0 and m["jaccard_chance"][0, 1] == 1.0
    assert np.isnan(m["jaccard_star"][0, 1]) and np.isnan(m["z"][0, 1])


def test_hypergeometric_z_is_standard_normal_under_the_null():
    rng = np.random.default_rng(9)
    k = 40
    layers = {"l1": fixed_size_masks(rng, k, 3000, 900), "l2": fixed_size_masks(rng, k, 500, 50)}
    z = hypergeometric_z(layers)[np.triu_indices(k, 1)]
    assert abs(z.mean()) < 0.15
    assert 0.8 < z.std() < 1.2


def test_z_single_layer_matches_scipy_hypergeom():
    rng = np.random.default_rng(10)
    x = fixed_size_masks(rng, 2, 200, 70)
    x[1] = x[0] | fixed_size_masks(rng, 1, 200, 30)[0]
    inter = int((x[0] & x[1]).sum())
    dist = hypergeom(200, int(x[0].sum()), int(x[1].sum()))
    assert hypergeometric_z(x)[0, 1] == pytest.approx((inter - dist.mean()) / dist.std())
    assert hypergeometric_z(x)[0, 1] > 5  # overlapping by construction


# ----------------------------------------------------------------------------- tables


@pytest.fixture
def small_run(tmp_path):
    rng = np.random.default_rng(11)
    tickets = ["cat", "dog", "car"]
    lv0 = {"conv": np.ones((3, 4, 2, 3, 3), bool), "fc": np.ones((3, 10, 5), bool)}
    lv1 = {"conv": rng.random((3, 4, 2, 3, 3)) < 0.5, "fc": rng.random((3, 10, 5)) < 0.3}
    return make_run(tmp_path / "run", {0: lv0, 1: lv1}, tickets), {0: lv0, 1: lv1}, tickets


def test_similarity_table_against_pairwise_functions(small_run):
    run, levels, tickets = small_run
    table = similarity_table(run, "rtl")
    assert list(table.columns) == ["level", "sparsity", *PAIR_COLUMNS]
    assert len(table) == 2 * 3 * 4  # levels x pairs x (global + 2 layers + layer mean)
    for level, masks in levels.items():
        rows = table[table["level"] == level]
        assert rows["sparsity"].unique() == pytest.approx([run.sparsity("rtl", level)])
        for layer, m in [(GLOBAL, masks), ("conv", masks["conv"]), ("fc", masks["fc"])]:
            got = pair_matrix(rows, "jaccard", level=level, layer=layer, tickets=tickets)
            np.testing.assert_array_equal(got.to_numpy(), pairwise_jaccard(m))
            phi = pair_matrix(rows, "phi", level=level, layer=layer, tickets=tickets)
            assert phi.shape == (3, 3)
    # Level 0 is dense: Jaccard 1, at chance, J* undefined.
    dense = table[table["level"] == 0]
    assert (dense["jaccard"] == 1).all() and dense["jaccard_star"].isna().all()
    assert not table[table["level"] == 1][["jaccard", "jaccard_chance", "jaccard_star"]].isna().any().any()


def test_similarity_table_without_layers(small_run):
    run, _, _ = small_run
    table = similarity_table(run, "rtl", levels=[1], layers=False)
    assert set(table["layer"]) == {GLOBAL} and set(table["level"]) == {1}


def test_single_ticket_run_gives_empty_table(tmp_path):
    run = make_run(tmp_path / "one", {0: {"fc": np.ones((1, 4, 4), bool)}}, ["all"])
    table = similarity_table(run, "rtl")
    assert table.empty
    assert list(table.columns) == ["level", "sparsity", *PAIR_COLUMNS]
    summary = level_similarity_summary(table)
    assert summary.empty and {"level", "sparsity", "jaccard", "jaccard_chance"} <= set(summary)
    per_ticket = ticket_similarity_summary(table)
    assert per_ticket.empty and {"ticket", "mean_jaccard", "mean_jaccard_star"} <= set(per_ticket)


def test_ticket_summary_is_row_mean_of_matrix(small_run):
    run, levels, tickets = small_run
    summary = ticket_similarity_summary(similarity_table(run, "rtl", levels=[1]))
    j = pairwise_jaccard(levels[1])
    off = (j.sum(axis=1) - 1) / 2
    glob = summary[summary["layer"] == GLOBAL].set_index("ticket").loc[tickets]
    np.testing.assert_allclose(glob["mean_jaccard"], off)
    assert (glob["n_others"] == 2).all()


def test_level_summary_means(small_run):
    run, levels, _ = small_run
    table = similarity_table(run, "rtl")
    summary = level_similarity_summary(table)
    row = summary[(summary["level"] == 1) & (summary["layer"] == GLOBAL)].iloc[0]
    iu = np.triu_indices(3, 1)
    assert row["jaccard"] == pytest.approx(pairwise_jaccard(levels[1])[iu].mean())
    assert row["n_pairs"] == 3


def test_pair_matrix_needs_level_for_run_tables(small_run):
    run, _, _ = small_run
    with pytest.raises(ValueError, match="level"):
        pair_matrix(similarity_table(run, "rtl"))


# ----------------------------------------------------------------------------- layer groups


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(0, (0, 0, 0)), (1, (0, 1, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (7, (2, 3, 2)), (9, (3, 3, 3))],
)
def test_layer_groups_split_in_order(n, sizes):
    names = [f"l{i}" for i in range(n)]
    groups = layer_groups(names)
    assert tuple(len(groups[g]) for g in ("shallow", "middle", "deep")) == sizes
    assert groups["shallow"] + groups["middle"] + groups["deep"] == names


# ----------------------------------------------------------------------------- clustering and figures


def block_matrix():
    tickets = ["a1", "b1", "a2", "b2", "a3"]
    blocks = [t[0] for t in tickets]
    sim = np.array([[0.9 if p == q else 0.2 for q in blocks] for p in blocks])
    np.fill_diagonal(sim, 1.0)
    return pd.DataFrame(sim, index=tickets, columns=tickets)


def test_cluster_order_makes_blocks_contiguous():
    order = cluster_order(block_matrix())
    blocks = "".join(t[0] for t in order)
    assert blocks in ("aaabb", "bbaaa")
    assert sorted(order) == sorted(block_matrix().index)


def test_heatmap_figure():
    fig = similarity_heatmap(block_matrix(), chance=0.123)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    assert "".join(t[0] for t in fig.data[0].x) in ("aaabb", "bbaaa")
    assert "0.123" in fig.layout.title.text


def test_similarity_vs_sparsity_figure(small_run):
    run, _, _ = small_run
    summary = level_similarity_summary(similarity_table(run, "rtl"))
    fig = similarity_vs_sparsity(summary)
    assert [type(t) for t in fig.data] == [go.Scatter] * 4
    eq = next(t for t in fig.data if t.name == "J* (equal layer weights)")
    want = summary[summary["layer"] == "__layer_mean__"].sort_values("sparsity")["jaccard_star"]
    np.testing.assert_allclose(np.asarray(eq.y, dtype=float), want.to_numpy(), equal_nan=True)
    two = pd.concat([summary.assign(method="rtl"), summary.assign(method="imp")])
    fig = similarity_vs_sparsity(two)
    assert len(fig.data) == 8
    assert fig.data[0].name.startswith("rtl")
    assert len(similarity_vs_sparsity(summary, layer="fc").data) == 3


# ----------------------------------------------------------------------------- layer weighting (issue 13.4)


def test_layer_mean_equals_mean_of_per_layer_scipy_jaccard_and_jstar():
    from analysis.similarity import LAYER_MEAN

    rng = np.random.default_rng(3)
    k = 4
    layers = {
        "a": rng.random((k, 20, 30)) < 0.4,
        "b": rng.random((k, 7, 5)) < 0.6,
        "c": rng.random((k, 3, 9)) < 0.3,
    }
    df = similarity_frame(layers, ["w", "x", "y", "z"])
    got_j = pair_matrix(df, "jaccard", layer=LAYER_MEAN).to_numpy()
    got_s = pair_matrix(df, "jaccard_star", layer=LAYER_MEAN).to_numpy()
    per_j, per_s = [], []
    for m in layers.values():
        flat = m.reshape(k, -1)
        j = scipy_jaccard(flat)
        d = flat.mean(axis=1)
        chance = np.outer(d, d) / (d[:, None] + d[None, :] - np.outer(d, d))  # one layer: ab / (a + b - ab)
        per_j.append(j)
        per_s.append((j - chance) / (1 - chance))
    iu = np.triu_indices(k, 1)
    np.testing.assert_allclose(got_j[iu], np.mean(per_j, axis=0)[iu], atol=1e-12)
    np.testing.assert_allclose(got_s[iu], np.mean(per_s, axis=0)[iu], atol=1e-12)


def test_one_big_identical_layer_dominates_global_but_not_layer_mean():
    from analysis.similarity import LAYER_MEAN

    rng = np.random.default_rng(0)
    k = 5
    big = np.broadcast_to(rng.random((1, 200, 500)) < 0.3, (k, 200, 500)).copy()  # identical in every ticket
    small = {f"s{i}": rng.random((k, 10, 10)) < 0.3 for i in range(3)}  # independent random masks
    df = similarity_frame({"big": big, **small})
    mean = df.groupby("layer")["jaccard_star"].mean()
    assert mean[GLOBAL] > 0.95  # pooled weights: the big identical layer decides
    assert abs(mean["s0"]) < 0.2 and abs(mean["s1"]) < 0.2
    # equal weights: one identical layer of four, the rest at chance
    assert 0.1 < mean[LAYER_MEAN] < 0.45
    assert mean[GLOBAL] - mean[LAYER_MEAN] > 0.5


def test_detector_head_rows_are_left_out_of_the_layer_mean():
    from analysis.similarity import LAYER_MEAN, disjoint_layers, shared_rows

    rng = np.random.default_rng(1)
    k = 4
    head0 = np.zeros((k, k, 6), dtype=bool)
    for t in range(k):
        head0[t, t] = True  # ticket t owns row t: disjoint by construction
    body0 = np.ones((k, 8, 6), dtype=bool)
    shared = shared_rows({"body": body0, "head": head0})
    assert disjoint_layers(shared) == ["head"]
    body = rng.random((k, 8, 6)) < 0.5
    masks = {"body": body, "head": head0 & (rng.random((k, k, 6)) < 0.5)}
    with_rows = similarity_frame(masks, shared=shared)
    mean = with_rows.groupby("layer")["jaccard"].mean()
    assert mean["head"] == 0.0  # the head keeps its raw (zero) value
    np.testing.assert_allclose(mean[LAYER_MEAN], mean["body"])  # but stays out of the mean
    naive = similarity_frame(masks).groupby("layer")["jaccard"].mean()
    assert naive[LAYER_MEAN] < mean[LAYER_MEAN]  # the old rule averaged the head's zeros in


def test_shared_rows_restricts_a_partly_disjoint_layer():
    from analysis.similarity import shared_rows

    k = 3
    ref = np.ones((k, 5, 4), dtype=bool)
    ref[:, 3:] = False
    ref[0, 3:] = True  # rows 3, 4 belong to ticket 0 only
    rows = shared_rows({"l": ref})["l"]
    assert rows.tolist() == [True, True, True, False, False]
    rng = np.random.default_rng(2)
    m = ref & (rng.random(ref.shape) < 0.7)
    df = similarity_frame({"l": m}, shared={"l": rows})
    got = pair_matrix(df, "jaccard", layer="l").to_numpy()
    np.testing.assert_allclose(got, scipy_jaccard(m[:, :3].reshape(k, -1)), atol=1e-12)


def test_similarity_table_layer_mean_excludes_detector_head(tmp_path):
    from analysis.similarity import LAYER_MEAN

    k = 3
    head = np.zeros((k, k, 4), dtype=bool)
    head[np.arange(k), np.arange(k)] = True
    rng = np.random.default_rng(4)
    lv0 = {"body": np.ones((k, 6, 4), dtype=bool), "head": head}
    lv1 = {"body": rng.random((k, 6, 4)) < 0.6, "head": head}
    run = make_run(tmp_path / "r", {0: lv0, 1: lv1}, ["a", "b", "c"])
    t = similarity_table(run, "rtl")
    one = t[(t["level"] == 1)].groupby("layer")["jaccard"].mean()
    np.testing.assert_allclose(one[LAYER_MEAN], one["body"])
