"""The on-disk run format: the one module that knows every file name of a run.

A run folder::

    RUN/
      manifest.json                      run description, dataset, model, partition, methods
      theta0.safetensors                 theta_0, shared by every method and ticket
      samples.parquet                    optional: the per-sample columns that every level of every
                                         method holds identically (sample, label, subset, groups),
                                         stored once (see "compact storage" below)
      extra/<name>.safetensors           per-run arrays: "probe" (x, label, subset: a fixed
                                         test batch for attention maps), "centroids"
                                         ((K, D) subset centroids for centroid routing), ...
      <method>/                          "imp", "rtl", "independent", "dense", ...
        init.safetensors                 the rewind point; absent when it is theta_0
        mask_levels.safetensors          every level's masks at once: per layer uint8 (K, *shape),
                                         the level at which a weight left the mask (see
                                         "compact storage" below); mask_levels.json instead
                                         when another method holds identical masks
        stopping.json                    prune.until_collapse: reference, collapse level, last level
        level_00/ level_01/ ...          one folder per completed pruning level
          masks.safetensors              per layer: bit-packed uint8, unpacked to bool (K, *shape);
                                         absent once folded into mask_levels (Run.masks reads either)
          weights.safetensors            trained weights (optional for embedded runs); metadata
                                         ``layout``: "shared" (one state dict) or "stacked"
                                         (each parameter (K, ...), one network per ticket);
                                         ``dtype``: "float16" when stored halved
          predictions.parquet            one row per evaluated sample
          arrays.safetensors             optional per-level arrays (e.g. reconstructed images)
          level.json                     sparsity, parameter counts, summary metrics

Manifest fields of the protocol (:mod:`lottery.protocol`; absent in older runs):
``dense_reference`` ``{"method": "imp" | "dense", "level": 0}``, the dense model trained
on all the data that every "compared with dense" analysis should use (RTL's own level 0
is jointly retrained and is not it); ``epoch_selection`` (``epochs`` chosen on the
validation split, ``val_loss`` / ``val_accuracy`` per epoch); ``stopping`` (the
until-collapse rule); ``partition`` of kind ``random`` names its ``null_of``.

A level folder is written under a temporary name and renamed into place, so a
killed run never leaves a half-written level: a level exists iff its folder
exists, and ``level.json`` is always in it.

Predictions columns (``predictions.parquet``)
---------------------------------------------
sample : int
    Index of the sample in the evaluation split.
label : int
    True class index; ``label_name`` : str, its name.
subset : int
    Index of the ticket whose subset the sample belongs to (the routing oracle).
class, cluster, ... : str
    Group columns named in ``manifest["groups"]`` (audit attributes such as
    ``sex``/``race`` included; they are never used for routing).
pred : int
    The method's K-way class prediction under its default routing
    (``manifest["methods"][m]["default_routing"]``).
pred_<routing> : int
    The class prediction under each routing of ``manifest["methods"][m]["routings"]``
    (e.g. ``pred_oracle``, ``pred_max_score``, ``pred_centroid``); -1 where a routed
    detector does not fire. One ticket for all subsets stores ``pred_oracle`` (its argmax
    among the true subset's classes) when some subset holds several classes (map partitions).
route_<routing> : int
    The ticket each routing chose.
score_<k> : float
    Ticket k's score for the sample, in [0, 1] (rounded to 4 decimals; newer files store it as uint16
    steps of 1e-4, read back as float32 by :meth:`Run.predictions`). Which score is named by
    ``manifest["methods"][m]["score"]``:
    ``"sigmoid"`` for a detector, the probability that the sample is in subset k;
    ``"subset_mass"`` for one ticket serving all subsets, and for an expert on a partition
    whose subsets are sets of classes (``class``, ``map``), the probability mass the ticket
    (expert k) puts on subset k's classes; ``"confidence"`` for an expert on other partitions
    (``kmeans``, ``random``), its max class probability. Runs without the key: experts stored
    their confidence, detectors and single tickets as above.
confidence : float
    Optional. One ticket for all subsets: its max class probability. Experts whose
    ``score_<k>`` is a subset mass: the largest expert confidence (the one max-score
    routing follows). Stored like ``score_<k>``.
detect_<k> : bool
    Ticket k's one-vs-rest decision "the sample is in subset k".

Only numpy, pandas, json, safetensors and jsonschema (the schema of the JSON files is in
:mod:`artifacts.schema`; every run is checked against it by :func:`load_run`) are used
here: no torch, no pickle.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from artifacts import schema

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
THETA0 = "theta0.safetensors"
INIT = "init.safetensors"
MASKS = "masks.safetensors"
WEIGHTS = "weights.safetensors"
PREDICTIONS = "predictions.parquet"
ARRAYS = "arrays.safetensors"
LEVEL_JSON = "level.json"
EXTRA_DIR = "extra"  # per-run extra arrays (probe batches, centroids, ...)
_LEVEL_RE = re.compile(r"^level_(\d{2,})$")


class RunFormatError(ValueError):
    """A run folder is missing, incomplete, corrupt or of an unknown schema version."""


# ----------------------------------------------------------------------------- paths


def file_version(path: str | Path, st: os.stat_result | None = None) -> tuple[str, int, int, int]:
    """``(absolute path, mtime_ns, size, inode)``: a key that changes when the file is rewritten.

    Readers that keep what they parsed of a file key it by this, so a file
    written again (in place or by rename) is read again. ``st``: the file's
    ``os.stat`` result when the caller already has it.
    """
    st = os.stat(path) if st is None else st
    return os.path.abspath(path), st.st_mtime_ns, st.st_size, st.st_ino


def run_version(run_dir: str | Path) -> int:
    """Newest modification time (ns) in a run folder, down to the files of its level folders.

    The run folder's entries, its method folders' entries and their level
    folders' entries, whether complete or not (``lstat``: a link is not
    followed). Cheap next to opening the run (no file is read), so a reader
    validated once can be reused while this stays the same; taken before the
    run is opened, a write during the opening makes the next version newer.

    Raises
    ------
    RunFormatError
        When ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFormatError(f"{run_dir}: not a folder")
    latest = 0
    folders = [(run_dir, 2)]  # (folder, how many levels of subfolders below it to enter)
    while folders:
        folder, below = folders.pop()
        latest = max(latest, folder.lstat().st_mtime_ns)
        with os.scandir(folder) as entries:
            for e in entries:
                latest = max(latest, e.stat(follow_symlinks=False).st_mtime_ns)
                if below and e.is_dir(follow_symlinks=False):
                    folders.append((Path(e.path), below - 1))
    return latest


