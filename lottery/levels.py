"""What every method of every domain does per level: loop with resume, prune, describe the level.

A method's levels run in order 0..L; a level whose folder is complete is
skipped (:class:`LevelLoop`), so a killed run resumes where it stopped. The
mask of level L keeps the largest-magnitude survivors of the mask of level
L-1 (:func:`prune_level`), and ``level.json`` holds the same counts for every
method (:func:`level_info`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from artifacts import run_format as rf
from lottery.masks import Masks
from lottery.prune import level_density, magnitude_prune
from lottery.train import state_numpy


def prune_level(
    weights: Mapping[str, np.ndarray | torch.Tensor],
    mask: Mapping[str, np.ndarray | torch.Tensor],
    fraction: float,
    level: int,
    scope: str = "layer",
) -> dict[str, torch.Tensor]:
    """The mask of ``level`` of one ticket from its trained weights and its mask of ``level - 1``.

    Parameters
    ----------
    weights : mapping of str to array, shape (*weight_shape)
        Trained weights (at least every name of ``mask``).
    mask : mapping of str to bool array, shape (*weight_shape)
        The mask of ``level - 1``.
    fraction : float
        Fraction p of the surviving weights removed per level.
    level : int
        The new level; ``(1-p)^level`` of the weights survive, per layer
        (``scope="layer"``) or over all prunable weights (``"global"``).
    scope : {"layer", "global"}

    Returns
    -------
    dict of str to bool tensor, shape (*weight_shape)
        Nested in ``mask``, on the device of ``mask``.
    """
    return magnitude_prune(
        {n: torch.as_tensor(weights[n]) for n in mask},
        {n: torch.as_tensor(m) for n, m in mask.items()},
        level_density(fraction, level),
        scope,
    )


def mask_counts(masks: Masks, independent: bool = False) -> dict[str, Any]:
    """Sparsity and parameter counts of a level's K masks.

    ``params_total`` is the union of the masks for one shared network, their
    sum for K separate networks (``independent``).
    """
    per_ticket = [int(c) for c in masks.counts()]
    union = masks.union_count()
    return {
        "sparsity": float(masks.sparsity().mean()),
        "ticket_sparsity": masks.sparsity().tolist(),
        "union_sparsity": 1.0 - union / masks.numel(),
        "params_per_ticket": per_ticket,
        "params_union": union,
        "params_total": sum(per_ticket) if independent else union,
    }


def level_info(
    masks: Masks,
    metrics: Mapping[str, float],
    *,
    seconds: float,
    steps: int,
    presentations: int,
    independent: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The ``level.json`` record of one level (every method, every domain).

    Parameters
    ----------
    masks : Masks
        The level's K masks (K = 1 for a single ticket).
    metrics : mapping of str to float
        Summary metrics of the evaluation.
    seconds : float
        Training wall time (``train_seconds``).
    steps : int
        Optimiser steps taken.
    presentations : int
        Training samples presented (``sample_presentations``).
    independent : bool
        K separate networks (``params_total`` sums the tickets).
    **extra
        Method-specific fields, appended.
    """
    return {
        **mask_counts(masks, independent),
        "metrics": dict(metrics),
        "train_seconds": float(seconds),
        "steps": steps,
        "sample_presentations": int(presentations),
        **extra,
    }


class LevelLoop:
    """The levels 0..``n_levels`` of one method still to run, with a progress bar.

    Partial level folders of a killed run are removed first. Iterating yields
    ``(level, continued)``: ``continued`` is true when the previous level ran in
    this loop (its results are still in memory), false after a skipped level
    (read what is needed back from the run folder).

    Parameters
    ----------
    run_dir : Path
    method : str
        Method folder name.
    n_levels : int
        Pruning levels after the dense level 0.
    show_progress : bool
    label : str, optional
        Progress-bar label (default ``"<method> levels"``).
    stop : callable, optional
        ``stop(level) -> bool``, asked before every level still to run: true ends the
        loop there (e.g. :class:`lottery.protocol.CollapseStop`).
    """

    def __init__(
        self,
        run_dir: Path,
        method: str,
        n_levels: int,
        show_progress: bool = True,
        label: str | None = None,
        stop: Callable[[int], bool] | None = None,
    ) -> None:
        self.run_dir, self.method, self.n_levels = Path(run_dir), method, n_levels
        self.stop = stop
        rf.clean_partial_levels(self.run_dir, method)
        self.done = set(rf.completed_levels(self.run_dir, method))
        self.bar = tqdm(
            range(n_levels + 1), desc=label or f"{method} levels", disable=not show_progress, leave=False
        )

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        continued = False
        for level in self.bar:
            if level in self.done:
                continued = False
                continue
            if self.stop is not None and self.stop(level):
                break
            yield level, continued
            continued = True

    def report(self, **values: float) -> None:
        """Show values of the level just written next to the bar (e.g. sparsity, accuracy)."""
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})


class _Rewindable(Protocol):
    run_dir: Path
    desc: Any  # with prune.rewind_iter

    def theta0(self) -> dict[str, np.ndarray]: ...

    def new_model(self) -> nn.Module: ...


def rewind_point(
    ctx: _Rewindable,
    method: str,
    train_level0: Callable[[nn.Module, Callable[[int], None] | None], None],
) -> dict[str, np.ndarray]:
    """The weights every level rewinds to (saved as ``<method>/init.safetensors``).

    With ``desc.prune.rewind_iter == 0`` this is theta_0. Otherwise a dense model
    from theta_0 is trained for ``rewind_iter`` steps by ``train_level0`` (which
    receives an ``on_step`` hook) and those weights are kept (late rewinding).
    """
    path = rf.method_dir(ctx.run_dir, method) / rf.INIT
    if path.is_file():
        return rf.load_tensors(path)
    rewind_iter = ctx.desc.prune.rewind_iter
    state = ctx.theta0()
    if rewind_iter > 0:
        model = ctx.new_model()
        captured: dict[str, np.ndarray] = {}

        def on_step(step: int) -> None:
            if step == rewind_iter:
                captured.update(state_numpy(model))

        train_level0(model, on_step)
        if not captured:
            raise ValueError(f"rewind_iter={rewind_iter} is more than the {method} level-0 training steps")
        state = captured
    path.parent.mkdir(parents=True, exist_ok=True)
    rf.save_tensors(path, state)
    return state
