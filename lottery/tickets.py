"""What RTL and the independent baseline share: K tickets over one theta_0, drawn by IMP per subset.

Ticket extraction at level L: ticket k starts from the rewind point (theta_0,
shared by all tickets and methods) masked by its level-L mask, trains on its
own subset d_k only (``train.epochs`` passes over d_k, see
:mod:`lottery.sampling`), and its mask for level L + 1 keeps the
largest-magnitude survivors of each layer. The training at level L draws from
``seeded_generator(seed, "tickets", L, k)``, a stream named after neither
method, so ``rtl`` and ``independent`` draw identical masks: the independent
baseline's networks *are* RTL's extraction runs, and the two methods differ
only in what is trained and evaluated on the masks (one shared theta retrained
jointly, or K separate networks). A method finding a level's masks already
written by the other one in the same run reuses them.

Initial masks are all ones, except that a ``detector`` ticket reads a single
output unit (unit k, the logit of its class), so its mask of the head starts
as row k alone; the other rows are not part of its subnetwork. Pruning removes
the fraction p of the surviving weights of every layer per level, relative to
that initial mask, so ticket sparsity is ``1 - (1-p)^L * initial / total``.

Parameter counts (prunable weights only; biases, norms and embeddings are
dense and shared): ``params_per_ticket`` per ticket, ``params_union`` the
weights kept by any ticket (the paper's RTL count) and ``params_total`` what
the method stores (the union for RTL, the sum for K independent networks).

Speed (``engine="batched"``, the default): extraction steps the K tickets
together as one stacked network (:mod:`lottery.stacked`); joint retraining
stays sequential but draws every batch of the level up front as index
tensors on the device and steps with one fused optimiser call (for an MLP:
a hand-written forward/backward over flat parameter, gradient and moment
buffers, no autograd graph, one fused call on one flat tensor); evaluation
runs the K tickets as one stacked network. ``engine="reference"`` keeps the
one-ticket-at-a-time loops for comparison (``benchmarks/bench_engine.py``)
and as the tests' oracle; both engines draw the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from artifacts import run_format as rf
from lottery.config import RunDescription, TrainConfig
from lottery.context import Context
from lottery.data import fit_centroids, nearest_centroid
from lottery.levels import mask_counts, rewind_point
from lottery.masks import Masks
from lottery.models import MLP
from lottery.overlap import scale_updates, update_scales
from lottery.prune import level_density, magnitude_prune
from lottery.routing import detector_columns, expert_columns
from lottery.sampling import (
    TicketBatches,
    draw_batches,
    epoch_steps,
    gather_rows,
    interleaved_order,
    presentations_per_step,
)
from lottery.stacked import (
    cross_entropy_grad,
    flat_views,
    flatten_stacked,
    mlp_grads,
    single_forward,
    stack_params,
    stacked_forward,
)
from lottery.ticket_optim import TicketOptimizer, masked_weights
from lottery.train import check_engine, seeded_generator, train_masked

TICKET_METHODS = ("rtl", "independent")
HEAD = "head.weight"
EXTRACTION_STREAM = "tickets"
CENTROIDS = "centroids"


# ----------------------------------------------------------------------------- checks and budgets


def check_tickets(ctx: Context) -> None:
    """Refuse ticket settings the methods cannot honour, with a clear message."""
    kind = ctx.desc.rtl.ticket_kind
    if kind not in ("detector", "expert"):
        raise ValueError(f"unknown rtl.ticket_kind {kind!r}; choose detector or expert")
    if kind == "detector":
        data = ctx.desc.data
        if data.partition != "class" and not (data.partition == "random" and data.null_of == "class"):
            raise ValueError(
                "detector tickets stand for one class each: use data.partition='class', "
                "or rtl.ticket_kind='expert' for clusters"
            )
        if HEAD not in ctx.shapes or ctx.shapes[HEAD][0] < ctx.k:
            raise ValueError(
                f"a detector ticket reads output unit k of {HEAD!r}; the model has too few outputs"
            )
    counts = torch.bincount(ctx.subset_train.cpu(), minlength=ctx.k)
    if (counts == 0).any():
        raise ValueError(f"subsets {torch.nonzero(counts == 0).flatten().tolist()} have no training sample")


def subset_sizes(ctx: Context) -> list[int]:
    """Training samples per subset, length K."""
    return torch.bincount(ctx.subset_train.cpu(), minlength=ctx.k).tolist()


def rtl_budget(desc: RunDescription, sizes: list[int]) -> dict[str, int]:
    """Steps and sample presentations of one RTL level, from the description and subset sizes.

    Extraction: ticket k takes ``train.epochs`` passes over d_k. Joint
    retraining: every ticket takes as many steps as ``rtl.retrain_epochs``
    passes over the largest subset need (smaller subsets repeat cyclically).

    Returns
    -------
    dict
        ``extraction_steps`` (sum over tickets), ``retrain_steps_per_ticket``,
        ``retrain_steps`` (all tickets), ``extraction_presentations``,
        ``retrain_presentations`` and ``presentations`` (their sum).
    """
    kind, b = desc.rtl.ticket_kind, desc.train.batch_size
    per_step = presentations_per_step(kind, b)
    extraction = sum(epoch_steps(n, desc.train.epochs, kind, b) for n in sizes)
    per_ticket = epoch_steps(max(sizes), desc.rtl.retrain_epochs, kind, b)
    retrain = per_ticket * len(sizes)
    return {
        "extraction_steps": extraction,
        "retrain_steps_per_ticket": per_ticket,
        "retrain_steps": retrain,
        "extraction_presentations": extraction * per_step,
        "retrain_presentations": retrain * per_step,
        "presentations": (extraction + retrain) * per_step,
    }


def matched_imp_epochs(desc: RunDescription, sizes: list[int]) -> int:
    """Epochs of ``imp`` per level closest to RTL's sample presentations per level (at least 1).

    ``round(P / N)`` (halves round up) for RTL's budget P and N training samples.
    """
    return max(1, math.floor(rtl_budget(desc, sizes)["presentations"] / sum(sizes) + 0.5))


# ----------------------------------------------------------------------------- masks


def initial_masks(ctx: Context) -> Masks:
    """Level-0 masks of the K tickets: all ones, a detector's head restricted to its own row."""
    masks = Masks.ones(ctx.shapes, ctx.k, device=ctx.device)
    if ctx.desc.rtl.ticket_kind == "detector":
        head = masks[HEAD]  # (K, n_out, hidden)
        head.zero_()
        for k in range(ctx.k):
            head[k, k] = True
    return masks


