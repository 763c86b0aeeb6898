"""The run protocol around the methods: the dense reference, epochs chosen on validation, collapse stop.

Three rules that hold for a whole classification run:

- **Dense reference.** The dense model trained on all the data, IMP level 0,
  is every method's "dense". A run with ticket methods but without ``imp``
  also runs ``dense`` (IMP's level 0 alone, same stream, same budget), and the
  manifest names it: ``manifest["dense_reference"] = {"method": ..., "level": 0}``.
- **Epochs from validation** (``train.epochs_from_validation``). Before any
  method runs, the dense model trains from theta_0 for up to
  ``train.max_epochs`` epochs, evaluated on the validation split after each;
  the epoch count with the lowest validation loss (stopping after
  ``train.patience`` epochs without improvement) replaces ``train.epochs`` and
  ``rtl.retrain_epochs`` for every phase of every method. The choice and the
  curves go to ``manifest["epoch_selection"]``; a resumed run reads them back.
- **Until collapse** (``prune.until_collapse``). A method stops after
  ``prune.extra_levels`` levels past its collapse level: the first level >= 1
  whose balanced accuracy lies at least ``prune.collapse_drop`` below the dense
  reference's (``prune.levels`` stays the cap). Until the dense reference is
  written (a sweep runs methods in parallel) no method stops. The outcome goes to
  ``<method>/stopping.json`` (:data:`artifacts.run_format.STOPPING`).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from artifacts import run_format as rf
from lottery.config import RunDescription, replace
from lottery.train import predict_logits, seeded_generator, train_masked

TICKET_METHODS = ("rtl", "independent")
DENSE = "dense"
SELECTION = "epoch_selection"


# ----------------------------------------------------------------------------- the dense reference


def planned_methods(desc: RunDescription) -> tuple[str, ...]:
    """The methods a run executes, in order: ``desc.methods``, and ``dense`` if ticket methods lack ``imp``.

    With ``prune.until_collapse`` the dense reference runs first (the others' stopping
    rule reads it); otherwise ``dense`` comes last and the order is the description's.
    """
    methods = tuple(desc.methods)
    if "imp" not in methods and DENSE not in methods and any(m in TICKET_METHODS for m in methods):
        methods = (*methods, DENSE)
    ref = dense_reference(methods)
    if desc.prune.until_collapse and ref is not None:
        methods = (ref["method"], *(m for m in methods if m != ref["method"]))
    return methods


def dense_reference(methods: tuple[str, ...]) -> dict[str, Any] | None:
    """``{"method", "level"}`` of the run's dense reference (IMP level 0), None for a run without one."""
    for m in ("imp", DENSE):
        if m in methods:
            return {"method": m, "level": 0}
    return None


# ----------------------------------------------------------------------------- epochs from validation


def select_epochs(ctx: Any) -> dict[str, Any]:
    """Train the dense model with early stopping on the validation split; the epochs of every phase.

    Parameters
    ----------
    ctx : lottery.context.Context
        A classification context (its data's validation split, its theta_0 draw).

    Returns
    -------
    dict
        ``epochs`` (the chosen count, >= 1), ``criterion`` ("val_loss"),
        ``max_epochs``, ``patience``, ``n_val``, ``val_loss`` and
        ``val_accuracy`` (one value per epoch trained).

    Raises
    ------
    ValueError
        The run has no validation split (``data.val_fraction = 0``).
    """
    desc: RunDescription = ctx.desc
    cfg = desc.train
    data = ctx.data
    if len(data.y_val) == 0:
        raise ValueError("train.epochs_from_validation needs a validation split: set data.val_fraction > 0")
    torch.manual_seed(desc.seed)  # the theta_0 draw (lottery.context.RunContext.theta0)
    model = ctx.architecture()
    model = model.to(ctx.device)
    x_val = torch.as_tensor(data.x_val).to(ctx.device)
    y_val = torch.as_tensor(data.y_val.astype(np.int64)).to(ctx.device)
    dense = {n: torch.ones(s, dtype=torch.bool, device=ctx.device) for n, s in ctx.shapes.items()}
    losses: list[float] = []
    accs: list[float] = []

    class _Stop(Exception):
        pass

    def after_epoch() -> None:
        logits = predict_logits(model, x_val)
        losses.append(float(nn.functional.cross_entropy(logits, y_val)))
        accs.append(float((logits.argmax(1) == y_val).float().mean()))
        model.train()
        best = int(np.argmin(losses))
        if len(losses) - 1 - best >= cfg.patience:
            raise _Stop

    gen = seeded_generator(desc.seed, "imp", 0)  # IMP level 0's stream
    try:
        train_masked(
            model,
            dense,
            ctx.x_train,
            ctx.y_train,
            dataclasses.replace(cfg, epochs=cfg.max_epochs),
            gen,
            progress=after_epoch,
        )
    except _Stop:
        pass
    return {
        "epochs": int(np.argmin(losses)) + 1,
        "criterion": "val_loss",
        "max_epochs": cfg.max_epochs,
        "patience": cfg.patience,
        "n_val": int(len(y_val)),
        "val_loss": losses,
        "val_accuracy": accs,
    }


