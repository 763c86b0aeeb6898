"""How to spread the regeneration of the embedded runs over the cores: lanes from recorded level times.

Every ``level.json`` of a run records the seconds its training took
(``train_seconds``, ``extraction_seconds``). Summed per task (one method of one
run, as ``python -m lottery sweep`` schedules them), they give each embedded
run's CPU time, as measured when it was last drawn (with whatever load the
machine had then). From them this prints, for ``--cores`` cores:

- the wall time of ``scripts/make_embedded_runs.sh`` run one name after the
  other, each group's tasks placed greedily on the cores in the order the sweep
  submits them (a run that is not a group, INR or speech, is one process on one
  core);
- the wall time of ``LANES=2 scripts/make_embedded_runs.sh``: the names split
  into one lane per core (longest first, each to the lane with less work), the
  lanes run side by side and each lane's names one after the other;
- with ``--lanes``, only the lane split, one line of names per lane (what the
  script reads).

These are schedules of recorded times, not measurements of a regeneration.

    python benchmarks/regeneration_lanes.py                   # every embedded run under artifacts/
    python benchmarks/regeneration_lanes.py --lanes NAME ...  # the split the script uses
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from artifacts import run_format as rf  # noqa: E402

NAMES = (
    "fashion-mlp-class-sweep",
    "fashion-mlp-class-sweep-null",
    "fashion-mlp-class-sweep-count",
    "fashion-vit-cluster-sweep",
    "fashion-vit-cluster-sweep-null",
    "adult-mlp-cluster-sweep",
    "adult-mlp-cluster-sweep-null",
    "image-inr-region",
    "speech-unet-env",
)


def task_seconds(folder: Path) -> list[float]:
    """Recorded seconds of every task of an embedded run or group: one per (run, method).

    Parameters
    ----------
    folder : Path
        ``artifacts/NAME``.

    Returns
    -------
    list of float
        In the sweep's submission order (seed, then method as the manifest lists them).
    """
    runs = rf.load_group(folder).run_paths() if rf.is_group(folder) else [folder]
    out = []
    for run in runs:
        manifest = rf.read_json(Path(run) / rf.MANIFEST)
        for method in manifest["methods"]:
            levels = sorted((Path(run) / method).glob("level_*/level.json"))
            out.append(sum(level_seconds(json.loads(f.read_text())) for f in levels))
    return out


def level_seconds(info: dict) -> float:
    """Training seconds a ``level.json`` recorded (``train_seconds``, ``extraction_seconds``)."""
    return sum(v for k, v in info.items() if k.endswith("_seconds") and not isinstance(v, dict))


def greedy_wall(durations: list[float], cores: int) -> float:
    """Wall time of tasks started in order, each on the first free core."""
    free = [0.0] * cores
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def lanes(costs: dict[str, float], cores: int) -> list[list[str]]:
    """Names split into ``cores`` lanes: longest first, each to the lane with the least work so far.

    Between lanes of equal work, the one with fewer names takes the next: names without a
    recorded time (cost 0) go round the lanes.
    """
    work = [(0.0, 0, i) for i in range(cores)]  # (work, names, lane)
    out: list[list[str]] = [[] for _ in range(cores)]
    for name in sorted(costs, key=lambda n: -costs[n]):
        load, count, i = heapq.heappop(work)
        out[i].append(name)
        heapq.heappush(work, (load + costs[name], count + 1, i))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(NAMES), help="embedded runs (default: all)")
    ap.add_argument("--root", type=Path, default=REPO / "artifacts")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--lanes", action="store_true", help="print only the lanes, one line of names each")
    args = ap.parse_args()
    tasks = {n: task_seconds(args.root / n) if (args.root / n).is_dir() else [] for n in args.names}
    costs = {n: sum(t) for n, t in tasks.items()}
    split = lanes(costs, args.cores)
    if args.lanes:
        for lane in split:
            print(" ".join(lane))
        return 0
    sequential = 0.0
    for name, durations in tasks.items():
        group = rf.is_group(args.root / name) if (args.root / name).is_dir() else False
        wall = greedy_wall(durations, args.cores) if group else sum(durations)
        sequential += wall
        print(f"{name:<32} {len(durations):>2} tasks  {costs[name]:8.0f} CPU s  {wall:8.0f} s alone")
    lane_walls = [sum(costs[n] for n in lane) for lane in split]
    print(f"one name after the other: {sequential:,.0f} s ({sequential / 3600:.2f} h)")
    for i, (lane, wall) in enumerate(zip(split, lane_walls, strict=True), start=1):
        print(f"lane {i}: {wall:,.0f} s  {' '.join(lane)}")
    print(
        f"LANES={args.cores}: {max(lane_walls):,.0f} s ({max(lane_walls) / 3600:.2f} h), "
        f"{max(lane_walls) / sequential:.2f}x the sequential schedule; all CPU time / cores: "
        f"{sum(costs.values()) / args.cores:,.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
