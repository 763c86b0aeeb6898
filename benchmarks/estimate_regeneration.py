"""Estimate the wall time of regenerating issue 12's embedded sweeps from one timed partial run.

Reads a run of ``fashion-mlp-class-sweep`` trained for a few levels (its ``level.json``
files give the sample presentations of every phase; its manifest the epochs chosen on
the validation split) and the CPU seconds it took (``--cpu-seconds``, e.g. printed by a
``getrusage`` wrapper), derives the engine's samples per CPU second, and counts the
presentations of every run that ``scripts/make_embedded_runs.sh`` trains (3 seeds of each
sweep and of its null control, 1 seed of the overlap-count run; 25 levels, the cap, for
every method: an upper bound, since until-collapse sweeps stop earlier). Without a timed
run, ``--samples-per-cpu-second`` and ``--epochs`` give the rate and the epochs directly
(README: 35,900 samples per CPU second and 8 epochs, measured on 2026-12-01). Each run's
epochs per phase are capped at its ``train.max_epochs`` (the most the validation split can
choose), and its training rows follow its ``data.train_limit`` / ``data.limit``. ViT
presentations are weighted by ``--vit-cost`` (the ratio of the MLP's to the tiny ViT's
samples/s in ``benchmarks/bench_engine.py``: 35,000 / 4,180 for an RTL level). The
estimate assumes the 2 cores are free and Ray keeps both busy (one task per core).

    python benchmarks/estimate_regeneration.py runs/timing-fmc --cpu-seconds 400 [--epochs 8]
    python benchmarks/estimate_regeneration.py --samples-per-cpu-second 35900 --epochs 8 \
        [--presets fashion-vit-cluster-sweep fashion-vit-cluster-sweep-null]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from lottery.config import replace  # noqa: E402
from lottery.data import load_dataset, make_partition  # noqa: E402
from lottery.embedded import EMBEDDED  # noqa: E402
from lottery.presets import get_preset  # noqa: E402
from lottery.protocol import planned_methods  # noqa: E402
from lottery.tickets import rtl_budget  # noqa: E402

_SIZES: dict[str, tuple[list[int], int]] = {}


def subset_sizes(name: str) -> tuple[list[int], int]:
    """Training samples per subset and in all, for preset ``name``'s real partition (seed 0)."""
    desc = get_preset(name)
    d = desc.data
    kind = d.null_of or d.partition
    key = f"{d.name}/{kind}/{d.partition_map}/{d.k}/{d.limit}/{d.train_limit}/{d.val_fraction}"
    if key not in _SIZES:
        data = load_dataset(
            d.name, val_fraction=d.val_fraction, seed=0, limit=d.limit, train_limit=d.train_limit
        )
        part = make_partition(kind, data, name=d.partition_map, k=d.k, seed=0)
        sizes = np.bincount(part.assign(data.x_train, data.y_train), minlength=part.k).tolist()
        _SIZES[key] = (sizes, len(data.y_train))
    return _SIZES[key]


def phase_epochs(name: str, epochs: int) -> int:
    """Epochs per phase assumed for preset ``name``: ``epochs``, at most its ``train.max_epochs``."""
    train = get_preset(name).train
    return min(epochs, train.max_epochs) if train.epochs_from_validation else epochs


def run_presentations(name: str, epochs: int, levels: int) -> float:
    """Sample presentations of one seed of preset ``name`` (every phase, ``levels + 1`` levels)."""
    desc = get_preset(name)
    epochs = phase_epochs(name, epochs)
    desc = replace(desc, **{"train.epochs": epochs, "rtl.retrain_epochs": epochs})
    sizes, n = subset_sizes(name)
    budget = rtl_budget(desc, sizes)
    methods = planned_methods(desc)
    total = (desc.train.max_epochs if desc.train.epochs_from_validation else 0) * n  # selection, upper bound
    per_level = 0.0
    if "independent" in methods or "rtl" in methods:
        per_level += budget["extraction_presentations"]  # drawn once, reused by the other
    if "rtl" in methods:
        per_level += budget["retrain_presentations"]
    if "imp" in methods:
        per_level += epochs * n
    total += per_level * (levels + 1)
    if "dense" in methods:
        total += epochs * n
    return total


