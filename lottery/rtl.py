"""Routing the Lottery (the ``rtl`` method): K adaptive tickets over ONE shared network.

Per level L (resumable: a completed level folder is skipped):

1. Ticket masks m_1..m_K of level L: all ones at level 0 (a detector's head
   restricted to its own output unit); afterwards each ticket is IMP-pruned on
   its own subset: trained alone on d_k from theta_0 under its level L-1 mask,
   then the fraction p of its surviving weights per layer with the smallest
   magnitude is removed (:mod:`lottery.tickets`). All tickets share theta_0.
2. Joint retraining: one shared dense theta, rewound to theta_0; the K tickets
   step in random order, round after round, each on a batch of its own subset
   (smaller subsets repeat cyclically), until every ticket has taken as many
   steps as ``rtl.retrain_epochs`` passes over the largest subset need. A step
   of ticket k runs theta masked by m_k and moves only weights inside m_k, with
   its own Adam/SGD state (:mod:`lottery.ticket_optim`). Weights in the overlap
   of several masks are shared and moved by each of those tickets. Biases,
   norms and embeddings are not masked: shared by all tickets, moved by all.
3. Evaluation on the test split: every ticket scores every sample and the
   three routings of :mod:`lottery.routing` turn the scores into K-way
   predictions.

Ticket kinds (``rtl.ticket_kind``)
----------------------------------
``detector`` (the paper's protocol; class partitions): ticket k is a
one-vs-rest detector of class k. Its logit is output unit k of the shared
head; it trains on class-balanced batches (``batch_size // 2`` samples of d_k,
as many from the other subsets) with binary cross-entropy.
``expert`` (cluster partitions, several classes per cluster): ticket k is a
full classifier trained with cross-entropy on d_k only.

Prediction columns and routings
-------------------------------
``score_<k>``, ``detect_<k>``, ``route_<r>``, ``pred_<r>`` for r in
``oracle``, ``max_score``, ``centroid``, and ``pred`` under the default routing
(``max_score`` for detectors, ``oracle`` for experts). For detectors
``pred_oracle`` / ``pred_centroid`` are the routed detector's decision: its
class if it fires, else -1 (abstain); ``pred_max_score`` is the argmax of the
detector logits. Full definitions: :mod:`lottery.routing`.

Stored per level
----------------
``masks``: (K, *shape) per prunable layer. ``weights``: the ONE shared theta
after joint retraining, prunable weights zeroed outside the union of the
masks; ticket k's network is theta with weights outside m_k zeroed.
``level.json``: ``params_per_ticket``, ``params_union`` (the paper's RTL
count), ``params_total`` (= union), ``union_sparsity``, K-way accuracies, the
step counts and ``sample_presentations`` (extraction + joint retraining, the
budget :func:`lottery.tickets.rtl_budget`), ``masks_from`` (``extraction``, or
the method whose identical masks were reused).
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from artifacts import run_format as rf
from lottery.context import Context
from lottery.levels import LevelLoop, level_info
from lottery.masks import Masks
from lottery.overlap import overlap_record
from lottery.protocol import CollapseStop
from lottery.routing import DEFAULT_ROUTING, ROUTINGS, routing_definitions, score_definition
from lottery.tickets import (
    centroid_routes,
    check_tickets,
    initial_masks,
    joint_retrain,
    level_masks,
    rtl_budget,
    subset_sizes,
    summary_metrics,
    ticket_logits,
    ticket_predictions,
    ticket_rewind,
)

METHOD = "rtl"


def manifest_entry(ctx: Context) -> dict:
    """Manifest entry of ``rtl``: tickets, kind, routings and what they mean."""
    kind = ctx.desc.rtl.ticket_kind
    return {
        "tickets": list(ctx.partition.names),
        "ticket_kind": kind,
        "routings": list(ROUTINGS),
        "default_routing": DEFAULT_ROUTING.get(kind),
        "weights_layout": "shared",
        "description": (
            f"RTL: one {kind} ticket per subset, IMP-pruned on its subset from a shared theta_0, "
            "then retrained jointly on one shared network "
            "(steps interleaved, each moving only its ticket's weights)"
        ),
        "routing_definitions": routing_definitions(kind),
        "score": score_definition(kind, ctx.partition.subset_of_class),
    }


def run_rtl(ctx: Context, show_progress: bool = True) -> None:
    """Run or resume the ``rtl`` levels of a run."""
    check_tickets(ctx)
    desc = ctx.desc
    rewind = ticket_rewind(ctx, METHOD)
    initial = initial_masks(ctx)
    centroid = centroid_routes(ctx)
    budget = rtl_budget(desc, subset_sizes(ctx))
    stop = CollapseStop(ctx.run_dir, METHOD, desc)
    loop = LevelLoop(ctx.run_dir, METHOD, desc.prune.levels, show_progress, stop=stop)
    prev: Masks | None = None
    for level, continued in loop:
        if not continued:
            prev = None
        bar = tqdm(total=ctx.k + 20, desc=f"rtl level {level}", disable=not show_progress, leave=False)
        t0 = time.perf_counter()
        masks, source = level_masks(ctx, level, initial, rewind, prev, progress=bar.update)
        t1 = time.perf_counter()
        theta, steps = joint_retrain(ctx, masks, level, rewind, METHOD, progress=bar.update)
        t2 = time.perf_counter()
        bar.close()
        logits = ticket_logits(ctx, lambda k, shared=theta: shared, masks, ctx.x_test)
        frame = ticket_predictions(ctx, logits, centroid)
        union = {n: m.any(0) for n, m in masks.items()}
        weights = state_numpy_dict({n: theta[n] * union[n] if n in union else theta[n] for n in theta})
        metrics = summary_metrics(frame, ctx.k)
        info = level_info(
            masks,
            metrics,
            seconds=t2 - t1,
            steps=steps,
            presentations=budget["presentations"] if level else budget["retrain_presentations"],
            masks_from=source,
            overlap=overlap_record(masks),
            overlap_scaling=desc.rtl.overlap_scaling,
            extraction_seconds=t1 - t0,
            retrain_steps_per_ticket=budget["retrain_steps_per_ticket"],
            budget=budget,
        )
        rf.write_level(
            ctx.run_dir,
            METHOD,
            level,
            masks=masks.numpy(),
            predictions=frame,
            info=info,
            weights=weights if desc.keep_weights else None,
            weights_metadata={"layout": "shared"},
        )
        prev = masks
        rf.sync_mask_levels(ctx.run_dir, METHOD)
        loop.report(sparsity=info["sparsity"], acc=metrics["accuracy"])
    stop.record()


def state_numpy_dict(params: dict[str, torch.Tensor]) -> dict:
    """Float32 numpy copies of a parameter dict (for safetensors)."""
    return {n: p.detach().cpu().float().numpy().copy() for n, p in params.items()}