def level_dir(run_dir: str | Path, method: str, level: int) -> Path:
    """Folder of one level of one method (``method`` must be an identifier, never a path)."""
    return method_dir(run_dir, method) / f"level_{int(level):02d}"


def method_dir(run_dir: str | Path, method: str) -> Path:
    """Folder of one method; raises :class:`RunFormatError` for a name that is not an identifier."""
    return Path(run_dir) / schema.check_method_name(method, RunFormatError)


def completed_levels(run_dir: str | Path, method: str) -> list[int]:
    """Levels of ``method`` whose folder is complete, ascending."""
    d = method_dir(run_dir, method)
    if not d.is_dir():
        return []
    out = []
    for child in d.iterdir():
        m = _LEVEL_RE.match(child.name)
        if m and child.is_dir() and (child / LEVEL_JSON).is_file():
            out.append(int(m.group(1)))
    return sorted(out)


# ----------------------------------------------------------------------------- atomic writes


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def system_fault_message(e: BaseException, path: Path | str, verb: str = "cannot write") -> str:
    """One line for a fault of the system while writing ``path``: the path and the cause.

    Disk full, read-only file system, permission denied, a file where a folder
    should be: the importers and ``python -m lottery`` print this line and exit
    with code 2 instead of a traceback.

    Parameters
    ----------
    e : OSError or SafetensorError
        The error (safetensors reports I/O errors as ``... Os { code: 28, ... }``).
    path : Path or str
        What was being written (the destination, not a hidden staging folder).
    verb : str
        How the message starts.
    """
    code = getattr(e, "errno", None)
    if code is None:
        m = re.search(r"(?:code: |os error )(\d+)", str(e))
        code = int(m.group(1)) if m else None
    cause = getattr(e, "strerror", None) or (os.strerror(code) if code else None) or _first_line(e)
    if code == errno.ENOSPC:
        cause = "no space left on the device (disk full)"
    elif code == errno.EROFS:
        cause = "read-only file system"
    elif code in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
    elif code == errno.ENOTDIR:
        cause = "a file is in the way where a folder should be"
    return f"{verb} {path}: {cause}"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    _atomic_write_bytes(Path(path), (text + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or corrupt file raises :class:`RunFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFormatError(f"corrupt JSON in {path}: {e}") from e
    except RecursionError:
        raise RunFormatError(f"corrupt JSON in {path}: nested too deeply") from None
    except OSError as e:
        raise RunFormatError(f"cannot read {path}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- masks


def pack_masks(masks: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Bit-pack boolean masks for storage.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)

    Returns
    -------
    packed : dict of str to ndarray of uint8, shape (K, ceil(prod(weight_shape) / 8))
    metadata : dict of str to str
        ``{"shapes": json {layer: [K, *weight_shape]}}``, needed to unpack.
    """
    packed, shapes = {}, {}
    for name, m in masks.items():
        m = np.asarray(m)
        if m.dtype != np.bool_:
            raise RunFormatError(f"mask {name!r} must be bool, got {m.dtype}")
        if m.ndim < 2:
            raise RunFormatError(f"mask {name!r} must have shape (K, *weight_shape)")
        shapes[name] = list(m.shape)
        packed[name] = np.packbits(m.reshape(m.shape[0], -1), axis=1)
    return packed, {"shapes": json.dumps(shapes)}


def unpack_masks(packed: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> dict:
    """Inverse of :func:`pack_masks`: ``{layer: bool ndarray (K, *weight_shape)}``."""
    if not isinstance(metadata, Mapping) or "shapes" not in metadata:
        raise RunFormatError("mask file has no valid 'shapes' metadata")
    shapes = schema.parse_mask_shapes(metadata["shapes"], "mask file", RunFormatError)
    out = {}
    for name, shape in shapes.items():
        if name not in packed:
            raise RunFormatError(f"mask file lists layer {name!r} but holds no data for it")
        k, n = shape[0], int(np.prod(shape[1:]))
        arr = packed[name]
        if arr.dtype != np.uint8 or arr.shape != (k, (n + 7) // 8):
            raise RunFormatError(f"mask {name!r}: stored shape {arr.shape} does not fit {shape}")
        out[name] = np.unpackbits(arr, axis=1, count=n).astype(bool).reshape(shape)
    return out


def save_masks(path: str | Path, masks: Mapping[str, np.ndarray]) -> None:
    """Save ``{layer: bool (K, *shape)}`` bit-packed to a safetensors file."""
    packed, meta = pack_masks(masks)
    save_file(packed, str(path), metadata=meta)


def load_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Load masks saved by :func:`save_masks` as ``{layer: bool (K, *shape)}``."""
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"missing file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        packed = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise RunFormatError(f"corrupt mask file {path}: {e}") from e
    try:
        return unpack_masks(packed, meta)
    except RunFormatError as e:
        raise RunFormatError(f"{path}: {str(e).removeprefix('mask file: ')}") from None


def mask_header(path: str | Path) -> dict[str, list[int]]:
    """The validated ``shapes`` metadata of a mask file, read from its header only.

    Returns
    -------
    dict of str to list of int
        ``{layer: [K, *weight_shape]}``; every layer listed has packed data of
        the matching shape ``(K, ceil(prod(weight_shape) / 8))`` in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"missing file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            stored = {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise RunFormatError(f"corrupt mask file {path}: {e}") from e
    if "shapes" not in meta:
        raise RunFormatError(f"{path}: metadata 'shapes' is missing (not a mask file of this format)")
    shapes = schema.parse_mask_shapes(meta["shapes"], path, RunFormatError)
    for name, shape in shapes.items():
        n = int(np.prod(shape[1:], dtype=object))
        want = ("U8", [shape[0], (n + 7) // 8])
        if stored.get(name) != want:
            raise RunFormatError(
                f"{path}: metadata 'shapes' field {name}: {shape} does not fit the stored data "
                f"{stored.get(name, 'absent')}"
            )
    return shapes


def save_tensors(path: str | Path, tensors: Mapping[str, np.ndarray], **metadata: str) -> None:
    """Save numpy arrays to safetensors (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata or None
        )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file
        raise


def load_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Load a safetensors file as numpy arrays; errors become :class:`RunFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise RunFormatError(f"missing file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunFormatError(f"corrupt tensor file {path}: {e}") from e


# ----------------------------------------------------------------------------- writing a run


def _as_json(obj: Any) -> Any:
    """``obj`` as it will read back from JSON (numpy scalars become numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))


def write_manifest(run_dir: str | Path, manifest: dict) -> None:
    """Write ``manifest.json`` (adds ``schema_version``); refuses one that breaks the schema."""
    manifest = {**manifest, "schema_version": SCHEMA_VERSION}
    path = Path(run_dir) / MANIFEST
    validate_manifest(_as_json(manifest), path, require_methods=False)
    write_json(path, manifest)


def write_level(
    run_dir: str | Path,
    method: str,
    level: int,
    *,
    masks: Mapping[str, np.ndarray],
    predictions: pd.DataFrame,
    info: dict,
    weights: Mapping[str, np.ndarray] | None = None,
    weights_metadata: Mapping[str, str] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write one complete level atomically (temporary folder, then rename).

    Parameters
    ----------
    masks : mapping of str to bool ndarray, shape (K, *weight_shape)
    predictions : DataFrame, one row per evaluated sample (columns: module docstring)
    info : dict
        Must hold ``sparsity`` (fraction of prunable weights removed, 0..1).
    weights : mapping of str to ndarray, optional
        Trained weights; omitted for embedded runs that do not need them.
    arrays : mapping of str to ndarray, optional
        Further per-level arrays (e.g. reconstructed images), read back by ``Run.level_arrays``.
    """
    if "sparsity" not in info:
        raise ValueError("level info needs 'sparsity'")
    final = level_dir(run_dir, method, level)
    schema.check(_as_json({"level": level, **info}), schema.LEVEL_SCHEMA, final / LEVEL_JSON, RunFormatError)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        save_masks(tmp / MASKS, masks)
        if weights is not None:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in weights.items()},
                str(tmp / WEIGHTS),
                metadata=dict(weights_metadata) if weights_metadata else None,
            )
        if arrays is not None:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS))
        write_predictions(tmp / PREDICTIONS, predictions)
        write_json(tmp / LEVEL_JSON, {"level": level, **info})
        if final.exists():  # a complete level is never overwritten by accident
            shutil.rmtree(tmp)
            raise FileExistsError(f"level already written: {final}")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_partial_levels(run_dir: str | Path, method: str) -> None:
    """Remove temporary level folders left by a killed run."""
    d = method_dir(run_dir, method)
    if d.is_dir():
        for child in d.iterdir():
            if ".tmp-" in child.name:
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- reading a run


