"""Uploading a checkpoint in the dashboard: converted into a per-session temporary run and shown.

Hostile or broken uploads give an st.error in the sidebar, never an exception, never
executed code, and nothing written outside the session's temporary folder, which is
removed when the session ends.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn
from torch.nn.utils import prune

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
PAGES = ["overview", "similarity", "collapse", "fairness", "attention", "projection", "coding"]
TIMEOUT = 180


def _pruned_checkpoint() -> bytes:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    for layer in (model[0], model[2]):
        prune.l1_unstructured(layer, "weight", amount=0.6)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def _tree_digest(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


class _Payload:
    """A pickle that would create a file when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            zf.writestr(zipfile.ZipInfo(name), content)
    return buf.getvalue()


@pytest.fixture
def app(monkeypatch, tmp_path):
    monkeypatch.setenv("RTL_RUNS_DIR", str(tmp_path / "no-runs-here"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    # start on a small embedded run: the default run's across-seed overview is not under test here
    at.session_state["sidebar.run"] = str(REPO / "artifacts" / "speech-unet-env")
    return at.run()


def _upload(at: AppTest, name: str, content: bytes) -> AppTest:
    at.file_uploader(key="upload.file").set_value((name, content, "application/octet-stream"))
    return at.run()


def test_uploaded_checkpoint_opens_as_a_temporary_run_on_every_page(app, tmp_path):
    before = _tree_digest(REPO / "artifacts")
    at = _upload(app, "pruned.pt", _pruned_checkpoint())
    assert not at.exception, [e.value for e in at.exception]
    run_path = Path(at.session_state["sidebar.run"])
    workdir = Path(at.session_state["upload.workdir"].name)
    assert workdir.is_relative_to(tmp_path / "tmp") and run_path.is_relative_to(workdir)
    assert any("Opened pruned.pt" in str(s.value) for s in at.success)
    labels = at.sidebar.selectbox(key="sidebar.run").options
    assert any(label.startswith("pruned.pt-") and label.endswith("·  uploaded") for label in labels), labels
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
        assert str(at.session_state["sidebar.run"]) == str(run_path), page
    assert _tree_digest(REPO / "artifacts") == before  # the app never writes under artifacts/
    # the session's temporary folder goes with the session's state
    del at.session_state["upload.workdir"]
    gc.collect()
    assert not workdir.exists()


def test_stale_upload_folders_of_a_killed_server_are_swept(app, tmp_path):
    stale = tmp_path / "tmp" / "rtl-upload-old"
    (stale / "x").mkdir(parents=True)
    old = 1_000_000_000
    os.utime(stale, (old, old))
    fresh = tmp_path / "tmp" / "rtl-upload-live"
    fresh.mkdir()
    _upload(app, "pruned.pt", _pruned_checkpoint())
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("random.pt", os.urandom(4096), "Could not open random.pt"),
        ("empty.pt", b"", "empty"),
        ("truncated.pt", _pruned_checkpoint()[:300], "Could not open truncated.pt"),
        ("slip.zip", _zip({"../../evil.pt": b"x"}), ".."),
        ("abs.zip", _zip({"/etc/evil.pt": b"x"}), "absolute"),
        ("notes.zip", _zip({"readme.txt": b"hello"}), "Could not open notes.zip"),
    ],
)
def test_broken_uploads_show_an_error_not_an_exception(app, tmp_path, name, content, fragment):
    before = _tree_digest(tmp_path)
    at = _upload(app, name, content)
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(str(e.value) for e in at.error)
    assert fragment in errors, errors
    assert "upload.runs" not in at.session_state or not at.session_state["upload.runs"]
    # nothing written outside the session's temporary folder
    outside = {k for k in _tree_digest(tmp_path) if not k.startswith("tmp/rtl-upload-")}
    assert outside == set(before)


def test_code_in_a_pickle_is_never_executed(app, tmp_path):
    marker = tmp_path / "pwned"
    content = pickle.dumps({"fc.weight": _Payload(marker)})
    at = _upload(app, "evil.pt", content)
    assert not at.exception
    assert "arbitrary Python objects" in " ".join(str(e.value) for e in at.error)
    assert not marker.exists()


def test_oversized_upload_is_refused(app, monkeypatch):
    monkeypatch.setenv("RTL_MAX_UPLOAD_MB", "1")
    at = _upload(app, "big.pt", b"\0" * (2 * 2**20))
    assert not at.exception
    assert "big.pt" in " ".join(str(e.value) for e in at.error)
