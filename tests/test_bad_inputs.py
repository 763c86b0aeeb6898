"""Broken and hostile inputs: each is refused with its own clear message, and nothing is written.

Every case runs through the Python API inside a sandbox: the system temp dir
and the working directory are redirected into ``tmp_path``, and the whole
``tmp_path`` tree is compared before and after, so a refused import that left a
staging folder, a half-written run, or a file created by a pickle payload fails
the test. A representative subset also runs through ``python -m analysis``.
"""

import io
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_safetensors

from artifacts.run_format import MANIFEST, RunFormatError, load_run, read_json, write_json
from ingest import CheckpointError, import_checkpoints, import_upload

ROOT = Path(__file__).resolve().parents[1]


class RunsShell:
    """Pickles to a call of ``os.system(cmd)``: must never run."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class OpensFile:
    """Pickles to ``open(path, "w")``: creating the file would prove execution."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _w(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _lth(root: Path, levels=(0, 1, 2), replicate=1, shapes=None) -> Path:
    """A minimal OpenLTH tree (all-ones masks, consistent sparsity reports)."""
    shapes = shapes or {lv: {"fc.weight": (3, 4)} for lv in levels}
    for lv in levels:
        main = root / "lottery_abc" / f"replicate_{replicate}" / f"level_{lv}" / "main"
        main.mkdir(parents=True)
        torch.save({k: torch.ones(s, dtype=torch.int32) for k, s in shapes[lv].items()}, main / "mask.pth")
        n = sum(int(np.prod(s)) for s in shapes[lv].values())
        (main / "sparsity_report.json").write_text(f'{{"total": {n}.0, "unpruned": {n}.0}}')
        (main / "logger").write_text("test_accuracy,0,0.1\ntest_accuracy,100,0.9")
    return root


def _pair(mask, weight=None):
    """A ShrinkBench-style state dict with one layer."""
    return {"fc.weight": _w(3, 4) if weight is None else weight, "fc.weight_mask": mask}