def validate_manifest(manifest: Any, path: str | Path = MANIFEST, *, require_methods: bool = True) -> None:
    """Check a parsed ``manifest.json`` against :data:`artifacts.schema.MANIFEST_SCHEMA`.

    Unknown fields are allowed; known ones must have their types, method names
    must be identifiers and ticket names valid labels. ``require_methods``: at
    least one method (when reading; a manifest being written may have none yet).

    Raises
    ------
    RunFormatError
        ``"<path>: field <a/b>: <reason>"``.
    """
    if not isinstance(manifest, dict):
        raise RunFormatError(f"{path} is not a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunFormatError(
            f"{Path(path).parent}: unknown schema version {version!r} (this reader knows {SCHEMA_VERSION})"
        )
    if require_methods and not manifest.get("methods"):
        raise RunFormatError(f"{path}: field methods: the manifest declares no methods")
    if isinstance(manifest.get("methods"), dict):
        for method, entry in manifest["methods"].items():
            problem = schema.identifier_problem(method)
            if problem:
                raise RunFormatError(f"{path}: field methods/{method}: method name {method!r} {problem}")
            if isinstance(entry, dict) and isinstance(entry.get("tickets"), list):
                schema.check_ticket_names(
                    entry["tickets"], RunFormatError, f"{path}: field methods/{method}/tickets"
                )
    schema.check(manifest, schema.MANIFEST_SCHEMA, path, RunFormatError)


def validate_level(run_dir: str | Path, manifest: Mapping, method: str, level: int) -> dict:
    """Check one completed level against the manifest and return its ``level.json``.

    ``level.json`` must fit :data:`artifacts.schema.LEVEL_SCHEMA`; the masks'
    ``shapes`` metadata (read from the file header only) must give one row per
    ticket of the method and, where the manifest lists ``prunable`` shapes, the
    same layers with the same shapes.
    """
    d = level_dir(run_dir, method, level)
    info = read_json(d / LEVEL_JSON)
    schema.check(info, schema.LEVEL_SCHEMA, d / LEVEL_JSON, RunFormatError)
    if "level" in info and info["level"] != level:
        raise RunFormatError(
            f"{d / LEVEL_JSON}: field level: {info['level']} but the folder is level {level}"
        )
    shapes = level_mask_shapes(run_dir, method, level)  # masks.safetensors, else compact storage
    _check_mask_shapes(shapes, manifest, method, d / MASKS)
    return info


def _check_mask_shapes(shapes: Mapping, manifest: Mapping, method: str, where: Path) -> None:
    k = len(manifest["methods"][method]["tickets"])
    prunable = schema.method_prunable(manifest, method)
    for name, shape in shapes.items():
        if shape[0] != k:
            raise RunFormatError(
                f"{where}: metadata 'shapes' field {name}: {shape[0]} ticket(s), but "
                f"manifest methods/{method}/tickets lists {k}"
            )
        if prunable is not None:
            if name not in prunable:
                raise RunFormatError(f"{where}: mask layer {name!r} is not in the manifest's prunable layers")
            if list(shape[1:]) != list(prunable[name]):
                raise RunFormatError(
                    f"{where}: metadata 'shapes' field {name}: weight shape {list(shape[1:])} does not "
                    f"match manifest prunable/{name} {list(prunable[name])}"
                )