def prune_tickets(
    weights: Mapping[str, torch.Tensor],
    masks: Masks,
    initial: Masks,
    level: int,
    fraction: float,
    scope: str,
) -> Masks:
    """Masks of ``level`` from each ticket's trained weights and its masks of ``level - 1``.

    Parameters
    ----------
    weights : mapping of str to tensor, shape (K, *weight_shape)
        Trained weights of each ticket (extraction runs).
    masks : Masks
        The tickets' masks of ``level - 1``.
    initial : Masks
        Level-0 masks; ticket k keeps ``round((1-p)^level * |initial_k|)``
        weights per layer (``scope="layer"``) or in all (``"global"``).
    level : int
    fraction, scope : the pruning schedule (:class:`lottery.config.PruneConfig`)

    Returns
    -------
    Masks
        Nested in ``masks``.
    """
    density = level_density(fraction, level)
    out: list[dict[str, torch.Tensor]] = []
    for k in range(masks.k):
        w = {n: weights[n][k].detach().cpu() for n in masks}
        m = {n: masks[n][k].cpu() for n in masks}
        if scope == "layer":
            new = {}
            for n in masks:
                n0, size = int(initial[n][k].sum()), initial[n][k].numel()
                # exactly imp's density for a full layer (no rounding detour)
                rel = density if n0 == size else density * n0 / size
                new.update(magnitude_prune({n: w[n]}, {n: m[n]}, rel, "layer"))
        else:
            n0 = sum(int(initial[n][k].sum()) for n in masks)
            total = sum(initial[n][k].numel() for n in masks)
            new = magnitude_prune(w, m, density if n0 == total else density * n0 / total, scope)
        out.append(new)
    device = next(iter(masks.values())).device
    return Masks(
        {n: t.to(device) for n, t in Masks.stack(out).items()},
        {n: tuple(s.shape[1:]) for n, s in masks.items()},
    )