def timed_rate(run: Path, cpu_seconds: float) -> tuple[float, int]:
    """Samples per CPU second of a timed partial run, and the epochs its validation split chose."""
    manifest = json.loads((run / "manifest.json").read_text())
    chosen = manifest["epoch_selection"]
    done = len(chosen["val_loss"]) * manifest["dataset"]["n_train"]
    for level_json in run.glob("*/level_*/level.json"):
        info = json.loads(level_json.read_text())
        presented = info["sample_presentations"]
        if level_json.parts[-3] == "rtl" and info.get("masks_from") not in ("extraction", "initial"):
            presented = info["budget"]["retrain_presentations"]  # masks reused: no extraction
        done += presented
    rate = done / cpu_seconds
    print(f"timed run: {done:,.0f} presentations in {cpu_seconds:,.0f} CPU s = {rate:,.0f} samples/CPU-s")
    return rate, int(chosen["epochs"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, nargs="?", help="the timed partial run of fashion-mlp-class-sweep")
    ap.add_argument("--cpu-seconds", type=float, help="CPU seconds the timed run took")
    ap.add_argument(
        "--samples-per-cpu-second",
        type=float,
        help="the engine's rate, instead of a timed run (needs --epochs)",
    )
    ap.add_argument("--epochs", type=int, help="epochs per phase to assume (default: the timed run's choice)")
    ap.add_argument("--levels", type=int, default=24)
    ap.add_argument("--vit-cost", type=float, default=35000 / 4180)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--presets", nargs="+", help="only these run groups (default: every group of EMBEDDED)")
    args = ap.parse_args()
    if args.samples_per_cpu_second is not None:
        if args.run is not None or args.cpu_seconds is not None:
            ap.error("give either a timed run with --cpu-seconds or --samples-per-cpu-second, not both")
        if args.epochs is None:
            ap.error("--samples-per-cpu-second needs --epochs")
        rate, epochs = args.samples_per_cpu_second, args.epochs
        print(f"given: {rate:,.0f} samples/CPU-s")
    else:
        if args.run is None or args.cpu_seconds is None:
            ap.error("give a timed run and --cpu-seconds, or --samples-per-cpu-second and --epochs")
        rate, chosen = timed_rate(args.run, args.cpu_seconds)
        epochs = args.epochs or chosen
    groups = {n: s for n, s in EMBEDDED.items() if s.seeds}
    if args.presets:
        unknown = sorted(set(args.presets) - set(groups))
        if unknown:
            ap.error(f"not run groups of EMBEDDED: {', '.join(unknown)}; known: {', '.join(groups)}")
        groups = {n: groups[n] for n in args.presets}
    print(
        f"assumed: {epochs} epochs per phase (at most each run's train.max_epochs), "
        f"{args.levels + 1} levels per method, ViT cost x{args.vit_cost:.1f}"
    )
    total_cpu = 0.0
    for name, spec in groups.items():
        desc = get_preset(name)
        cost = args.vit_cost if desc.model.name == "vit" else 1.0
        cpu = len(spec.seeds) * run_presentations(name, epochs, args.levels) * cost / rate
        total_cpu += cpu
        n_train = subset_sizes(name)[1]
        print(
            f"{name:<32} {len(spec.seeds)} seed(s)  {n_train:>6,} train rows  "
            f"{phase_epochs(name, epochs):>2} epochs  {cpu / 3600:6.2f} CPU h"
        )
    which = "these sweeps" if args.presets else "all sweeps"
    print(
        f"{which}: {total_cpu / 3600:.1f} CPU h = "
        f"{total_cpu / 3600 / args.cores:.1f} h wall on {args.cores} cores"
    )


if __name__ == "__main__":
    main()
