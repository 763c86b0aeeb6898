import numpy as np
import pytest
import torch

from lottery.masks import MaskError, Masks
from lottery.prune import level_density, magnitude_prune


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(30, 20, generator=g), "b": torch.randn(7, 3, 3, generator=g)}


def test_layer_pruning_keeps_largest_surviving_magnitudes():
    w = _weights()
    mask = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    new = magnitude_prune(w, mask, 0.5, "layer")
    for n, t in w.items():
        keep = int(round(0.5 * t.numel()))
        assert int(new[n].sum()) == keep
        kept = t.abs()[new[n]]
        dropped = t.abs()[~new[n]]
        assert kept.min() >= dropped.max()


def test_pruned_weights_never_come_back():
    w = _weights()
    mask = {n: torch.rand(t.shape, generator=torch.Generator().manual_seed(1)) < 0.6 for n, t in w.items()}
    # make pruned weights the largest: they must still stay pruned
    big = {n: torch.where(mask[n], t, t.sign() * 100) for n, t in w.items()}
    new = magnitude_prune(big, mask, 0.3, "layer")
    for n in w:
        assert not (new[n] & ~mask[n]).any()


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_sparsity_after_levels_within_one_weight_per_layer(scope):
    w = _weights()
    mask = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    total = sum(t.numel() for t in w.values())
    p = 0.2
    for level in range(1, 15):
        w = {n: t + 0.01 * torch.randn(t.shape) for n, t in w.items()}  # training moves weights
        new = magnitude_prune(w, mask, level_density(p, level), scope)
        for n in w:  # nested
            assert not (new[n] & ~mask[n]).any()
        mask = new
        kept = sum(int(m.sum()) for m in mask.values())
        expected = (1 - p) ** level
        assert abs(kept / total - expected) <= len(w) / total
        if scope == "layer":
            for n, t in w.items():
                assert abs(int(mask[n].sum()) - expected * t.numel()) <= 1


def test_global_scope_ranks_across_layers():
    w = {"small": torch.full((10,), 0.1), "large": torch.full((10,), 5.0)}
    mask = {n: torch.ones(10, dtype=torch.bool) for n in w}
    new = magnitude_prune(w, mask, 0.5, "global")
    assert int(new["large"].sum()) == 10 and int(new["small"].sum()) == 0


def test_bad_arguments():
    w = _weights()
    mask = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    with pytest.raises(ValueError):
        magnitude_prune(w, mask, 1.5)
    with pytest.raises(ValueError):
        magnitude_prune(w, mask, 0.5, "per-neuron")
    with pytest.raises(ValueError):
        level_density(1.0, 2)


def test_masks_container_validates():
    shapes = {"a": (3, 2)}
    Masks({"a": np.ones((2, 3, 2), dtype=bool)}, shapes)
    Masks({"a": np.ones((2, 3, 2), dtype=np.float32)}, shapes)  # 0/1 floats accepted
    with pytest.raises(MaskError, match="other than 0 and 1"):
        Masks({"a": np.full((2, 3, 2), 0.5)}, shapes)
    with pytest.raises(MaskError, match="NaN"):
        Masks({"a": np.full((2, 3, 2), np.nan)}, shapes)
    with pytest.raises(MaskError, match="weight shape"):
        Masks({"a": np.ones((2, 2, 3), dtype=bool)}, shapes)
    with pytest.raises(MaskError, match="missing"):
        Masks({"b": np.ones((2, 3, 2), dtype=bool)}, shapes)
    with pytest.raises(MaskError, match="tickets"):
        Masks({"a": np.ones((2, 3, 2), dtype=bool), "b": np.ones((3, 1, 1), dtype=bool)})


def test_masks_counts_and_union():
    m = np.zeros((2, 4), dtype=bool)
    m[0, :2] = True
    m[1, 1:3] = True
    masks = Masks({"a": m})
    assert masks.counts().tolist() == [2, 2]
    assert masks.union_count() == 3
    np.testing.assert_allclose(masks.sparsity(), [0.5, 0.5])
