"""Hugging Face model folders as tickets, streamed one tensor at a time.

A Hugging Face model folder (``save_pretrained`` output) is one ticket:

- ``model.safetensors.index.json`` (``{"weight_map": {tensor: shard}}``) and
  its shards, or a single ``model.safetensors``;
- ``config.json``, kept in the run manifest (``source.configs``).

Masks are read from explicit mask tensors when the folder has them
(``<param>_mask``, as ``torch.nn.utils.prune`` or ShrinkBench name them), and
are otherwise inferred as ``weight != 0``: Wanda and SparseGPT save pruned
weights as exact zeros. Prunable layers are the floating ``*weight`` tensors
with two or more dimensions, except embeddings and the output head
(``embed_tokens``, ``lm_head``, ``wte``, ...), which these methods leave dense.

N:M structure (e.g. 2:4 for sparse tensor cores) is detected per ticket and
layer: groups of M consecutive weights along the input (last) axis, M in
(4, 8), each keep at most N and nearly all exactly N. It is stored in the manifest
(``source.nm_structure``) and in ``level.json``.

Memory: tensors are read one at a time from memory-mapped safetensors
(``safe_open``, opened per tensor so the mapping is released at once) and
packed straight to bits; the run's ``masks.safetensors`` is written layer by
layer in the format of :mod:`artifacts.run_format`. Peak memory is a few times
the largest layer, never the model. Weights are not stored (masks only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifacts import schema
from artifacts.run_format import (
    LEVEL_JSON,
    MASKS,
    PREDICTIONS,
    RunFormatError,
    level_dir,
    load_run,
    write_json,
    write_manifest,
)
from ingest.errors import CheckpointError
from ingest.run_writer import (
    _STAGING,
    DEFAULT_METHOD,
    _move_into_place,
    check_destination,
    empty_predictions,
    sweep_stale,
)
from ingest.tickets import SourceTicket, TicketLevel

HF_FORMAT = "huggingface"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CONFIG = "config.json"
NM_GROUPS = (4, 8)
NM_FULL_GROUPS = 0.9  # fraction of groups that must keep exactly N
# Tensors Wanda and SparseGPT leave dense: embeddings and the output head.
DENSE_LAYERS = re.compile(
    r"(^|\.)(embed_tokens|embed_positions|embed_in|embed_out|wte|wpe|word_embeddings|"
    r"position_embeddings|token_type_embeddings|lm_head|shared)(\.|$)"
)
_MASK_SUFFIX = "_mask"
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")
_MAX_INDEX_BYTES = 64 * 2**20
_WIDTH = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# Floating formats read as raw bits: (unsigned view, all bits but the sign, exponent all ones).
_BITS = {
    "F16": (np.uint16, 0x7FFF, 0x7C00),
    "BF16": (np.uint16, 0x7FFF, 0x7F80),
    "F32": (np.uint32, 0x7FFF_FFFF, 0x7F80_0000),
    "F64": (np.uint64, 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000),
}
# Kept weights per 4-bit group (nibble) of a packed byte, high nibble first.
_NIBBLE_HI = np.array([(b >> 4).bit_count() for b in range(256)], dtype=np.uint8)
_NIBBLE_LO = np.array([(b & 15).bit_count() for b in range(256)], dtype=np.uint8)

Progress = Callable[[float, str], None]


# ----------------------------------------------------------------------------- reading one folder


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``model.safetensors.index.json`` or ``model.safetensors``."""
    path = Path(path)
    return path.is_dir() and ((path / INDEX).is_file() or (path / SINGLE).is_file())


