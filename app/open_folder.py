"""Open a folder on this machine: import large checkpoints by path, never through the upload box.

Hugging Face model folders (one per ticket, or a folder of them) are streamed
tensor by tensor into packed masks (:func:`ingest.hf.import_hf`),
with a progress bar; other checkpoint folders and files go through
:func:`ingest.import_checkpoints`. The run is written to a folder
the user names, or to a temporary folder kept for the session.

Reading arbitrary paths of the server's disk is only offered when the app runs
locally: the browser talks to the server over the loopback interface, with a
``localhost`` host name and no proxy headers. ``RTL_OPEN_FOLDERS=1`` turns the
box on anywhere (e.g. a trusted lab server), ``RTL_OPEN_FOLDERS=0`` off.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

from analysis import RunFormatError
from ingest import CheckpointError, import_checkpoints
from ingest.hf import hf_folders, import_hf

ENV = "RTL_OPEN_FOLDERS"
KEY_PATH = "open_folder.path"
KEY_OUT = "open_folder.out"
KEY_GO = "open_folder.go"
_RUNS = "open_folder.runs"  # run folders opened in this session
_WORKDIR = "open_folder.workdir"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
_PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip", "Forwarded")


def allowed() -> bool:
    """Whether this session may read paths of the server's disk (see the module docstring)."""
    env = os.environ.get(ENV, "").strip()
    if env in ("0", "1"):
        return env == "1"
    try:
        headers = st.context.headers
        host = headers.get("Host", "")
        ip = st.context.ip_address
    except Exception:  # no browser session (bare script run)
        return False
    if not host or ip is not None or any(h in headers for h in _PROXY_HEADERS):
        return False
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return hostname.lower() in _LOCAL_HOSTS


def session_runs() -> list[str]:
    """Run folders opened by path in this session, oldest first."""
    return [p for p in st.session_state.get(_RUNS, []) if Path(p).is_dir()]


def _temporary_run_dir(name: str) -> Path:
    if _WORKDIR not in st.session_state:
        st.session_state[_WORKDIR] = tempfile.TemporaryDirectory(prefix="rtl-open-")
    base = Path(st.session_state[_WORKDIR].name)
    out, i = base / name, 1
    while out.exists():
        i += 1
        out = base / f"{name}-{i}"
    return out


def render(where) -> str | None:
    """Draw the box in ``where`` (when :func:`allowed`); import on click.

    Returns
    -------
    str or None
        The run folder imported in this script run (to open it), else None.
    """
    if not allowed():
        return None
    box = where.expander("Open a folder on this machine")
    src = box.text_input(
        "Checkpoint folder",
        key=KEY_PATH,
        placeholder="/data/llama-wanda/code",
        help="A Hugging Face model folder (model.safetensors or .index.json + shards), a folder of "
        "them (one ticket each), or any checkpoint file/folder the importer reads. Large models are "
        "streamed one tensor at a time.",
    )
    out = box.text_input(
        "Run folder (optional)",
        key=KEY_OUT,
        placeholder="a temporary folder for this session",
        help="Where the run is written; must not exist or be empty. Empty: a temporary folder.",
    )
    if not box.button("Import", key=KEY_GO, disabled=not src.strip()):
        return None
    path = Path(src.strip()).expanduser()
    if not path.exists():
        box.error(f"No such file or folder: {path}")
        return None
    models = hf_folders(path)
    run_dir = Path(out.strip()).expanduser() if out.strip() else _temporary_run_dir(path.name or "run")
    try:
        if models:
            bar = box.progress(0.0, text=f"Reading {len(models)} model folder(s)…")

            def progress(fraction: float, message: str) -> None:
                bar.progress(min(1.0, fraction), text=f"{fraction:.0%} · {message}")

            import_hf([path], run_dir, progress=progress)
            bar.empty()
        else:
            with box.status(f"Converting {path.name}…"):
                import_checkpoints([path], run_dir)
    except (CheckpointError, RunFormatError, OSError) as e:
        box.error(f"Could not open {path}: {e}")
        return None
    st.session_state.setdefault(_RUNS, []).append(str(run_dir))
    box.success(f"Opened {path.name} as {run_dir}")
    return str(run_dir)
