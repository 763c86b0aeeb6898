"""Write imported tickets as a run folder, atomically and only where asked.

The run is built in a hidden staging folder next to the destination
(``.<name>.import-<pid>-*``), read back with :func:`artifacts.run_format.load_run`,
and renamed into place, so an import that fails leaves nothing behind and an
existing run is never half overwritten. Staging folders of processes that no
longer run (a killed import) are removed by the next import into the same
folder.

``force`` replaces only a run written by this project: a folder whose
``manifest.json`` passes the run schema and which holds nothing but a run's
files. A run under the embedded ``artifacts/`` folder is replaced only with
``replace_embedded``. The old run is moved aside (``.<name>.replaced-<pid>-*``)
and deleted only once the new one is in place; a crash in between leaves the
old run there, and the next import puts it back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import SafetensorError

from artifacts import schema
from artifacts.run_format import (
    EXTRA_DIR,
    MANIFEST,
    SHARED_SAMPLES,
    THETA0,
    RunFormatError,
    load_run,
    read_json,
    system_fault_message,
    validate_manifest,
    write_level,
    write_manifest,
)
from ingest.errors import CheckpointError
from ingest.tickets import ImportedLevel, ImportedTickets

DEFAULT_METHOD = "imported"
WEIGHT_DTYPES = ("float32", "float16", "none")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
EMBEDDED_ROOT = Path(schema.__file__).resolve().parent  # artifacts/: the embedded runs
_STAGING = ".import-"  # .<name>.import-<pid>-<random>
_REPLACED = ".replaced-"  # .<name>.replaced-<pid>-<random>


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


def project_run_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a run written by this project, or None if it is.

    A project run has a ``manifest.json`` that passes the run schema and holds
    nothing but a run's entries: the manifest, ``theta0.safetensors``,
    ``samples.parquet``, ``extra/``, one folder per declared method, and hidden
    temporary files.
    """
    if not (folder / MANIFEST).is_file():
        return f"no {MANIFEST}"
    try:
        manifest = read_json(folder / MANIFEST)
        validate_manifest(manifest, folder / MANIFEST)
    except RunFormatError as e:
        return f"its {MANIFEST} is not a run manifest ({str(e).replace(str(folder / MANIFEST) + ': ', '')})"
    allowed = {MANIFEST, THETA0, SHARED_SAMPLES, EXTRA_DIR, *manifest["methods"]}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in allowed and not p.name.startswith("."))
    if foreign:
        return f"it holds {', '.join(repr(n) for n in foreign[:3])}, which no run has"
    return None


def _is_embedded(folder: Path) -> bool:
    return folder.resolve().is_relative_to(EMBEDDED_ROOT)


def check_destination(out_dir: Path, *, force: bool, replace_embedded: bool = False) -> None:
    """Refuse a destination that exists and is not an empty folder, unless ``force``.

    Even with ``force`` only an empty folder or a run written by this project
    (:func:`project_run_problem`) is replaced, so a mistyped ``--out`` cannot
    wipe an unrelated folder (a web project with its own ``manifest.json``); a
    run under ``artifacts/`` needs ``replace_embedded`` as well.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not force:
        raise CheckpointError(f"{out_dir} exists and is not empty; pass --force to replace it")
    problem = project_run_problem(out_dir)
    if problem is not None:
        raise CheckpointError(
            f"refusing to replace {out_dir}: it is not empty and not a run folder ({problem}); "
            "--force replaces only a run written by this project"
        )
    if _is_embedded(out_dir) and not replace_embedded:
        raise CheckpointError(
            f"refusing to replace {out_dir}: it is an embedded run under artifacts/; "
            "pass --replace-embedded as well to replace it"
        )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def _owner_pid(name: str, marker: str) -> int | None:
    try:
        return int(name.split(marker, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def sweep_stale(out_dir: Path) -> list[Path]:
    """Remove what killed imports into ``out_dir`` left next to it.

    Staging folders ``.<name>.import-<pid>-*`` of processes that no longer run
    are deleted. An old run moved aside by a killed ``--force``
    (``.<name>.replaced-<pid>-*``) is put back if ``out_dir`` is missing, and
    deleted otherwise (the new run was already in place).

    Returns
    -------
    list of Path
        The folders removed or restored.
    """
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    done = []
    for marker in (_STAGING, _REPLACED):
        prefix = f".{out_dir.name}{marker}"
        for p in parent.glob(glob_escape(prefix) + "*"):
            pid = _owner_pid(p.name, marker)
            if pid is None or _pid_alive(pid) or p.is_symlink() or not p.is_dir():
                continue
            if marker == _REPLACED and not out_dir.exists():
                os.replace(p, out_dir)  # the new run never arrived: the old one comes back
            else:
                shutil.rmtree(p, ignore_errors=True)
            done.append(p)
    return done


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def write_run(
    tickets: ImportedTickets,
    out_dir: str | Path,
    *,
    name: str | None = None,
    method: str = DEFAULT_METHOD,
    force: bool = False,
    weights_dtype: str = "float32",
    source_paths: Sequence[str] | None = None,
    replace_embedded: bool = False,
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
    replace_embedded : bool
        With ``force``, also replace a run under ``artifacts/``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    CheckpointError
        For a refused destination, a bad method or ticket name or dtype, and
        faults of the system (disk full, read-only folder, a file where a
        folder should be): one line naming the path and the cause; nothing
        is left behind.
    """
    out_dir = Path(out_dir).absolute()
    problem = schema.identifier_problem(method)
    if problem:
        raise CheckpointError(f"invalid method name {method!r}: {problem}")
    schema.check_ticket_names(list(tickets.tickets), CheckpointError, "imported tickets")
    if weights_dtype not in WEIGHT_DTYPES:
        raise CheckpointError(
            f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, not {weights_dtype!r}"
        )
    try:
        sweep_stale(out_dir)
        check_destination(out_dir, force=force, replace_embedded=replace_embedded)
        manifest = build_manifest(
            tickets, name=name or out_dir.name, method=method, source_paths=source_paths
        )
        made: list[Path] = []
        try:
            _make_parents(out_dir.parent, made)
            _write_staged(tickets, out_dir, manifest, method, weights_dtype)
        except BaseException:
            for d in reversed(made):  # folders this import created, now empty again
                _rmdir_quietly(d)
            raise
    except (OSError, SafetensorError) as e:
        raise CheckpointError(system_fault_message(e, out_dir)) from None
    return out_dir


def _make_parents(parent: Path, made: list[Path]) -> None:
    """Create ``parent`` and its missing ancestors, appending each created one to ``made``."""
    missing = []
    p = parent
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        made.append(d)


def _rmdir_quietly(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _write_staged(
    tickets: ImportedTickets, out_dir: Path, manifest: dict, method: str, weights_dtype: str
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{_STAGING}{os.getpid()}-", dir=out_dir.parent))
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
        trash = out_dir.with_name(f".{out_dir.name}{_REPLACED}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(out_dir, trash)
        try:
            os.replace(staging, out_dir)
        except BaseException:
            os.replace(trash, out_dir)  # the old run comes back
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