def hf_folders(path: str | Path) -> list[Path]:
    """The model folders a path stands for: itself, or its model subfolders (sorted).

    Returns an empty list when ``path`` is neither.
    """
    path = Path(path)
    if is_hf_folder(path):
        return [path]
    if path.is_dir():
        subs = [p for p in path.iterdir() if not p.name.startswith(".") and is_hf_folder(p)]
        return sorted(subs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    return []


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is: shard file, dtype (safetensors code), shape, byte offset."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int = -1  # absolute offset of the tensor's bytes in ``file``


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (no tensor data read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > min(100 * 2**20, size - 8):
                raise CheckpointError(f"{path}: not a valid safetensors file (header length {n})")
            header = json.loads(f.read(n))
            header["__data_start__"] = 8 + n
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a valid safetensors file (header is not an object)")
    for name, info in header.items():
        if name in ("__metadata__", "__data_start__"):
            continue
        try:
            start, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid header entry") from None
        if not 0 <= start <= end <= size - 8 - n or any(d < 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
    return header


def folder_tensors(folder: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of a model folder, in index (or file) order, from the headers only.

    Raises
    ------
    CheckpointError
        A corrupt index, a shard outside the folder or missing, a tensor the
        index lists but its shard lacks.
    """
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        if index.stat().st_size > _MAX_INDEX_BYTES:
            raise CheckpointError(f"{index}: index file larger than {_MAX_INDEX_BYTES} bytes")
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise CheckpointError(f"{index}: not a valid index (no 'weight_map' object)") from None
        shards: dict[str, dict] = {}
        out: dict[str, TensorInfo] = {}
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
                raise CheckpointError(
                    f"{index}: shard {shard!r} of {name!r} is not a file name in the folder"
                )
            if shard not in shards:
                if not (folder / shard).is_file():
                    raise CheckpointError(f"{index}: shard {shard} of {name!r} is missing")
                shards[shard] = _safetensors_header(folder / shard)
            info = shards[shard].get(name)
            if info is None:
                raise CheckpointError(f"{folder / shard}: has no tensor {name!r} (listed in {INDEX})")
            out[name] = _tensor_info(folder / shard, shards[shard], name)
        return out
    path = folder / SINGLE
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {INDEX} and no {SINGLE}: not a Hugging Face model folder")
    header = _safetensors_header(path)
    return {name: _tensor_info(path, header, name) for name in header if not name.startswith("__")}


def _tensor_info(path: Path, header: dict, name: str) -> TensorInfo:
    info = header[name]
    shape = tuple(int(d) for d in info["shape"])
    offset = header["__data_start__"] + int(info["data_offsets"][0])
    size = int(info["data_offsets"][1]) - int(info["data_offsets"][0])
    width = _WIDTH.get(str(info["dtype"]))
    if width is not None and size != width * int(np.prod(shape)):
        raise CheckpointError(f"{path}: tensor {name!r} holds {size} bytes, not {shape} of {info['dtype']}")
    return TensorInfo(path, str(info["dtype"]), shape, offset)


def read_config(folder: str | Path) -> dict | None:
    """``config.json`` of a model folder, or None if absent (refused if not a JSON object)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not valid JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return config


@dataclass(frozen=True)
class LayerPlan:
    """How to read one prunable layer of one ticket.

    Attributes
    ----------
    name : str
        Layer name (the weight's name).
    shape : tuple of int
    source : str
        Tensor holding the mask (``<name>_mask``) or the weight (zeros = pruned).
    explicit : bool
        True when ``source`` is a mask tensor.
    """

    name: str
    shape: tuple[int, ...]
    source: str
    explicit: bool


def plan_layers(tensors: dict[str, TensorInfo], where: str) -> list[LayerPlan]:
    """Prunable layers of one folder and where each mask comes from.

    With any ``*_mask`` tensor the masks are explicit (those layers only);
    otherwise every floating ``*weight`` tensor of ndim >= 2 outside
    :data:`DENSE_LAYERS` is a layer with its mask inferred from zeros.
    """
    masks = [n for n in tensors if n.endswith(_MASK_SUFFIX) and n[: -len(_MASK_SUFFIX)].endswith("weight")]
    plans = []
    if masks:
        for m in masks:
            name = m[: -len(_MASK_SUFFIX)]
            plans.append(LayerPlan(name, tensors[m].shape, m, True))
    else:
        for name, info in tensors.items():
            if (
                name.endswith("weight")
                and len(info.shape) >= 2
                and info.dtype in _FLOAT_DTYPES
                and not DENSE_LAYERS.search(name)
            ):
                plans.append(LayerPlan(name, info.shape, name, False))
    if not plans:
        raise CheckpointError(
            f"{where}: no prunable weights (no *weight tensors of 2+ dimensions, no *_mask)"
        )
    return plans


def read_mask(info: TensorInfo, tensor: str, explicit: bool, what: str) -> np.ndarray:
    """One layer's mask from its memory-mapped shard: bool ndarray of the tensor's shape.

    The shard is opened for this tensor only (``safe_open``, framework "pt" so
    that bfloat16 reads too), so its mapping is released when this returns.

    Raises
    ------
    CheckpointError
        NaN/inf in a weight, or a mask holding values other than 0 and 1.
    """
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(info.file), framework="pt") as f:
            t = f.get_tensor(tensor)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{info.file}: cannot read tensor {tensor!r} ({e})") from None
    if explicit:
        bad = (t != 0) & (t != 1)
        if bool(bad.any()):
            raise CheckpointError(
                f"{what}: mask {tensor!r} is not binary ({int(bad.sum())} entries not 0 or 1)"
            )
    elif t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{what}: weight {tensor!r} contains NaN or inf values")
    return (t != 0).numpy()


def nm_pattern(mask: np.ndarray) -> str | None:
    """The tightest N:M pattern a mask obeys along its last axis, or None.

    Parameters
    ----------
    mask : ndarray of bool, shape (..., in_features)

    Returns
    -------
    str or None
        ``"N:M"`` for the smallest ratio N/M < 1 over M in (4, 8) such that
        every group of M consecutive weights along the last axis keeps at most
        N, and at least 90 % of the groups keep exactly N (so that a random
        mask that happens to leave no group full is not called 7:8); M = 4 is
        preferred on ties (2:4 rather than 4:8). None when no M divides the
        last axis, no group size is binding, or nothing is kept.
    """
    if mask.ndim < 2:
        return None
    return nm_pattern_packed(np.packbits(mask.reshape(-1)), mask.shape)


def nm_pattern_packed(packed: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """:func:`nm_pattern` of a mask given bit-packed (``np.packbits`` of the flat mask).

    Groups of 4 along the last axis are the nibbles of the packed bytes and
    groups of 8 the bytes (when the last axis is a multiple of 4 or 8), so the
    counts come from lookup tables and popcounts on N / 8 bytes.

    Parameters
    ----------
    packed : ndarray of uint8, shape (ceil(N / 8),)
    shape : tuple of int
        The mask's shape, ``prod(shape) = N``.
    """
    n_total = int(np.prod(shape))
    if len(shape) < 2 or n_total == 0:
        return None
    best: tuple[float, int, int] | None = None
    for m in NM_GROUPS:
        if shape[-1] % m:
            continue
        full = packed[: n_total // 8]  # whole bytes; a trailing half byte is one more group of 4
        if m == 4:
            counts = np.stack([_NIBBLE_HI[full], _NIBBLE_LO[full]], axis=1).reshape(-1)
            if n_total % 8:
                counts = np.append(counts, _NIBBLE_HI[packed[-1]])
        else:
            counts = np.bitwise_count(full)
        n = int(counts.max())
        if n == 0:
            return None  # nothing kept
        # A structure, not chance: N:M pruning fills (almost) every group to exactly N.
        if n < m and np.count_nonzero(counts == n) >= NM_FULL_GROUPS * counts.size:
            if best is None or n / m < best[0]:
                best = (n / m, n, m)
    return None if best is None else f"{best[1]}:{best[2]}"


def read_packed(info: TensorInfo, tensor: str, explicit: bool, what: str) -> np.ndarray:
    """One layer's mask, bit-packed: uint8, shape (ceil(N / 8),) (``np.packbits`` of the flat mask).

    Floating weights (fp16, bf16, fp32, fp64) are read straight from the shard
    as raw bits into one buffer (``np.fromfile`` at the tensor's offset): a
    weight is pruned when all bits but the sign are 0 (+0 and -0), and NaN/inf
    (exponent all ones) is refused. Other dtypes and explicit masks go through
    :func:`read_mask`. Memory: the tensor's bytes plus one bool per weight.
    """
    bits = _BITS.get(info.dtype)
    if explicit or bits is None or info.offset < 0:
        return np.packbits(read_mask(info, tensor, explicit, what).reshape(-1))
    view, magnitude, exponent = bits
    n = int(np.prod(info.shape))
    try:
        raw = np.fromfile(info.file, dtype=view, count=n, offset=info.offset)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{info.file}: cannot read tensor {tensor!r} ({e})") from None
    if raw.size != n:
        raise CheckpointError(f"{info.file}: tensor {tensor!r} is cut short (truncated file?)")
    np.bitwise_and(raw, view(magnitude), out=raw)  # (N,) |w| as bits
    if n and raw.max() >= exponent:
        raise CheckpointError(f"{what}: weight {tensor!r} contains NaN or inf values")
    return np.packbits(raw != 0)


def hf_source_ticket(folder: str | Path, name: str | None = None) -> SourceTicket:
    """One model folder as an in-memory ticket (for small folders in the generic importer).

    Parameters
    ----------
    folder : str or Path
    name : str, optional
        Ticket name (default: the folder name).

    Returns
    -------
    SourceTicket
        Level 0, masks only (``weights`` None).
    """
    folder = Path(folder)
    tensors = folder_tensors(folder)
    plans = plan_layers(tensors, str(folder))
    masks = {p.name: read_mask(tensors[p.source], p.source, p.explicit, str(folder)) for p in plans}
    return SourceTicket(
        name=name or folder.name,
        format=HF_FORMAT,
        path=str(folder),
        levels={0: TicketLevel(masks)},
        inferred_masks=not any(p.explicit for p in plans),
    )


# ----------------------------------------------------------------------------- writing packed masks


class PackedMaskWriter:
    """Write ``masks.safetensors`` (layout of :func:`artifacts.run_format.save_masks`) layer by layer.

    The header is written first from the known shapes; each layer's packed
    bytes (K, ceil(N / 8)) are then appended in order, so only one layer is
    ever held.

    Parameters
    ----------
    path : Path
    shapes : dict of str to tuple of int
        ``{layer: (K, *weight_shape)}``, in the order layers will be written.
    """

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]]):
        self.shapes = shapes
        header: dict = {"__metadata__": {"shapes": json.dumps({k: list(v) for k, v in shapes.items()})}}
        offset = 0
        for name, shape in shapes.items():
            b = (int(np.prod(shape[1:])) + 7) // 8
            header[name] = {
                "dtype": "U8",
                "shape": [shape[0], b],
                "data_offsets": [offset, offset + shape[0] * b],
            }
            offset += shape[0] * b
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * ((-len(text)) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self._order = list(shapes)
        self._next = 0
        self._f = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._f.write(struct.pack("<Q", len(text)) + text)

    def write(self, name: str, packed: np.ndarray) -> None:
        """Append one layer: uint8 (K, ceil(N / 8)), the next layer in order."""
        if self._next >= len(self._order) or self._order[self._next] != name:
            raise ValueError(f"layer {name!r} written out of order")
        shape = self.shapes[name]
        want = (shape[0], (int(np.prod(shape[1:])) + 7) // 8)
        if packed.dtype != np.uint8 or packed.shape != want:
            raise ValueError(f"layer {name!r}: packed {packed.dtype} {packed.shape}, expected uint8 {want}")
        self._f.write(np.ascontiguousarray(packed).tobytes())
        self._next += 1

    def abort(self) -> None:
        """Close the file without checking (the caller removes it)."""
        self._f.close()

    def close(self) -> None:
        """Flush to disk; refuses if a layer is missing."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if self._next != len(self._order):
            raise ValueError(f"{len(self._order) - self._next} layer(s) never written")


# ----------------------------------------------------------------------------- the streaming import


def _ticket_names(folders: Sequence[Path]) -> list[str]:
    """Folder names; where two share a name, the part of their paths that differs."""
    names = [f.name for f in folders]
    if len(set(names)) == len(names):
        return names
    parts = [f.absolute().parts for f in folders]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return ["/".join(p[common:]) for p in parts]


def import_hf(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    name: str | None = None,
    method: str = DEFAULT_METHOD,
    force: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Path:
    """Import Hugging Face model folders as one run, streaming tensor by tensor.

    Parameters
    ----------
    paths : sequence of str or Path
        Model folders (one ticket each) or folders of model folders.
    out_dir : str or Path
        Run folder to create (refused if it exists and is not empty, unless
        ``force`` and it is a run folder).
    name : str, optional
        Run name (default: the folder name).
    method : str
        Method name (default ``"imported"``).
    force : bool
        Replace an existing run folder.
    progress : callable (fraction, message), optional
        Called after each layer with the fraction of bytes read.
    workers : int, optional
        Tickets read in parallel (default: up to 2, the cores available);
        peak memory is about ``workers`` times the largest layer.

    Returns
    -------
    Path
        The run folder: one level (0), masks only, ``manifest["source"]`` with
        ``configs`` (config.json per ticket), ``nm_structure`` and
        ``dense_layers`` (tensors left out as embeddings/heads).

    Raises
    ------
    CheckpointError
        Not a model folder, tickets with different layers or shapes, a corrupt
        shard, a refused destination.
    """
    out_dir = Path(out_dir).absolute()
    schema.check_method_name(method, CheckpointError)
    check_destination(out_dir, force=force)
    sweep_stale(out_dir)  # what killed imports into out_dir left behind
    if not paths:
        raise CheckpointError("no input paths given")
    folders: list[Path] = []
    for p in paths:
        found = hf_folders(p)
        if not found:
            raise CheckpointError(f"{p}: not a Hugging Face model folder (no {INDEX} or {SINGLE})")
        folders += found
    tickets = _ticket_names(folders)
    schema.check_ticket_names(tickets, CheckpointError)
    if len(set(tickets)) != len(tickets):
        raise CheckpointError(f"two model folders give the same ticket name: {tickets}")

    # Headers only: check that every ticket has the same layers before reading any data.
    tensors = [folder_tensors(f) for f in folders]
    plans = [plan_layers(t, str(f)) for t, f in zip(tensors, folders, strict=True)]
    ref = {p.name: p.shape for p in plans[0]}
    for t, f, pl in zip(tickets, folders, plans, strict=True):
        layers = {p.name: p.shape for p in pl}
        for n, s in ref.items():
            if n not in layers:
                raise CheckpointError(f"ticket {t!r} ({f}) has no layer {n!r} (present in {tickets[0]!r})")
            if layers[n] != s:
                raise CheckpointError(f"layer {n!r} has shape {s} in {tickets[0]!r} but {layers[n]} in {t!r}")
        extra = set(layers) - set(ref)
        if extra:
            raise CheckpointError(f"ticket {t!r} has layer {sorted(extra)[0]!r} that {tickets[0]!r} lacks")
    k = len(folders)
    layer_names = [p.name for p in plans[0]]
    shapes = {n: (k, *ref[n]) for n in layer_names}
    if sum(int(np.prod(s)) for s in ref.values()) == 0:
        raise CheckpointError(f"{folders[0]}: no prunable weights (all layers empty)")
    by_name = [{p.name: p for p in pl} for pl in plans]
    total_bytes = sum(_nbytes(tensors[i][by_name[i][n].source]) for i in range(k) for n in layer_names)
    configs = {t: read_config(f) for t, f in zip(tickets, folders, strict=True)}
    dense = sorted(n for n in tensors[0] if DENSE_LAYERS.search(n) and len(tensors[0][n].shape) >= 2)

    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{_STAGING}{os.getpid()}-", dir=parent))
    try:
        lv_tmp = level_dir(staging, method, 0)
        lv_tmp.mkdir(parents=True)
        writer = PackedMaskWriter(lv_tmp / MASKS, shapes)
        pool = ThreadPoolExecutor(max_workers=workers or min(2, os.cpu_count() or 1))
        kept = np.zeros(k, dtype=np.int64)
        union = 0
        nm: dict[str, dict[str, str | None]] = {t: {} for t in tickets}
        done = 0
        try:
            for n in layer_names:

                def one(i: int, n: str = n) -> np.ndarray:
                    plan = by_name[i][n]
                    return read_packed(
                        tensors[i][plan.source], plan.source, plan.explicit, f"ticket {tickets[i]!r}"
                    )

                rows = list(pool.map(one, range(k)))  # tickets in parallel: numpy and reads release the GIL
                for i in range(k):
                    nm[tickets[i]][n] = nm_pattern_packed(rows[i], ref[n])
                    done += _nbytes(tensors[i][by_name[i][n].source])
                packed = np.stack(rows)  # (K, ceil(N / 8))
                del rows
                kept += np.bitwise_count(packed).sum(axis=1, dtype=np.int64)
                union += int(np.bitwise_count(np.bitwise_or.reduce(packed, axis=0)).sum(dtype=np.int64))
                writer.write(n, packed)
                if progress is not None:
                    progress(
                        done / max(total_bytes, 1), f"{n} ({layer_names.index(n) + 1}/{len(layer_names)})"
                    )
        except BaseException:
            writer.abort()
            raise
        finally:
            pool.shutdown()
        writer.close()
        n_prunable = int(sum(int(np.prod(s)) for s in ref.values()))
        ticket_sparsity = 1.0 - kept / n_prunable
        empty_predictions().to_parquet(lv_tmp / PREDICTIONS, index=False, compression="zstd")
        write_json(
            lv_tmp / LEVEL_JSON,
            {
                "level": 0,
                "sparsity": float(ticket_sparsity.mean()),
                "ticket_sparsity": [float(s) for s in ticket_sparsity],
                "params_per_ticket": [int(x) for x in kept],
                "params_union": union,
                "params_total": int(kept.sum()),
                "params_prunable": n_prunable,
                "metrics": {},
                "ticket_metrics": [{} for _ in tickets],
                "nm_structure": nm,
            },
        )
        explicit = any(p.explicit for pl in plans for p in pl)
        write_manifest(
            staging,
            {
                "name": name or out_dir.name,
                "methods": {
                    method: {
                        "tickets": tickets,
                        "ticket_kind": "imported",
                        "routings": [],
                        "default_routing": None,
                    }
                },
                "groups": [],
                "prunable": {n: list(ref[n]) for n in layer_names},
                "source": {
                    "format": HF_FORMAT,
                    "paths": [str(p) for p in paths],
                    "inferred_masks": not explicit,
                    "ticket_formats": dict.fromkeys(tickets, HF_FORMAT),
                    "ticket_paths": {t: str(f) for t, f in zip(tickets, folders, strict=True)},
                    "configs": configs,
                    "nm_structure": nm,
                    "dense_layers": dense,
                },
            },
        )
        try:
            run = load_run(staging)
            if run.levels(method) != [0] or run.ticket_names(method) != tickets:
                raise RunFormatError("levels or tickets differ after writing")
        except RunFormatError as e:
            raise CheckpointError(f"the written run did not read back: {e}") from None
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _nbytes(info: TensorInfo) -> int:
    size = {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}.get(info.dtype, 2)
    return int(np.prod(info.shape)) * size


def import_hf_command(args, out: Path) -> int:
    """The ``import`` subcommand for Hugging Face folders: tqdm progress, then a summary.

    Parameters
    ----------
    args : argparse.Namespace
        ``paths, name, method, force`` as parsed by :mod:`ingest.command`.
    out : Path
        The run folder.

    Returns
    -------
    int
        Exit code 0.
    """
    from tqdm import tqdm

    with tqdm(total=1000, desc="reading tensors", unit="‰", leave=False) as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = int(fraction * 1000)
            bar.set_postfix_str(message[-40:], refresh=True)

        import_hf(args.paths, out, name=args.name, method=args.method, force=args.force, progress=progress)
    print(hf_summary(out, args.method))
    return 0


def hf_summary(run_dir: str | Path, method: str = DEFAULT_METHOD) -> str:
    """A few lines describing an imported Hugging Face run."""
    run = load_run(run_dir)
    info = run.level_info(method, 0)
    nm = run.manifest["source"].get("nm_structure") or {}
    lines = [
        f"wrote {run_dir}: {len(run.ticket_names(method))} ticket(s) from {HF_FORMAT} folders, "
        f"{len(run.manifest['prunable'])} layer(s), {info['params_prunable']} prunable weights",
        "  sparsity per ticket "
        + ", ".join(
            f"{t} {s:.1%}" for t, s in zip(run.ticket_names(method), info["ticket_sparsity"], strict=True)
        ),
    ]
    for t, layers in nm.items():
        pats = {p for p in layers.values() if p}
        if pats:
            n = sum(1 for p in layers.values() if p)
            lines.append(f"  {t}: {n} of {len(layers)} layers N:M ({', '.join(sorted(pats))})")
    lines.append("  masks only: weights are not stored for Hugging Face folders")
    if run.manifest["source"].get("inferred_masks"):
        lines.append("  note: masks were inferred from zero weights (the folders store no masks)")
    return "\n".join(lines)


__all__ = [
    "HF_FORMAT",
    "PackedMaskWriter",
    "folder_tensors",
    "hf_folders",
    "hf_source_ticket",
    "import_hf",
    "import_hf_command",
    "hf_summary",
    "is_hf_folder",
    "nm_pattern",
    "read_config",
]
