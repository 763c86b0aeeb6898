"""Issue 12's engine side: random-partition null control, overlap scaling, epochs chosen on the
validation split, sweeps until collapse, the dense reference, compact mask storage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from artifacts import run_format as rf
from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.data import load_dataset, make_partition
from lottery.pipeline import build_context, train_run

TINY = RunDescription(
    data=DataConfig(name="digits", partition="class"),
    model=ModelSpec(name="mlp", hidden=(16, 8)),
    train=TrainConfig(epochs=1, batch_size=64, lr=1e-2),
    prune=PruneConfig(fraction=0.5, levels=1),
    rtl=RTLConfig(ticket_kind="detector", retrain_epochs=1),
    methods=("rtl",),
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ----------------------------------------------------------------------------- 1. random partition


@pytest.mark.parametrize(("null_of", "extra"), [("class", {}), ("kmeans", {"k": 4})])
def test_random_partition_copies_sizes_and_ignores_labels(digits, null_of, extra):
    real = make_partition(null_of, digits, seed=3, **extra)
    rand = make_partition("random", digits, seed=3, null_of=null_of, **extra)
    assert rand.kind == "random" and rand.k == real.k
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        r, s = real.assign(x, y), rand.assign(x, y)
        np.testing.assert_array_equal(np.bincount(s, minlength=rand.k), np.bincount(r, minlength=real.k))
        assert (s != r).mean() > 0.5  # shuffled, not the real membership
    # membership independent of the labels: chi-square test of subset x class, and each
    # subset's class mix close to the overall mix
    s, y = rand.assign(digits.x_train, digits.y_train), digits.y_train
    table = np.zeros((rand.k, 10))
    np.add.at(table, (s, y), 1)
    assert chi2_contingency(table).pvalue > 0.01
    overall = np.bincount(y, minlength=10) / len(y)
    for k in range(rand.k):
        mix = table[k] / table[k].sum()
        assert np.abs(mix - overall).max() < 0.12
    # the real class partition is the opposite: fully dependent on labels
    if null_of == "class":
        assert chi2_contingency(np.eye(10) * 100 + 1).pvalue < 1e-10


def test_random_partition_is_deterministic_per_seed(digits):
    a = make_partition("random", digits, seed=1, null_of="class").assign(digits.x_train, digits.y_train)
    b = make_partition("random", digits, seed=1, null_of="class").assign(digits.x_train, digits.y_train)
    c = make_partition("random", digits, seed=2, null_of="class").assign(digits.x_train, digits.y_train)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    with pytest.raises(ValueError, match="null_of"):
        make_partition("random", digits)


def test_random_partition_config_and_hashes():
    with pytest.raises(ValueError, match="null_of"):
        DataConfig(partition="random")
    with pytest.raises(ValueError, match="null_of"):
        DataConfig(partition="class", null_of="class")
    with pytest.raises(ValueError, match="partition_map"):
        DataConfig(partition="random", null_of="map")
    d = dataclasses.replace(TINY, data=DataConfig(partition="random", null_of="class"))
    assert d.hash() != TINY.hash()
    assert RunDescription.from_dict(d.to_dict()) == d


def test_random_partition_run_shares_theta0(tmp_path):
    null = dataclasses.replace(TINY, data=DataConfig(name="digits", partition="random", null_of="class"))
    real_ctx = build_context(TINY, tmp_path / "real", device="cpu")
    null_ctx = build_context(null, tmp_path / "null", device="cpu")
    (tmp_path / "real").mkdir()
    (tmp_path / "null").mkdir()
    t_real, t_null = real_ctx.theta0(), null_ctx.theta0()
    assert t_real.keys() == t_null.keys()
    for n in t_real:
        np.testing.assert_array_equal(t_real[n], t_null[n])
    # a full run of the null control: detectors of random subsets, manifest names the null
    train_run(null, tmp_path / "run", device="cpu", show_progress=False)
    run = rf.load_run(tmp_path / "run")
    part = run.manifest["partition"]
    assert part["kind"] == "random" and part["null_of"]["kind"] == "class"
    frame = run.predictions("rtl", 1)
    assert frame["cluster"].str.startswith("random").all()
    np.testing.assert_array_equal(
        np.bincount(frame["subset"], minlength=10), np.bincount(frame["label"], minlength=10)
    )