class Run:
    """Read access to one run folder; see :func:`load_run`.

    Attributes
    ----------
    path : Path
    manifest : dict
    methods : list of str
        Methods with at least one completed level, in manifest order.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._open()
        except OSError as e:  # an unreadable folder or file: the reason, not a traceback
            raise RunFormatError(f"cannot read {e.filename or self.path}: {e.strerror or e}") from None

    def _open(self) -> None:
        if not self.path.is_dir():
            raise RunFormatError(f"no run folder at {self.path}")
        self.manifest: dict = read_json(self.path / MANIFEST)
        validate_manifest(self.manifest, self.path / MANIFEST)
        declared = self.manifest["methods"]
        self.methods: list[str] = [m for m in declared if completed_levels(self.path, m)]
        if not self.methods:
            raise RunFormatError(f"{self.path}: no completed level for any method")
        for m in self.methods:  # every level is checked once here, not deep inside a page
            for lv in completed_levels(self.path, m):
                validate_level(self.path, self.manifest, m, lv)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, methods={self.methods})"

    @property
    def name(self) -> str:
        """Run name (manifest ``name``, else the folder name)."""
        return str(self.manifest.get("name") or self.path.name)

    def _method(self, method: str) -> dict:
        if method not in self.methods:
            raise RunFormatError(f"{self.path}: no method {method!r} (has {self.methods})")
        return self.manifest["methods"][method]

    def levels(self, method: str) -> list[int]:
        """Completed levels of ``method``, ascending."""
        self._method(method)
        return completed_levels(self.path, method)

    def _level_path(self, method: str, level: int) -> Path:
        if level not in self.levels(method):
            raise RunFormatError(f"{self.path}: {method} has no completed level {level}")
        return level_dir(self.path, method, level)

    def level_info(self, method: str, level: int) -> dict:
        """Contents of ``level.json`` (validated)."""
        path = self._level_path(method, level) / LEVEL_JSON
        info = read_json(path)
        schema.check(info, schema.LEVEL_SCHEMA, path, RunFormatError)
        return info

    def sparsity(self, method: str, level: int) -> float:
        """Fraction of prunable weights removed at ``level`` (mean over tickets), 0..1."""
        return float(self.level_info(method, level)["sparsity"])

    def ticket_names(self, method: str) -> list[str]:
        """One name per ticket (``["all"]`` for a single ticket)."""
        return list(self._method(method)["tickets"])

    def masks(self, method: str, level: int) -> dict[str, np.ndarray]:
        """``{layer: bool ndarray (K, *weight_shape)}``."""
        path = self._level_path(method, level) / MASKS
        masks = read_level_masks(self.path, method, level)  # per-level file, else compact storage
        _check_mask_shapes({n: list(m.shape) for n, m in masks.items()}, self.manifest, method, path)
        return masks

    def weights(self, method: str, level: int) -> dict[str, np.ndarray]:
        """Trained weights of a level (raises if the run did not keep them)."""
        return load_tensors(self._level_path(method, level) / WEIGHTS)

    def level_arrays(self, method: str, level: int) -> dict[str, np.ndarray]:
        """Further per-level arrays (``arrays.safetensors``), empty if the level has none."""
        path = self._level_path(method, level) / ARRAYS
        return load_tensors(path) if path.is_file() else {}

    def has_weights(self, method: str, level: int) -> bool:
        """Whether the level kept its trained weights."""
        return (self._level_path(method, level) / WEIGHTS).is_file()

    def init_weights(self, method: str) -> dict[str, np.ndarray]:
        """The rewind point of ``method``: its ``init.safetensors``, else the run's theta_0."""
        self._method(method)
        path = method_dir(self.path, method) / INIT
        return load_tensors(path if path.is_file() else self.path / THETA0)

    def predictions(self, method: str, level: int) -> pd.DataFrame:
        """Per-sample evaluation records (columns: module docstring)."""
        return read_predictions(self._level_path(method, level))  # quantised scores back as float32

    def extra(self, name: str) -> dict[str, np.ndarray]:
        """Arrays stored with the run under ``extra/<name>.safetensors``."""
        schema.check_method_name(name, RunFormatError, "extra arrays")
        return load_tensors(self.path / EXTRA_DIR / f"{name}.safetensors")

    def has_extra(self, name: str) -> bool:
        """Whether ``extra/<name>.safetensors`` exists."""
        schema.check_method_name(name, RunFormatError, "extra arrays")
        return (self.path / EXTRA_DIR / f"{name}.safetensors").is_file()

    def groups(self) -> list[str]:
        """Group columns of the predictions (class, cluster, audit attributes)."""
        return list(self.manifest.get("groups", []))

    def mtime(self) -> float:
        """Latest modification time of the run (for cache keys).

        The newest of the run folder's files, its completed level folders and
        their files (``lstat``: a link is not followed), so a file rewritten in
        place, which leaves its folder's time as it was, still changes the key.
        """
        latest = _newest(self.path, (self.path / MANIFEST).stat().st_mtime)
        for m in self.methods:
            for lv in completed_levels(self.path, m):
                latest = _newest(level_dir(self.path, m, lv), latest)
        return latest


def _newest(folder: Path, latest: float) -> float:
    """The larger of ``latest`` and the modification times of ``folder`` and its entries."""
    latest = max(latest, folder.stat().st_mtime)
    with os.scandir(folder) as entries:
        for e in entries:
            latest = max(latest, e.stat(follow_symlinks=False).st_mtime)
    return latest


def load_run(path: str | Path) -> Run:
    """Open a run folder.

    Raises
    ------
    RunFormatError
        For a missing folder, a missing or corrupt manifest, an unknown schema
        version, a manifest or ``level.json`` that breaks the schema
        (:mod:`artifacts.schema`; the message names the file and the field),
        masks whose shapes do not match the manifest, or a run with no
        completed level.
    """
    return Run(path)


def find_runs(*roots: str | Path) -> list[Path]:
    """Run folders (those holding ``manifest.json``) directly under ``roots``, sorted.

    A run group (a root, or a folder directly under one) contributes its runs, in seed order.
    """
    out: list[Path] = []
    for root in roots:
        root = Path(root)
        if (root / MANIFEST).is_file():
            out.append(root)
        elif is_group(root):
            out.extend(_group_runs(root))
        elif root.is_dir():
            for p in sorted(root.iterdir()):
                if (p / MANIFEST).is_file():
                    out.append(p)
                elif is_group(p):
                    out.extend(_group_runs(p))
    return out


def _group_runs(path: Path) -> list[Path]:
    try:
        return load_group(path).run_paths()
    except RunFormatError:  # an unreadable group lists nothing rather than breaking discovery
        return []


# ----------------------------------------------------------------------------- run groups
#
# A run group is the output of a sweep: one run per seed of one run description,
# plus a small manifest::
#
#     GROUP/
#       group.json        kind "run_group", preset, overrides, seeds, methods, runs
#                         (folder names, one per seed, aligned with seeds), created,
#                         git_commit, schema_version
#       seed-0/           an ordinary run folder (load_run works on it)
#       seed-1/ ...

GROUP_MANIFEST = "group.json"
GROUP_KIND = "run_group"
_RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_group(path: str | Path) -> bool:
    """Whether ``path`` is a run group folder (it holds ``group.json``)."""
    return (Path(path) / GROUP_MANIFEST).is_file()


