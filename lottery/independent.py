"""The independent baseline (``independent``, the paper's "IMP multiple"): K separate networks.

Network k starts from the same theta_0 draw as every other ticket and method,
and is IMP-pruned on its own subset with exactly RTL's ticket protocol
(:mod:`lottery.tickets`): same initial masks, same batches, same seeds. Its
level-L network *is* RTL's extraction run of level L, so both methods hold
identical masks at every level; they differ in that RTL evaluates one shared,
jointly retrained theta and this baseline evaluates the K networks as
extracted, which share no weight (K times the parameters:
``params_total`` is the sum over tickets).

Prediction columns and routings are RTL's (:mod:`lottery.routing`).

Stored per level: ``masks`` (K, *shape); ``weights`` as stacked arrays, every
parameter name holding (K, *param_shape) — network k is ``w[name][k]`` —
with safetensors metadata ``layout = "stacked"``; pruned weights are zero.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from artifacts import run_format as rf
from lottery.context import Context
from lottery.levels import LevelLoop, level_info
from lottery.masks import Masks
from lottery.protocol import CollapseStop
from lottery.routing import DEFAULT_ROUTING, ROUTINGS, routing_definitions, score_definition
from lottery.sampling import presentations_per_step
from lottery.tickets import (
    centroid_routes,
    check_tickets,
    extract_tickets,
    initial_masks,
    level_masks,
    summary_metrics,
    ticket_logits,
    ticket_predictions,
    ticket_rewind,
)

METHOD = "independent"


def manifest_entry(ctx: Context) -> dict:
    """Manifest entry of ``independent``."""
    kind = ctx.desc.rtl.ticket_kind
    return {
        "tickets": list(ctx.partition.names),
        "ticket_kind": kind,
        "routings": list(ROUTINGS),
        "default_routing": DEFAULT_ROUTING.get(kind),
        "weights_layout": "stacked",
        "description": (
            f"IMP multiple: K separate {kind} networks, each IMP-pruned on its own subset "
            "from the shared theta_0 draw; no shared weights"
        ),
        "routing_definitions": routing_definitions(kind),
        "score": score_definition(kind, ctx.partition.subset_of_class),
    }


def _stored_weights(ctx: Context, level: int) -> dict[str, torch.Tensor] | None:
    path = rf.level_dir(ctx.run_dir, METHOD, level) / rf.WEIGHTS
    if level not in rf.completed_levels(ctx.run_dir, METHOD) or not path.is_file():
        return None
    return {n: torch.as_tensor(v).to(ctx.device) for n, v in rf.load_tensors(path).items()}


def run_independent(ctx: Context, show_progress: bool = True) -> None:
    """Run or resume the ``independent`` levels of a run."""
    check_tickets(ctx)
    desc = ctx.desc
    rewind = ticket_rewind(ctx, METHOD)
    initial = initial_masks(ctx)
    centroid = centroid_routes(ctx)
    per_step = presentations_per_step(desc.rtl.ticket_kind, desc.train.batch_size)
    stop = CollapseStop(ctx.run_dir, METHOD, desc)
    loop = LevelLoop(ctx.run_dir, METHOD, desc.prune.levels, show_progress, stop=stop)
    prev: tuple[Masks, dict[str, torch.Tensor] | None] | None = None
    for level, continued in loop:
        if not continued:
            prev = None
        bar = tqdm(total=2 * ctx.k, desc=f"independent level {level}", disable=not show_progress, leave=False)
        if prev is None and level > 0 and (level - 1) in loop.done:
            prev_masks = rf.read_level_masks(ctx.run_dir, METHOD, level - 1)
            prev = (
                Masks({n: torch.as_tensor(m).to(ctx.device) for n, m in prev_masks.items()}, ctx.shapes),
                _stored_weights(ctx, level - 1),
            )
        masks, source = level_masks(
            ctx,
            level,
            initial,
            rewind,
            prev[0] if prev else None,
            prev[1] if prev else None,
            progress=bar.update,
        )
        t0 = time.perf_counter()
        weights, steps = extract_tickets(ctx, masks, level, rewind, progress=bar.update)
        seconds = time.perf_counter() - t0
        bar.close()
        logits = ticket_logits(ctx, lambda k, ws=weights: {n: w[k] for n, w in ws.items()}, masks, ctx.x_test)
        frame = ticket_predictions(ctx, logits, centroid)
        metrics = summary_metrics(frame, ctx.k)
        info = level_info(
            masks,
            metrics,
            seconds=seconds,
            steps=sum(steps),
            presentations=sum(steps) * per_step,
            independent=True,
            masks_from=source,
            steps_per_ticket=steps,
        )
        rf.write_level(
            ctx.run_dir,
            METHOD,
            level,
            masks=masks.numpy(),
            predictions=frame,
            info=info,
            weights={n: w.cpu().float().numpy() for n, w in weights.items()} if desc.keep_weights else None,
            weights_metadata={"layout": "stacked"},
        )
        prev = (masks, weights)
        rf.sync_mask_levels(ctx.run_dir, METHOD)
        loop.report(sparsity=info["sparsity"], acc=metrics["accuracy"])
    stop.record()