def stored_masks(ctx: Context, level: int) -> tuple[Masks, str] | None:
    """Masks of ``level`` already written by ``rtl`` or ``independent`` in this run, and by which."""
    for method in TICKET_METHODS:
        if method in ctx.desc.methods and level in rf.completed_levels(ctx.run_dir, method):
            m = rf.read_level_masks(ctx.run_dir, method, level)
            return Masks({n: torch.as_tensor(v).to(ctx.device) for n, v in m.items()}, ctx.shapes), method
    return None


def level_masks(
    ctx: Context,
    level: int,
    initial: Masks,
    rewind: Mapping[str, np.ndarray],
    prev: Masks | None = None,
    prev_weights: Mapping[str, torch.Tensor] | None = None,
    progress: Callable[[], None] | None = None,
    *,
    engine: str = "batched",
) -> tuple[Masks, str]:
    """The tickets' masks of ``level`` and where they came from.

    Level 0 is ``initial``. A level already written by a ticket method of this
    run is reused ("rtl" / "independent"). Otherwise the masks of ``level - 1``
    (``prev``, else read from this run) are pruned after ticket extraction at
    ``level - 1`` ("extraction"), whose trained weights the caller may pass
    as ``prev_weights`` (K, *shape) when it already has them. ``engine``:
    see :func:`extract_tickets`.
    """
    if level == 0:
        return initial, "initial"
    found = stored_masks(ctx, level)
    if found is not None:
        return found
    if prev is None:
        before = stored_masks(ctx, level - 1)
        if before is None:
            raise ValueError(
                f"level {level} needs the masks of level {level - 1}, which no ticket method wrote"
            )
        prev = before[0]
    if prev_weights is None:
        prev_weights, _ = extract_tickets(ctx, prev, level - 1, rewind, progress, engine=engine)
    p = ctx.desc.prune
    return prune_tickets(prev_weights, prev, initial, level, p.fraction, p.scope), "extraction"


def ticket_counts(masks: Masks, independent: bool) -> dict:
    """Sparsity and parameter counts of a level (:func:`lottery.levels.mask_counts`)."""
    return mask_counts(masks, independent)


# ----------------------------------------------------------------------------- forward, loss, steps


def masked_forward(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor] | None,
    x: torch.Tensor,
) -> torch.Tensor:
    """Logits (B, n_out) of ``model`` run with ``params``, the masked ones multiplied by ``mask``.

    The gradient reaching a masked parameter is therefore already zero outside the mask.
    """
    if mask is not None:
        params = masked_weights(params, mask)
    return functional_call(model, dict(params), (x,))


