"""Do regenerated embedded runs equal the shipped ones, and how long did they take against the recorded times?

Compares every level found under ``AGAIN/NAME`` (a finished or a stopped regeneration,
e.g. ``FRESH=1 LANES=2 scripts/make_embedded_runs.sh NAME`` in a clean clone) with
``artifacts/NAME``: masks, every per-sample column both store, and the level metrics,
exactly. It then prints the training seconds those levels recorded in both (the ratio says
whether the shipped times hold on this machine) and, for a group, the wall time from its
``group.json`` to its last level against its own training seconds (what epoch selection,
evaluation and writing add).

    python benchmarks/regeneration_check.py /tmp/clone/artifacts fashion-vit-cluster-sweep
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from artifacts import run_format as rf  # noqa: E402
from benchmarks.regeneration_lanes import level_seconds  # noqa: E402


def same_level(shipped: rf.Run, again: rf.Run, method: str, level: int) -> bool:
    """Masks, shared per-sample columns and metrics of one level, compared exactly."""
    a, b = shipped.masks(method, level), again.masks(method, level)
    if a.keys() != b.keys() or not all(np.array_equal(a[k], b[k]) for k in a):
        return False
    pa, pb = shipped.predictions(method, level), again.predictions(method, level)
    if not all(np.array_equal(pa[c].to_numpy(), pb[c].to_numpy()) for c in pa.columns if c in pb.columns):
        return False
    return shipped.level_info(method, level).get("metrics") == again.level_info(method, level).get("metrics")


def check(shipped_dir: Path, again_dir: Path) -> dict:
    """Levels compared and differing, and recorded seconds of both, for one embedded run or group."""
    runs = [p.name for p in sorted(again_dir.glob("seed-*"))] if rf.is_group(again_dir) else [""]
    out = {"levels": 0, "differ": [], "shipped_s": 0.0, "again_s": 0.0, "last": 0.0}
    for name in runs:
        try:
            again = rf.load_run(again_dir / name)
        except rf.RunFormatError:
            continue  # no finished level yet
        shipped = rf.load_run(shipped_dir / name)
        for method in again.methods:
            for level in again.levels(method):
                out["levels"] += 1
                if not same_level(shipped, again, method, level):
                    out["differ"].append(f"{name or '.'} {method} {level}")
                out["shipped_s"] += level_seconds(shipped.level_info(method, level))
                out["again_s"] += level_seconds(again.level_info(method, level))
                path = rf.level_dir(again.path, method, level) / "level.json"
                out["last"] = max(out["last"], path.stat().st_mtime)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("again", type=Path, help="the artifacts folder of the regeneration")
    ap.add_argument("names", nargs="+", help="embedded runs to compare")
    ap.add_argument("--shipped", type=Path, default=REPO / "artifacts")
    args = ap.parse_args()
    status = 0
    for name in args.names:
        r = check(args.shipped / name, args.again / name)
        line = (
            f"{name}: {r['levels']} levels, {len(r['differ'])} differ; training {r['again_s']:,.0f} s "
            f"against {r['shipped_s']:,.0f} s recorded ({r['again_s'] / max(r['shipped_s'], 1e-9):.2f}x)"
        )
        manifest = args.again / name / rf.GROUP_MANIFEST
        if manifest.is_file() and r["levels"]:
            wall = r["last"] - manifest.stat().st_mtime
            line += f"; wall {wall:,.0f} s = {wall / max(r['again_s'], 1e-9):.2f}x its training"
        print(line)
        for where in r["differ"]:
            print(f"  differs: {where}")
        status |= bool(r["differ"])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
