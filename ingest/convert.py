"""From paths on disk to imported tickets, and on to a run folder.

A path is one of:

- a checkpoint file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ``.pth.tar``,
  ``.safetensors``; the content decides, not the name) holding one ticket
  (named after the file stem) or a dict of tickets;
- an OpenLTH run tree (any folder holding ``level_<L>/main`` folders);
- a folder of checkpoint files, one ticket per file (named after the stem);
  other files and hidden files in it are ignored;
- a folder of such folders (no checkpoint files of its own, e.g. an unzipped
  upload of several runs): every subfolder holding checkpoints, up to 4
  levels down, is read as a folder of checkpoints.

Several paths are imported together: their tickets must cover the same layers,
shapes and levels. When tickets of different paths share a name (ShrinkBench's
``<experiment>/checkpoints/checkpoint-30.pt``, Hugging Face's
``<model>/model.safetensors``), they are named after the part of their paths
that differs (``<experiment>``, ``<model>``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from artifacts.run_format import MANIFEST
from ingest.errors import CheckpointError
from ingest.hf import hf_folders, hf_source_ticket, import_hf
from ingest.openlth import is_openlth_tree, read_openlth
from ingest.run_writer import DEFAULT_METHOD, check_destination, write_run
from ingest.safe_load import CHECKPOINT_SUFFIXES, checkpoint_suffix, load_checkpoint, ticket_stem
from ingest.state_dicts import tickets_from_checkpoint
from ingest.tickets import ImportedTickets, SourceTicket, stack_tickets

_MAX_FOLDER_DEPTH = 4  # <runs>/<experiment>/checkpoints/<file>: how deep a folder of runs is searched


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def checkpoint_files(folder: Path) -> list[Path]:
    """Checkpoint files directly in ``folder`` (by suffix), naturally sorted, hidden files skipped."""
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and checkpoint_suffix(p) is not None
        ),
        key=lambda p: _natural_key(p.name),
    )


def checkpoint_folders(root: Path, max_depth: int = _MAX_FOLDER_DEPTH) -> list[Path]:
    """Subfolders of ``root`` (not ``root`` itself) that directly hold checkpoint files.

    Parameters
    ----------
    root : Path
    max_depth : int
        Most folder levels below ``root`` searched.

    Returns
    -------
    list of Path
        Naturally sorted; hidden and symlinked folders are skipped, and a
        folder holding checkpoints is not searched further.
    """
    found = []
    base = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink()]
        if here != root and checkpoint_files(here):
            found.append(here)
            dirnames[:] = []
        elif len(here.parts) - base >= max_depth:
            dirnames[:] = []
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def tickets_from_path(path: str | Path) -> list[SourceTicket]:
    """Read the tickets of one file or folder, before they are stacked.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of SourceTicket

    Raises
    ------
    CheckpointError
        A missing path, an existing run folder, a folder without checkpoints,
        or any error of the file or tree itself.
    """
    path = Path(path)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            raise CheckpointError(f"{path} is already a run folder (it has {MANIFEST}); open it directly")
        if is_openlth_tree(path):
            return read_openlth(path)
        models = hf_folders(path)  # a Hugging Face model folder, or a folder of them: one ticket each
        if models:
            return [hf_source_ticket(m) for m in models]
        files = checkpoint_files(path)
        if not files:
            # A folder of runs (an unzipped upload): each subfolder holding checkpoints is read as above.
            folders = checkpoint_folders(path)
            if folders:
                return distinct_ticket_names(folders, [tickets_from_path(f) for f in folders])
            raise CheckpointError(
                f"{path}: no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) and no OpenLTH "
                "level_<L>/main folders"
            )
        return [t for f in files for t in tickets_from_checkpoint(load_checkpoint(f), str(f), ticket_stem(f))]
    if path.is_file():
        return tickets_from_checkpoint(load_checkpoint(path), str(path), ticket_stem(path))
    raise CheckpointError(f"{path}: no such file or folder")


def read_tickets(paths: Sequence[str | Path]) -> ImportedTickets:
    """Read and validate tickets from files and folders in any supported format.

    Parameters
    ----------
    paths : sequence of str or Path
        Checkpoint files, folders of checkpoints, or OpenLTH trees.

    Returns
    -------
    ImportedTickets
        Masks ``{layer: bool (K, *shape)}`` per level, masked weights where the
        sources have them, logged metrics per ticket.

    Raises
    ------
    CheckpointError
        For anything that cannot be imported; the message names the file and
        the reason.
    """
    if not paths:
        raise CheckpointError("no input paths given")
    per_path = [tickets_from_path(p) for p in paths]
    tickets = distinct_ticket_names([Path(p) for p in paths], per_path)
    return stack_tickets(tickets, [str(p) for p in paths])


def differing_parts(paths: Sequence[Path]) -> list[str]:
    """The part of each path that differs from the others.

    Parameters
    ----------
    paths : sequence of Path

    Returns
    -------
    list of str
        For each path, its components after dropping the leading and trailing
        components every path shares, joined by ``/`` (checkpoint suffixes
        dropped): ``a/checkpoints/ckpt.pt`` and ``b/checkpoints/ckpt.pt`` give
        ``a`` and ``b``. A path with nothing left is named by its file stem.
    """
    parts = [Path(p).absolute().parts for p in paths]
    parts = [(*p[:-1], ticket_stem(Path(p[-1]))) for p in parts]
    n = min(len(p) for p in parts)
    head = 0
    while head < n and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while tail < n - head and len({p[len(p) - 1 - tail] for p in parts}) == 1:
        tail += 1
    out = []
    for p, path in zip(parts, paths, strict=True):
        middle = p[head : len(p) - tail]
        out.append("/".join(middle) if middle else ticket_stem(Path(path)))
    return out


def distinct_ticket_names(
    paths: Sequence[Path], per_path: Sequence[list[SourceTicket]]
) -> list[SourceTicket]:
    """Rename tickets that share a name across paths after the part of their paths that differs.

    Parameters
    ----------
    paths : sequence of Path
        The input paths, one per entry of ``per_path``.
    per_path : sequence of list of SourceTicket
        The tickets read from each path.

    Returns
    -------
    list of SourceTicket
        All tickets in input order. A ticket whose name is also used by a
        ticket of another path is renamed: to the differing part of its path
        when it is the only ticket of that path, else to
        ``<differing part>/<name>``. Names unique across paths are kept.
    """
    owners: dict[str, set[int]] = {}
    for i, tickets in enumerate(per_path):
        for t in tickets:
            owners.setdefault(t.name, set()).add(i)
    clashing = {name for name, who in owners.items() if len(who) > 1}
    if not clashing:
        return [t for tickets in per_path for t in tickets]
    involved = sorted({i for name in clashing for i in owners[name]})
    labels = dict(zip(involved, differing_parts([paths[i] for i in involved]), strict=True))
    out = []
    for i, tickets in enumerate(per_path):
        for t in tickets:
            if t.name not in clashing:
                out.append(t)
                continue
            out.append(replace(t, name=labels[i] if len(tickets) == 1 else f"{labels[i]}/{t.name}"))
    counts = Counter(t.name for t in out)
    if any(c > 1 for c in counts.values()):
        return [t for tickets in per_path for t in tickets]  # stack_tickets names the clash
    return out


def import_checkpoints(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    name: str | None = None,
    method: str = DEFAULT_METHOD,
    force: bool = False,
    weights_dtype: str = "float32",
) -> Path:
    """Convert checkpoints or run trees into a run folder (the ``import`` command).

    Parameters
    ----------
    paths : sequence of str or Path
        Checkpoint files, folders of checkpoints, or OpenLTH trees.
    out_dir : str or Path
        Run folder to create; refused if it exists and is not empty, unless
        ``force`` and it is a run folder.
    name : str, optional
        Run name (default: the folder name).
    method : str
        Method name (default ``"imported"``).
    force : bool
        Replace an existing run folder.
    weights_dtype : {"float32", "float16", "none"}
        Storage of the masked weights when the sources have them.

    Returns
    -------
    Path
        The run folder, readable with :func:`artifacts.run_format.load_run`.

    Raises
    ------
    CheckpointError
    """
    check_destination(Path(out_dir).absolute(), force=force)  # fail before reading large trees
    if paths and all(hf_folders(p) for p in paths):  # Hugging Face folders: streamed, masks only
        return import_hf(paths, out_dir, name=name, method=method, force=force)
    tickets = read_tickets(paths)
    return write_run(tickets, out_dir, name=name, method=method, force=force, weights_dtype=weights_dtype)