def ticket_loss(kind: str, logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Detector: BCE on logit k against 1/0 targets. Expert: cross-entropy against class labels."""
    if kind == "detector":
        return nn.functional.binary_cross_entropy_with_logits(logits[:, k], target)
    return nn.functional.cross_entropy(logits, target)


def ticket_step(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    float_masks: Mapping[str, torch.Tensor],
    opt: TicketOptimizer,
    slot: int,
    k: int,
    x: torch.Tensor,
    target: torch.Tensor,
    kind: str,
) -> float:
    """One step of ticket ``k`` (optimiser slot ``slot``) on a batch; returns the loss.

    Parameters
    ----------
    params : dict of str to tensor
        The weights being trained (leaf tensors with ``requires_grad``).
    float_masks : mapping of str to float tensor, shape (*weight_shape)
        The ticket's mask as 0.0 / 1.0.
    x : tensor, shape (B, *input_shape)
    target : tensor, shape (B,)
    """
    loss = ticket_loss(kind, masked_forward(model, params, float_masks, x), target, k)
    grads = torch.autograd.grad(loss, list(params.values()))
    opt.step(slot, dict(zip(params, grads, strict=True)))
    return float(loss.detach())


def _leaf_copy(
    state: Mapping[str, np.ndarray | torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    return {
        n: torch.as_tensor(np.asarray(v)).to(device).clone().requires_grad_(True) for n, v in state.items()
    }


def ticket_rewind(ctx: Context, method: str) -> dict[str, np.ndarray]:
    """The rewind point of a ticket method (theta_0, or late rewinding shared by both ticket methods)."""
    dense = {n: torch.ones(s, dtype=torch.bool, device=ctx.device) for n, s in ctx.shapes.items()}

    def train_level0(model: nn.Module, hook: Callable[[int], None] | None) -> None:
        gen = seeded_generator(ctx.desc.seed, EXTRACTION_STREAM, "rewind")
        train_masked(model, dense, ctx.x_train, ctx.y_train, ctx.desc.train, gen, on_step=hook)

    return rewind_point(ctx, method, train_level0)


def stacked_ticket_loss(
    kind: str, logits: torch.Tensor, target: torch.Tensor, tickets: torch.Tensor
) -> torch.Tensor:
    """Sum over tickets of each ticket's mean loss on its own batch (its gradient is the ticket's own).

    Parameters
    ----------
    logits : tensor, shape (A, B, n_out)
        Ticket ``tickets[a]``'s logits in row a.
    target : tensor, shape (A, B)
    tickets : tensor of int64, shape (A,)
        Ticket ids (a detector reads logit ``tickets[a]``).
    """
    a, b = target.shape
    if kind == "detector":
        own = logits.gather(2, tickets.view(a, 1, 1).expand(a, b, 1)).squeeze(2)  # (A, B)
        loss = nn.functional.binary_cross_entropy_with_logits(own, target, reduction="none")
    else:
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return loss.view(a, b).mean(1).sum()


def stacked_ticket_loss_grad(
    kind: str, logits: torch.Tensor, target: torch.Tensor, tickets: torch.Tensor
) -> torch.Tensor:
    """Gradient of :func:`stacked_ticket_loss` with respect to ``logits`` (A, B, n_out), written out.

    Detector: ``(sigmoid(z) - t) / B`` in logit ``tickets[a]`` of row a, zero
    in the others. Expert: ``(softmax(z) - onehot(y)) / B``. These are what
    autograd computes for the two losses (equal up to float rounding).
    """
    a, b = target.shape
    if kind == "detector":
        col = tickets.view(a, 1, 1).expand(a, b, 1)
        own = logits.gather(2, col).squeeze(2)  # (A, B)
        d_own = torch.sigmoid(own).sub_(target).div_(b)
        return torch.zeros_like(logits).scatter_(2, col, d_own.unsqueeze(2))
    return cross_entropy_grad(logits, target)


def _ticks(progress: Callable[[], None] | None, calls: int, total: int) -> Callable[[int], None]:
    """``tick(done)``: call ``progress`` so that it has been called ``calls * done // total`` times."""
    state = {"n": 0}

    def tick(done: int) -> None:
        if progress is None:
            return
        target = calls if total == 0 else calls * done // total
        while state["n"] < target:
            progress()
            state["n"] += 1

    return tick


