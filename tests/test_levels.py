"""The level nearest a sparsity: one function for every table and page (analysis.levels)."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import levels_at, load_run, nearest_level, paper_levels


def _table():
    # two methods on different schedules: "fast" reaches each sparsity at a lower level
    rows = [("slow", lv, 1 - 0.9**lv) for lv in range(12)] + [("fast", lv, 1 - 0.7**lv) for lv in range(6)]
    return pd.DataFrame(rows, columns=["method", "level", "sparsity"])


def test_each_method_gets_its_own_level_nearest_the_target():
    t = _table()
    at = levels_at(t, 0.5)
    for m, lv in at.items():
        rows = t[t["method"] == m]
        best = rows.loc[(rows["sparsity"] - 0.5).abs().idxmin(), "level"]
        assert lv == best
    assert at == {"slow": 7, "fast": 2}
    assert levels_at(t, 0.5, ["fast"]) == {"fast": 2}
    assert paper_levels(t, ["slow", "fast"]) == sorted(
        {lv for target in (0.25, 0.5, 0.75) for lv in levels_at(t, target).values()}
    )


def test_ties_go_to_the_denser_level_and_missing_methods_are_refused():
    t = pd.DataFrame({"method": ["m", "m"], "level": [3, 4], "sparsity": [0.4, 0.6]})
    assert nearest_level(t, "m", 0.5) == 3
    with pytest.raises(ValueError, match="no completed level"):
        nearest_level(t, "absent", 0.5)
    assert levels_at(t, 0.5, ["m", "absent"]) == {"m": 3}


def test_a_run_and_its_level_table_agree(synthetic_runs_dir):
    from analysis.overview import level_table

    run = load_run(synthetic_runs_dir / "multi")
    table = level_table(run)
    for target in (0.0, 0.3, 0.55, 0.99):
        assert levels_at(run, target) == levels_at(table, target)


class _FakeRun:
    def __init__(self, manifest: dict, levels: dict[str, list[int]]):
        self.manifest, self._levels = manifest, levels
        self.methods = list(levels)

    def levels(self, method: str) -> list[int]:
        return self._levels[method]


def test_dense_reference_from_the_manifest_else_own_level_0():
    from analysis.levels import dense_reference

    levels = {"rtl": [0, 1, 2], "dense": [0]}
    run = _FakeRun({"dense_reference": {"method": "dense", "level": 0}}, levels)
    assert dense_reference(run, "rtl") == ("dense", 0)
    assert dense_reference(run) == ("dense", 0)
    old = _FakeRun({}, {"imp": [0, 1], "rtl": [1, 2]})  # older run: no field
    assert dense_reference(old, "imp") == ("imp", 0)
    assert dense_reference(old, "rtl") == ("rtl", 1)
    assert dense_reference(old) is None
    # a reference the run does not hold (not written yet) is no reference
    missing = _FakeRun({"dense_reference": {"method": "imp", "level": 0}}, {"rtl": [0, 1]})
    assert dense_reference(missing, "rtl") == ("rtl", 0)


def test_reference_only_methods_are_one_level_dense_references():
    from analysis.levels import reference_only_methods

    run = _FakeRun({"dense_reference": {"method": "dense", "level": 0}}, {"rtl": [0, 1, 2], "dense": [0]})
    assert reference_only_methods(run) == ["dense"]
    imp = _FakeRun({"dense_reference": {"method": "imp", "level": 0}}, {"imp": [0, 1], "rtl": [0, 1]})
    assert reference_only_methods(imp) == []  # imp is a sweep that also serves as the reference
    assert reference_only_methods(_FakeRun({}, {"imp": [0, 1], "rtl": [0]})) == []
