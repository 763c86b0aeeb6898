"""Write imported tickets as a run folder, atomically and only where asked.

The run is built in a temporary folder next to the destination, read back with
:func:`artifacts.run_format.load_run`, and renamed into place, so an import that
fails leaves nothing behind and an existing run is never half overwritten.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.importers.errors import CheckpointError
from analysis.importers.tickets import ImportedLevel, ImportedTickets
from artifacts.run_format import (
    EXTRA_DIR,
    MANIFEST,
    RunFormatError,
    load_run,
    write_level,
    write_manifest,
)

DEFAULT_METHOD = "imported"
WEIGHT_DTYPES = ("float32", "float16", "none")
_METHOD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def empty_predictions() -> pd.DataFrame:
    """Predictions of a run without per-sample data: no rows, the core columns typed.

    Returns
    -------
    DataFrame
        Zero rows; int64 columns ``sample``, ``label``, ``subset``, ``pred``,
        so readers that select those columns get empty results, not KeyErrors.
    """
    return pd.DataFrame({c: pd.Series([], dtype="int64") for c in ("sample", "label", "subset", "pred")})


def build_manifest(
    tickets: ImportedTickets, *, name: str, method: str, source_paths: Sequence[str] | None = None
) -> dict:
    """The manifest of an imported run (``schema_version`` is added on writing).

    Parameters
    ----------
    tickets : ImportedTickets
    name : str
        Run name.
    method : str
        The one method the run holds.
    source_paths : sequence of str, optional
        Paths recorded as the source (default: ``tickets.paths``).

    Returns
    -------
    dict
        ``name``, ``methods`` (one method, ``ticket_kind`` ``"imported"``, no
        routings), ``groups`` (empty), ``prunable`` ``{layer: shape}`` and
        ``source`` ``{"format", "paths", "inferred_masks", "ticket_formats"}``.
    """
    return {
        "name": name,
        "methods": {
            method: {
                "tickets": list(tickets.tickets),
                "ticket_kind": "imported",
                "routings": [],
                "default_routing": None,
            }
        },
        "groups": [],
        "prunable": {layer: list(shape) for layer, shape in tickets.layers.items()},
        "source": {
            "format": tickets.format,
            "paths": [str(p) for p in (source_paths if source_paths is not None else tickets.paths)],
            "inferred_masks": tickets.inferred_masks,
            "ticket_formats": dict(zip(tickets.tickets, tickets.formats, strict=True)),
        },
    }


def level_info(tickets: ImportedTickets, level: ImportedLevel) -> dict:
    """``level.json`` content of one imported level (keys as the training code writes them).

    Returns
    -------
    dict
        ``sparsity`` (mean over tickets, measured from the masks);
        ``ticket_sparsity`` and ``params_per_ticket`` (lists in ticket order);
        ``params_union`` (weights kept by at least one ticket); ``params_total``
        (sum over tickets: imported tickets are separate networks);
        ``params_prunable`` (prunable weights of one network); ``metrics`` (mean
        over tickets of each metric every ticket logged, e.g. ``test_accuracy``;
        empty if none) and ``ticket_metrics`` (list of dicts in ticket order).
    """
    kept = level.unpruned()
    union = sum(int(m.any(axis=0).sum()) for m in level.masks.values())
    return {
        "sparsity": float(level.ticket_sparsity().mean()),
        "ticket_sparsity": [float(s) for s in level.ticket_sparsity()],
        "params_per_ticket": [int(n) for n in kept],
        "params_union": union,
        "params_total": int(kept.sum()),
        "params_prunable": int(sum(int(np.prod(s)) for s in tickets.layers.values())),
        "metrics": level.metrics(),
        "ticket_metrics": [dict(m) for m in level.ticket_metrics],
    }


def _cast_weights(weights: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    out = {}
    for name, w in weights.items():
        if dtype == "float16" and w.size and float(np.abs(w).max()) > _FLOAT16_MAX:
            raise CheckpointError(
                f"weight {name!r} exceeds the float16 range ({float(np.abs(w).max()):g}); "
                "store the weights as float32"
            )
        out[name] = w.astype(dtype)
    return out


def check_destination(out_dir: Path, *, force: bool) -> None:
    """Refuse a destination that exists and is not an empty folder, unless ``force``.

    Even with ``force`` only an empty folder or a run folder (one holding
    ``manifest.json``) is replaced, so a mistyped ``--out`` cannot wipe an
    unrelated folder.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not force:
        raise CheckpointError(f"{out_dir} exists and is not empty; pass --force to replace it")
    if not (out_dir / MANIFEST).is_file():
        raise CheckpointError(
            f"refusing to replace {out_dir}: it is not empty and not a run folder (no {MANIFEST})"
        )


def write_run(
    tickets: ImportedTickets,
    out_dir: str | Path,
    *,
    name: str | None = None,
    method: str = DEFAULT_METHOD,
    force: bool = False,
    weights_dtype: str = "float32",
    source_paths: Sequence[str] | None = None,
) -> Path:
    """Write imported tickets as a run folder.

    Parameters
    ----------
    tickets : ImportedTickets
    out_dir : str or Path
        The run folder to create. Must not exist, or be empty; with ``force``
        an existing run folder is replaced.
    name : str, optional
        Run name (default: the folder name).
    method : str
        Method name, a plain folder name (default ``"imported"``).
    force : bool
        Replace an existing run folder.
    weights_dtype : {"float32", "float16", "none"}
        How to store the masked weights when the source has them; ``"none"``
        drops them. Stored per level as ``{layer: (K, *shape)}``, ticket k's
        masked weights in row k (metadata ``layout=per_ticket``).
    source_paths : sequence of str, optional
        Paths recorded in ``manifest["source"]["paths"]``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    CheckpointError
        For a refused destination, a bad method name or dtype.
    """
    out_dir = Path(out_dir).absolute()
    if not _METHOD_RE.match(method) or method == EXTRA_DIR:
        raise CheckpointError(
            f"invalid method name {method!r}: use letters, digits, '_', '-', '.' (not {EXTRA_DIR!r})"
        )
    if weights_dtype not in WEIGHT_DTYPES:
        raise CheckpointError(
            f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, not {weights_dtype!r}"
        )
    check_destination(out_dir, force=force)
    manifest = build_manifest(tickets, name=name or out_dir.name, method=method, source_paths=source_paths)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.import-", dir=parent))
    try:
        write_manifest(staging, manifest)
        for lv, level in tickets.levels.items():
            weights = None
            if level.weights is not None and weights_dtype != "none":
                weights = _cast_weights(level.weights, weights_dtype)
            write_level(
                staging,
                method,
                lv,
                masks=level.masks,
                predictions=empty_predictions(),
                info=level_info(tickets, level),
                weights=weights,
                weights_metadata={"layout": "per_ticket"} if weights is not None else None,
            )
        _verify(staging, method, tickets)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _verify(run_dir: Path, method: str, tickets: ImportedTickets) -> None:
    """Read the run back before it is published."""
    try:
        run = load_run(run_dir)
        if run.levels(method) != list(tickets.levels) or run.ticket_names(method) != list(tickets.tickets):
            raise RunFormatError("levels or tickets differ after writing")
    except RunFormatError as e:  # a bug here, not the user's input; still say it plainly
        raise CheckpointError(f"the written run did not read back: {e}") from None


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        # Swap by renames: the old folder moves aside first, so a crash leaves one of the two.
        trash = out_dir.with_name(f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(out_dir, trash)
        os.replace(staging, out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