def extract_tickets(
    ctx: Context,
    masks: Masks,
    level: int,
    rewind: Mapping[str, np.ndarray],
    progress: Callable[[], None] | None = None,
    *,
    engine: str = "batched",
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Train every ticket alone on its subset (IMP per subset, one level).

    Parameters
    ----------
    masks : Masks
        The tickets' masks of ``level``.
    level : int
        Seeds ticket k's stream ``(seed, "tickets", level, k)``.
    rewind : mapping of str to ndarray
        Start weights of every ticket.
    progress : callable, optional
        Called K times over the extraction.
    engine : {"batched", "reference"}
        ``batched``: the K tickets step together as one stacked network
        (:mod:`lottery.stacked`: one batched matmul per layer, one fused
        optimiser call per step over the stacked (K, ...) weights, per-ticket
        moments being rows of the stacked state); each ticket still sees
        exactly its own batches and masks. ``reference``: one ticket after
        the other, one masked step at a time (the implementation before the
        engine, kept for comparison and as the tests' oracle). Both draw the
        same batches from the same streams.

    Returns
    -------
    weights : dict of str to tensor, shape (K, *param_shape)
        Every parameter of every ticket, masked weights zero outside the ticket's mask.
    steps : list of int
        Optimiser steps of each ticket.
    """
    check_engine(engine)
    if engine == "reference":
        return _extract_reference(ctx, masks, level, rewind, progress)
    desc, kind, k_all = ctx.desc, ctx.desc.rtl.ticket_kind, masks.k
    model = ctx.new_model()
    plans, n_steps = [], []
    for k in range(k_all):
        gen = seeded_generator(desc.seed, EXTRACTION_STREAM, level, k)
        batches = TicketBatches(ctx.subset_train, ctx.y_train, k, kind, desc.train.batch_size, gen)
        n_steps.append(epoch_steps(batches.n_positives, desc.train.epochs, kind, desc.train.batch_size))
        plans.append(draw_batches(batches, n_steps[-1]))
    start = {n: torch.as_tensor(np.asarray(v)).to(ctx.device) for n, v in rewind.items()}
    fmasks = {n: m.to(start[n].dtype) for n, m in masks.items()}  # (K, *shape)
    # stacked weights start masked: with masked gradients (and moments that therefore stay 0
    # outside the mask) the pruned weights stay exactly 0, so no per-step mask multiply is needed
    params = {
        n: (
            v.expand(k_all, *v.shape) * fmasks[n] if n in fmasks else v.expand(k_all, *v.shape).clone()
        ).requires_grad_(True)
        for n, v in start.items()
    }
    opt = TicketOptimizer(params, {n: m[None] for n, m in fmasks.items()}, desc.train, 1, fused=True)
    out = {n: torch.empty_like(p, requires_grad=False) for n, p in params.items()}
    active = list(range(k_all))
    total = max(n_steps, default=0)
    tick = _ticks(progress, k_all, total)
    model.train()
    done = 0
    for end in sorted(set(n_steps)):
        if end > done:
            ids = torch.tensor(active, device=ctx.device)
            idx = torch.stack([plans[k][0][done:end] for k in active], 1)  # (S, A, B)
            target = torch.stack([plans[k][1][done:end] for k in active], 1)  # (S, A, B)
            plist = list(params.values())
            for s in range(end - done):
                logits = stacked_forward(model, params, gather_rows(ctx.x_train, idx[s]))  # (A, B, n_out)
                loss = stacked_ticket_loss(kind, logits, target[s], ids)
                opt.step(0, torch.autograd.grad(loss, plist))
                tick(done + s + 1)
            done = end
        finished = [j for j, k in enumerate(active) if n_steps[k] == end]
        keep = [j for j, k in enumerate(active) if n_steps[k] != end]
        with torch.no_grad():
            for n, p in params.items():
                out[n][[active[j] for j in finished]] = p[finished]
        if keep:  # the tickets with more steps go on, with their own optimiser state
            rows = torch.tensor(keep, device=ctx.device)
            params = {n: p.detach()[rows].clone().requires_grad_(True) for n, p in params.items()}
            opt = opt.state_rows(rows, params)
            active = [active[j] for j in keep]
    tick(total)
    return out, n_steps


def _extract_reference(
    ctx: Context,
    masks: Masks,
    level: int,
    rewind: Mapping[str, np.ndarray],
    progress: Callable[[], None] | None = None,
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """:func:`extract_tickets` one ticket and one masked step at a time."""
    desc, kind = ctx.desc, ctx.desc.rtl.ticket_kind
    model = ctx.new_model()
    stacked: dict[str, list[torch.Tensor]] = {n: [] for n in rewind}
    steps = []
    for k in range(masks.k):
        params = _leaf_copy(rewind, ctx.device)
        fmask = {n: m.to(params[n].dtype) for n, m in masks.ticket(k).items()}
        opt = TicketOptimizer(params, {n: m[None] for n, m in fmask.items()}, desc.train, 1)
        gen = seeded_generator(desc.seed, EXTRACTION_STREAM, level, k)
        batches = TicketBatches(ctx.subset_train, ctx.y_train, k, kind, desc.train.batch_size, gen)
        n_steps = epoch_steps(batches.n_positives, desc.train.epochs, kind, desc.train.batch_size)
        model.train()
        for _ in range(n_steps):
            idx, target = batches.next()
            ticket_step(model, params, fmask, opt, 0, k, ctx.x_train[idx], target, kind)
        steps.append(n_steps)
        for n, p in params.items():
            stacked[n].append((p * fmask[n] if n in fmask else p).detach())
        if progress is not None:
            progress()
    return {n: torch.stack(v) for n, v in stacked.items()}, steps


def joint_retrain(
    ctx: Context,
    masks: Masks,
    level: int,
    rewind: Mapping[str, np.ndarray],
    method: str = "rtl",
    progress: Callable[[], None] | None = None,
    *,
    engine: str = "batched",
) -> tuple[dict[str, torch.Tensor], int]:
    """Retrain one shared theta with the K tickets' steps interleaved.

    Every ticket takes ``retrain_steps_per_ticket`` steps (:func:`rtl_budget`);
    round by round, the tickets step in a random order. Ticket k's step uses
    theta masked by m_k and moves only weights inside m_k (per-ticket
    optimiser state, masked gradient, hence a zero update outside m_k:
    :class:`lottery.ticket_optim.TicketOptimizer`), and it sees the updates
    of every step before it: the steps stay sequential.
    Randomness: ``(seed, method, level, "order")`` for the order and
    ``(seed, method, level, k)`` for ticket k's batches.

    ``engine="batched"`` (the default) draws every batch of the level up
    front as index tensors on the device and steps with one fused optimiser
    call (no host synchronisation in the loop; an MLP runs the hand-written
    step of :func:`_retrain_mlp`); ``"reference"`` is the
    implementation before the engine, one batch draw and one per-parameter
    update at a time. Both draw the same batches in the same order.

    Returns
    -------
    theta : dict of str to tensor
        The shared parameters after retraining (unmasked).
    steps : int
        Steps of all tickets together.
    """
    check_engine(engine)
    desc, kind, k_all = ctx.desc, ctx.desc.rtl.ticket_kind, masks.k
    model = ctx.new_model()
    theta = _leaf_copy(rewind, ctx.device)
    fmasks = {n: m.to(theta[n].dtype) for n, m in masks.items()}
    batched = engine == "batched"
    opt = TicketOptimizer(theta, fmasks, desc.train, k_all, fused=batched, premasked=batched)
    samplers = [
        TicketBatches(
            ctx.subset_train,
            ctx.y_train,
            k,
            kind,
            desc.train.batch_size,
            seeded_generator(desc.seed, method, level, k),
        )
        for k in range(k_all)
    ]
    rounds = rtl_budget(desc, subset_sizes(ctx))["retrain_steps_per_ticket"]
    order = interleaved_order(k_all, rounds, seeded_generator(desc.seed, method, level, "order"))
    model.train()
    tick = max(1, len(order) // 20)
    # rtl.overlap_scaling="count": each update of a masked weight divided by its c (lottery.overlap)
    scaled = [n for n in theta if n in fmasks] if desc.rtl.overlap_scaling == "count" else []
    scales = list(update_scales({n: fmasks[n] for n in scaled}, torch.float32).values())
    slist = [theta[n] for n in scaled]
    if engine == "reference":
        ticket_masks = [{n: m[k] for n, m in fmasks.items()} for k in range(k_all)]
        for i, k in enumerate(order.tolist()):
            idx, target = samplers[k].next()
            before = [p.detach().clone() for p in slist]
            ticket_step(model, theta, ticket_masks[k], opt, k, k, ctx.x_train[idx], target, kind)
            if scaled:
                scale_updates(slist, before, scales)
            if progress is not None and (i + 1) % tick == 0:
                progress()
        return {n: p.detach() for n, p in theta.items()}, len(order)

    plans = [draw_batches(s, rounds) for s in samplers]
    idx = torch.stack([p[0] for p in plans])  # (K, rounds, B)
    target = torch.stack([p[1] for p in plans])  # (K, rounds, B)
    # the hand-written MLP step implements the plain masked update only: any other update rule
    # (rtl.overlap_scaling="count") takes the loop below
    if type(model) is MLP and not scaled:
        return _retrain_mlp(model, theta, fmasks, opt.cfg, order, idx, target, ctx.x_train, kind, progress)
    names = list(theta)
    masked = [n for n in names if n in fmasks]
    dense = [n for n in names if n not in fmasks]
    plist = [theta[n] for n in names]
    mlist = [theta[n] for n in masked]
    slot_masks = [[fmasks[n][k] for n in masked] for k in range(k_all)]
    for i, k in enumerate(order.tolist()):
        r = i // k_all  # every round is a permutation: this is ticket k's r-th step
        # theta masked by m_k: autograd masks the gradient too
        weights = dict(zip(masked, torch._foreach_mul(mlist, slot_masks[k]), strict=True))
        weights.update((n, theta[n]) for n in dense)
        logits = single_forward(model, weights, gather_rows(ctx.x_train, idx[k, r]))
        loss = ticket_loss(kind, logits, target[k, r], k)
        grads = torch.autograd.grad(loss, plist)
        before = [p.detach().clone() for p in slist]
        opt.step(k, grads)
        if scaled:
            scale_updates(slist, before, scales)
        if progress is not None and (i + 1) % tick == 0:
            progress()
    return {n: p.detach() for n, p in theta.items()}, len(order)


def _retrain_mlp(
    model: MLP,
    theta: Mapping[str, torch.Tensor],
    fmasks: Mapping[str, torch.Tensor],
    cfg: TrainConfig,
    order: torch.Tensor,
    idx: torch.Tensor,
    target: torch.Tensor,
    x_train: torch.Tensor,
    kind: str,
    progress: Callable[[], None] | None,
) -> tuple[dict[str, torch.Tensor], int]:
    """:func:`joint_retrain`'s loop for an MLP: flat buffers, hand-written backward, one fused step.

    theta lives in one flat (P,) buffer and the K masks in one (K, P) (ones for
    the dense parameters). Ticket k's step: ``w = theta * m_k`` into a
    preallocated buffer, forward and backward (:func:`lottery.stacked.mlp_grads`)
    with the gradients written into one flat (P,) buffer, then one fused
    optimiser call on the flat parameter with ticket k's own flat moments;
    the optimiser multiplies the gradient by m_k, so the gradient is the one
    autograd gives through ``theta * m_k`` and weights outside m_k stay
    bit-identical (:class:`lottery.ticket_optim.TicketOptimizer`).

    Parameters
    ----------
    theta : mapping of str to tensor, shape (*param_shape)
        Start weights (copied; the result is returned).
    fmasks : mapping of str to float tensor, shape (K, *param_shape)
        0/1 masks of the masked parameters.
    order : tensor of int64, shape (steps,)
        Ticket of every step, K-ticket rounds as :func:`interleaved_order` draws them.
    idx, target : tensors, shape (K, rounds, B)
        Training-set indices and targets of ticket k's r-th step.
    """
    k_all = int(idx.shape[0])
    shapes = {n: tuple(p.shape) for n, p in theta.items()}
    flat = flatten_stacked({n: p[None] for n, p in theta.items()})[0]  # (P,)
    fmask = flatten_stacked(
        {
            n: fmasks[n] if n in fmasks else torch.ones((k_all, *p.shape), dtype=p.dtype, device=p.device)
            for n, p in theta.items()
        }
    )  # (K, P)
    opt = TicketOptimizer({"flat": flat}, {"flat": fmask}, cfg, k_all, fused=True)
    wbuf, grad = torch.empty_like(flat[None]), torch.empty_like(flat[None])  # (1, P)
    weights, grads = flat_views(wbuf, shapes), flat_views(grad, shapes)  # (1, *shape)
    tickets = torch.arange(k_all, device=flat.device).view(k_all, 1)
    tick = max(1, len(order) // 20)
    for i, k in enumerate(order.tolist()):
        r = i // k_all  # every round is a permutation: this is ticket k's r-th step
        torch.mul(flat, fmask[k], out=wbuf[0])
        x = gather_rows(x_train, idx[k, r : r + 1])  # (1, B, *input_shape)
        mlp_grads(
            model,
            weights,
            x,
            partial(stacked_ticket_loss_grad, kind, target=target[k, r : r + 1], tickets=tickets[k]),
            grads,
        )
        opt.step(k, [grad[0]])
        if progress is not None and (i + 1) % tick == 0:
            progress()
    return {n: v[0].clone() for n, v in flat_views(flat[None], shapes).items()}, len(order)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def ticket_logits(
    ctx: Context,
    params_of: Callable[[int], Mapping[str, torch.Tensor]],
    masks: Masks,
    x: torch.Tensor,
    batch_size: int = 1024,
    *,
    engine: str = "batched",
) -> torch.Tensor:
    """Logits of every ticket on ``x``, shape (K, N, n_out); ticket k runs ``params_of(k)`` masked by m_k.

    ``engine="batched"`` runs the K tickets as one stacked network
    (:func:`lottery.stacked.stacked_forward`); ``"reference"`` one ticket at a time.
    """
    check_engine(engine)
    model = ctx.new_model().eval()
    if engine == "reference":
        out = []
        for k in range(masks.k):
            params = params_of(k)
            fmask = {n: m.to(params[n].dtype) for n, m in masks.ticket(k).items()}
            out.append(
                torch.cat(
                    [
                        masked_forward(model, params, fmask, x[i : i + batch_size])
                        for i in range(0, len(x), batch_size)
                    ]
                )
            )
        return torch.stack(out)
    stacked = stack_params([params_of(k) for k in range(masks.k)])
    weights = {n: p * masks[n].to(p.dtype) if n in masks else p for n, p in stacked.items()}
    chunks = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        chunks.append(stacked_forward(model, weights, xb.expand(masks.k, *xb.shape)))
    return torch.cat(chunks, dim=1)


def centroid_routes(ctx: Context) -> np.ndarray:
    """Nearest-subset-centroid route of every evaluated sample, (N,) int64.

    Centroids are the mean training input of each subset; they are stored
    with the run as ``extra/centroids.safetensors`` (``centroids``: (K, D) float64).
    """
    path = ctx.run_dir / rf.EXTRA_DIR / f"{CENTROIDS}.safetensors"
    if path.is_file():
        centroids = rf.load_tensors(path)["centroids"]
    else:
        centroids = fit_centroids(ctx.data.x_train, ctx.subset_train.cpu().numpy(), ctx.k)
        path.parent.mkdir(parents=True, exist_ok=True)
        rf.save_tensors(path, {"centroids": centroids})
    return nearest_centroid(ctx.x_test.cpu().numpy(), centroids)


def ticket_predictions(ctx: Context, logits: torch.Tensor, centroid: np.ndarray) -> pd.DataFrame:
    """Evaluation records from every ticket's logits (K, N, n_out); columns: :mod:`lottery.routing`."""
    subset = ctx.subset_test.cpu().numpy()
    if ctx.desc.rtl.ticket_kind == "detector":
        own = torch.stack([logits[k, :, k] for k in range(logits.shape[0])], dim=1)  # (N, K)
        cols = detector_columns(own.cpu().numpy(), subset, centroid)
    else:
        # class and map partitions: score_<k> is expert k's mass on subset k's classes
        cols = expert_columns(
            logits.softmax(-1).cpu().numpy(), subset, centroid, ctx.partition.subset_of_class
        )
    frame = ctx.test_frame.copy()
    for name, values in cols.items():
        frame[name] = values
    return frame


def summary_metrics(frame: pd.DataFrame, k: int) -> dict[str, float]:
    """K-way accuracy per routing and the one-vs-rest means, for ``level.json`` and progress bars.

    The analysis package recomputes these from the predictions with sklearn;
    these are for a quick look only.
    """
    label, subset = frame["label"].to_numpy(), frame["subset"].to_numpy()
    out = {"accuracy": float((frame["pred"].to_numpy() == label).mean())}
    for col in frame.columns:
        if col.startswith("pred_"):
            out[f"accuracy_{col[5:]}"] = float((frame[col].to_numpy() == label).mean())
    recalls, specs = [], []
    for t in range(k):
        det, pos = frame[f"detect_{t}"].to_numpy(), subset == t
        if pos.any():
            recalls.append(float(det[pos].mean()))
        if (~pos).any():
            specs.append(float((~det[~pos]).mean()))
    out["recall_mean"] = float(np.mean(recalls)) if recalls else float("nan")
    out["balanced_accuracy_mean"] = (
        float((np.mean(recalls) + np.mean(specs)) / 2) if recalls and specs else float("nan")
    )
    return out
