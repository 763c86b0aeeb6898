"""Iterative magnitude pruning of one ticket for all the data (the ``imp`` method).

Per level L: start from the rewind point masked by m_L, train, evaluate, save;
the next mask keeps the largest-magnitude survivors, ``(1-p)^(L+1)`` of all
weights. The rewind point is theta_0, or the weights after ``rewind_iter``
steps of the dense level-0 training (late rewinding).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from artifacts import run_format as rf
from lottery.config import TrainConfig
from lottery.context import Context
from lottery.levels import LevelLoop, level_info, prune_level, rewind_point
from lottery.masks import Masks
from lottery.protocol import CollapseStop
from lottery.routing import score_definition, stored_score, subset_mass
from lottery.tickets import matched_imp_epochs, subset_sizes
from lottery.train import (
    load_state_numpy,
    predict_logits,
    seeded_generator,
    state_numpy,
    train_masked,
)

METHOD = "imp"
DENSE = "dense"


def single_predictions(ctx: Context, logits: torch.Tensor) -> pd.DataFrame:
    """Evaluation records of one K-way classifier for all the data.

    ``score_<k>`` is the probability mass on subset k's classes (class and map
    partitions, :func:`lottery.routing.subset_mass`) and ``detect_<k>`` whether the
    predicted class lies in subset k. When some subset holds several classes (map
    partitions), ``pred_oracle`` is the argmax among the true subset's classes: the
    oracle routing an expert gets, given to the single ticket (:func:`oracle_restricted`).
    Scores and ``confidence`` are rounded as :func:`lottery.routing.stored_score` says.
    """
    probs = logits.softmax(-1).cpu().numpy()  # (N, C)
    pred = probs.argmax(1)
    frame = ctx.test_frame.copy()
    frame["pred"] = pred
    frame["confidence"] = stored_score(probs.max(1))
    sub_of_class = getattr(ctx.partition, "subset_of_class", None)
    if sub_of_class is not None:
        sub_of_class = np.asarray(sub_of_class)
        mass = subset_mass(probs, sub_of_class)  # (N, K)
        for k in range(ctx.k):
            frame[f"score_{k}"] = stored_score(mass[:, k])
            frame[f"detect_{k}"] = sub_of_class[pred] == k
        if _groups_classes(sub_of_class):
            frame["pred_oracle"] = oracle_restricted(probs, sub_of_class, frame["subset"].to_numpy())
    return frame


def _groups_classes(subset_of_class: np.ndarray | list[int] | None) -> bool:
    """Whether some subset holds more than one class (then an oracle restricts the argmax)."""
    return subset_of_class is not None and int(np.bincount(np.asarray(subset_of_class)).max()) > 1


def oracle_restricted(probs: np.ndarray, subset_of_class: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Argmax of each sample's class probabilities among its true subset's classes.

    Parameters
    ----------
    probs : ndarray of float, shape (N, C)
        Class probabilities of one classifier.
    subset_of_class : ndarray of int, shape (C,)
        Subset of each class.
    subset : ndarray of int, shape (N,)
        True subset of each sample.

    Returns
    -------
    ndarray of int64, shape (N,)
        A class of subset ``subset[i]`` for every sample (ties: the lower class).
    """
    inside = np.asarray(subset_of_class)[None, :] == np.asarray(subset)[:, None]  # (N, C)
    return np.where(inside, probs, -np.inf).argmax(1).astype(np.int64)


def dense_manifest_entry(ctx: Context) -> dict:
    """Manifest entry of ``dense``: IMP level 0 only."""
    return {**manifest_entry(ctx), "description": "the dense model trained on all the data (IMP level 0)"}


def manifest_entry(ctx: Context) -> dict:
    """Manifest entry of ``imp``: one ticket for all subsets.

    ``routings`` is ``["oracle"]`` when :func:`single_predictions` stores ``pred_oracle``
    (map partitions); ``score`` names what ``score_<k>`` holds (absent without scores).
    """
    sub_of_class = getattr(ctx.partition, "subset_of_class", None)
    entry = {
        "tickets": ["all"],
        "ticket_kind": "single",
        "routings": ["oracle"] if _groups_classes(sub_of_class) else [],
        "default_routing": None,
        "description": "one ticket for all the data (IMP single)",
    }
    score = score_definition("single", sub_of_class)
    if score is not None:
        entry["score"] = score
    return entry


