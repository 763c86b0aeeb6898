"""Read checkpoint files without ever executing code from them.

PyTorch files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) are read only with
``torch.load(path, map_location="cpu", weights_only=True)``: its restricted
unpickler accepts tensors, dicts, lists, tuples, strings and numbers (plus
``collections.defaultdict`` of ``dict`` or ``list``, read as a plain dict) and
refuses any other global, so a pickle whose ``__reduce__`` would run a command is
rejected before anything runs. Safetensors files hold no code at all. Plain
``pickle`` and ``weights_only=False`` are never used.

Everything comes back as a tree of dicts and lists with numpy arrays at the
leaves, so the format parsers never see torch.

The format is told from the content (magic bytes), never from the suffix: a
``torch.save`` zip named ``.safetensors`` loads as the PyTorch file it is.

What a file declares is bounded by what it holds: a stride-0 ``expand`` view or
a sparse tensor can declare billions of elements in a few KB. Before any tensor
is made dense, the declared dense sizes of all tensors of a file are summed and
refused past ``max(64 MB, 64 x the file size)`` (an honest checkpoint declares
about its own size; sparse masks at 1 % density about 20 times it) or past
``RTL_MAX_TENSOR_MB`` (default 4096 MB) in total. Sparse tensors are loaded with
PyTorch's invariant checks on, so out-of-range indices are refused, not written
to memory.
"""

from __future__ import annotations

import os
import pickle
import threading
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import CheckpointError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pth.tar")
SAFETENSORS_SUFFIXES = (".safetensors",)
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES
_MAX_DEPTH = 32  # a weights-only pickle can still hold self-referencing lists
_SAFETENSORS_MAX_HEADER = 100 * 2**20  # the safetensors library's own limit
DEFAULT_MAX_TENSOR_BYTES = 4096 * 2**20
TENSOR_ENV = "RTL_MAX_TENSOR_MB"
EXPANSION_RATIO = 64  # declared dense bytes allowed per byte of file ...
EXPANSION_FLOOR = 64 * 2**20  # ... but small files may always declare this much


