"""A classification run from description to folder: data, partition, theta_0, then each method's levels.

The classification :class:`~lottery.context.Domain`: its context is
:class:`~lottery.context.Context`, its methods :data:`lottery.methods.METHODS`;
:func:`lottery.context.run_domain` drives it like the INR and speech runs.
"""

from __future__ import annotations

from pathlib import Path

from lottery.config import RunDescription
from lottery.context import (
    Context,
    Domain,
    apply_epoch_selection,
    build_context,
    group_columns,
    manifest_header,
    run_domain,
)
from lottery.methods import METHODS
from lottery.probe import write_probe
from lottery.protocol import SELECTION, dense_reference, planned_methods, select_epochs, stopping_rule

__all__ = ["CLASSIFICATION", "Context", "build_context", "manifest_for", "train_run"]


def manifest_for(ctx: Context, name: str | None = None) -> dict:
    """The manifest of a run (written before the first level).

    With ``train.epochs_from_validation`` this is where the epochs are chosen
    (:func:`lottery.protocol.select_epochs`) and given to ``ctx``.
    """
    d = ctx.data
    requested = ctx.requested or ctx.desc
    extra: dict = {}
    if requested.train.epochs_from_validation:
        if ctx.epoch_selection is None:
            apply_epoch_selection(ctx, select_epochs(ctx))
        extra[SELECTION] = ctx.epoch_selection
    if stopping_rule(requested) is not None:
        extra["stopping"] = stopping_rule(requested)
    methods = planned_methods(requested)
    return {
        **manifest_header(requested, ctx.run_dir, name),
        "dataset": {
            "name": d.name,
            "classes": list(d.classes),
            "input_shape": list(d.input_shape),
            "n_train": int(len(d.y_train)),
            "n_val": int(len(d.y_val)),
            "n_test": int(len(ctx.test_frame)),
        },
        "model": {**ctx.model_cfg.__dict__, "input_shape": list(ctx.model_cfg.input_shape)},
        "partition": ctx.partition.to_json(),
        "prunable": {n: list(s) for n, s in ctx.shapes.items()},
        "layers": list(ctx.shapes),  # prunable layers in module order (input to output)
        "groups": group_columns(ctx),
        "methods": {m: METHODS[m].manifest_entry(ctx) for m in methods},
        "dense_reference": dense_reference(methods),
        **extra,
    }


CLASSIFICATION = Domain(
    task=None,
    build=build_context,
    manifest=manifest_for,
    methods={name: method.run for name, method in METHODS.items()},
    prepare=write_probe,
    plan=planned_methods,
)


def train_run(
    desc: RunDescription,
    run_dir: str | Path,
    *,
    device: str = "auto",
    data_dir: str | None = None,
    name: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Run (or resume) every method of ``desc`` into ``run_dir``."""
    return run_domain(
        CLASSIFICATION,
        desc,
        run_dir,
        name=name,
        show_progress=show_progress,
        device=device,
        data_dir=data_dir,
    )
