"""``data.train_limit``: a stratified subsample of the training rows only, the test split whole."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lottery.config import DataConfig, RunDescription, apply_overrides
from lottery.context import build_context
from lottery.data import load_dataset, make_partition
from lottery.data.dataset import split_indices
from lottery.presets import PRESETS, get_preset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)


def _within_one_per_class(kept: np.ndarray, source: np.ndarray, size: int) -> bool:
    """Each class's kept count is within 1 of its share of ``size`` in ``source``."""
    n_classes = int(source.max()) + 1
    expected = np.bincount(source, minlength=n_classes) * size / len(source)
    return bool(np.all(np.abs(np.bincount(kept, minlength=n_classes) - expected) <= 1))


@pytest.mark.parametrize("seed", [0, 3])
def test_digits_train_limit_subsamples_train_only(seed):
    full = load_dataset("digits", val_fraction=0.0, seed=seed)  # every source training row, in order
    ds = load_dataset("digits", val_fraction=0.1, seed=seed, train_limit=500)
    kept = np.concatenate([ds.index_train, ds.index_val])
    assert len(kept) == 500 and len(np.unique(kept)) == 500
    # stratified: class proportions of the source's training rows, within 1 sample per class
    assert _within_one_per_class(np.concatenate([ds.y_train, ds.y_val]), full.y_train, 500)
    # validation is carved from the subsample, disjoint from train and itself stratified
    assert np.intersect1d(ds.index_train, ds.index_val).size == 0
    assert len(ds.y_val) == 50
    assert _within_one_per_class(ds.y_val, np.concatenate([ds.y_train, ds.y_val]), 50)
    # the rows are the source's rows at the recorded positions
    np.testing.assert_array_equal(ds.x_train, full.x_train[ds.index_train])
    np.testing.assert_array_equal(ds.y_val, full.y_train[ds.index_val])
    # the test split is untouched: every test row, in order
    np.testing.assert_array_equal(ds.index_test, np.arange(450))
    np.testing.assert_array_equal(ds.x_test, full.x_test)
    np.testing.assert_array_equal(ds.y_test, full.y_test)


def test_limit_shrinks_test_but_train_limit_does_not():
    with_limit = load_dataset("digits", limit=500)
    with_train_limit = load_dataset("digits", train_limit=500)
    assert len(with_limit.y_test) < 450 and len(with_train_limit.y_test) == 450
    # the same stratified draw of training rows either way (same seed, same size)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([with_limit.index_train, with_limit.index_val])),
        np.sort(np.concatenate([with_train_limit.index_train, with_train_limit.index_val])),
    )


def test_train_limit_above_the_training_set_keeps_every_row():
    ds = load_dataset("digits", train_limit=10**6, val_fraction=0.0)
    np.testing.assert_array_equal(ds.index_train, np.arange(1347))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_limit": 0}, "train_limit must be positive"),
        ({"train_limit": 5}, "cannot hold all 10 classes"),
        ({"train_limit": 500, "limit": 500}, "exclude each other"),
    ],
)
def test_bad_train_limit_in_the_data_layer(kwargs, match):
    y_train, y_test = np.repeat(np.arange(10), 20), np.repeat(np.arange(10), 5)
    with pytest.raises(ValueError, match=match):
        split_indices(y_train, y_test, val_fraction=0.1, seed=0, limit=kwargs.pop("limit", None), **kwargs)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0", "data.train_limit must be a positive integer; got 0"),
        ("-3", "data.train_limit must be a positive integer; got -3"),
        ("12k", "data.train_limit: '12k' is not an integer"),
    ],
)
def test_train_limit_override_is_validated_in_one_line(value, match):
    with pytest.raises(ValueError, match=match) as err:
        apply_overrides(get_preset("smoke"), [f"data.train_limit={value}"])
    assert "\n" not in str(err.value)


