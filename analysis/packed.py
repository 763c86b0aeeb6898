"""Masks kept bit-packed and memory-mapped: measures computed layer by layer.

A level's ``masks.safetensors`` (:mod:`artifacts.run_format`) stores each layer
as bit-packed ``uint8`` of shape ``(K, ceil(N_l / 8))``. :class:`PackedMasks`
memory-maps that file and never unpacks more than one chunk of one layer, so
the overlap counts behind Jaccard and J*, the coding costs, the collapse mask
signals and the Jaccard distances of the projection cost memory bounded by the
largest layer (in practice by one chunk), not by the model.

Every function here returns exactly what its in-memory counterpart returns
(:func:`analysis.similarity.layer_overlap_counts`,
:func:`analysis.coding.coding_frame`, :func:`analysis.coding.joint_coding_frame`,
:func:`analysis.collapse.mask_signals`): the integer counts are the same
popcounts, and the floating-point steps are done in the same order.

Padding bits of the packed rows are 0 (``np.packbits`` writes them so), so
popcounts of AND, OR and single rows never count a padding bit.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import entr

from analysis.similarity import OverlapCounts, packed_overlap
from artifacts.run_format import (
    MASK_LEVELS,
    MASKS,
    RunFormatError,
    _mask_source,
    file_version,
    level_dir,
    level_mask_shapes,
    method_dir,
)

__all__ = [
    "LevelCodedMasks",
    "PackedMasks",
    "coding_frame_packed",
    "joint_coding_frame_packed",
    "layer_overlap_counts_packed",
    "mask_signals_packed",
    "packed_mask_counts",
    "packed_masks",
    "stacked_jaccard_density",
]

# Packed bytes per ticket and chunk: 1 MiB per row keeps temporaries small.
DEFAULT_CHUNK_BYTES = 1 << 20
# Subsets of tickets enumerated for exact joint pattern counts (2**K of them).
_MAX_SUBSET_TICKETS = 12
_HEADER_MAX = 100 * 2**20
# {(path, mtime_ns, size, inode, layer, level): subset counts}; 2**K int64 per layer, a few MB at most.
_SUBSET_CACHE: dict[tuple, np.ndarray] = {}
_SUBSET_CACHE_SIZE = 4096


def clear_cache() -> None:
    """Forget memoised subset counts (e.g. to time a cold computation)."""
    _SUBSET_CACHE.clear()


class PackedMasks(Mapping[str, np.ndarray]):
    """The masks of one level, memory-mapped and bit-packed.

    As a mapping it gives ``{layer: bool ndarray (K, *weight_shape)}`` like
    :meth:`artifacts.run_format.Run.masks`, but unpacks a layer only when it is
    looked up; :meth:`packed` gives the stored bytes without unpacking.

    Parameters
    ----------
    path : str or Path
        A ``masks.safetensors`` file written by :func:`artifacts.run_format.save_masks`
        (or by the streaming importer, which writes the same layout).

    Attributes
    ----------
    path : Path
    shapes : dict of str to tuple of int
        ``{layer: (K, *weight_shape)}`` in file order.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise RunFormatError(f"missing file: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise RunFormatError(f"corrupt mask file {self.path}: shorter than its header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(_HEADER_MAX, size - 8):
                raise RunFormatError(f"corrupt mask file {self.path}: header length {n} out of range")
            try:
                header = json.loads(f.read(n))
                shapes = json.loads(header.get("__metadata__", {})["shapes"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise RunFormatError(f"mask file {self.path} has no valid header or 'shapes' metadata") from e
        self._data_start = 8 + n
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        for name, shape in shapes.items():
            info = header.get(name)
            if not isinstance(info, dict):
                raise RunFormatError(f"mask file lists layer {name!r} but holds no data for it")
            k, nw = int(shape[0]), int(np.prod(shape[1:]))
            start, end = (int(v) for v in info["data_offsets"])
            if info.get("dtype") != "U8" or list(info.get("shape", [])) != [k, (nw + 7) // 8]:
                raise RunFormatError(f"mask {name!r}: stored shape {info.get('shape')} does not fit {shape}")
            if end - start != k * ((nw + 7) // 8) or self._data_start + end > size:
                raise RunFormatError(f"mask {name!r}: data offsets out of range in {self.path}")
            self.shapes[name] = tuple(int(d) for d in shape)
            self._offsets[name] = (start, end)
        ks = {s[0] for s in self.shapes.values()}
        if len(ks) > 1:
            raise RunFormatError(f"{self.path}: layers disagree on the number of tickets: {sorted(ks)}")

    def __repr__(self) -> str:
        return f"PackedMasks({str(self.path)!r}, layers={len(self.shapes)}, K={self.n_tickets})"

    def __getitem__(self, name: str) -> np.ndarray:
        shape = self.shapes[name]
        n = int(np.prod(shape[1:]))
        return np.unpackbits(self.packed(name), axis=1, count=n).astype(bool).reshape(shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def n_tickets(self) -> int:
        """Number of tickets K (0 for a file without layers)."""
        return next(iter(self.shapes.values()))[0] if self.shapes else 0

    def n_weights(self, name: str) -> int:
        """Weights of one layer, ``prod(weight_shape)``."""
        return int(np.prod(self.shapes[name][1:]))

    def packed(self, name: str) -> np.ndarray:
        """The stored bytes of one layer, memory-mapped: uint8, shape (K, ceil(N_l / 8))."""
        shape = self.shapes[name]
        start, _ = self._offsets[name]
        b = (self.n_weights(name) + 7) // 8
        if shape[0] * b == 0:
            return np.zeros((shape[0], b), dtype=np.uint8)
        return np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=self._data_start + start, shape=(shape[0], b)
        )

    def chunks(self, name: str, chunk_bytes: int | None = None) -> Iterator[np.ndarray]:
        """One layer's packed bytes in column chunks: C-contiguous uint8 (K, <= chunk_bytes).

        ``chunk_bytes`` defaults to :data:`DEFAULT_CHUNK_BYTES` per ticket.
        """
        mm = self.packed(name)
        step = max(8, (DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // 8 * 8)
        for s in range(0, mm.shape[1], step):
            yield np.ascontiguousarray(mm[:, s : s + step])

    def subset_counts(self, name: str) -> np.ndarray | None:
        """``I[T] = |∩_{k in T} m_k|`` for every subset T of the tickets (bit k of T = ticket k).

        One pass over the layer gives every count the measures need: sizes
        (singletons), pairwise intersections, the union (by inclusion-exclusion)
        and the pattern counts. Memoised per file version (path, mtime, size, inode) so that
        the pages reading one level share the pass; None when K > 12.

        Returns
        -------
        ndarray of int64, shape (2**K,), or None
            ``I[0]`` is the layer size.
        """
        k = self.n_tickets
        if k > _MAX_SUBSET_TICKETS:
            return None
        key = (*self._file_key(), name, getattr(self, "level", None))
        hit = _SUBSET_CACHE.get(key)
        if hit is None:
            hit = _subset_intersections(self, name)
            _SUBSET_CACHE[key] = hit
            while len(_SUBSET_CACHE) > _SUBSET_CACHE_SIZE:
                _SUBSET_CACHE.pop(next(iter(_SUBSET_CACHE)))
        return hit

    def _file_key(self) -> tuple[str, int, int, int]:
        """:func:`artifacts.run_format.file_version` of the resolved file, read once per instance.

        The measures of one level ask for every layer's counts several times;
        the path is resolved and the file stat'ed at the first ask only (an
        instance reads one version of a level, as its memory map does).
        """
        key = getattr(self, "_file_key_cache", None)
        if key is None:
            key = file_version(self.path.resolve())
            self._file_key_cache = key
        return key

    def kept(self) -> np.ndarray:
        """Kept weights per ticket and layer: int64 array, shape (K, L), layers in file order."""
        if self.n_tickets <= _MAX_SUBSET_TICKETS:
            out = np.zeros((self.n_tickets, len(self)), dtype=np.int64)
            for j, name in enumerate(self):
                counts = self.subset_counts(name)
                out[:, j] = [counts[1 << i] for i in range(self.n_tickets)]
            return out
        out = np.zeros((self.n_tickets, len(self)), dtype=np.int64)
        for j, name in enumerate(self):
            for c in self.chunks(name):
                out[:, j] += np.bitwise_count(c).sum(axis=1, dtype=np.int64)
        return out


class LevelCodedMasks(PackedMasks):
    """One level of a method's compact ``mask_levels.safetensors``, as :class:`PackedMasks`.

    Compact storage (:mod:`artifacts.run_format`) keeps per layer a uint8 array
    ``(K, *weight_shape)``: the level at which each weight left the mask. A
    layer is read alone (``safe_open``), thresholded at ``level`` and bit-packed
    when it is looked up, so memory stays bounded by the largest layer.

    Parameters
    ----------
    path : str or Path
        A ``<method>/mask_levels.safetensors`` file.
    level : int
        The level whose masks it gives (``codes > level``).
    shapes : dict of str to sequence of int
        ``{layer: [K, *weight_shape]}`` from the file header
        (:func:`artifacts.run_format.level_mask_shapes`).
    """

    def __init__(self, path: str | Path, level: int, shapes: Mapping[str, Sequence[int]]):
        self.path = Path(path)
        if not self.path.is_file():
            raise RunFormatError(f"missing file: {self.path}")
        self.level = int(level)
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        ks = {s[0] for s in self.shapes.values()}
        if len(ks) > 1:
            raise RunFormatError(f"{self.path}: layers disagree on the number of tickets: {sorted(ks)}")
        self._last: tuple[str, np.ndarray] | None = None  # the last layer packed

    def __repr__(self) -> str:
        return (
            f"LevelCodedMasks({str(self.path)!r}, level={self.level}, "
            f"layers={len(self.shapes)}, K={self.n_tickets})"
        )

    def packed(self, name: str) -> np.ndarray:
        """One layer's masks at ``level``, bit-packed: uint8, shape (K, ceil(N_l / 8))."""
        if self._last is not None and self._last[0] == name:
            return self._last[1]
        shape = self.shapes[name]
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path), framework="numpy") as f:
                codes = f.get_tensor(name)  # (K, *weight_shape) uint8
        except (SafetensorError, OSError, ValueError) as e:
            raise RunFormatError(f"corrupt mask-levels file {self.path}: {e}") from e
        if codes.dtype != np.uint8 or tuple(codes.shape) != shape:
            raise RunFormatError(f"{self.path}: layer {name!r} is not uint8 of shape {shape}")
        out = np.packbits(codes.reshape(shape[0], -1) > self.level, axis=1)  # (K, ceil(N / 8))
        self._last = (name, out)
        return out


def packed_masks(run, method: str, level: int) -> PackedMasks:
    """Bit-packed masks of one level of a run (checked like ``Run.masks``).

    Memory-mapped from the level's ``masks.safetensors``; from compact storage
    (``mask_levels``, possibly another method's) a :class:`LevelCodedMasks`.

    Parameters
    ----------
    run : artifacts.run_format.Run
    method : str
    level : int

    Returns
    -------
    PackedMasks
    """
    if level not in run.levels(method):
        raise RunFormatError(f"{run.path}: {method} has no completed level {level}")
    kind, holder = _mask_source(run.path, method, level)
    if kind == "file":
        pm = PackedMasks(level_dir(run.path, holder, level) / MASKS)
    else:
        shapes = level_mask_shapes(run.path, method, level)  # header keys come sorted
        order = [n for n in run.manifest.get("layers") or [] if n in shapes]  # model order
        shapes = {n: shapes[n] for n in [*order, *(n for n in shapes if n not in order)]}
        pm = LevelCodedMasks(method_dir(run.path, holder) / MASK_LEVELS, level, shapes)
    k = len(run.ticket_names(method))
    for name, shape in pm.shapes.items():
        if shape[0] != k:
            raise RunFormatError(
                f"{method} level {level}: mask {name!r} has {shape[0]} tickets, expected {k}"
            )
    return pm


# ----------------------------------------------------------------------------- similarity


def _layer_counts(pm: PackedMasks, name: str, chunk_bytes: int | None) -> OverlapCounts:
    k = pm.n_tickets
    subsets = pm.subset_counts(name) if chunk_bytes is None else None
    if subsets is not None:
        idx = np.array([[(1 << i) | (1 << j) for j in range(k)] for i in range(k)])  # (K, K) subset ids
        inter = subsets[idx]
        return OverlapCounts(inter, np.diagonal(inter).copy(), pm.n_weights(name))
    inter = np.zeros((k, k), dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for c in pm.chunks(name, chunk_bytes):
        i, s = packed_overlap(c)
        inter += i
        sizes += s
    return OverlapCounts(inter, sizes, pm.n_weights(name))


def layer_overlap_counts_packed(
    pm: PackedMasks, *, chunk_bytes: int | None = None
) -> dict[str, OverlapCounts]:
    """Per-layer overlap counts from packed masks (as :func:`analysis.similarity.layer_overlap_counts`).

    Parameters
    ----------
    pm : PackedMasks
    chunk_bytes : int
        Packed bytes per ticket read at a time.

    Returns
    -------
    dict of str to OverlapCounts
        In file order.
    """
    if not len(pm):
        raise ValueError("no layers in masks")
    if pm.n_tickets < 1:
        raise ValueError("masks hold no ticket (K = 0)")
    return {name: _layer_counts(pm, name, chunk_bytes) for name in pm}


def stacked_jaccard_density(blocks: Sequence[PackedMasks]) -> tuple[np.ndarray, np.ndarray]:
    """Jaccard between all tickets of several levels, and each ticket's density.

    The tickets of ``blocks`` are stacked in order (as ``np.concatenate`` of the
    unpacked masks along the ticket axis would), one layer at a time.

    Parameters
    ----------
    blocks : sequence of PackedMasks
        Same layers and shapes in every block.

    Returns
    -------
    jaccard : ndarray of float64, shape (sum K_b, sum K_b)
    density : ndarray of float64, shape (sum K_b,)
    """
    from analysis.similarity import jaccard_from_counts

    layers = list(blocks[0])
    for b in blocks[1:]:
        if list(b) != layers or any(b.shapes[n][1:] != blocks[0].shapes[n][1:] for n in layers):
            raise ValueError("layers differ, cannot stack tickets")
    if len(blocks) == 1:  # one level: the memoised per-layer counts serve
        per_layer = layer_overlap_counts_packed(blocks[0])
        inter = sum(c.intersection for c in per_layer.values())
        counts = OverlapCounts(inter, np.diagonal(inter).copy(), sum(c.n_weights for c in per_layer.values()))
        return jaccard_from_counts(counts), counts.sizes / counts.n_weights
    k = sum(b.n_tickets for b in blocks)
    inter = np.zeros((k, k), dtype=np.int64)
    total = 0
    for name in layers:
        per_ticket = max(8, DEFAULT_CHUNK_BYTES // max(k, 1) // 8 * 8)
        mms = [b.packed(name) for b in blocks]
        for s in range(0, mms[0].shape[1], per_ticket):
            i, _ = packed_overlap(np.concatenate([m[:, s : s + per_ticket] for m in mms], axis=0))
            inter += i
        total += blocks[0].n_weights(name)
    counts = OverlapCounts(inter, np.diagonal(inter).copy(), total)
    return jaccard_from_counts(counts), counts.sizes / total


# ----------------------------------------------------------------------------- coding cost


def coding_frame_packed(pm: PackedMasks, tickets: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`analysis.coding.coding_frame` from packed masks (same columns, same numbers)."""
    from analysis.coding import _tickets, coding_table_from_counts

    if not len(pm):
        raise ValueError("no layers in masks")
    kept_all = pm.kept()  # (K, L)
    counts = [(layer, shape, kept_all[:, j]) for j, (layer, shape) in enumerate(pm.shapes.items())]
    return coding_table_from_counts(_tickets(pm.n_tickets, tickets), counts)


def _subset_intersections(pm: PackedMasks, name: str) -> np.ndarray:
    """``I[T] = |∩_{k in T} m_k|`` for every subset T of the K tickets (bit k of T = ticket k).

    ``I[0]`` (the empty intersection) is the layer size. Shape (2**K,), int64.
    """
    k = pm.n_tickets
    out = np.zeros(1 << k, dtype=np.int64)
    out[0] = pm.n_weights(name)
    for c in pm.chunks(name, DEFAULT_CHUNK_BYTES // 4):
        words = np.pad(c, ((0, 0), (0, (-c.shape[1]) % 8))).view(np.uint64)  # (K, W)
        stack = [(0, -1, None)]  # (subset, last ticket, AND of the subset's rows)
        while stack:
            subset, last, acc = stack.pop()
            for j in range(last + 1, k):
                nxt = words[j] if acc is None else np.bitwise_and(acc, words[j])
                s = subset | (1 << j)
                out[s] += int(np.bitwise_count(nxt).sum(dtype=np.int64))
                if j + 1 < k:
                    stack.append((s, j, nxt))
    return out


def _pattern_counts_sorted(pm: PackedMasks, name: str) -> np.ndarray:
    """Counts of the K-bit patterns present, in the order ``coding.pattern_counts`` gives them."""
    k = pm.n_tickets
    if k <= _MAX_SUBSET_TICKETS:
        exact = pm.subset_counts(name).copy()
        for i in range(k):  # superset Mobius inversion: counts of "kept by exactly T"
            bit = 1 << i
            for s in range(1 << k):
                if not s & bit:
                    exact[s] -= exact[s | bit]
        # The in-memory code packs ticket k into byte k // 8 at bit 7 - k % 8 and sorts.
        codes = np.array(
            [
                sum((1 << (7 - j % 8)) << (8 * (j // 8)) for j in range(k) if s >> j & 1)
                for s in range(1 << k)
            ],
            dtype=np.uint64,
        )
        order = np.argsort(codes, kind="stable")
        counts = exact[order]
        return counts[counts > 0]
    # Many tickets: unpack chunk by chunk, code as coding.pattern_counts does, merge.
    n = pm.n_weights(name)
    codes_all, counts_all = [], []
    pos = 0
    for c in pm.chunks(name):
        m = np.unpackbits(c, axis=1, count=min(c.shape[1] * 8, n - pos)).astype(bool)
        pos += m.shape[1]
        cw = np.ascontiguousarray(np.packbits(m, axis=0).T)
        nb = cw.shape[1]
        cw = (
            np.pad(cw, ((0, 0), (0, 8 - nb))).view(np.uint64).ravel()
            if nb <= 8
            else cw.view(np.dtype((np.void, nb))).ravel()
        )
        u, cnt = np.unique(cw, return_counts=True)
        codes_all.append(u)
        counts_all.append(cnt)
    u, inv = np.unique(np.concatenate(codes_all), return_inverse=True)
    return np.bincount(inv.ravel(), weights=np.concatenate(counts_all), minlength=u.size).astype(np.int64)


def joint_coding_frame_packed(pm: PackedMasks) -> pd.DataFrame:
    """:func:`analysis.coding.joint_coding_frame` from packed masks (same columns, same numbers).

    Pattern counts come from popcounts of the ANDs of every subset of tickets
    (inclusion-exclusion) for K <= 12, from chunk-wise unpacking beyond.
    """
    from analysis.coding import binary_entropy, joint_coding_table_from_rows

    if not len(pm):
        raise ValueError("no layers in masks")
    kept_all = pm.kept()
    rows = []
    for j, layer in enumerate(pm):
        k, n = pm.n_tickets, pm.n_weights(layer)
        density = kept_all[:, j] / n if n else np.zeros(k)
        counts = _pattern_counts_sorted(pm, layer)
        total = counts.sum()
        joint = 0.0 if total == 0 else float(total * entr(counts / total).sum() / np.log(2.0))
        none_kept = _none_kept(pm, layer)
        rows.append(
            {
                "layer": layer,
                "n_weights": n,
                "n_tickets": k,
                "n_patterns": counts.size,
                "n_union": n - none_kept,
                "bitmap_bits": k * n,
                "independent_bits": float(n * binary_entropy(density).sum()),
                "joint_bits": joint,
            }
        )
    return joint_coding_table_from_rows(rows)


def _or_and_counts(pm: PackedMasks, name: str) -> tuple[int, int]:
    """Weights kept by at least one ticket, and by every ticket, in one layer."""
    subsets = pm.subset_counts(name)
    if subsets is not None:
        k = pm.n_tickets
        # Inclusion-exclusion: |union| = sum over non-empty T of (-1)^(|T|+1) I[T].
        union = sum(int(subsets[t]) * (1 if t.bit_count() % 2 else -1) for t in range(1, 1 << k))
        return union, int(subsets[(1 << k) - 1])
    union = inter = 0
    for c in pm.chunks(name):
        union += int(np.bitwise_count(np.bitwise_or.reduce(c, axis=0)).sum(dtype=np.int64))
        inter += int(np.bitwise_count(np.bitwise_and.reduce(c, axis=0)).sum(dtype=np.int64))
    return union, inter  # padding bits are 0 in every row: never counted


def _none_kept(pm: PackedMasks, name: str) -> int:
    return pm.n_weights(name) - _or_and_counts(pm, name)[0]


# ----------------------------------------------------------------------------- collapse signals


def mask_signals_packed(pm: PackedMasks, per_ticket: bool = True) -> pd.DataFrame:
    """:func:`analysis.collapse.mask_signals` from packed masks (same rows, same numbers)."""
    from analysis.collapse import mask_signal_rows

    return mask_signal_rows(*packed_mask_counts(pm), per_ticket)


def packed_mask_counts(pm: PackedMasks) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The counts behind the collapse mask signals, from packed masks.

    Returns
    -------
    kept : ndarray of int64, shape (K, L)
        Weights each ticket keeps per layer (file order).
    sizes : ndarray of int, shape (L,)
    union, inter : int
        Weights kept by some ticket, and by every ticket, over all layers.
    """
    if not len(pm):
        raise ValueError("no layers in masks")
    sizes = np.array([pm.n_weights(n) for n in pm])  # (L,)
    union = inter = 0
    for name in pm:
        u, i = _or_and_counts(pm, name)
        union += u
        inter += i
    return pm.kept(), sizes, union, inter


def layer_table(pm: PackedMasks) -> pd.DataFrame:
    """Per-layer sizes and densities of one level.

    Returns
    -------
    DataFrame
        Columns ``layer, n_weights, ticket, n_kept, density``; one row per layer and ticket.
    """
    kept = pm.kept()
    rows = []
    for j, name in enumerate(pm):
        n = pm.n_weights(name)
        for t in range(pm.n_tickets):
            rows.append(
                {
                    "layer": name,
                    "n_weights": n,
                    "ticket": t,
                    "n_kept": int(kept[t, j]),
                    "density": kept[t, j] / n if n else np.nan,
                }
            )
    return pd.DataFrame(rows)