def max_tensor_bytes() -> int:
    """Most dense bytes one checkpoint file may declare: ``$RTL_MAX_TENSOR_MB``, else 4096 MB."""
    raw = os.environ.get(TENSOR_ENV, "").strip()
    try:
        mb = float(raw) if raw else None
    except ValueError:
        mb = None
    if mb is None or not mb > 0:
        return DEFAULT_MAX_TENSOR_BYTES
    return int(mb * 2**20)


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def checkpoint_suffix(path: Path) -> str | None:
    """The checkpoint suffix ``path`` ends with (``.pth.tar`` counts as one), or None."""
    name = path.name.lower()
    return next((s for s in sorted(CHECKPOINT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def ticket_stem(path: Path) -> str:
    """File name without its checkpoint suffix: ``best.pth.tar`` -> ``best``."""
    suffix = checkpoint_suffix(path)
    return path.name[: -len(suffix)] if suffix and len(path.name) > len(suffix) else path.stem


def sniff(path: Path) -> str:
    """Tell a checkpoint's kind from its first bytes.

    Parameters
    ----------
    path : Path
        A file.

    Returns
    -------
    str
        ``"torch_zip"`` (``torch.save`` since PyTorch 1.6), ``"torch_legacy"``
        (an older ``torch.save`` pickle) or ``"safetensors"``.

    Raises
    ------
    CheckpointError
        For an empty file, a zip archive that is not a PyTorch checkpoint, a
        safetensors file cut short inside its header, or unrecognised bytes.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if head.startswith(b"PK\x03\x04"):
        if _is_torch_zip(path):
            return "torch_zip"
        raise CheckpointError(
            f"{path}: is a zip archive, not a PyTorch checkpoint; unzip it and import the folder"
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch_legacy"  # a pickle stream (protocol 2+): torch.load's legacy format
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if header_len > size - 8 and header_len <= _SAFETENSORS_MAX_HEADER:
            raise CheckpointError(
                f"{path}: truncated safetensors file (its header announces {header_len} bytes "
                f"but the file has only {size - 8} after the length field)"
            )
        if 2 <= header_len <= size - 8:
            return "safetensors"
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt header)")
    raise CheckpointError(
        f"{path}: unrecognised file content (not a PyTorch checkpoint or a safetensors file; "
        f"first bytes {head[:8].hex(' ')})"
    )


def _is_torch_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        # A cut-off torch archive loses its central directory; say so plainly.
        raise CheckpointError(
            f"{path}: truncated or corrupt PyTorch checkpoint (the zip archive is incomplete)"
        ) from None


def load_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint file safely as a tree of dicts/lists with numpy leaves.

    Parameters
    ----------
    path : str or Path
        A PyTorch file (any ``torch.save`` output of tensors and containers) or
        a ``.safetensors`` file.

    Returns
    -------
    object
        The file's content with every tensor converted to a numpy array
        (bfloat16 and float8 widened to float32, sparse tensors made dense).

    Raises
    ------
    CheckpointError
        For unsafe pickles (never executed), empty, truncated, corrupt or
        unrecognised files.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "safetensors":
        return _load_safetensors(path)
    tree = _torch_load(path)
    check_declared_sizes(tree, path, path.stat().st_size)
    return _to_numpy_tree(tree, str(path), 0)


def _plain_dict(default_factory: Any = None, *args: Any) -> dict:
    """Stands in for ``collections.defaultdict`` while unpickling: an ordinary dict.

    NNI 3.0's ``pruner.compress()`` and ``torch.ao.pruning``'s
    ``sparsifier.state_dict()`` return ``defaultdict(dict)``. The weights-only
    unpickler refuses that global, and cannot fill a defaultdict anyway; the
    factory only matters for missing keys, so a plain dict holds the same data.
    """
    return {}


# Allow-listed for the weights-only unpickler: (object it receives, global the pickle names).
# ``dict`` and ``list`` are the factories those tools use; any other factory stays refused.
_SAFE_GLOBALS = [(_plain_dict, "collections.defaultdict"), (dict, "builtins.dict"), (list, "builtins.list")]
# torch.serialization.safe_globals edits a process-wide list on entry and exit: one load at a
# time, so that two dashboard sessions cannot take the allow-list away from each other mid-load.
_LOAD_LOCK = threading.Lock()


def _torch_load(path: Path) -> Any:
    import torch  # heavy; only when a PyTorch file is actually read

    try:
        with (
            _LOAD_LOCK,
            warnings.catch_warnings(),
            torch.serialization.safe_globals(_SAFE_GLOBALS),
            torch.sparse.check_sparse_tensor_invariants(enable=True),  # bad indices: refused, not written
            path.open("rb") as f,  # a file object: torch must not pick a format by the suffix
        ):
            warnings.simplefilter("ignore")  # protocol-version chatter from the weights-only unpickler
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler names the global/opcode it blocked; anything else is damage.
        if any(w in str(e).lower() for w in ("unsupported", "not an allowed global", "blocked")):
            raise CheckpointError(
                f"{path}: refused: the file contains arbitrary Python objects (a pickle that could "
                "run code), so it was not loaded. Only tensors, dicts, lists, strings and numbers "
                "are accepted. If you trust the file, load it yourself and save just the tensors "
                "(torch.save(model.state_dict(), ...) or safetensors)."
            ) from None
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, ... on broken files
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({_first_line(e)})") from None


def _tensors(obj: Any, where: str, depth: int):
    """Yield ``(where, tensor)`` for every torch tensor in a loaded tree."""
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if _is_torch_tensor(obj):
        yield where, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}[{k!r}]", depth + 1)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}[{i}]", depth + 1)


def _dense_itemsize(t: Any) -> int:
    """Bytes per element once converted to numpy (bfloat16 and float8 widen to float32)."""
    import torch

    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        return 4
    return t.element_size()


def _stored_parts(t: Any) -> list[Any]:
    """The strided tensors that really hold a tensor's data (itself, or a sparse tensor's parts)."""
    import torch

    if t.layout == torch.strided:
        return [t]
    if t.layout == torch.sparse_coo:
        return [t._indices(), t._values()]
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return [t.crow_indices(), t.col_indices(), t.values()]
    if t.layout in (torch.sparse_csc, torch.sparse_bsc):
        return [t.ccol_indices(), t.row_indices(), t.values()]
    raise CheckpointError(f"tensor layout {t.layout} is not supported")


def check_declared_sizes(tree: Any, path: Path, file_size: int) -> None:
    """Refuse a loaded file whose tensors declare far more dense data than the file holds.

    Nothing is materialised: sizes come from shapes, dtypes and storages.

    Parameters
    ----------
    tree : object
        What ``torch.load`` returned (tensors not yet converted).
    path : Path
        The file, for messages.
    file_size : int
        Its size in bytes.

    Raises
    ------
    CheckpointError
        When the dense bytes declared exceed ``max(EXPANSION_FLOOR, EXPANSION_RATIO *
        file_size)`` or :func:`max_tensor_bytes`; the message names the largest tensor.
    """
    declared = 0
    largest = ("", 0, 0)  # where, elements, dense bytes
    storages: dict[int, int] = {}
    for where, t in _tensors(tree, str(path), 0):
        try:
            parts = _stored_parts(t)
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
        numel = t.numel()
        dense = numel * _dense_itemsize(t)
        declared += dense
        if dense > largest[2]:
            largest = (where, numel, dense)
        for part in parts:
            storage = part.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
    by_size = max(EXPANSION_FLOOR, EXPANSION_RATIO * file_size)
    where, numel, dense = largest
    if declared > by_size:
        stored = sum(storages.values())
        raise CheckpointError(
            f"{where}: refused: the file's tensors declare {_human(declared)} of dense data "
            f"(this one {numel:,} elements, {_human(dense)}) but the file holds {_human(file_size)} "
            f"({_human(stored)} of tensor storage): a stride-0 (expanded) or sparse tensor would be "
            f"materialised past the {_human(by_size)} allowed for a file of this size"
        )
    if declared > max_tensor_bytes():
        raise CheckpointError(
            f"{where}: refused: the file's tensors declare {_human(declared)} of dense data, more than "
            f"the {_human(max_tensor_bytes())} allowed (set {TENSOR_ENV} to raise the limit)"
        )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else type(e).__name__) or type(e).__name__


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({_first_line(e)})") from None
    except TypeError:
        pass  # numpy lacks bfloat16/float8: read through torch, which widens them below
    from safetensors.torch import load_file as load_torch

    try:
        tensors = load_torch(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({_first_line(e)})") from None
    return _to_numpy_tree(tensors, str(path), 0)


def _to_numpy_tree(obj: Any, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if _is_torch_tensor(obj):
        return _tensor_to_numpy(obj, where)
    if isinstance(obj, Mapping):
        return {k: _to_numpy_tree(v, f"{where}[{k!r}]", depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_numpy_tree(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
    return obj


def _is_torch_tensor(obj: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _tensor_to_numpy(t: Any, where: str) -> np.ndarray:
    import torch

    t = t.detach()
    if t.is_quantized:
        raise CheckpointError(f"{where}: quantized tensors ({t.dtype}) are not supported")
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()  # bfloat16 / float8 have no numpy dtype
    try:
        return t.cpu().numpy()
    except (TypeError, RuntimeError) as e:
        raise CheckpointError(f"{where}: tensor of unsupported dtype {t.dtype} ({_first_line(e)})") from None