def test_train_limit_and_limit_exclude_each_other_in_the_description():
    with pytest.raises(ValueError, match="data.train_limit and data.limit exclude each other"):
        DataConfig(limit=500, train_limit=500)
    with pytest.raises(ValueError, match="positive integer"):
        DataConfig(train_limit=12000.0)  # from a hand-edited JSON description


def test_train_limit_is_recorded_and_a_default_changes_no_hash():
    base = get_preset("smoke")
    assert DataConfig().train_limit is None
    assert "train_limit" not in base.canonical().get("data", {})
    same = apply_overrides(base, ["data.train_limit=none"])
    assert same == base and same.hash() == base.hash()
    d = apply_overrides(base, ["data.train_limit=12000"])
    assert d.data.train_limit == 12000 and d.hash() != base.hash()
    assert d.canonical()["data"]["train_limit"] == 12000
    assert RunDescription.from_dict(d.to_dict()) == d


def test_vit_sweep_and_its_null_carry_the_train_limit():
    real, null = get_preset("fashion-vit-cluster-sweep"), get_preset("fashion-vit-cluster-sweep-null")
    assert real.data.train_limit == null.data.train_limit == 12000
    assert real.data.limit is None and real.data.eval_limit is None  # the full test split
    assert null.data.partition == "random" and null.data.null_of == "map"
    assert real.train.max_epochs == null.train.max_epochs == 7
    # the other groups keep the whole training set
    for name in PRESETS:
        if "vit-cluster-sweep" not in name:
            assert get_preset(name).data.train_limit is None


def test_partitions_and_the_random_null_on_the_subsample(tmp_path):
    desc = RunDescription(data=DataConfig(name="digits", partition="class", train_limit=400), seed=2)
    ctx = build_context(desc, tmp_path / "real", "cpu")
    null_desc = dataclasses.replace(
        desc, data=dataclasses.replace(desc.data, partition="random", null_of="class")
    )
    null = build_context(null_desc, tmp_path / "null", "cpu")
    assert len(ctx.y_train) == len(null.y_train) == 360 and len(ctx.y_test) == 450
    np.testing.assert_array_equal(ctx.data.index_train, null.data.index_train)  # same seed: same rows
    real_sizes = np.bincount(ctx.y_train.numpy(), minlength=10)  # class subsets: the labels themselves
    np.testing.assert_array_equal(np.bincount(ctx.subset_train.numpy(), minlength=10), real_sizes)
    np.testing.assert_array_equal(np.bincount(null.subset_train.numpy(), minlength=10), real_sizes)
    assert (null.subset_train != ctx.subset_train).float().mean() > 0.5  # blind to the labels
    # and on the test split, the random subsets copy the real test sizes
    test_sizes = np.bincount(ctx.y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(np.bincount(null.subset_test.numpy(), minlength=10), test_sizes)


@needs_debian
def test_fashion_train_limit_12000_keeps_the_10000_test_images():
    ds = load_dataset("fashion_mnist", train_limit=12000, val_fraction=0.1, seed=1)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10800, 1200, 10000)
    # Fashion-MNIST's training set is balanced (6000 a class): exactly 1200 a class kept, 120 in val
    np.testing.assert_array_equal(np.bincount(np.concatenate([ds.y_train, ds.y_val])), np.full(10, 1200))
    np.testing.assert_array_equal(np.bincount(ds.y_val), np.full(10, 120))
    np.testing.assert_array_equal(ds.index_test, np.arange(10000))
    fashion4 = make_partition("map", ds, name="fashion4")
    sizes = np.bincount(fashion4.assign(ds.x_train, ds.y_train), minlength=4)
    np.testing.assert_array_equal(sizes, [4 * 1080, 2 * 1080, 3 * 1080, 1080])
    null = make_partition("random", ds, name="fashion4", null_of="map", seed=1)
    np.testing.assert_array_equal(np.bincount(null.assign(ds.x_train, ds.y_train), minlength=4), sizes)
