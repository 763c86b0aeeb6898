"""Open a checkpoint made elsewhere: upload, convert into a per-session temporary run, show it.

The conversion is :func:`ingest.import_upload` (size limits, zip-slip and
zip-bomb checks, tensors read only through safetensors or ``weights_only`` torch.load).
Every upload of a session goes into one ``tempfile.TemporaryDirectory`` kept in the
session state: it is removed when the session ends (Streamlit releases the session's
state and the object is garbage collected) or when the server exits. Folders left by a
server that was killed are swept when a later session first uploads (older than
``STALE_HOURS``). Nothing is ever written under ``artifacts/``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import streamlit as st

from analysis import RunFormatError
from ingest import CheckpointError, import_upload
from ingest.upload import max_upload_bytes, safe_filename

KEY_FILE = "upload.file"
_WORKDIR = "upload.workdir"  # the session's TemporaryDirectory
_RUNS = "upload.runs"  # {sha256 of the upload: run folder}
_ERRORS = "upload.errors"  # {sha256 of the upload: message}
_PREFIX = "rtl-upload-"
STALE_HOURS = 24
ACCEPTED = ["pt", "pth", "bin", "tar", "safetensors", "zip"]


def session_runs() -> list[str]:
    """Run folders converted from this session's uploads, oldest first."""
    return [p for p in st.session_state.get(_RUNS, {}).values() if Path(p).is_dir()]


def uploaded_name(path: str) -> str | None:
    """The file name a run was uploaded as, read off its path (None for other runs).

    A pure function of the path: widget labels are also formatted outside a script run.
    """
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith(_PREFIX):
            return parts[i + 1]
    return None


def _sweep_stale() -> None:
    cutoff = time.time() - STALE_HOURS * 3600
    for old in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def _workdir() -> Path:
    if _WORKDIR not in st.session_state:
        _sweep_stale()
        st.session_state[_WORKDIR] = tempfile.TemporaryDirectory(prefix=_PREFIX)
    return Path(st.session_state[_WORKDIR].name)


def render(where) -> str | None:
    """Draw the uploader in ``where``; convert a new upload.

    Returns
    -------
    str or None
        The run folder of an upload converted in this script run (to open it), else None.
    """
    limit_mb = max_upload_bytes() // 2**20
    box = where.expander("Open your own checkpoint")
    file = box.file_uploader(
        "Checkpoint file or zip of a folder",
        type=ACCEPTED,
        key=KEY_FILE,
        help=(
            "torch.nn.utils.prune, ShrinkBench, OpenLTH (zip the tree), NNI or plain sparse state "
            f"dicts; .pt/.pth/.bin/.safetensors or .zip, up to {limit_mb} MB (RTL_MAX_UPLOAD_MB). "
            "Pickles that would run code are refused."
        ),
    )
    if file is None:
        return None
    data = file.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    runs = st.session_state.setdefault(_RUNS, {})
    errors = st.session_state.setdefault(_ERRORS, {})
    if digest in errors:
        box.error(errors[digest])
        return None
    if digest in runs:
        return None
    # one folder per upload, named after the file (the run picker shows that name)
    folder = _workdir() / f"{safe_filename(file.name)}-{digest[:8]}"
    try:
        folder.mkdir()
        with st.spinner(f"Converting {file.name}…"):
            run_dir = import_upload(data, file.name, folder)
    except (CheckpointError, RunFormatError) as e:
        errors[digest] = f"Could not open {file.name}: {e}"
        box.error(errors[digest])
        return None
    runs[digest] = str(run_dir)
    box.success(f"Opened {file.name} as a temporary run for this session.")
    return str(run_dir)