def _truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _safetensors(path: Path, tensors) -> Path:
    save_safetensors({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def _folder(d: Path, files: dict) -> Path:
    d.mkdir()
    for name, obj in files.items():
        torch.save(obj, d / name)
    return d


def _make_run(d: Path) -> Path:
    src = _save(d / "t.pt", _pair(torch.ones(3, 4)))
    return import_checkpoints([src], d / "a_run")


# Each builder gets (inputs_dir, marker) and returns the paths to import, or a dict with
# "paths", optional "out" (a destination) and "kwargs" for import_checkpoints.
API_CASES = {
    "pickle_runs_shell": (
        lambda d, mk: [_save(d / "evil.pt", {"fc.weight": RunsShell(f"touch {mk}")})],
        "contains arbitrary Python objects",
    ),
    "raw_pickle_opens_file": (
        lambda d, mk: [_write(d / "evil.pth", pickle.dumps({"fc.weight": OpensFile(mk)}, protocol=2))],
        "was not loaded",
    ),
    "pickle_inside_openlth_tree": (
        lambda d, mk: [_poison_lth(d, mk)],
        "level_1/main/mask.pth: refused: the file contains arbitrary Python objects",
    ),
    "non_binary_float_mask": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.full((3, 4), 0.5)))],
        "is not binary: 12 of 12 entries are neither 0 nor 1 (e.g. 0.5)",
    ),
    "int64_mask_with_a_2": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.tensor([[1, 0, 2, 1]] * 3, dtype=torch.int64)))],
        "is not binary: 3 of 12 entries are neither 0 nor 1 (e.g. 2)",
    ),
    "nan_in_float_mask": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.tensor([[1.0, float("nan"), 0.0, 1.0]] * 3)))],
        "(e.g. nan)",
    ),
    "string_mask": (
        lambda d, mk: [_save(d / "m.pt", _pair("all ones"))],
        "mask 'fc.weight_mask' is a str, not a tensor",
    ),
    "complex_mask_dtype": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.ones(3, 4, dtype=torch.complex64)))],
        "has dtype complex64; a mask must be bool, integer or float",
    ),
    "integer_weights": (
        lambda d, mk: [_save(d / "m.pt", {"fc.weight": torch.ones(3, 4, dtype=torch.int64)})],
        "has dtype int64; weights must be floating point",
    ),
    "nan_weight": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.ones(3, 4), torch.tensor([[float("nan")] * 4] * 3)))],
        "weight 'fc.weight' contains 12 NaN or inf values",
    ),
    "inf_weight_inferred_mask": (
        lambda d, mk: [_save(d / "m.pt", {"fc.weight": torch.tensor([[1.0, float("inf")], [0.0, 2.0]])})],
        "contains 1 NaN or inf values",
    ),
    "mask_and_weight_shapes_differ": (
        lambda d, mk: [_save(d / "m.pt", _pair(torch.ones(4, 3)))],
        "mask 'fc.weight_mask' has shape (4, 3) but weight 'fc.weight' has shape (3, 4)",
    ),
    "tickets_with_different_shapes": (
        lambda d, mk: [_folder(d / "t", {"a.pt": {"fc.weight": _w(3, 4)}, "b.pt": {"fc.weight": _w(4, 3)}})],
        "layer 'fc.weight' has shape (3, 4) in ticket 'a' but (4, 3) in ticket 'b'",
    ),
    "ticket_missing_a_layer": (
        lambda d, mk: [
            _folder(
                d / "t",
                {
                    "a.pt": {"fc.weight": _w(3, 4), "conv.weight": _w(2, 1, 3, 3)},
                    "b.pt": {"fc.weight": _w(3, 4)},
                },
            )
        ],
        "ticket 'b' has no layer 'conv.weight' (present in ticket 'a')",
    ),
    "empty_file": (lambda d, mk: [_write(d / "empty.pt", b"")], "file is empty"),
    "truncated_torch_zip": (
        lambda d, mk: [_truncated(_save(d / "t.pt", {"fc.weight": _w(30, 40)}))],
        "truncated or corrupt PyTorch checkpoint (the zip archive is incomplete)",
    ),
    "truncated_legacy_torch_file": (
        lambda d, mk: [_truncated(_legacy(d / "t.pt"))],
        "truncated or corrupt PyTorch checkpoint",
    ),
    "safetensors_cut_in_header": (
        lambda d, mk: [
            _truncated(_safetensors(d / "t.safetensors", {"fc.weight": np.ones((3, 4), np.float32)}), 0.3)
        ],
        "truncated safetensors file",
    ),
    "safetensors_cut_in_data": (
        lambda d, mk: [
            _truncated(_safetensors(d / "t.safetensors", {"fc.weight": np.ones((30, 40), np.float32)}), 0.6)
        ],
        "truncated or corrupt safetensors file",
    ),
    "random_bytes": (
        lambda d, mk: [_write(d / "noise.pt", np.random.default_rng(0).bytes(4096))],
        "unrecognised file content",
    ),
    "state_dict_without_masks_or_2d_weights": (
        lambda d, mk: [_save(d / "m.pt", {"bn.weight": torch.ones(4), "bn.bias": torch.zeros(4)})],
        "no masks found",
    ),
    "unrecognised_layout": (
        lambda d, mk: [_save(d / "m.pt", {"epoch": 3, "note": "hello"})],
        "unrecognised layout (top-level keys: 'epoch', 'note')",
    ),
    "not_a_dict": (
        lambda d, mk: [_save(d / "m.pt", torch.ones(3))],
        "holds a ndarray, not a dict of tensors",
    ),
    "prune_orig_without_mask": (
        lambda d, mk: [_save(d / "m.pt", {"fc.weight_orig": _w(3, 4)})],
        "'fc.weight_orig' has no matching 'fc.weight_mask'",
    ),
    "openlth_missing_level": (
        lambda d, mk: [_lth(d / "lth", levels=(0, 2))],
        "missing level(s) 1 (found levels 0, 2)",
    ),
    "openlth_missing_mask_pth": (
        lambda d, mk: [_unlink(_lth(d / "lth"), "lottery_abc/replicate_1/level_1/main/mask.pth")],
        "level_1: OpenLTH level folder has no main/mask.pth",
    ),
    "openlth_sparsity_report_disagrees": (
        lambda d, mk: [
            _edit(
                _lth(d / "lth"),
                "lottery_abc/replicate_1/level_2/main/sparsity_report.json",
                '{"total": 12.0, "unpruned": 5.0}',
            )
        ],
        "says 5 of 12 weights unpruned but mask.pth keeps 12 of 12",
    ),
    "openlth_malformed_logger": (
        lambda d, mk: [
            _edit(
                _lth(d / "lth"),
                "lottery_abc/replicate_1/level_0/main/logger",
                "test_accuracy,0,0.1\ntest_accuracy;100;0.9",
            )
        ],
        "malformed logger line 2",
    ),
    "openlth_layers_change_between_levels": (
        lambda d, mk: [
            _lth(d / "lth", levels=(0, 1), shapes={0: {"fc.weight": (3, 4)}, 1: {"fc.weight": (4, 4)}})
        ],
        "layer 'fc.weight' has shape (3, 4) in replicate_1/level_0 but (4, 4) in replicate_1/level_1",
    ),
    "tickets_with_different_levels": (
        lambda d, mk: [_lth(d / "lth"), _save(d / "single.pt", {"fc.weight": _w(3, 4)})],
        "ticket 'single' has levels [0] but ticket 'replicate_1' has [0, 1, 2]",
    ),
    "duplicate_ticket_names": (  # the same folder twice (two folders' files are named after them)
        lambda d, mk: [_folder(d / "a", {"m.pt": {"fc.weight": _w(3, 4)}}), d / "a"],
        "two tickets are named 'm'",
    ),
    "missing_path": (lambda d, mk: [d / "nope.pt"], "nope.pt: no such file or folder"),
    "folder_without_checkpoints": (
        lambda d, mk: [_write(d / "docs" / "notes.txt", b"x", mkdir=True).parent],
        "no checkpoint files",
    ),
    "run_folder_as_input": (lambda d, mk: [_make_run(d)], "is already a run folder"),
    "zip_archive_as_checkpoint": (
        lambda d, mk: [_write(d / "tickets.pt", _zip({"a.txt": b"hello"}))],
        "is a zip archive, not a PyTorch checkpoint",
    ),
    "destination_not_empty": (
        lambda d, mk: {
            "paths": [_save(d / "m.pt", {"fc.weight": _w(3, 4)})],
            "out": _write(d / "taken" / "f", b"x", mkdir=True).parent,
        },
        "exists and is not empty; pass --force to replace it",
    ),
    "force_on_a_folder_that_is_no_run": (
        lambda d, mk: {
            "paths": [_save(d / "m.pt", {"fc.weight": _w(3, 4)})],
            "out": _write(d / "home" / "notes.txt", b"x", mkdir=True).parent,
            "kwargs": {"force": True},
        },
        "not a run folder (no manifest.json)",
    ),
    "destination_is_a_file": (
        lambda d, mk: {
            "paths": [_save(d / "m.pt", {"fc.weight": _w(3, 4)})],
            "out": _write(d / "file", b"x"),
        },
        "exists and is not a folder",
    ),
    "non_binary_safetensors_mask": (
        lambda d, mk: [
            _safetensors(
                d / "m.safetensors",
                {"fc.weight": np.ones((3, 4), np.float32), "fc.weight_mask": np.full((3, 4), 3, np.int64)},
            )
        ],
        "is not binary: 12 of 12 entries are neither 0 nor 1 (e.g. 3)",
    ),
    "float16_overflow_while_writing": (  # fails mid-write: the staging folder must vanish
        lambda d, mk: {
            "paths": [_save(d / "m.pt", {"fc.weight": torch.full((3, 4), 1e6)})],
            "kwargs": {"weights_dtype": "float16"},
        },
        "exceeds the float16 range",
    ),
    "method_name_escapes": (
        lambda d, mk: {"paths": [_save(d / "m.pt", {"fc.weight": _w(3, 4)})], "kwargs": {"method": "../up"}},
        "invalid method name '../up'",
    ),
}