def _check_group_manifest(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict):
        raise RunFormatError(f"{where} is not a JSON object")
    if manifest.get("kind") != GROUP_KIND:
        raise RunFormatError(f"{where}: kind is {manifest.get('kind')!r}, expected {GROUP_KIND!r}")
    runs, seeds = manifest.get("runs"), manifest.get("seeds")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        raise RunFormatError(f"{where}: 'runs' must be a non-empty list of folder names")
    bad = [r for r in runs if not _RUN_NAME_RE.match(r)]
    if bad:  # a name such as "../x" would reach outside the group
        raise RunFormatError(f"{where}: run folder names must be plain names, got {bad}")
    if len(set(runs)) != len(runs):
        raise RunFormatError(f"{where}: run folder names repeat: {runs}")
    if (
        not isinstance(seeds, list)
        or len(seeds) != len(runs)
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise RunFormatError(f"{where}: 'seeds' must be a list of integers, one per run")


def write_group_manifest(group_dir: str | Path, manifest: dict) -> None:
    """Write ``group.json`` (adds ``kind`` and ``schema_version``; checks runs and seeds).

    Parameters
    ----------
    group_dir : str or Path
    manifest : dict
        Must hold ``runs`` (run folder names inside the group) and ``seeds``
        (one int per run); by convention also ``preset``, ``overrides``,
        ``methods``, ``description``, ``created`` and ``git_commit``.
    """
    path = Path(group_dir) / GROUP_MANIFEST
    manifest = {**manifest, "kind": GROUP_KIND, "schema_version": SCHEMA_VERSION}
    _check_group_manifest(manifest, path)
    write_json(path, manifest)


class RunGroup:
    """Read access to a run group; see :func:`load_group`.

    Attributes
    ----------
    path : Path
    manifest : dict
    seeds : list of int
        Seeds in manifest order.
    run_names : list of str
        Run folder names, aligned with ``seeds``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunFormatError(f"no run group folder at {self.path}")
        self.manifest: dict = read_json(self.path / GROUP_MANIFEST)
        _check_group_manifest(self.manifest, self.path / GROUP_MANIFEST)
        version = self.manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunFormatError(
                f"{self.path}: unknown schema version {version!r} (this reader knows {SCHEMA_VERSION})"
            )
        self.seeds: list[int] = list(self.manifest["seeds"])
        self.run_names: list[str] = list(self.manifest["runs"])

    def __repr__(self) -> str:
        return f"RunGroup({str(self.path)!r}, seeds={self.seeds})"

    @property
    def name(self) -> str:
        """Group name (manifest ``name``, else the folder name)."""
        return str(self.manifest.get("name") or self.path.name)

    def run_path(self, seed: int) -> Path:
        """Folder of the run of ``seed``."""
        if seed not in self.seeds:
            raise RunFormatError(f"{self.path}: no seed {seed} (has {self.seeds})")
        return self.path / self.run_names[self.seeds.index(seed)]

    def run_paths(self) -> list[Path]:
        """Folders of the runs that have a manifest (started runs), in manifest order."""
        return [self.path / n for n in self.run_names if (self.path / n / MANIFEST).is_file()]

    def runs(self) -> list[Run]:
        """Every run of the group, opened with :func:`load_run` (raises for a missing or unfinished one)."""
        return [load_run(self.path / n) for n in self.run_names]


def load_group(path: str | Path) -> RunGroup:
    """Open a run group folder.

    Raises
    ------
    RunFormatError
        For a missing folder, a missing or corrupt ``group.json``, an unknown
        schema version, or run names that are not plain folder names.
    """
    return RunGroup(path)


def find_groups(*roots: str | Path) -> list[Path]:
    """Run group folders among ``roots`` and directly under them, sorted (readable or not)."""
    out: list[Path] = []
    for root in roots:
        root = Path(root)
        if is_group(root):
            out.append(root)
        elif root.is_dir() and not (root / MANIFEST).is_file():
            out.extend(p for p in sorted(root.iterdir()) if is_group(p))
    return out


# ----------------------------------------------------------------------------- compact storage
#
# A sweep's masks are nested across levels, so one byte per weight and ticket, the
# level at which it left the mask, encodes every level at once::
#
#     <method>/mask_levels.safetensors   per layer: uint8 (K, *weight_shape); metadata
#                                        ``last_level``: the last level it encodes
#
# value v: the weight is in the mask of level L iff ``v > L`` (0: never in, e.g. a
# detector's other head rows; 255: still in at ``last_level``). The engine keeps it
# up to date after every level (:func:`sync_mask_levels`); ``python -m lottery embed``
# then drops the per-level ``masks.safetensors`` it reproduces, and a ticket method
# whose masks equal another's at every level (``level.json`` ``masks_from``) keeps
# none of its own (``<method>/mask_levels.json`` names the method that holds them).
# :meth:`Run.masks` reads whichever is there.
#
# Scores (``score_<k>``, ``confidence``) are stored as uint16 counts of 1e-4 (the
# 4 decimals they are rounded to anyway) with byte-stream-split encoding, named in
# the frame attrs ``lottery_quantised`` (kept in the parquet metadata); :func:`read_predictions` turns
# them back into float32. Files written before hold float32 and read unchanged.
#
# The per-sample columns that every level of every method holds identically (``sample``,
# ``label``, ``label_name``, ``subset``, group columns: a third of a level file) can be
# stored once in ``RUN/samples.parquet`` (:func:`share_sample_columns`, run by ``python -m
# lottery embed``); each level file then names them under ``lottery_shared`` with the
# original column order, and :func:`read_predictions` joins them back.

MASK_LEVELS = "mask_levels.safetensors"
MASK_LEVELS_ALIAS = "mask_levels.json"  # {"same_as": other method}: its mask_levels hold these masks
STOPPING = "stopping.json"  # <method>/stopping.json: the until-collapse outcome (lottery.protocol)
STILL_IN = 255
SCORE_STEP = 1e-4
QUANTISED_KEY = "lottery_quantised"
SHARED_KEY = "lottery_shared"  # predictions attrs: columns held once in RUN/samples.parquet
SHARED_SAMPLES = "samples.parquet"
_MAX_CODED_LEVEL = STILL_IN - 1


def _is_score(column: str) -> bool:
    return column == "confidence" or (column.startswith("score_") and column[6:].isdigit())


def write_predictions(path: str | Path, frame: pd.DataFrame) -> None:
    """Write predictions to parquet, scores as uint16 steps of 1e-4 (lossless for stored scores).

    The quantised columns are named in the frame's ``attrs`` (pandas keeps them in the
    parquet metadata) under :data:`QUANTISED_KEY`.

    Parameters
    ----------
    path : str or Path
    frame : DataFrame
        Columns as in the module docstring; ``score_<k>`` / ``confidence`` in [0, 1].
    """
    out = frame.copy()
    quantised = []
    for c in out.columns:
        if _is_score(str(c)) and pd.api.types.is_float_dtype(out[c]):
            v = out[c].to_numpy(np.float64)
            if np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all():
                out[c] = np.round(v / SCORE_STEP).astype(np.uint16)
                quantised.append(str(c))
    out.attrs = {QUANTISED_KEY: {"columns": quantised, "step": SCORE_STEP}}
    _write_parquet(path, out)


def _write_parquet(path: str | Path | io.BytesIO, out: pd.DataFrame) -> None:
    """Write a stored (already quantised) frame.

    Dictionaries for labels, byte-stream-split for quantised scores, delta encoding for
    ``sample`` (an increasing index: nearly free).
    """
    quantised = list(out.attrs.get(QUANTISED_KEY, {}).get("columns", []))
    encoding = {c: "BYTE_STREAM_SPLIT" for c in quantised if c in out}
    if "sample" in out and pd.api.types.is_integer_dtype(out["sample"]):
        encoding["sample"] = "DELTA_BINARY_PACKED"
    out.to_parquet(
        path,
        index=False,
        compression="zstd",
        use_dictionary=[str(c) for c in out.columns if c not in encoding],
        column_encoding=encoding or None,
    )


def _replace_parquet(path: Path, out: pd.DataFrame) -> None:
    """:func:`_write_parquet` into ``path`` atomically (:func:`_atomic_write_bytes`)."""
    buf = io.BytesIO()
    _write_parquet(buf, out)
    _atomic_write_bytes(path, buf.getvalue())


def read_predictions(level_path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a level's ``predictions.parquet``, quantised scores back as float32.

    Columns stored once per run (``samples.parquet``, :func:`share_sample_columns`) are
    joined back in their original places.

    Parameters
    ----------
    level_path : str or Path
        The level folder (``RUN/<method>/level_NN``).
    columns : list of str, optional
        Read only these columns.
    """
    path = Path(level_path) / PREDICTIONS
    if not path.is_file():
        raise RunFormatError(f"missing file: {path}")
    try:
        stored = pq.read_schema(path)
        shared = _shared_spec(stored, path)
        own = [c for c in columns if c in stored.names] if columns is not None and shared else columns
        frame = pd.read_parquet(path, columns=own)
    except RunFormatError:
        raise
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise RunFormatError(f"corrupt predictions file {path}: {e}") from e
    spec = frame.attrs.pop(QUANTISED_KEY, None)
    frame.attrs.pop(SHARED_KEY, None)
    if spec is not None:
        try:
            step = float(spec["step"])
            cols = [str(c) for c in spec["columns"]]
        except (ValueError, KeyError, TypeError) as e:
            raise RunFormatError(f"{path}: corrupt '{QUANTISED_KEY}' metadata") from e
        for c in cols:
            if c in frame:
                frame[c] = (frame[c].to_numpy(np.float64) * step).astype(np.float32)
    if shared:
        frame = _join_shared(frame, shared, Path(level_path).parents[1], path, columns)
    return frame