def with_selected_epochs(desc: RunDescription, selection: dict[str, Any]) -> RunDescription:
    """``desc`` with the chosen epochs in every phase (``train.epochs`` and ``rtl.retrain_epochs``)."""
    e = int(selection["epochs"])
    return replace(desc, **{"train.epochs": e, "rtl.retrain_epochs": e})


# ----------------------------------------------------------------------------- until collapse


def balanced_accuracy(run_dir: Path, method: str, level: int) -> float:
    """Balanced accuracy (sklearn; an abstention counts as wrong) of a stored level's ``pred``."""
    frame = rf.read_predictions(rf.level_dir(run_dir, method, level), columns=["label", "pred"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pred -1 (abstain) is a class y_true lacks
        return float(balanced_accuracy_score(frame["label"], frame["pred"]))


def stopping_rule(desc: RunDescription) -> dict[str, Any] | None:
    """The manifest's ``stopping`` entry (None without ``prune.until_collapse``)."""
    p = desc.prune
    if not p.until_collapse:
        return None
    return {
        "rule": "until_collapse",
        "metric": "balanced_accuracy",
        "drop": p.collapse_drop,
        "extra_levels": p.extra_levels,
        "max_levels": p.levels,
        "reference": dense_reference(planned_methods(desc)),
    }


class CollapseStop:
    """Whether a method's level loop may stop before ``level`` (``prune.until_collapse``).

    Parameters
    ----------
    run_dir : Path
    method : str
    desc : RunDescription
    """

    def __init__(self, run_dir: Path, method: str, desc: RunDescription) -> None:
        self.run_dir, self.method, self.desc = Path(run_dir), method, desc
        self.reference = dense_reference(planned_methods(desc))
        self._values: dict[tuple[str, int], float] = {}

    def _value(self, method: str, level: int) -> float:
        key = (method, level)
        if key not in self._values:
            self._values[key] = balanced_accuracy(self.run_dir, method, level)
        return self._values[key]

    def status(self) -> dict[str, Any]:
        """``reference_value``, ``collapse_level`` (None: not yet) and ``stop_after``, from levels written."""
        p = self.desc.prune
        out: dict[str, Any] = {"reference": self.reference, "reference_value": None, "collapse_level": None}
        ref = self.reference
        if ref is None or ref["level"] not in rf.completed_levels(self.run_dir, ref["method"]):
            return out
        dense = self._value(ref["method"], ref["level"])
        out["reference_value"] = dense
        for level in rf.completed_levels(self.run_dir, self.method):
            if level >= 1:
                value = self._value(self.method, level)
                if value <= dense - p.collapse_drop:
                    out.update(collapse_level=level, collapse_value=value)
                    break
        if out["collapse_level"] is not None:
            out["stop_after"] = out["collapse_level"] + p.extra_levels
        return out

    def __call__(self, level: int) -> bool:
        """True when ``level`` lies past the collapse level plus ``extra_levels``."""
        if not self.desc.prune.until_collapse or self.method == DENSE:
            return False
        s = self.status()
        return s["collapse_level"] is not None and level > s["stop_after"]

    def record(self) -> None:
        """Write ``<method>/stopping.json`` (rule, reference, collapse level, last level)."""
        if not self.desc.prune.until_collapse or self.method == DENSE:
            return
        levels = rf.completed_levels(self.run_dir, self.method)
        record = {**(stopping_rule(self.desc) or {}), **self.status()}
        record["last_level"] = levels[-1] if levels else None
        rf.write_json(rf.method_dir(self.run_dir, self.method) / rf.STOPPING, record)
