import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from sklearn.manifold import trustworthiness

from analysis.figures.projection import alignment_vs_sparsity, ticket_map_scatter
from analysis.projection import (
    ALIGNMENT_COLUMNS,
    FASHION_CLASSES,
    FASHION_CLUSTERS,
    MAP_COLUMNS,
    TicketMap,
    alignment_frame,
    alignment_table,
    fashion_class_similarity,
    mantel,
    ticket_map_table,
)
from analysis.similarity import pairwise_jaccard
from artifacts.run_format import load_run, write_level, write_manifest

ROOT = Path(__file__).resolve().parents[1]


def make_run(path, methods):
    """methods: {method: (tickets, {level: masks})}."""
    write_manifest(
        path, {"name": "test", "methods": {m: {"tickets": list(t)} for m, (t, _) in methods.items()}}
    )
    for method, (_, levels) in methods.items():
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


def prototype_masks(rng, n_clusters, per_cluster, n, flip):
    """Tickets drawn around cluster prototypes: each flips a fraction of its prototype's bits."""
    protos = rng.random((n_clusters, n)) < 0.3
    masks = [protos[c] ^ (rng.random(n) < flip) for c in range(n_clusters) for _ in range(per_cluster)]
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    return np.array(masks), labels


# ----------------------------------------------------------------------------- TicketMap


def test_umap_map_separates_clusters_and_is_deterministic():
    rng = np.random.default_rng(0)
    x, labels = prototype_masks(rng, 3, 7, 4000, 0.15)
    distance = 1.0 - pairwise_jaccard(x)
    tm = TicketMap(n_neighbors=30, random_state=0).fit(distance)  # capped at n - 1
    assert tm.method_ == "umap" and tm.n_neighbors_ == 20
    emb = tm.embedding_
    assert emb.shape == (21, 2) and np.isfinite(emb).all()
    assert trustworthiness(distance, emb, n_neighbors=5, metric="precomputed") > 0.9
    d2 = squareform(pdist(emb))
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    assert d2[same & off].mean() < 0.5 * d2[~same].mean()
    # Every point's nearest neighbour on the map is from its own cluster.
    np.fill_diagonal(d2, np.inf)
    assert (labels[d2.argmin(axis=1)] == labels).all()
    again = TicketMap(n_neighbors=30, random_state=0).fit_transform(distance)
    np.testing.assert_array_equal(again, emb)


_CACHED_MAP = """
import json, sys
import numpy as np
from analysis.projection import TicketMap, import_umap
distance = np.load(sys.argv[1])
emb = TicketMap(n_neighbors=30, random_state=0).fit_transform(distance)
umap = import_umap()
kernels = [umap.utils.fast_knn_indices, umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths]
stats = [[sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())] for f in kernels]
print(json.dumps({"embedding": emb.tolist(), "stats": stats}))
"""