def _write(path: Path, data: bytes, mkdir: bool = False) -> Path:
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _legacy(path: Path) -> Path:
    torch.save({"fc.weight": _w(30, 40)}, path, _use_new_zipfile_serialization=False)
    return path


def _unlink(root: Path, rel: str) -> Path:
    (root / rel).unlink()
    return root


def _edit(root: Path, rel: str, text: str) -> Path:
    (root / rel).write_text(text)
    return root


def _poison_lth(d: Path, marker: Path) -> Path:
    root = _lth(d / "lth")
    torch.save({"fc.weight": OpensFile(marker)}, root / "lottery_abc/replicate_1/level_1/main/mask.pth")
    return root


def _zip(entries: dict, symlinks: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _ticket_bytes(tmp: Path) -> bytes:
    return _save(tmp / "ok.pt", {"fc.weight": _w(3, 4)}).read_bytes()


def _tree(root: Path) -> dict:
    """Every path under ``root`` with its kind, and for files their size and modification time.

    Folder mtimes are left out: a temporary folder made and removed inside one is allowed.
    """
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        kind = stat.S_IFMT(st.st_mode)
        out[p.relative_to(root).as_posix()] = (kind, None if p.is_dir() else (st.st_size, st.st_mtime_ns))
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """``inputs/``, ``out/`` and a redirected cwd and system temp dir, all inside ``tmp_path``."""
    for sub in ("inputs", "out", "cwd", "systmp"):
        (tmp_path / sub).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    return tmp_path


def _build(case: str, tmp_path: Path) -> tuple[list, Path, dict, Path]:
    marker = tmp_path / "PWNED"
    built = API_CASES[case][0](tmp_path / "inputs", marker)
    if not isinstance(built, dict):
        built = {"paths": built}
    return built["paths"], built.get("out", tmp_path / "out" / "run"), built.get("kwargs", {}), marker


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_refuses(case, sandbox):
    paths, out, kwargs, marker = _build(case, sandbox)
    before = _tree(sandbox)
    with pytest.raises(CheckpointError) as info:
        import_checkpoints(paths, out, **kwargs)
    assert API_CASES[case][1] in str(info.value)
    assert "\n" not in str(info.value)  # one line, for the CLI's "error: ..." and the app
    assert not marker.exists()
    assert _tree(sandbox) == before  # nothing written, nothing left behind


def test_refusal_messages_are_distinct():
    fragments = [frag for _, frag in API_CASES.values()]
    assert len(API_CASES) >= 20
    assert len(set(fragments)) == len(fragments)


# ----------------------------------------------------------------------------- uploads

UPLOAD_CASES = {
    "oversized": (
        lambda t: (b"\0" * 2000, "big.pt", {"max_bytes": 1000}),
        "upload is 2000 bytes, more than the 1000 bytes allowed",
    ),
    "oversized_by_env": (
        lambda t: (b"\0" * 5000, "big.pt", {"env": "0.001"}),
        "set RTL_MAX_UPLOAD_MB to raise it",
    ),
    "zip_slip": (
        lambda t: (_zip({"../evil.pt": _ticket_bytes(t)}), "t.zip", {}),
        "contains '..' (path traversal)",
    ),
    "zip_slip_backslash": (lambda t: (_zip({"a\\..\\..\\evil.pt": b"x"}), "t.zip", {}), "contains '..'"),
    "zip_absolute_path": (lambda t: (_zip({"/tmp/evil.pt": b"x"}), "t.zip", {}), "has an absolute path"),
    "zip_symlink": (
        lambda t: (_zip({"t/a.pt": _ticket_bytes(t)}, symlinks={"t/b.pt": "/etc/passwd"}), "t.zip", {}),
        "is a symbolic link",
    ),
    "zip_bomb": (
        lambda t: (_zip({"bomb.pt": b"\0" * (20 * 2**20)}), "t.zip", {"max_unpacked": 8 * 2**20}),
        "(zip bomb?",
    ),
    "zip_too_many_files": (
        lambda t: (_zip({f"t/{i}.pt": b"x" for i in range(6)}), "t.zip", {"max_files": 5}),
        "has 6 entries, more than the 5 allowed",
    ),
    "zip_truncated": (
        lambda t: (_zip({"t/a.pt": _ticket_bytes(t)})[:200], "t.zip", {}),
        "not a valid zip archive",
    ),
    "zip_without_files": (lambda t: (_zip({"__MACOSX/._a.pt": b"x"}), "t.zip", {}), "holds no files"),
    "empty_upload": (lambda t: (b"", "e.pt", {}), "e.pt: file is empty"),
    "pickle_upload": (
        lambda t: (_save(t / "evil.pt", {"w": OpensFile(t / "PWNED")}).read_bytes(), "../../evil.pt", {}),
        "evil.pt: refused: the file contains arbitrary Python objects",
    ),
}


@pytest.mark.parametrize("case", list(UPLOAD_CASES))
def test_upload_refuses(case, sandbox, monkeypatch):
    data, filename, kwargs = UPLOAD_CASES[case][0](sandbox / "inputs")
    if "env" in kwargs:
        monkeypatch.setenv("RTL_MAX_UPLOAD_MB", kwargs.pop("env"))
    work = sandbox / "out"  # the caller's per-session folder
    before = _tree(sandbox)
    with pytest.raises(CheckpointError) as info:
        import_upload(data, filename, work, **kwargs)
    msg = str(info.value)
    assert UPLOAD_CASES[case][1] in msg
    assert str(work) not in msg  # names the upload, not the temporary folder
    assert not (sandbox / "inputs" / "PWNED").exists()
    assert _tree(sandbox) == before


def test_unknown_schema_version_through_load_run(tmp_path):
    run = _make_run(tmp_path)
    manifest = read_json(run / MANIFEST)
    write_json(run / MANIFEST, {**manifest, "schema_version": 99})
    with pytest.raises(RunFormatError, match="unknown schema version 99"):
        load_run(run)


# ----------------------------------------------------------------------------- command line

# One pickle (pays for importing torch) and five refusals that never need torch.
CLI_CASES = [
    "pickle_runs_shell",
    "empty_file",
    "safetensors_cut_in_data",
    "openlth_missing_level",
    "destination_not_empty",
    "non_binary_safetensors_mask",
]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses(case, sandbox):
    paths, out, kwargs, marker = _build(case, sandbox)
    assert not kwargs
    before = _tree(sandbox)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(sandbox / "systmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "import", *map(str, paths), "--out", str(out)],
        cwd=sandbox / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and API_CASES[case][1] in proc.stderr
    assert len(lines) == 1
    assert not marker.exists()
    assert _tree(sandbox) == before