def imp_train_config(ctx: Context) -> TrainConfig:
    """``train`` of the description, with the epochs matched to RTL's budget if ``rtl.match_imp_budget``."""
    cfg = ctx.desc.train
    if not ctx.desc.rtl.match_imp_budget:
        return cfg
    return dataclasses.replace(cfg, epochs=matched_imp_epochs(ctx.desc, subset_sizes(ctx)))


def run_dense(ctx: Context, show_progress: bool = True) -> None:
    """Run or resume ``dense``: IMP's level 0 alone, the dense reference of a run without ``imp``."""
    run_imp(ctx, show_progress, method=DENSE, n_levels=0)


def run_imp(
    ctx: Context, show_progress: bool = True, *, method: str = METHOD, n_levels: int | None = None
) -> None:
    """Run or resume the ``imp`` levels of a run (``method``/``n_levels`` serve ``dense``)."""
    desc, cfg = ctx.desc, imp_train_config(ctx)
    p = desc.prune
    n_levels = p.levels if n_levels is None else n_levels

    def train(model: nn.Module, mask: Mapping[str, torch.Tensor], level: int, on_step=None, bar=None) -> int:
        gen = seeded_generator(desc.seed, METHOD, level)  # dense draws imp's stream: the same level 0
        return train_masked(
            model,
            mask,
            ctx.x_train,
            ctx.y_train,
            cfg,
            gen,
            on_step=on_step,
            progress=bar.update if bar else None,
        )

    dense = {n: torch.ones(s, dtype=torch.bool, device=ctx.device) for n, s in ctx.shapes.items()}
    rewind = rewind_point(ctx, method, lambda m, hook: train(m, dense, 0, hook))

    stop = CollapseStop(ctx.run_dir, method, desc)
    loop = LevelLoop(ctx.run_dir, method, n_levels, show_progress, stop=stop)
    prev: tuple[dict, dict] | None = None  # (weights, mask) of the previous level
    for level, continued in loop:
        if level == 0:
            mask = dense
        else:
            if not continued:
                w_prev = rf.load_tensors(rf.level_dir(ctx.run_dir, method, level - 1) / rf.WEIGHTS)
                m_prev = rf.read_level_masks(ctx.run_dir, method, level - 1)
                prev = (w_prev, {n: m[0] for n, m in m_prev.items()})
            assert prev is not None
            new = prune_level(prev[0], prev[1], p.fraction, level, p.scope)
            mask = {n: m.to(ctx.device) for n, m in new.items()}
        model = ctx.new_model()
        load_state_numpy(model, rewind)
        bar = tqdm(total=cfg.epochs, desc=f"imp level {level} epochs", disable=not show_progress, leave=False)
        t0 = time.perf_counter()
        steps = train(model, mask, level, bar=bar)
        seconds = time.perf_counter() - t0
        bar.close()
        frame = single_predictions(ctx, predict_logits(model, ctx.x_test))
        masks = Masks({n: m[None] for n, m in mask.items()}, ctx.shapes)
        weights = state_numpy(model)
        acc = float((frame["pred"] == frame["label"]).mean())
        info = level_info(
            masks,
            {"accuracy": acc},
            seconds=seconds,
            steps=steps,
            presentations=int(steps and cfg.epochs * len(ctx.y_train)),
        )
        rf.write_level(
            ctx.run_dir, method, level, masks=masks.numpy(), predictions=frame, info=info, weights=weights
        )
        rf.sync_mask_levels(ctx.run_dir, method)
        prev = (weights, {n: m.cpu().numpy() for n, m in mask.items()})
        loop.report(sparsity=info["sparsity"], acc=acc)
    stop.record()