def _shared_spec(schema_: Any, path: Path) -> dict | None:
    """The ``lottery_shared`` record of a stored predictions file (None when it has none)."""
    raw = (schema_.metadata or {}).get(b"PANDAS_ATTRS")
    if raw is None:
        return None
    try:
        spec = json.loads(raw).get(SHARED_KEY)
        if spec is None:
            return None
        cols = [str(c) for c in spec["columns"]]
        order = [str(c) for c in spec["order"]]
        rows = int(spec["rows"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RunFormatError(f"{path}: corrupt '{SHARED_KEY}' metadata") from e
    if not set(cols) <= set(order) or len(set(order)) != len(order):
        raise RunFormatError(f"{path}: corrupt '{SHARED_KEY}' metadata")
    return {"columns": cols, "order": order, "rows": rows}


def _join_shared(
    frame: pd.DataFrame, shared: dict, run_dir: Path, path: Path, columns: list[str] | None
) -> pd.DataFrame:
    wanted = shared["columns"] if columns is None else [c for c in columns if c in shared["columns"]]
    if wanted and not len(frame.columns):
        frame = pd.DataFrame(index=pd.RangeIndex(shared["rows"]))
    if wanted:
        table = read_shared_samples(run_dir, wanted)
        if len(table) != shared["rows"] or (len(frame.columns) and len(frame) != shared["rows"]):
            raise RunFormatError(
                f"{path}: {shared['rows']} rows recorded, {len(frame)} stored and "
                f"{len(table)} in {run_dir / SHARED_SAMPLES}"
            )
        frame = frame.reset_index(drop=True)
        if frame.columns.is_unique:  # one frame built in its final order (not a column at a time)
            arrays = {c: frame[c].array for c in frame.columns}
            arrays.update({c: table[c].array for c in wanted})  # keeps the stored dtypes
            order = shared["order"] if columns is None else [c for c in columns if c in arrays]
            joined = pd.DataFrame({c: arrays[c] for c in order if c in arrays}, index=frame.index)
            return joined.__finalize__(frame)  # attrs and flags, as the selection below keeps them
        for c in wanted:
            frame[c] = table[c].array  # keeps the stored dtype (no round trip through objects)
    order = shared["order"] if columns is None else [c for c in columns if c in frame]
    return frame[[c for c in order if c in frame]]


def read_shared_samples(run_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The run's ``samples.parquet``: per-sample columns stored once for every level.

    Raises
    ------
    RunFormatError
        When the file is missing, corrupt or lacks a requested column.
    """
    path = Path(run_dir) / SHARED_SAMPLES
    if not path.is_file():
        raise RunFormatError(f"missing file: {path} (predictions refer to columns stored there)")
    try:
        st = path.stat()
    except OSError as e:
        raise RunFormatError(f"corrupt shared samples file {path}: {e}") from e
    # Every level of a run joins the same file: read once per version of it (a rewrite
    # changes the key), and hand out a copy so no caller can alter the stored frame.
    key = file_version(path.resolve(), st)
    return _shared_samples(key, None if columns is None else tuple(columns)).copy(deep=True)


@functools.lru_cache(maxsize=16)
def _shared_samples(key: tuple, columns: tuple[str, ...] | None) -> pd.DataFrame:
    """:func:`read_shared_samples` of one version of the file.

    ``key`` is :func:`file_version` of the file; an error is raised on every call (not kept).
    """
    path = Path(key[0])
    try:
        names = pq.read_schema(path).names
        missing = [c for c in columns or () if c not in names]
        if missing:
            raise RunFormatError(f"{path}: lacks column(s) {missing}")
        return pd.read_parquet(path, columns=None if columns is None else list(columns))
    except RunFormatError:
        raise
    except Exception as e:
        raise RunFormatError(f"corrupt shared samples file {path}: {e}") from e


def _level_prediction_files(run_dir: Path) -> list[Path]:
    files = []
    for method_path in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for level_path in sorted(method_path.iterdir()):
            if _LEVEL_RE.match(level_path.name) and (level_path / PREDICTIONS).is_file():
                files.append(level_path / PREDICTIONS)
    return files


def share_sample_columns(run_dir: str | Path) -> dict[str, int]:
    """Store the per-sample columns that every level of every method holds identically once.

    Candidates are the non-score columns present in every level's predictions
    (``sample``, ``label``, ``label_name``, ``subset``, group columns); those with the
    same values and dtype in every file move to ``RUN/samples.parquet`` and each level
    file records them (``attrs`` key :data:`SHARED_KEY`) so that :func:`read_predictions`
    returns the same frame as before. Files are rewritten atomically; running it again
    after more levels were written moves their columns too (when they match).

    Returns
    -------
    dict
        ``files``: level files rewritten; ``columns``: columns in the shared table.
    """
    run_dir = Path(run_dir)
    files = _level_prediction_files(run_dir)
    pending = [f for f in files if _shared_spec(pq.read_schema(f), f) is None]
    target = run_dir / SHARED_SAMPLES
    if target.is_file():
        table = read_shared_samples(run_dir)
    else:
        if not pending:
            return {"files": 0, "columns": 0}
        common = None
        for f in pending:
            names = [c for c in pq.read_schema(f).names if not _is_score(c) and c != "__index_level_0__"]
            common = names if common is None else [c for c in common if c in names]
        table = pd.read_parquet(pending[0], columns=common)
        table.attrs = {}
        for f in pending[1:]:
            other = pd.read_parquet(f, columns=list(table.columns))
            table = table[[c for c in table.columns if _same_column(table[c], other[c])]]
        if table.shape[1] == 0:
            return {"files": 0, "columns": 0}
        _replace_parquet(target, table)
    rewritten = 0
    for f in pending:
        frame = pd.read_parquet(f)  # stored form: scores stay quantised
        cols = [c for c in table.columns if c in frame and _same_column(table[c], frame[c])]
        if not cols:
            continue
        out = frame.drop(columns=cols)
        out.attrs = {
            **frame.attrs,
            SHARED_KEY: {"columns": cols, "order": [str(c) for c in frame.columns], "rows": len(frame)},
        }
        _replace_parquet(f, out)
        rewritten += 1
    return {"files": rewritten, "columns": table.shape[1]}


def drop_scores(run_dir: str | Path) -> int:
    """Delete the ticket scores (``score_<k>``, ``confidence``) from every level's predictions.

    For runs whose views need the class records only (a random-partition control: its
    masks and labelled collapse); readers then see no score columns, as in a run that
    never stored them. Files are rewritten atomically.

    Returns
    -------
    int
        Level files rewritten.
    """
    rewritten = 0
    for f in _level_prediction_files(Path(run_dir)):
        scores = [c for c in pq.read_schema(f).names if _is_score(c)]
        if not scores:
            continue
        frame = pd.read_parquet(f)
        out = frame.drop(columns=scores)
        out.attrs = frame.attrs
        _replace_parquet(f, out)
        rewritten += 1
    return rewritten


def _same_column(a: pd.Series, b: pd.Series) -> bool:
    return len(a) == len(b) and a.dtype == b.dtype and bool((a.to_numpy() == b.to_numpy()).all())


def _read_mask_levels(run_dir: str | Path, method: str) -> tuple[dict[str, np.ndarray], int] | None:
    path = method_dir(run_dir, method) / MASK_LEVELS
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        codes = load_file(str(path))
        last = int(meta["last_level"])
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as e:
        raise RunFormatError(f"corrupt mask-levels file {path}: {e}") from e
    if any(c.dtype != np.uint8 or c.ndim < 2 for c in codes.values()) or not codes:
        raise RunFormatError(f"{path}: expected uint8 arrays of shape (K, *weight_shape)")
    return codes, last


def sync_mask_levels(run_dir: str | Path, method: str) -> int | None:
    """Bring ``<method>/mask_levels.safetensors`` up to the method's last completed level.

    Reads the per-level masks of the levels it does not encode yet (in order, from
    level 0; it stops at a gap or a level without a mask file) and rewrites the file
    atomically.

    Returns
    -------
    int or None
        The last level it encodes (None when the method has no level 0 masks).

    Raises
    ------
    RunFormatError
        Masks that are not nested across levels, or more than 254 levels.
    """
    found = _read_mask_levels(run_dir, method)
    codes, last = found if found is not None else (None, -1)
    changed = False
    done = set(completed_levels(run_dir, method))
    level = last + 1
    while level in done:
        path = level_dir(run_dir, method, level) / MASKS
        if not path.is_file():
            break
        if level > _MAX_CODED_LEVEL:
            raise RunFormatError(f"{method}: more than {_MAX_CODED_LEVEL} levels do not fit one byte")
        masks = load_masks(path)
        if codes is None:
            codes = {n: np.where(m, STILL_IN, 0).astype(np.uint8) for n, m in masks.items()}
        else:
            if masks.keys() != codes.keys():
                raise RunFormatError(f"{path}: layers differ from the earlier levels")
            for n, m in masks.items():
                alive = codes[n] == STILL_IN
                if m.shape != alive.shape or (m & ~alive).any():
                    raise RunFormatError(f"{path}: mask {n!r} is not nested in level {level - 1}'s")
                codes[n][alive & ~m] = level
        last, changed = level, True
        level += 1
    if codes is None:
        return None
    if changed:
        save_tensors(method_dir(run_dir, method) / MASK_LEVELS, codes, last_level=str(last))
    return last


def masks_from_levels(run_dir: str | Path, method: str, level: int) -> dict[str, np.ndarray] | None:
    """The masks of ``level`` decoded from ``<method>/mask_levels.safetensors`` (None if not there)."""
    found = _read_mask_levels(run_dir, method)
    if found is None or not 0 <= level <= found[1]:
        return None
    return {n: c > level for n, c in found[0].items()}


def _masks_from(run_dir: str | Path, method: str, level: int) -> str | None:
    info = read_json(level_dir(run_dir, method, level) / LEVEL_JSON)
    source = info.get("masks_from") if isinstance(info, dict) else None
    if isinstance(source, str) and source != method and schema.identifier_problem(source) is None:
        if level in completed_levels(run_dir, source):
            return source
    return None


def _mask_levels_header(run_dir: str | Path, method: str) -> tuple[dict[str, list[int]], int] | None:
    """``({layer: [K, *shape]}, last_level)`` of a method's mask_levels, from the header only."""
    path = method_dir(run_dir, method) / MASK_LEVELS
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    # Every level of a method asks (where its masks are, their shapes): the header is parsed
    # once per version of the file (a rewrite changes the key); each caller gets its own dict.
    shapes, last = _parsed_mask_levels_header(file_version(path, st))
    return {k: list(v) for k, v in shapes.items()}, last


@functools.lru_cache(maxsize=256)
def _parsed_mask_levels_header(key: tuple) -> tuple[dict[str, list[int]], int]:
    """:func:`_mask_levels_header` of one version of the file; ``key`` is its :func:`file_version`.

    An error is raised on every call (not kept).
    """
    path = Path(key[0])
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            last = int((f.metadata() or {})["last_level"])
            shapes = {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as e:
        raise RunFormatError(f"corrupt mask-levels file {path}: {e}") from e
    if not shapes or any(d != "U8" or len(sh) < 2 for d, sh in shapes.values()):
        raise RunFormatError(f"{path}: expected uint8 arrays of shape (K, *weight_shape)")
    return {k: sh for k, (_, sh) in shapes.items()}, last


def _mask_source(run_dir: str | Path, method: str, level: int, seen: tuple = ()) -> tuple[str, str]:
    """Where a level's masks are: ``("file", method)`` or ``("levels", the method with mask_levels)``."""
    if (level_dir(run_dir, method, level) / MASKS).is_file():
        return "file", method
    header = _mask_levels_header(run_dir, method)
    if header is not None and 0 <= level <= header[1]:
        return "levels", method
    candidates = []
    alias = method_dir(run_dir, method) / MASK_LEVELS_ALIAS
    if alias.is_file():
        pointer = read_json(alias)
        candidates.append(pointer.get("same_as") if isinstance(pointer, dict) else None)
    candidates.append(_masks_from(run_dir, method, level))
    for other in candidates:
        usable = isinstance(other, str) and schema.identifier_problem(other) is None
        if usable and other not in (*seen, method):
            try:
                return _mask_source(run_dir, other, level, (*seen, method))
            except RunFormatError:
                continue
    path = level_dir(run_dir, method, level) / MASKS
    raise RunFormatError(f"missing file: {path} (no mask_levels or masks_from holds {method} level {level})")


def read_level_masks(run_dir: str | Path, method: str, level: int) -> dict[str, np.ndarray]:
    """A level's masks ``{layer: bool (K, *shape)}`` wherever they are stored.

    In order: the level's ``masks.safetensors``; the method's ``mask_levels``; those
    of the method its ``mask_levels.json`` names; the masks of the method named by
    ``level.json`` ``masks_from`` (identical masks stored once).

    Raises
    ------
    RunFormatError
        None of them holds the level.
    """
    kind, holder = _mask_source(run_dir, method, level)
    if kind == "file":
        return load_masks(level_dir(run_dir, holder, level) / MASKS)
    decoded = masks_from_levels(run_dir, holder, level)
    assert decoded is not None
    # safetensors lists tensors alphabetically: give them back in the model's layer order
    manifest = Path(run_dir) / MANIFEST
    order = read_json(manifest).get("layers") if manifest.is_file() else None
    if isinstance(order, list) and sorted(order) == sorted(decoded):
        decoded = {n: decoded[n] for n in order}
    return decoded


def level_mask_shapes(run_dir: str | Path, method: str, level: int) -> dict[str, list[int]]:
    """``{layer: [K, *weight_shape]}`` of a level's masks, from file headers only (either storage)."""
    kind, holder = _mask_source(run_dir, method, level)
    if kind == "file":
        return mask_header(level_dir(run_dir, holder, level) / MASKS)
    header = _mask_levels_header(run_dir, holder)
    assert header is not None
    return header[0]


def compact_masks(run_dir: str | Path) -> dict[str, int]:
    """Drop per-level mask files that compact storage reproduces exactly (for embedding).

    For every method: bring ``mask_levels`` up to date, then delete each level's
    ``masks.safetensors`` that it decodes bit for bit. A method whose masks equal an
    earlier method's at every level keeps no ``mask_levels`` of its own: a small
    ``mask_levels.json`` names the method that holds them.

    Returns
    -------
    dict
        ``removed`` per-level mask files, ``bytes_before`` and ``bytes_after`` of all mask storage.
    """
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / MANIFEST)
    methods = [m for m in manifest.get("methods", {}) if completed_levels(run_dir, m)]

    def size() -> int:
        files = [method_dir(run_dir, m) / MASK_LEVELS for m in methods]
        files += [level_dir(run_dir, m, lv) / MASKS for m in methods for lv in completed_levels(run_dir, m)]
        return sum(f.stat().st_size for f in files if f.is_file())

    before, removed = size(), 0
    for m in methods:
        sync_mask_levels(run_dir, m)
    for m in methods:
        for lv in completed_levels(run_dir, m):
            path = level_dir(run_dir, m, lv) / MASKS
            decoded = masks_from_levels(run_dir, m, lv)
            if path.is_file() and decoded is not None:
                stored = load_masks(path)
                if _same_masks(decoded, stored):
                    path.unlink()
                    removed += 1
    kept: list[str] = []  # methods that keep their own mask_levels
    for m in methods:
        levels = completed_levels(run_dir, m)
        own = method_dir(run_dir, m) / MASK_LEVELS
        if not own.is_file():
            continue
        for src in kept:
            if all(
                _same_masks(masks_from_levels(run_dir, m, lv), masks_from_levels(run_dir, src, lv))
                for lv in levels
            ):
                write_json(method_dir(run_dir, m) / MASK_LEVELS_ALIAS, {"same_as": src, "levels": levels})
                own.unlink()
                break
        else:
            kept.append(m)
    return {"removed": removed, "bytes_before": before, "bytes_after": size()}


def _same_masks(a: Mapping[str, np.ndarray] | None, b: Mapping[str, np.ndarray] | None) -> bool:
    if a is None or b is None or a.keys() != b.keys():
        return False
    return all(np.array_equal(a[n], b[n]) for n in a)
