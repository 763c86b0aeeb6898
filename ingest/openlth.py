"""OpenLTH run trees: a level sweep per replicate, with accuracy (a collapse curve).

Layout written by facebookresearch/open_lth (``lottery/desc.py: run_path``)::

    lottery_<hash>/replicate_<r>/level_<L>/main/
        mask.pth               {layer: int32 0/1 tensor}  (level 0: all ones)
        sparsity_report.json   {"total": N, "unpruned": n}  (floats)
        logger                 lines "<metric>,<iteration>,<value>"
        model_ep<E>_it<I>.pth  state dicts of the trained model (optional)

The importer accepts the tree's root, a ``lottery_<hash>`` folder or one
``replicate_<r>`` folder. Each replicate becomes a ticket; levels keep their
OpenLTH numbers. Levels must be consecutive: a sweep with ``level_0`` and
``level_2`` but no ``level_1`` is refused rather than imported with a hole,
because a missing level usually means an incomplete copy, and the analyses read
consecutive levels as successive pruning rounds.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ingest.errors import CheckpointError
from ingest.safe_load import load_checkpoint
from ingest.tickets import (
    OPENLTH,
    SourceTicket,
    TicketLevel,
    as_mask,
    as_weight,
    check_same_layers,
    masked_weight,
)

_LEVEL_RE = re.compile(r"^level_(\d+)$")
_MODEL_RE = re.compile(r"^model_ep(\d+)_it(\d+)\.pth$")
_MAX_DEPTH = 4  # root / lottery_<hash> / replicate_<r> / level_<L> / main


def replicate_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (``root`` included) that hold ``level_<L>/main`` folders.

    Parameters
    ----------
    root : Path

    Returns
    -------
    list of Path
        Naturally sorted (``replicate_2`` before ``replicate_10``); empty if
        ``root`` is not an OpenLTH tree. Symlinked folders are not followed.
    """
    found = set()
    base_depth = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if _LEVEL_RE.match(here.name) and "main" in dirnames:
            found.add(here.parent)
            dirnames[:] = []  # branches inside a level are not levels
        elif len(here.parts) - base_depth >= _MAX_DEPTH:
            dirnames[:] = []
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def is_openlth_tree(root: Path) -> bool:
    """Whether ``root`` is a folder holding at least one OpenLTH ``level_<L>/main``."""
    return root.is_dir() and bool(replicate_dirs(root))


def read_openlth(root: str | Path) -> list[SourceTicket]:
    """Read every replicate of an OpenLTH tree as one ticket with its levels.

    Parameters
    ----------
    root : str or Path
        The tree root, a ``lottery_<hash>`` folder or a ``replicate_<r>`` folder.

    Returns
    -------
    list of SourceTicket
        Named by the replicate folder's path below ``root`` (a prefix shared
        by all is dropped, so usually ``replicate_<r>``). Each level holds the
        masks, the masked weights of the latest ``model_ep*_it*.pth`` when
        present, and the last logged value of each metric (``test_accuracy``,
        ...).

    Raises
    ------
    CheckpointError
        A missing ``mask.pth``, a gap in the levels, a sparsity report that
        disagrees with its mask, a malformed logger, masks whose layers change
        between levels, or any invalid mask or weight file.
    """
    root = Path(root)
    reps = replicate_dirs(root)
    if not reps:
        raise CheckpointError(f"{root}: no OpenLTH level_<L>/main folders found")
    names = _ticket_names(root, reps)
    tickets = []
    for rep, name in zip(reps, names, strict=True):
        levels = sorted(
            int(m.group(1)) for c in rep.iterdir() if c.is_dir() and (m := _LEVEL_RE.match(c.name))
        )
        missing = sorted(set(range(levels[0], levels[-1] + 1)) - set(levels))
        if missing:
            raise CheckpointError(
                f"{rep}: OpenLTH sweep is missing level(s) {', '.join(map(str, missing))} "
                f"(found levels {', '.join(map(str, levels))}); levels must be consecutive: "
                "copy the missing level or remove the later ones"
            )
        read = {lv: _read_level(rep / f"level_{lv}" / "main") for lv in levels}
        first = {k: v.shape for k, v in read[levels[0]].masks.items()}
        for lv in levels[1:]:
            check_same_layers(
                first,
                f"{rep.name}/level_{levels[0]}",
                {k: v.shape for k, v in read[lv].masks.items()},
                f"{rep.name}/level_{lv}",
            )
        tickets.append(SourceTicket(name, OPENLTH, str(rep), read))
    return tickets


def _ticket_names(root: Path, reps: list[Path]) -> list[str]:
    if reps == [root]:
        return [root.name]
    parts = [rep.relative_to(root).parts for rep in reps]
    while all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # drop a folder every replicate shares
    return ["/".join(p) for p in parts]


def _read_level(main: Path) -> TicketLevel:
    mask_path = main / "mask.pth"
    if not mask_path.is_file():
        raise CheckpointError(f"{main.parent}: OpenLTH level folder has no main/mask.pth")
    raw = load_checkpoint(mask_path)
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, np.ndarray) for v in raw.values()):
        raise CheckpointError(f"{mask_path}: expected a dict of layer name to 0/1 tensor")
    masks = {str(k): as_mask(v, f"{mask_path}: mask {k!r}") for k, v in raw.items()}
    _check_sparsity_report(main / "sparsity_report.json", masks)
    return TicketLevel(masks, _read_weights(main, masks), _read_logger(main / "logger"))


def _check_sparsity_report(path: Path, masks: dict[str, np.ndarray]) -> None:
    if not path.is_file():
        return
    try:
        report = json.loads(path.read_text())
        total, unpruned = float(report["total"]), float(report["unpruned"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt sparsity report ({type(e).__name__}: {e})") from None
    n = sum(m.size for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    if (total, unpruned) != (n, kept):
        raise CheckpointError(
            f"{path}: says {unpruned:g} of {total:g} weights unpruned but mask.pth keeps {kept} of {n}"
        )


def _read_logger(path: Path) -> dict[str, float]:
    """Last logged value (highest iteration) of each metric."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: logger is not a text file") from None
    last: dict[str, tuple[int, float]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        try:
            if len(fields) != 3:
                raise ValueError
            name, it, value = fields[0], int(fields[1]), float(fields[2])
        except ValueError:
            raise CheckpointError(
                f"{path}: malformed logger line {i}: {line[:80]!r} (expected '<metric>,<iteration>,<value>')"
            ) from None
        if not math.isfinite(value):
            raise CheckpointError(f"{path}: line {i}: {name} is {value}")
        if name not in last or it >= last[name][0]:
            last[name] = (it, value)
    return {name: v for name, (_, v) in last.items()}


def _read_weights(main: Path, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Masked weights of the latest model checkpoint of the level, if any."""
    models = [(int(m.group(1)), int(m.group(2)), p) for p in main.iterdir() if (m := _MODEL_RE.match(p.name))]
    if not models:
        return None
    path = max(models)[2]
    sd = load_checkpoint(path)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got a {type(sd).__name__}")
    out = {}
    for layer, mask in masks.items():
        if layer not in sd:
            raise CheckpointError(f"{path}: has no weight {layer!r} that mask.pth masks")
        weight = as_weight(sd[layer], f"{path}: weight {layer!r}")
        out[layer] = masked_weight(mask, weight, f"{main / 'mask.pth'}: mask {layer!r}", f"weight {layer!r}")
    return out
