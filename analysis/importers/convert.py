"""From paths on disk to imported tickets, and on to a run folder.

A path is one of:

- a checkpoint file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ``.pth.tar``,
  ``.safetensors``; the content decides, not the name) holding one ticket
  (named after the file stem) or a dict of tickets;
- an OpenLTH run tree (any folder holding ``level_<L>/main`` folders);
- a folder of checkpoint files, one ticket per file (named after the stem);
  other files and hidden files in it are ignored.

Several paths are imported together: their tickets must be distinct by name and
cover the same layers, shapes and levels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from analysis.importers.errors import CheckpointError
from analysis.importers.hf import hf_folders, hf_source_ticket, import_hf
from analysis.importers.openlth import is_openlth_tree, read_openlth
from analysis.importers.run_writer import DEFAULT_METHOD, check_destination, write_run
from analysis.importers.safe_load import CHECKPOINT_SUFFIXES, checkpoint_suffix, load_checkpoint, ticket_stem
from analysis.importers.state_dicts import tickets_from_checkpoint
from analysis.importers.tickets import ImportedTickets, SourceTicket, stack_tickets
from artifacts.run_format import MANIFEST


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
    tickets = [t for p in paths for t in tickets_from_path(p)]
    return stack_tickets(tickets, [str(p) for p in paths])


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
