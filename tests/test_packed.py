"""Streaming measures from packed, memory-mapped masks equal the in-memory ones (and scipy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform

from analysis.coding import coding_frame, coding_table, joint_coding_frame, joint_coding_table
from analysis.collapse import mask_signals
from analysis.packed import PackedMasks, packed_masks, stacked_jaccard_density
from analysis.similarity import pairwise_jaccard, similarity_frame, similarity_table
from artifacts.run_format import load_run, save_masks

REPO = Path(__file__).resolve().parents[1]


def random_masks(k: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"conv": (6, 3, 3, 3), "fc": (37, 29), "tiny": (1, 3), "head": (10, 64)}
    masks = {}
    for i, (name, shape) in enumerate(shapes.items()):
        base = rng.random(shape) < 0.3 + 0.15 * i  # shared structure, so tickets overlap
        masks[name] = np.stack([base ^ (rng.random(shape) < 0.2) for _ in range(k)])
    masks["tiny"][0] = False  # an empty layer in one ticket
    return masks


@pytest.mark.parametrize(("k", "seed"), [(1, 0), (3, 1), (5, 2), (13, 3)])
def test_packed_measures_equal_in_memory(tmp_path, k, seed):
    masks = random_masks(k, seed)
    save_masks(tmp_path / "m.safetensors", masks)
    pm = PackedMasks(tmp_path / "m.safetensors")
    names = [f"t{i}" for i in range(k)]
    pd.testing.assert_frame_equal(similarity_frame(pm, names), similarity_frame(masks, names))
    pd.testing.assert_frame_equal(coding_frame(pm, names), coding_frame(masks, names))
    # K = 13 takes the chunk-wise unpacking path, the others the subset popcounts.
    pd.testing.assert_frame_equal(joint_coding_frame(pm), joint_coding_frame(masks))
    pd.testing.assert_frame_equal(mask_signals(pm), mask_signals(masks))
    if k > 1:
        flat = np.concatenate([m.reshape(k, -1) for m in masks.values()], axis=1)
        scipy_j = 1.0 - squareform(pdist(flat, "jaccard"))
        np.fill_diagonal(scipy_j, 1.0)
        glob = similarity_frame(pm, names, layers=False)
        ia, ib = np.triu_indices(k, 1)
        np.testing.assert_allclose(glob["jaccard"].to_numpy(), scipy_j[ia, ib], rtol=0, atol=1e-15)


def test_small_chunks_give_the_same_counts(tmp_path, monkeypatch):
    import analysis.packed as packed

    masks = random_masks(4, 7)
    save_masks(tmp_path / "m.safetensors", masks)
    pm = PackedMasks(tmp_path / "m.safetensors")
    want = (similarity_frame(masks), joint_coding_frame(masks), mask_signals(masks))
    monkeypatch.setattr(packed, "DEFAULT_CHUNK_BYTES", 8)  # many chunks per layer
    got = (similarity_frame(pm), joint_coding_frame(pm), mask_signals(pm))
    for g, w in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g, w)


def test_stacked_jaccard_equals_concatenated(tmp_path):
    a, b = random_masks(3, 4), random_masks(2, 5)
    save_masks(tmp_path / "a.safetensors", a)
    save_masks(tmp_path / "b.safetensors", b)
    jac, dens = stacked_jaccard_density(
        [PackedMasks(tmp_path / "a.safetensors"), PackedMasks(tmp_path / "b.safetensors")]
    )
    stacked = {n: np.concatenate([a[n], b[n]]) for n in a}
    np.testing.assert_array_equal(jac, pairwise_jaccard(stacked))
    kept = sum(m.reshape(5, -1).sum(axis=1) for m in stacked.values())
    np.testing.assert_array_equal(dens, kept / sum(m[0].size for m in stacked.values()))


def test_run_tables_equal_in_memory_frames():
    run = load_run(REPO / "artifacts" / "fashion-mlp-class-sweep" / "seed-0")
    method = run.methods[0]
    tickets = run.ticket_names(method)
    levels = run.levels(method)[:3]
    sim = similarity_table(run, method, levels)
    cod = coding_table(run, method, levels)
    joint = joint_coding_table(run, method, levels)
    for lv in levels:
        masks = run.masks(method, lv)
        pm = packed_masks(run, method, lv)
        assert set(pm) == set(masks)
        got = sim[sim["level"] == lv].drop(columns=["level", "sparsity"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, similarity_frame(masks, tickets))
        got = cod[cod["level"] == lv].drop(columns=["level", "sparsity"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, coding_frame(masks, tickets))
        got = joint[joint["level"] == lv].drop(columns=["level", "sparsity"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, joint_coding_frame(masks))


def test_stacked_jaccard_of_one_level(tmp_path):
    a = random_masks(4, 9)
    save_masks(tmp_path / "a.safetensors", a)
    jac, dens = stacked_jaccard_density([PackedMasks(tmp_path / "a.safetensors")])
    np.testing.assert_array_equal(jac, pairwise_jaccard(a))
    kept = sum(m.reshape(4, -1).sum(axis=1) for m in a.values())
    np.testing.assert_array_equal(dens, kept / sum(m[0].size for m in a.values()))


def test_folded_run_gives_the_same_tables(tmp_path, smoke_run_dir):
    # compact storage (mask_levels + an alias for rtl) must answer exactly like per-level files
    import shutil

    from analysis.collapse import collapse_curves
    from analysis.packed import LevelCodedMasks
    from artifacts.run_format import MASKS, compact_masks, level_dir

    shipped = smoke_run_dir  # a real run with its per-level mask files
    folded = tmp_path / "run"
    shutil.copytree(shipped, folded)
    report = compact_masks(folded)
    assert report["removed"] > 0
    old, new = load_run(shipped), load_run(folded)
    for method in new.methods:
        levels = new.levels(method)
        assert not (level_dir(folded, method, levels[-1]) / MASKS).exists()
        pm = packed_masks(new, method, levels[-1])
        assert isinstance(pm, LevelCodedMasks)
        want = old.masks(method, levels[-1])
        assert set(pm) == set(want)
        for name in want:
            np.testing.assert_array_equal(pm[name], want[name])
        some = [levels[0], levels[-1]]
        for table in (similarity_table, coding_table, joint_coding_table):
            pd.testing.assert_frame_equal(table(new, method, some), table(old, method, some))
        pd.testing.assert_frame_equal(
            collapse_curves(new, [method], some), collapse_curves(old, [method], some)
        )


def test_folded_run_keeps_the_model_layer_order(tmp_path, smoke_run_dir):
    import shutil

    from artifacts import run_format as rf

    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run_dir, run_dir)
    order = rf.read_json(run_dir / rf.MANIFEST)["layers"]
    rf.compact_masks(run_dir)
    run = rf.load_run(run_dir)
    for method in run.methods:
        assert list(run.masks(method, run.levels(method)[-1])) == order


def test_subset_counts_of_a_file_replaced_with_same_size_and_mtime_are_read_again(tmp_path):
    """The memo is keyed by the file's version: a replacement (another inode) is counted afresh."""
    import os

    path = tmp_path / "m.safetensors"
    first, second = random_masks(3, 1), random_masks(3, 2)
    save_masks(path, first)
    want_first = PackedMasks(path).subset_counts("fc")
    st = os.stat(path)
    save_masks(tmp_path / "new.safetensors", second)
    assert os.stat(tmp_path / "new.safetensors").st_size == st.st_size
    os.utime(tmp_path / "new.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp_path / "new.safetensors", path)  # same path, size and mtime; other masks
    got = PackedMasks(path).subset_counts("fc")
    save_masks(tmp_path / "fresh.safetensors", second)
    np.testing.assert_array_equal(got, PackedMasks(tmp_path / "fresh.safetensors").subset_counts("fc"))
    assert not np.array_equal(got, want_first)
