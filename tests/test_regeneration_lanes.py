"""The lane split of ``LANES=N scripts/make_embedded_runs.sh`` and the schedules it is judged by."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.regeneration_lanes import greedy_wall, lanes, task_seconds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_lanes_balance_work_longest_first():
    costs = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0}
    split = lanes(costs, 2)
    assert sorted(n for lane in split for n in lane) == sorted(costs)  # every name once
    assert split == [["a", "d"], ["b", "c", "e"]]  # 10 against 10
    assert lanes(costs, 1) == [["a", "b", "c", "d", "e"]]


def test_names_without_recorded_times_go_round_the_lanes():
    assert lanes({"a": 0.0, "b": 0.0, "c": 0.0}, 2) == [["a", "c"], ["b"]]
    assert lanes({"a": 0.0}, 3) == [["a"], [], []]


def test_greedy_wall_places_each_task_on_the_first_free_core():
    assert greedy_wall([4.0, 1.0, 1.0, 1.0], 2) == 4.0
    assert greedy_wall([1.0, 1.0, 4.0], 2) == 5.0  # the long task starts last
    assert greedy_wall([3.0, 3.0], 1) == 6.0


def test_task_seconds_of_a_shipped_group_sum_its_level_times():
    import json

    group = REPO / "artifacts" / "adult-mlp-cluster-sweep"
    tasks = task_seconds(group)
    run = group / "seed-0"
    methods = json.loads((run / "manifest.json").read_text())["methods"]
    assert len(tasks) == 3 * len(methods)
    first = methods[0] if isinstance(methods, list) else next(iter(methods))
    expected = sum(
        v
        for f in (run / first).glob("level_*/level.json")
        for k, v in json.loads(f.read_text()).items()
        if k.endswith("_seconds")
    )
    assert tasks[0] == expected > 0


def test_regeneration_check_finds_a_changed_level(tmp_path):
    import json
    import shutil

    from benchmarks.regeneration_check import check

    shipped = REPO / "artifacts" / "adult-mlp-cluster-sweep"
    again = tmp_path / "adult-mlp-cluster-sweep"
    shutil.copytree(shipped, again)
    for seed in ("seed-0", "seed-2"):  # a stopped regeneration: only the levels found are compared
        shutil.rmtree(again / seed)
    same = check(shipped, again)
    assert same["levels"] == 47 and same["differ"] == [] and same["again_s"] == same["shipped_s"] > 0
    level_json = again / "seed-1" / "imp" / "level_03" / "level.json"
    info = json.loads(level_json.read_text())
    info["metrics"]["accuracy"] += 1e-9
    level_json.write_text(json.dumps(info))
    assert check(shipped, again)["differ"] == ["seed-1 imp 3"]