def test_umap_kernels_compile_once_per_machine_not_per_process(tmp_path):
    """A map saves umap's compiled kernels; a new process loads them (no compile) and draws the same map."""
    rng = np.random.default_rng(1)
    x, _ = prototype_masks(rng, 3, 7, 2000, 0.15)
    distance = 1.0 - pairwise_jaccard(x)
    np.save(tmp_path / "d.npy", distance)
    in_process = TicketMap(n_neighbors=30, random_state=0).fit_transform(distance)  # compiles or loads
    out = subprocess.run(
        [sys.executable, "-c", _CACHED_MAP, str(tmp_path / "d.npy")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    fresh = json.loads(out)
    assert all(hits >= 1 and misses == 0 for hits, misses in fresh["stats"])  # loaded from disk
    np.testing.assert_array_equal(fresh["embedding"], in_process)


def test_mds_for_few_points_reproduces_distances():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(4, 2))
    distance = squareform(pdist(pts))
    tm = TicketMap(random_state=0).fit(distance)
    assert tm.method_ == "mds" and tm.n_neighbors_ is None
    np.testing.assert_allclose(squareform(pdist(tm.embedding_)), distance, atol=1e-3)
    np.testing.assert_array_equal(TicketMap(random_state=0).fit_transform(distance), tm.embedding_)


def test_one_and_two_points():
    assert TicketMap().fit(np.zeros((1, 1))).embedding_.tolist() == [[0.0, 0.0]]
    two = TicketMap().fit(np.array([[0.0, 0.4], [0.4, 0.0]])).embedding_
    assert np.linalg.norm(two[0] - two[1]) == pytest.approx(0.4, abs=1e-6)


def test_rejects_bad_distances():
    with pytest.raises(ValueError, match="square"):
        TicketMap().fit(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="symmetric"):
        TicketMap().fit(np.array([[0.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        TicketMap().fit(np.array([[0.0, -1.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="no points"):
        TicketMap().fit(np.zeros((0, 0)))


def test_ticket_map_table_joint_and_per_level(tmp_path):
    rng = np.random.default_rng(2)
    levels = {lv: {"w": rng.random((2, 8, 8)) < d} for lv, d in enumerate([0.9, 0.5])}
    run = make_run(tmp_path / "run", {"rtl": (["a", "b"], levels)})
    joint = ticket_map_table(run)  # 4 points: MDS, fast
    assert list(joint.columns) == MAP_COLUMNS
    assert len(joint) == 4 and list(joint["ticket"]) == ["a", "b", "a", "b"]
    kept = levels[1]["w"].reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(joint[joint["level"] == 1]["density"], kept)
    # Map distances follow the Jaccard distances of all four tickets.
    stacked = {"w": np.concatenate([levels[0]["w"], levels[1]["w"]])}
    d_map = pdist(joint[["x", "y"]].to_numpy())
    d_true = squareform(1.0 - pairwise_jaccard(stacked), checks=False)
    assert spearmanr(d_map, d_true).statistic > 0.9
    separate = ticket_map_table(run, levels=[1], joint=False)
    assert len(separate) == 2 and set(separate["level"]) == {1}


# ----------------------------------------------------------------------------- Mantel


def random_symmetric(rng, n):
    a = rng.random((n, n))
    return a + a.T


def test_mantel_rho_is_spearman_and_p_matches_brute_force():
    rng = np.random.default_rng(3)
    n = 7
    a = random_symmetric(rng, n)
    b = a + 0.8 * random_symmetric(rng, n)
    b[0, 1] = b[1, 0] = b[2, 3]  # a tie
    iu = np.triu_indices(n, 1)
    res = mantel(a, b, n_perm=199, random_state=5)
    assert res.rho == pytest.approx(spearmanr(a[iu], b[iu]).statistic)
    assert res.n_pairs == 21 and res.n_perm == 199
    # Brute force with the same permutations.
    perm_rng = np.random.default_rng(5)
    hits = 0
    for _ in range(199):
        p = perm_rng.permutation(n)
        hits += spearmanr(a[iu], b[p][:, p][iu]).statistic >= res.rho - 1e-12
    assert res.p_value == pytest.approx((1 + hits) / 200)


def test_mantel_identical_and_unrelated():
    rng = np.random.default_rng(4)
    a = random_symmetric(rng, 9)
    same = mantel(a, a, n_perm=499)
    assert same.rho == pytest.approx(1.0) and same.p_value <= 0.01
    p_values = [
        mantel(random_symmetric(rng, 9), random_symmetric(rng, 9), n_perm=199, random_state=s).p_value
        for s in range(20)
    ]
    # Under the null p is about uniform: few small values, median near 1/2.
    assert np.mean(np.array(p_values) < 0.05) <= 0.2
    assert 0.2 < np.median(p_values) < 0.8
    assert mantel(a, -a, n_perm=199, alternative="less").p_value <= 0.01
    assert mantel(a, -a, n_perm=199, alternative="two-sided").p_value <= 0.01
    assert mantel(a, -a, n_perm=199).p_value > 0.9


def test_mantel_degenerate_inputs():
    assert np.isnan(mantel(np.eye(2), np.eye(2)).rho)  # one pair
    res = mantel(np.ones((4, 4)), np.eye(4) + 1)  # constant off-diagonal
    assert np.isnan(res.rho) and np.isnan(res.p_value)
    with pytest.raises(ValueError):
        mantel(np.eye(3), np.eye(4))


def test_mantel_aligns_dataframe_labels():
    rng = np.random.default_rng(6)
    a = pd.DataFrame(random_symmetric(rng, 5), index=list("abcde"), columns=list("abcde"))
    shuffled = a.loc[list("ecabd"), list("ecabd")]
    assert mantel(a, shuffled, n_perm=0).rho == pytest.approx(1.0)


# ----------------------------------------------------------------------------- semantic alignment


def test_fashion_class_similarity():
    s = fashion_class_similarity()
    assert s.shape == (10, 10) and list(s.index) == FASHION_CLASSES == list(s.columns)
    np.testing.assert_array_equal(s.to_numpy(), s.to_numpy().T)
    assert (np.diag(s) == 1).all() and set(np.unique(s)) <= {0.0, 0.5, 1.0}
    cluster = {c: k for k, members in FASHION_CLUSTERS.items() for c in members}
    assert sorted(cluster) == sorted(FASHION_CLASSES)
    for a in FASHION_CLASSES:
        for b in FASHION_CLASSES:
            assert (s.loc[a, b] == 1.0) == (cluster[a] == cluster[b])
    assert s.loc["Shirt", "Trouser"] == 0.5 and s.loc["Sneaker", "Bag"] == 0.5
    assert s.loc["Shirt", "Sneaker"] == 0.0


def test_fashion_hierarchy_matches_the_lottery_partition():
    # The shipped matrix must describe the tickets the lottery draws for "fashion4".
    from lottery.data.fashion_mnist import CLASSES
    from lottery.data.partition import CLASS_MAPS

    assert FASHION_CLASSES == list(CLASSES)
    assert FASHION_CLUSTERS == CLASS_MAPS["fashion4"]


def random_control(tickets, seed=0):
    from analysis.projection import centroid_similarity

    return centroid_similarity(np.random.default_rng(seed).normal(size=(len(tickets), 3)), tickets)


def hierarchical_masks(rng, n_layers, n, structured_layers):
    """Class tickets whose masks share cluster- and group-level weights in some layers."""
    cluster = {c: k for k, members in FASHION_CLUSTERS.items() for c in members}
    group = {"tops": 0, "bottoms": 0, "footwear": 1, "bags": 1}
    masks = {}
    for layer in range(n_layers):
        if layer in structured_layers:
            g_proto = {g: rng.random(n) < 0.3 for g in (0, 1)}
            c_proto = {c: rng.random(n) < 0.3 for c in FASHION_CLUSTERS}
            rows = [
                g_proto[group[cluster[c]]] & c_proto[cluster[c]] | (rng.random(n) < 0.05)
                for c in FASHION_CLASSES
            ]
        else:
            rows = [rng.random(n) < 0.3 for _ in FASHION_CLASSES]
        masks[f"layer{layer}"] = np.array(rows)
    return masks


def test_alignment_detects_semantic_layers():
    rng = np.random.default_rng(7)
    masks = hierarchical_masks(rng, 6, 2000, structured_layers={4, 5})  # deep layers only
    df = alignment_frame(masks, fashion_class_similarity(), FASHION_CLASSES, n_perm=199)
    assert list(df.columns) == ALIGNMENT_COLUMNS
    df = df.set_index("layer_group")
    assert list(df.index) == ["all", "shallow", "middle", "deep"]
    assert df.loc["deep", "rho"] > 0.6 and df.loc["deep", "p_value"] <= 0.01
    assert abs(df.loc["shallow", "rho"]) < 0.4 and df.loc["shallow", "p_value"] > 0.05
    assert df.loc["all", "n_layers"] == 6 and df.loc["deep", "n_pairs"] == 45


def test_alignment_table_over_levels_with_loose_names(tmp_path):
    rng = np.random.default_rng(8)
    tickets = [c.lower().replace(" ", "_") for c in FASHION_CLASSES]  # "t-shirt/top", "ankle_boot"
    levels = {lv: hierarchical_masks(rng, 3, 400, structured_layers={0, 1, 2}) for lv in (0, 1)}
    run = make_run(tmp_path / "run", {"rtl": (tickets, levels)})
    table = alignment_table(run, "rtl", n_perm=99, groups=False)
    assert list(table.columns) == ["level", "sparsity", *ALIGNMENT_COLUMNS]
    assert len(table) == 2 and (table["rho"] > 0.5).all()
    with pytest.raises(KeyError, match="not in the reference"):
        alignment_frame(levels[0], fashion_class_similarity(), ["cat"] * 10)
    fig = alignment_vs_sparsity(alignment_table(run, "rtl", n_perm=19))
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["all", "shallow", "middle", "deep"]  # no control: no partial
    fig = alignment_vs_sparsity(alignment_table(run, "rtl", n_perm=19, control=random_control(tickets)))
    names = [t.name for t in fig.data]
    assert (
        names[:4] == ["all", "shallow", "middle", "deep"] and names[4] == "all, partial (inputs controlled)"
    )


def test_ticket_map_scatter():
    table = pd.DataFrame(
        {
            "method": ["rtl", "rtl", "imp"],
            "level": [0, 1, 1],
            "sparsity": [0.0, 0.2, 0.2],
            "ticket": ["a", "b", "all"],
            "density": [1.0, 0.8, 0.8],
            "x": [0.0, 1.0, 2.0],
            "y": [0.0, 1.0, 0.5],
        }
    )
    fig = ticket_map_scatter(table, color="method")
    assert isinstance(fig, go.Figure)
    assert sorted(t.name for t in fig.data) == ["imp", "rtl"]
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert "ticket" in fig.data[0].hovertemplate


# ----------------------------------------------------------------------------- partial Mantel (issue 13.5)


def _dist_similarity(points):
    return -squareform(pdist(points))


def _symmetric_noise(rng, n, scale):
    e = rng.normal(0, scale, (n, n))
    return (e + e.T) / 2


def test_partial_mantel_equals_the_partial_spearman_formula():
    from analysis.projection import partial_mantel

    rng = np.random.default_rng(0)
    n = 9
    a, b, c = (random_symmetric(rng, n) for _ in range(3))
    iu = np.triu_indices(n, 1)
    r_ab = spearmanr(a[iu], b[iu])[0]
    r_ac = spearmanr(a[iu], c[iu])[0]
    r_bc = spearmanr(b[iu], c[iu])[0]
    want = (r_ab - r_ac * r_bc) / np.sqrt((1 - r_ac**2) * (1 - r_bc**2))
    res = partial_mantel(a, b, c, n_perm=0)
    assert res.rho == pytest.approx(want, abs=1e-12)
    assert np.isnan(res.p_value) and res.n_pairs == n * (n - 1) // 2


def test_partial_mantel_recovers_a_planted_effect_and_rejects_a_confounded_one():
    from analysis.projection import partial_mantel

    n, detected, confounded_raw, confounded_partial = 12, 0, 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        control = _dist_similarity(rng.normal(size=(n, 2)))  # input-space similarity
        own = _dist_similarity(rng.normal(size=(n, 2)))  # class structure the inputs do not carry
        classes = control / control.std() + own / own.std()
        # planted: masks follow the classes' own structure beyond the inputs
        planted = own / own.std() + control / control.std() + _symmetric_noise(rng, n, 0.5)
        detected += partial_mantel(planted, classes, control, n_perm=199, random_state=seed).p_value <= 0.05
        # confounded: masks and classes both follow only the inputs
        classes_c = control / control.std() + _symmetric_noise(rng, n, 0.4)
        masks_c = control / control.std() + _symmetric_noise(rng, n, 0.4)
        confounded_raw += mantel(masks_c, classes_c, n_perm=199, random_state=seed).p_value <= 0.05
        confounded_partial += (
            partial_mantel(masks_c, classes_c, control, n_perm=199, random_state=seed).p_value <= 0.05
        )
    assert detected >= 18  # power: the planted effect is found
    assert confounded_raw >= 18  # the plain Mantel test is fooled by the shared input structure
    assert confounded_partial <= 3  # the partial test is not (about the 5 % level)


def test_partial_mantel_degenerate_and_bad_inputs():
    from analysis.projection import partial_mantel

    rng = np.random.default_rng(1)
    a = random_symmetric(rng, 5)
    b = random_symmetric(rng, 5)
    # a constant control explains nothing: the partial statistic is the plain one
    assert partial_mantel(a, b, np.ones((5, 5)), n_perm=0).rho == pytest.approx(mantel(a, b, n_perm=0).rho)
    with pytest.raises(ValueError, match="square"):
        partial_mantel(a, a, np.ones((4, 4)))


def test_alignment_leaves_detector_heads_out_and_reports_partial(tmp_path):
    from analysis.projection import centroid_similarity

    rng = np.random.default_rng(9)
    k = len(FASHION_CLASSES)
    head = np.zeros((k, k, 8), dtype=bool)
    head[np.arange(k), np.arange(k)] = True  # each detector owns one head row
    dense = {"layer0": np.ones((k, 400), bool), "layer1": np.ones((k, 400), bool), "head": head}
    pruned = hierarchical_masks(rng, 2, 400, structured_layers={0, 1})
    pruned["head"] = head & (rng.random(head.shape) < 0.6)
    run = make_run(tmp_path / "run", {"rtl": (FASHION_CLASSES, {0: dense, 1: pruned})})
    control = centroid_similarity(rng.normal(size=(k, 5)), FASHION_CLASSES)
    table = alignment_table(run, "rtl", n_perm=99, control=control)
    one = table[table["level"] == 1].set_index("layer_group")
    assert list(one.index) == ["all", "shallow", "deep"]  # the head is gone; two layers remain
    assert one.loc["all", "n_layers"] == 2
    assert one[["rho", "partial_rho"]].notna().all().all()  # deep is no longer NaN
    assert (one["rho"] > 0.5).all()
    no_control = alignment_table(run, "rtl", n_perm=9, control=None)
    assert no_control["partial_rho"].isna().all()
    from analysis.projection import alignment_facts

    facts = alignment_facts(run, "rtl", table)
    assert facts["disjoint"] == ["head"] and facts["inputs_rho"] is None  # the run stores no centroids


def test_centroid_similarity_orders_like_distance():
    from analysis.projection import centroid_similarity

    c = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    s = centroid_similarity(c, ["a", "b", "c"])
    assert s.loc["a", "b"] > s.loc["a", "c"] and s.loc["a", "a"] == 0
    np.testing.assert_allclose(s.to_numpy(), -squareform(pdist(c)))
