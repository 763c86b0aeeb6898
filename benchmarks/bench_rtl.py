"""Benchmark: wall time of one RTL level against one single-ticket IMP level, same model, same budget.

Usage::

    python benchmarks/bench_rtl.py                      # Fashion-MNIST, LeNet-300-100, 10 detector tickets
    python benchmarks/bench_rtl.py --data digits --hidden 64 32 --epochs 4
    python benchmarks/bench_rtl.py --model vit --partition map --kind expert --limit 12000

One RTL level = ticket extraction (K tickets trained on their subsets and
pruned) plus joint retraining of the shared network, at level 1 (pruned
masks). One IMP level = ``train_masked`` of one ticket on all the data for
as many sample presentations (epochs rounded up, then the time is scaled to
the exact count). Both run in this process, alternating ``--repeat`` times
with the same thread count; the best time of each gives the ratio RTL / IMP
(target <= 2.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lottery.config import (  # noqa: E402
    DataConfig,
    ModelSpec,
    PruneConfig,
    RTLConfig,
    RunDescription,
    TrainConfig,
)
from lottery.pipeline import build_context  # noqa: E402
from lottery.tickets import (  # noqa: E402
    initial_masks,
    joint_retrain,
    level_masks,
    rtl_budget,
    subset_sizes,
    ticket_rewind,
)
from lottery.train import seeded_generator, train_masked  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion_mnist")
    p.add_argument("--partition", default="class")
    p.add_argument("--map", default=None, help="class map for --partition map (default fashion4)")
    p.add_argument("--kind", default="detector", choices=["detector", "expert"])
    p.add_argument("--model", default="mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[300, 100])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="stratified training subsample")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--repeat", type=int, default=2, help="alternating repetitions; the best time of each counts"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    desc = RunDescription(
        data=DataConfig(
            name=args.data,
            partition=args.partition,
            partition_map=args.map or ("fashion4" if args.partition == "map" else None),
            limit=args.limit,
            eval_limit=1000,
        ),
        model=ModelSpec(name=args.model, hidden=tuple(args.hidden)),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size),
        prune=PruneConfig(fraction=0.2, levels=1),
        rtl=RTLConfig(ticket_kind=args.kind, retrain_epochs=args.epochs),
        methods=("rtl",),
    )
    with tempfile.TemporaryDirectory() as tmp:
        ctx = build_context(desc, Path(tmp), "cpu")
        budget = rtl_budget(desc, subset_sizes(ctx))
        rewind = ticket_rewind(ctx, "rtl")
        initial = initial_masks(ctx)
        n = len(ctx.y_train)
        print(
            f"{args.data} {args.model} K={ctx.k} {args.kind}: N={n}, RTL level = "
            f"{budget['extraction_presentations']} extraction + {budget['retrain_presentations']} "
            f"retraining presentations, {torch.get_num_threads()} thread(s)"
        )

        epochs = -(-budget["presentations"] // n)  # ceil; the time is scaled to the exact count
        cfg = dataclasses.replace(desc.train, epochs=epochs)
        # a dense mask: masking costs the same whatever the mask holds
        dense = {name: torch.ones(s, dtype=torch.bool) for name, s in ctx.shapes.items()}
        # the first torch.optim optimiser of a process imports torch._dynamo (seconds): not part of a level
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        best_rtl = best_imp = float("inf")
        for rep in range(args.repeat):  # alternate, keep the best of each: other load on the machine
            t0 = time.perf_counter()
            masks, _ = level_masks(ctx, 1, initial, rewind, prev=initial)
            t1 = time.perf_counter()
            joint_retrain(ctx, masks, 1, rewind)
            t_rtl = time.perf_counter() - t0
            print(
                f"[{rep}] RTL level: {t_rtl:7.2f} s (extraction + pruning {t1 - t0:.2f} s, "
                f"joint retraining {t_rtl - (t1 - t0):.2f} s)"
            )
            model = ctx.new_model()
            t0 = time.perf_counter()
            train_masked(model, dense, ctx.x_train, ctx.y_train, cfg, seeded_generator(0, "bench", 1))
            t_imp_raw = time.perf_counter() - t0
            t_imp = t_imp_raw * budget["presentations"] / (epochs * n)
            print(
                f"[{rep}] IMP level: {t_imp:7.2f} s for the same {budget['presentations']} presentations "
                f"({t_imp_raw:.2f} s for {epochs} epochs)"
            )
            best_rtl, best_imp = min(best_rtl, t_rtl), min(best_imp, t_imp)
    t_rtl, t_imp = best_rtl, best_imp
    print(
        f"best RTL {t_rtl:.2f} s, best IMP {t_imp:.2f} s: "
        f"ratio RTL / IMP = {t_rtl / t_imp:.2f} (target <= 2.0)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
