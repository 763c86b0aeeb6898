"""Hostile and broken inputs, as classes: run folders, checkpoints, zips, command-line targets, faults.

Every case asserts a clear, one-line error (or a correct result), no traceback,
nothing written outside the target and nothing left half-written. Run folders
are validated at load against :mod:`artifacts.schema`; the message names the file
and the field. The app stays alive on each kind of broken run folder (AppTest,
one per kind). Faults of the system are simulated by raising ``OSError`` with the
real errno (ENOSPC, EROFS, EACCES) where the code writes, or are real (a file
where a folder should be).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_st
from safetensors.numpy import save_file as save_st
from safetensors.torch import save_file as save_st_torch

from analysis import pair_limits
from artifacts import run_format as rf
from artifacts import schema
from artifacts.run_format import RunFormatError, find_runs, load_run
from ingest import CheckpointError, import_checkpoints, import_upload, load_checkpoint, run_writer
from ingest.cli import main as analysis_main
from ingest.run_writer import empty_predictions

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
SHAPES = {"fc1.weight": (16, 20), "fc2.weight": (4, 16)}
TICKETS = ["a", "b", "c"]


# ----------------------------------------------------------------------------- helpers


def write_small_run(run_dir: Path, k: int = 3, levels: int = 2, seed: int = 0) -> Path:
    """A valid run: methods ``rtl`` (k tickets) and ``imp`` (one), ``levels`` levels each."""
    rng = np.random.default_rng(seed)
    names = TICKETS if k == 3 else [f"t{i}" for i in range(k)]
    rf.write_manifest(
        run_dir,
        {
            "name": run_dir.name,
            "prunable": {n: list(s) for n, s in SHAPES.items()},
            "groups": [],
            "partition": {"kind": "class", "k": k, "names": names},
            "methods": {
                "rtl": {"tickets": names, "ticket_kind": "detector", "routings": [], "default_routing": None},
                "imp": {"tickets": ["all"], "ticket_kind": "single", "routings": [], "default_routing": None},
            },
        },
    )
    for method, kt in (("rtl", k), ("imp", 1)):
        for lv in range(levels):
            masks = {n: rng.random((kt, *s)) > 0.2 * lv for n, s in SHAPES.items()}
            rf.write_level(
                run_dir,
                method,
                lv,
                masks=masks,
                predictions=empty_predictions(),
                info={"sparsity": 0.2 * lv, "params_total": 100, "ticket_sparsity": [0.2 * lv] * kt},
            )
    return run_dir


def _tree(root: Path, skip: Path | None = None) -> dict:
    """Every path under ``root`` (except under ``skip``) with kind, size and mtime of files."""
    out = {}
    for p in root.rglob("*"):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (
            stat.S_IFMT(st.st_mode),
            None if p.is_dir() else (st.st_size, st.st_mtime_ns),
        )
    return out


def _one_line(msg: str) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """``inputs/``, ``out/``, a redirected cwd and system temp dir, all inside ``tmp_path``."""
    for sub in ("inputs", "out", "cwd", "systmp"):
        (tmp_path / sub).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    return tmp_path


# ----------------------------------------------------------------------------- run folders


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)  # edits in place
    path.write_text(json.dumps(obj))


def _m(fn):
    return lambda r: _edit_json(r / rf.MANIFEST, fn)


def _lv(fn, method="rtl", level=1):
    return lambda r: _edit_json(rf.level_dir(r, method, level) / rf.LEVEL_JSON, fn)


def _set(obj: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        obj = obj[k]
    obj[keys[-1]] = value


def _mset(dotted, value):
    return _m(lambda m: _set(m, dotted, value))


def _lset(dotted, value):
    return _lv(lambda i: _set(i, dotted, value))


def _rename_method(new: str):
    def f(m):
        m["methods"] = {new if k == "rtl" else k: v for k, v in m["methods"].items()}

    return _m(f)


def _mask_meta(value, method="rtl", level=1, data=None):
    def f(r):
        path = rf.level_dir(r, method, level) / rf.MASKS
        packed = load_st(str(path)) if data is None else data
        meta = None if value is None else {"shapes": value}
        save_st(packed, str(path), metadata=meta)

    return f


def _raw(rel: str, payload: bytes | None):
    def f(r):
        p = r / rel
        if payload is None:
            p.unlink()
        else:
            p.write_bytes(payload)

    return f


def _victim_traversal(r: Path) -> None:
    """A method named like a path into another run, whose files exist there."""
    victim = r.parent / "other"
    write_small_run(victim)
    shutil.copytree(victim / "rtl", victim / "run" / "imported")
    _edit_json(r / rf.MANIFEST, lambda m: _set(m, "methods", {"../other/run/imported": m["methods"]["rtl"]}))


def _remask(r: Path, shapes: dict, method="rtl") -> None:
    """Rewrite every level's masks with other weight shapes (same element count)."""
    for lv in rf.completed_levels(r, method):
        d = rf.level_dir(r, method, lv)
        k = len(json.loads((r / rf.MANIFEST).read_text())["methods"][method]["tickets"])
        rf.save_masks(d / rf.MASKS, {n: np.ones((k, *s), bool) for n, s in shapes.items()})


# name: (damage, file named in the message, fragment)
RUN_CASES = {
    # manifest.json: types of known fields
    "method_entry_is_string": (_mset("methods.rtl", "rtl"), "manifest.json", "field methods/rtl:"),
    "tickets_is_int": (_mset("methods.rtl.tickets", 3), "manifest.json", "field methods/rtl/tickets"),
    "tickets_is_string": (_mset("methods.rtl.tickets", "xy"), "manifest.json", "field methods/rtl/tickets"),
    "tickets_empty": (_mset("methods.rtl.tickets", []), "manifest.json", "field methods/rtl/tickets"),
    "tickets_duplicate": (_mset("methods.rtl.tickets", ["a", "a", "b"]), "manifest.json", "not distinct"),
    "ticket_name_int": (_mset("methods.rtl.tickets", ["a", 2, "c"]), "manifest.json", "is a int"),
    "ticket_name_dotdot": (_mset("methods.rtl.tickets", ["a", "../x", "c"]), "manifest.json", "'..'"),
    "ticket_name_absolute": (_mset("methods.rtl.tickets", ["/etc/passwd", "b", "c"]), "manifest.json", "'/'"),
    "ticket_name_nul": (_mset("methods.rtl.tickets", ["a\x00", "b", "c"]), "manifest.json", "printable"),
    "ticket_name_backslash": (
        _mset("methods.rtl.tickets", ["a\\..\\b", "b", "c"]),
        "manifest.json",
        "backslash",
    ),
    "ticket_name_empty": (_mset("methods.rtl.tickets", ["", "b", "c"]), "manifest.json", "printable"),
    "ticket_name_too_long": (_mset("methods.rtl.tickets", ["x" * 201, "b", "c"]), "manifest.json", "1-200"),
    "method_traversal_into_victim": (
        _victim_traversal,
        "manifest.json",
        "field methods/../other/run/imported",
    ),
    "method_absolute": (_rename_method("/tmp/rtl"), "manifest.json", "no paths"),
    "method_dotdot": (_rename_method(".."), "manifest.json", "no paths"),
    "method_with_slash": (_rename_method("a/b"), "manifest.json", "no paths"),
    "method_backslash": (_rename_method("a\\b"), "manifest.json", "no paths"),
    "method_hidden": (_rename_method(".hidden"), "manifest.json", "no paths"),
    "method_empty": (_rename_method(""), "manifest.json", "no paths"),
    "method_reserved_extra": (_rename_method("extra"), "manifest.json", "is reserved"),
    "groups_is_string": (_mset("groups", "class"), "manifest.json", "field groups"),
    "groups_has_int": (_mset("groups", ["class", 1]), "manifest.json", "field groups/1"),
    "prunable_is_list": (_mset("prunable", [[16, 20]]), "manifest.json", "field prunable"),
    "prunable_negative": (
        _mset("prunable", {"fc1.weight": [-16, 20], "fc2.weight": [4, 16]}),
        "manifest.json",
        "field prunable/fc1.weight/0",
    ),
    "prunable_string_shape": (
        _mset("prunable", {"fc1.weight": "16x20", "fc2.weight": [4, 16]}),
        "manifest.json",
        "field prunable/fc1.weight",
    ),
    "prunable_empty_shape": (
        _mset("prunable", {"fc1.weight": [], "fc2.weight": [4, 16]}),
        "manifest.json",
        "field prunable/fc1.weight",
    ),
    "prunable_float_dim": (
        _mset("prunable", {"fc1.weight": [16, 20.5], "fc2.weight": [4, 16]}),
        "manifest.json",
        "field prunable/fc1.weight/1",
    ),
    "method_prunable_is_string": (
        _mset("methods.rtl.prunable", "all"),
        "manifest.json",
        "field methods/rtl/prunable",
    ),
    "schema_version_missing": (_m(lambda m: m.pop("schema_version")), "", "unknown schema version None"),
    "schema_version_string": (_mset("schema_version", "1"), "", "unknown schema version '1'"),
    "schema_version_future": (_mset("schema_version", 2), "", "unknown schema version 2"),
    "manifest_is_list": (_raw(rf.MANIFEST, b"[1, 2]"), "manifest.json", "not a JSON object"),
    "manifest_corrupt_json": (_raw(rf.MANIFEST, b'{"methods": '), "manifest.json", "corrupt JSON"),
    "manifest_not_utf8": (_raw(rf.MANIFEST, b"\xff\xfe\x00"), "manifest.json", "corrupt JSON"),
    "manifest_missing": (_raw(rf.MANIFEST, None), "manifest.json", "missing file"),
    "manifest_nested_deeply": (
        _raw(rf.MANIFEST, b"[" * 100_000 + b"]" * 100_000),
        "manifest.json",
        "too deeply",
    ),
    "level_nested_deeply": (
        _raw("rtl/level_01/level.json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        "level.json",
        "too deeply",
    ),
    "methods_missing": (_m(lambda m: m.pop("methods")), "manifest.json", "declares no methods"),
    "methods_empty": (_mset("methods", {}), "manifest.json", "declares no methods"),
    "methods_is_list": (_mset("methods", ["rtl"]), "manifest.json", "field methods"),
    "default_routing_int": (_mset("methods.rtl.default_routing", 3), "manifest.json", "default_routing"),
    "routings_is_string": (
        _mset("methods.rtl.routings", "oracle"),
        "manifest.json",
        "field methods/rtl/routings",
    ),
    "partition_names_string": (_mset("partition.names", "abc"), "manifest.json", "field partition/names"),
    "partition_k_zero": (_mset("partition.k", 0), "manifest.json", "field partition/k"),
    "dataset_is_string": (_mset("dataset", "mnist"), "manifest.json", "field dataset"),
    "dataset_n_test_negative": (_mset("dataset", {"n_test": -5}), "manifest.json", "field dataset/n_test"),
    "name_is_int": (_mset("name", 7), "manifest.json", "field name"),
    "layers_is_string": (_mset("layers", "fc1.weight"), "manifest.json", "field layers"),
    # masks against the manifest
    "mask_16x20_stored_as_4x80": (
        lambda r: _remask(r, {"fc1.weight": (4, 80), "fc2.weight": (4, 16)}),
        "masks.safetensors",
        "weight shape [4, 80] does not match manifest prunable/fc1.weight [16, 20]",
    ),
    "mask_layer_not_prunable": (
        lambda r: _remask(r, {"fc1.weight": (16, 20), "fc2.weight": (4, 16), "fc3.weight": (2, 2)}),
        "masks.safetensors",
        "'fc3.weight' is not in the manifest's prunable layers",
    ),
    "fewer_tickets_in_manifest": (
        _mset("methods.rtl.tickets", ["a", "b"]),
        "masks.safetensors",
        "3 ticket(s)",
    ),
    "more_tickets_in_manifest": (
        _mset("methods.rtl.tickets", ["a", "b", "c", "d"]),
        "masks.safetensors",
        "lists 4",
    ),
    # level.json
    "level_sparsity_missing": (_lv(lambda i: i.pop("sparsity")), "level.json", "'sparsity' is a required"),
    "level_sparsity_lots": (_lset("sparsity", "lots"), "level.json", "field sparsity"),
    "level_sparsity_above_one": (_lset("sparsity", 1.5), "level.json", "field sparsity"),
    "level_sparsity_negative": (_lset("sparsity", -0.1), "level.json", "field sparsity"),
    "level_sparsity_null": (_lset("sparsity", None), "level.json", "field sparsity"),
    "level_sparsity_list": (_lset("sparsity", [0.2]), "level.json", "field sparsity"),
    "level_is_list": (_raw("rtl/level_01/level.json", b"[0.2]"), "level.json", "field (top level)"),
    "level_corrupt_json": (_raw("rtl/level_01/level.json", b"{sparsity"), "level.json", "corrupt JSON"),
    "level_number_mismatch": (_lset("level", 7), "level.json", "field level: 7 but the folder is level 1"),
    "level_number_string": (_lset("level", "1"), "level.json", "field level"),
    "ticket_sparsity_string": (_lset("ticket_sparsity", "0.2"), "level.json", "field ticket_sparsity"),
    "ticket_sparsity_out_of_range": (
        _lset("ticket_sparsity", [0.2, 3, 0.2]),
        "level.json",
        "ticket_sparsity/1",
    ),
    "params_total_negative": (_lset("params_total", -1), "level.json", "field params_total"),
    "params_total_string": (_lset("params_total", "many"), "level.json", "field params_total"),
    "params_per_ticket_floats": (_lset("params_per_ticket", [1.5]), "level.json", "params_per_ticket/0"),
    "metrics_is_string": (_lset("metrics", "good"), "level.json", "field metrics"),
    "metrics_value_string": (_lset("metrics", {"accuracy": "high"}), "level.json", "field metrics/accuracy"),
    "ticket_metrics_ints": (_lset("ticket_metrics", [1, 2]), "level.json", "field ticket_metrics/0"),
    # mask files
    "mask_shapes_is_list": (_mask_meta(json.dumps([[3, 16, 20]])), "masks.safetensors", "field (top level)"),
    "mask_shapes_negative": (
        _mask_meta(json.dumps({"fc1.weight": [3, -16, 20], "fc2.weight": [3, 4, 16]})),
        "masks.safetensors",
        "field fc1.weight/1",
    ),
    "mask_shapes_zero_tickets": (
        _mask_meta(json.dumps({"fc1.weight": [0, 16, 20], "fc2.weight": [3, 4, 16]})),
        "masks.safetensors",
        "field fc1.weight/0",
    ),
    "mask_shapes_string": (
        _mask_meta(json.dumps({"fc1.weight": "3x16x20"})),
        "masks.safetensors",
        "fc1.weight",
    ),
    "mask_shapes_scalar": (
        _mask_meta(json.dumps({"fc1.weight": [3]})),
        "masks.safetensors",
        "field fc1.weight",
    ),
    "mask_shapes_not_json": (_mask_meta("{not json"), "masks.safetensors", "not JSON"),
    "mask_shapes_missing": (_mask_meta(None), "masks.safetensors", "metadata 'shapes' is missing"),
    "mask_shapes_empty": (_mask_meta("{}"), "masks.safetensors", "should be non-empty"),
    "mask_data_does_not_fit": (
        _mask_meta(
            json.dumps({"fc1.weight": [3, 16, 20], "fc2.weight": [3, 4, 16]}),
            data={"fc1.weight": np.zeros((3, 7), np.uint8), "fc2.weight": np.zeros((3, 8), np.uint8)},
        ),
        "masks.safetensors",
        "does not fit the stored data",
    ),
    "mask_data_absent": (
        _mask_meta(
            json.dumps({"fc1.weight": [3, 16, 20], "fc2.weight": [3, 4, 16]}),
            data={"fc1.weight": np.zeros((3, 40), np.uint8)},
        ),
        "masks.safetensors",
        "absent",
    ),
    "mask_file_garbage": (
        _raw("rtl/level_01/masks.safetensors", b"\x00\x01garbage"),
        "masks.safetensors",
        "corrupt",
    ),
    "mask_file_empty": (
        _raw("rtl/level_01/masks.safetensors", b""),
        "masks.safetensors",
        "corrupt mask file",
    ),
    "mask_file_missing": (_raw("rtl/level_01/masks.safetensors", None), "masks.safetensors", "missing file"),
    "mask_file_is_torch_pickle": (
        lambda r: torch.save({"x": torch.ones(2)}, rf.level_dir(r, "rtl", 1) / rf.MASKS),
        "masks.safetensors",
        "corrupt mask file",
    ),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_broken_run_folder_is_refused_at_load(case, tmp_path):
    run = write_small_run(tmp_path / "run")
    damage, filename, fragment = RUN_CASES[case]
    damage(run)
    before = _tree(tmp_path)
    with pytest.raises(RunFormatError) as info:
        load_run(run)
    msg = str(info.value)
    _one_line(msg)
    assert fragment in msg
    if filename:
        assert filename in msg
    assert _tree(tmp_path) == before  # reading never writes


def test_every_embedded_run_loads_unchanged():
    runs = find_runs(REPO / "artifacts")
    assert len(runs) >= 5
    for path in runs:
        before = _tree(path)
        run = load_run(path)
        for m in run.methods:
            assert run.levels(m)
        assert _tree(path) == before


def test_a_method_folder_that_is_a_file_counts_as_not_yet_written(tmp_path):
    run = write_small_run(tmp_path / "run")
    shutil.rmtree(run / "rtl")
    (run / "rtl").write_text("x")
    assert load_run(run).methods == ["imp"]  # a method without completed levels is not offered


def test_an_unreadable_file_is_a_run_error(tmp_path, monkeypatch):
    run = write_small_run(tmp_path / "run")
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.name == rf.LEVEL_JSON:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(RunFormatError, match="cannot read .*level.json: Permission denied"):
        load_run(run)


def test_unknown_fields_stay_allowed(tmp_path):
    run = write_small_run(tmp_path / "run")
    _edit_json(run / rf.MANIFEST, lambda m: m.update(run_group={"seeds": [0, 1]}, hf_config={"x": 1}))
    _edit_json(run / rf.MANIFEST, lambda m: m["methods"]["rtl"].update(alarm={"fired": True}))
    _edit_json(rf.level_dir(run, "rtl", 1) / rf.LEVEL_JSON, lambda i: i.update(alarm_trace=[1, 2]))
    r = load_run(run)
    assert r.manifest["run_group"] == {"seeds": [0, 1]}
    assert r.level_info("rtl", 1)["alarm_trace"] == [1, 2]


def test_traversal_method_reads_nothing_of_the_victim(tmp_path):
    run = write_small_run(tmp_path / "run")
    good = load_run(run)
    for bad in ("../victim/run/imported", "/etc", "..", "a/b"):
        with pytest.raises(RunFormatError, match="no paths"):
            rf.level_dir(run, bad, 0)
        with pytest.raises(RunFormatError):
            good.masks(bad, 0)
    with pytest.raises(RunFormatError, match="extra arrays"):
        good.extra("../../etc/passwd")


@pytest.mark.parametrize(
    "what, bad",
    [
        ("method", "../up"),
        ("method", "/abs"),
        ("method", "extra"),
        ("ticket", "../x"),
        ("ticket", "/etc/passwd"),
        ("ticket", "a\x00"),
        ("sparsity", "lots"),
    ],
)
def test_writing_refuses_what_loading_refuses(what, bad, tmp_path):
    masks = {"fc1.weight": np.ones((1, 16, 20), bool), "fc2.weight": np.ones((1, 4, 16), bool)}
    manifest = {"prunable": {n: list(s) for n, s in SHAPES.items()}, "methods": {"m": {"tickets": ["t"]}}}
    with pytest.raises(RunFormatError):
        if what == "method":
            rf.write_level(
                tmp_path, bad, 0, masks=masks, predictions=empty_predictions(), info={"sparsity": 0}
            )
        elif what == "ticket":
            rf.write_manifest(tmp_path, {**manifest, "methods": {"m": {"tickets": [bad]}}})
        else:
            rf.write_level(
                tmp_path, "m", 0, masks=masks, predictions=empty_predictions(), info={"sparsity": bad}
            )
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_schema_rejects_the_listed_ticket_and_method_names():
    assert schema.identifier_problem("imp-china") is None
    assert schema.ticket_problem("T-shirt/top") is None  # embedded label, never a path
    assert schema.ticket_problem("china/0") is None
    for bad in ("..", "../x", "/x", "a/b", "", ".x", "x" * 129):
        assert schema.identifier_problem(bad), bad


# ----------------------------------------------------------------------------- checkpoints


def _pair(mask: torch.Tensor, weight: torch.Tensor | None = None) -> dict:
    w = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)) if weight is None else weight
    return {"fc.weight": w * mask, "fc.weight_mask": mask}


def _mask34() -> torch.Tensor:
    return (torch.arange(12).reshape(3, 4) % 3 != 0).float()


def _zip_bytes(entries: dict, flag_bits: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.flag_bits |= flag_bits
            zf.writestr(info, data)
    return buf.getvalue()


def _deep(n: int):
    obj = {"fc.weight": torch.ones(3, 4)}
    for _ in range(n):
        obj = {"x": obj}
    return obj


def _sparse_bad_indices(path: Path) -> Path:
    t = torch.sparse_coo_tensor(torch.tensor([[0], [9]]), torch.tensor([1.0]), (3, 4), check_invariants=False)
    torch.save({"fc.weight": t}, path)
    return path


def _torch(name: str, obj, **kw):
    def build(d: Path) -> list[Path]:
        torch.save(obj() if callable(obj) else obj, d / name, **kw)
        return [d / name]

    return build


def _st(name: str, tensors):
    def build(d: Path) -> list[Path]:
        save_st_torch(tensors(), str(d / name))
        return [d / name]

    return build


def _bytes(name: str, data: bytes):
    def build(d: Path) -> list[Path]:
        (d / name).write_bytes(data)
        return [d / name]

    return build


def _st_header(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


# Refused: name -> (builder, fragment)
CKPT_REFUSED = {
    "expand_stride0_1e8": (
        _torch("e.pt", lambda: {"fc.weight": torch.ones(1).expand(100_000, 1000)}),
        "stride-0 (expanded) or sparse tensor",
    ),
    "expand_mask_1e9": (
        _torch(
            "e.pt", lambda: _pair(torch.ones(1).expand(3, 4)) | {"x.weight_mask": torch.ones(1).expand(10**9)}
        ),
        "declare",
    ),
    "expand_in_nested_list": (
        _torch("e.pt", lambda: {"state_dict": {"fc.weight": torch.zeros(1, 1).expand(50_000, 5_000)}}),
        "['state_dict']['fc.weight']: refused",
    ),
    "sparse_coo_1e10": (
        _torch(
            "s.pt",
            lambda: {
                "fc.weight": torch.sparse_coo_tensor(
                    torch.tensor([[0], [0]]), torch.tensor([1.0]), (10**5, 10**5)
                )
            },
        ),
        "37.3 GB of dense data",
    ),
    "sparse_csr_huge": (
        _torch(
            "s.pt",
            lambda: {
                "fc.weight": torch.sparse_csr_tensor(
                    torch.zeros(200_001, dtype=torch.int64),
                    torch.zeros(0, dtype=torch.int64),
                    torch.zeros(0),
                    (200_000, 200_000),
                )
            },
        ),
        "sparse tensor would be materialised",
    ),
    "sparse_out_of_range_indices": (
        lambda d: [_sparse_bad_indices(d / "s.pt")],
        "truncated or corrupt PyTorch",
    ),
    "many_tensors_past_env_limit": (
        _torch("m.pt", lambda: {f"l{i}.weight": torch.zeros(256, 256) for i in range(40)}),
        "set RTL_MAX_TENSOR_MB",
    ),
    "deep_nesting": (_torch("d.pt", lambda: _deep(40)), "nested more than 32 levels"),
    "quantized_tensor": (
        _torch(
            "q.pt", lambda: {"fc.weight": torch.quantize_per_tensor(torch.ones(3, 4), 0.1, 0, torch.qint8)}
        ),
        "quantized tensors",
    ),
    "ticket_name_dotdot": (_torch("t.pt", lambda: {"../x": _pair(_mask34()), "b": _pair(_mask34())}), "'..'"),
    "ticket_name_absolute": (
        _torch("t.pt", lambda: {"/etc/x": _pair(_mask34()), "b": _pair(_mask34())}),
        "'/'",
    ),
    "ticket_name_backslash": (
        _torch("t.pt", lambda: {"a\\b": _pair(_mask34()), "b": _pair(_mask34())}),
        "backslash",
    ),
    "ticket_name_control_char": (
        _torch("t.pt", lambda: {"a\nb": _pair(_mask34()), "b": _pair(_mask34())}),
        "printable",
    ),
    "plain_zip_named_safetensors": (_bytes("t.safetensors", _zip_bytes({"a.txt": b"x"})), "is a zip archive"),
    "random_bytes_named_safetensors": (
        _bytes("t.safetensors", bytes(range(256)) * 4),
        "not a valid safetensors",
    ),
    "text_named_pt": (_bytes("t.pt", b"just some notes\n" * 10), "unrecognised file content"),
    "safetensors_header_len_huge": (
        _bytes("t.safetensors", (2**62).to_bytes(8, "little") + b"{}"),
        "safetensors",
    ),
    "safetensors_header_not_json": (
        _bytes("t.safetensors", (8).to_bytes(8, "little") + b"{nojson}"),
        "safetensors",
    ),
    "safetensors_offsets_past_end": (
        _bytes(
            "t.safetensors",
            _st_header(
                {"fc.weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}},
                b"\0" * 16,
            ),
        ),
        "truncated or corrupt safetensors",
    ),
    "safetensors_shape_disagrees_with_offsets": (
        _bytes(
            "t.safetensors",
            _st_header(
                {"fc.weight": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}}, b"\0" * 16
            ),
        ),
        "truncated or corrupt safetensors",
    ),
    "empty_safetensors": (_bytes("t.safetensors", b""), "file is empty"),
    "torch_zip_truncated_named_safetensors": (
        lambda d: [_truncate(_torch("t.safetensors", lambda: {"fc.weight": torch.randn(40, 40)})(d)[0])],
        "truncated or corrupt PyTorch checkpoint",
    ),
}


def _truncate(p: Path) -> Path:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


@pytest.mark.parametrize("case", list(CKPT_REFUSED))
def test_checkpoint_is_refused(case, sandbox, monkeypatch):
    if case == "many_tensors_past_env_limit":
        monkeypatch.setenv("RTL_MAX_TENSOR_MB", "5")
    paths = CKPT_REFUSED[case][0](sandbox / "inputs")
    before = _tree(sandbox)
    with pytest.raises(CheckpointError) as info:
        import_checkpoints(paths, sandbox / "out" / "run")
    _one_line(str(info.value))
    assert CKPT_REFUSED[case][1] in str(info.value)
    assert _tree(sandbox) == before


# Accepted with the right result: name -> (builder, expected mask of "fc.weight" per ticket)
_M = _mask34()
CKPT_ACCEPTED = {
    "torch_zip_named_safetensors": (_torch("t.safetensors", lambda: _pair(_M)), [_M]),
    "legacy_torch_named_safetensors": (
        _torch("t.safetensors", lambda: _pair(_M), _use_new_zipfile_serialization=False),
        [_M],
    ),
    "safetensors_named_pt": (_st("t.pt", lambda: _pair(_M)), [_M]),
    "safetensors_named_bin": (_st("t.bin", lambda: _pair(_M)), [_M]),
    "safetensors_named_pth_tar": (_st("t.pth.tar", lambda: _pair(_M)), [_M]),
    "torch_zip_named_ckpt": (_torch("t.ckpt", lambda: _pair(_M)), [_M]),
    "small_expanded_mask": (_torch("t.pt", lambda: _pair(torch.ones(1, 1).expand(3, 4))), [torch.ones(3, 4)]),
    "sparse_coo_mask": (_torch("t.pt", lambda: _pair(_M.to_sparse())), [_M]),
    "sparse_csr_mask": (_torch("t.pt", lambda: _pair(_M.to_sparse_csr())), [_M]),
    "bfloat16_weights": (_torch("t.pt", lambda: _pair(_M, torch.randn(3, 4).bfloat16())), [_M]),
    "ticket_label_with_slash": (
        _torch("t.pt", lambda: {"T-shirt/top": _pair(_M), "bag": _pair(1 - _M)}),
        [_M, 1 - _M],
    ),
}


@pytest.mark.parametrize("case", list(CKPT_ACCEPTED))
def test_checkpoint_is_read_by_content(case, sandbox):
    paths = CKPT_ACCEPTED[case][0](sandbox / "inputs")
    out = sandbox / "out" / "run"
    before = _tree(sandbox)
    import_checkpoints(paths, out)
    run = load_run(out)
    got = run.masks("imported", 0)["fc.weight"]
    want = np.stack([m.numpy() != 0 for m in CKPT_ACCEPTED[case][1]])
    np.testing.assert_array_equal(got, want)
    assert _tree(sandbox, skip=out) == before  # nothing outside the target


def test_declared_size_check_runs_before_anything_is_materialised(sandbox):
    path = sandbox / "inputs" / "e.pt"
    torch.save({"fc.weight": torch.ones(1).expand(10**12)}, path)  # 4 TB declared
    with pytest.raises(CheckpointError, match="stride-0"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- uploads (zips)


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


UPLOAD_REFUSED = {
    "expanded_tensor_upload": (
        lambda: (_torch_bytes({"fc.weight": torch.ones(1).expand(10**8)}), "x.pt"),
        "stride-0",
    ),
    "expanded_tensor_in_zip": (
        lambda: (_zip_bytes({"t/a.pt": _torch_bytes({"fc.weight": torch.ones(1).expand(10**8)})}), "t.zip"),
        "a.pt['fc.weight']: refused",
    ),
    "zip_drive_letter_path": (lambda: (_zip_bytes({"C:/evil.pt": b"x"}), "t.zip"), "has an absolute path"),
    "zip_dotdot_with_backslashes": (lambda: (_zip_bytes({"t/..\\..\\x.pt": b"x"}), "t.zip"), "contains '..'"),
    "zip_encrypted_entry": (lambda: (_encrypted_zip(), "t.zip"), "is encrypted"),
    "zip_duplicate_entries": (
        lambda: (_dup_zip(), "t.zip"),
        "appears twice",
    ),
    "zip_of_a_run_folder": (lambda: (_zip_of_run(), "run.zip"), "is already a run folder"),
    "zip_ticket_dict_with_dotdot_name": (
        lambda: (_torch_bytes({"..": _pair(_M), "b": _pair(_M)}), "t.pt"),
        "'..'",
    ),
}


def _encrypted_zip() -> bytes:
    """A zip whose entry carries the 'encrypted' flag in its local and central headers."""
    data = bytearray(_zip_bytes({"t/a.pt": b"x"}))
    data[6] |= 0x1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    return bytes(data)


def _dup_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("t/a.pt", b"x")
        zf.writestr("t/a.pt", b"y")
    return buf.getvalue()


def _zip_of_run() -> bytes:
    d = Path(tempfile.mkdtemp())
    try:
        write_small_run(d / "run", levels=1)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted((d / "run").rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(d).as_posix())
        return buf.getvalue()
    finally:
        shutil.rmtree(d)


@pytest.mark.parametrize("case", list(UPLOAD_REFUSED))
def test_upload_is_refused(case, sandbox):
    data, name = UPLOAD_REFUSED[case][0]()
    work = sandbox / "out"
    before = _tree(sandbox)
    with pytest.raises(CheckpointError) as info:
        import_upload(data, name, work)
    msg = str(info.value)
    _one_line(msg)
    assert UPLOAD_REFUSED[case][1] in msg
    assert str(work) not in msg
    assert _tree(sandbox) == before


def test_upload_torch_zip_named_safetensors_opens(sandbox):
    run = import_upload(_torch_bytes(_pair(_M)), "model.safetensors", sandbox / "out")
    np.testing.assert_array_equal(load_run(run).masks("imported", 0)["fc.weight"][0], _M.numpy() != 0)
    assert run.is_relative_to(sandbox / "out")


# ----------------------------------------------------------------------------- command-line targets


def _ckpt(sandbox: Path) -> Path:
    path = sandbox / "inputs" / "t.pt"
    torch.save(_pair(_M), path)
    return path


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = analysis_main(["import", *map(str, argv)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.err.strip()


def _web_folder(d: Path) -> Path:
    (d / "src").mkdir(parents=True)
    (d / "index.html").write_text("<html></html>")
    (d / "src" / "app.js").write_text("console.log(1)")
    (d / rf.MANIFEST).write_text(json.dumps({"name": "My PWA", "start_url": "/", "icons": []}))
    return d


def _run_with_foreign_file(d: Path) -> Path:
    write_small_run(d, levels=1)
    (d / "thesis.tex").write_text("\\documentclass{article}")
    return d


# name -> (builds the --out target and extra args, fragment)
TARGET_CASES = {
    "out_is_a_file": (
        lambda s: ([s / "inputs" / "file"], _touch(s / "inputs" / "file")),
        "exists and is not a folder",
    ),
    "out_under_a_file": (
        lambda s: ([s / "inputs" / "file" / "run"], _touch(s / "inputs" / "file")),
        "a file is in the way where a folder should be",
    ),
    "out_is_symlink": (
        lambda s: ([s / "inputs" / "link"], os.symlink(s / "out", s / "inputs" / "link")),
        "exists and is not a folder",
    ),
    "out_not_empty": (
        lambda s: ([s / "inputs" / "d"], _touch(s / "inputs" / "d" / "x")),
        "pass --force to replace it",
    ),
    "force_on_web_folder_with_manifest": (
        lambda s: ([_web_folder(s / "inputs" / "site"), "--force"], None),
        "not a run folder (its manifest.json is not a run manifest",
    ),
    "force_on_run_with_foreign_file": (
        lambda s: ([_run_with_foreign_file(s / "inputs" / "r"), "--force"], None),
        "'thesis.tex', which no run has",
    ),
    "force_on_folder_without_manifest": (
        lambda s: ([s / "inputs" / "home", "--force"], _touch(s / "inputs" / "home" / "notes.txt")),
        "not a run folder (no manifest.json)",
    ),
    "force_on_future_schema_run": (
        lambda s: ([_future(s / "inputs" / "r"), "--force"], None),
        "unknown schema version 2",
    ),
    "method_dotdot": (lambda s: ([s / "out" / "r", "--method", ".."], None), "invalid method name '..'"),
    "method_traversal": (
        lambda s: ([s / "out" / "r", "--method", "../up"], None),
        "invalid method name '../up'",
    ),
    "method_absolute": (
        lambda s: ([s / "out" / "r", "--method", "/tmp/x"], None),
        "invalid method name '/tmp/x'",
    ),
    "method_reserved": (lambda s: ([s / "out" / "r", "--method", "extra"], None), "is reserved"),
}


def _touch(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("x")


def _future(d: Path) -> Path:
    write_small_run(d, levels=1)
    _edit_json(d / rf.MANIFEST, lambda m: m.update(schema_version=2))
    return d


@pytest.mark.parametrize("case", list(TARGET_CASES))
def test_command_line_target_is_refused(case, sandbox, capsys):
    src = _ckpt(sandbox)
    out_args, _ = TARGET_CASES[case][0](sandbox)
    out, *extra = out_args
    before = _tree(sandbox)
    rc, err = _cli(capsys, src, "--out", out, *extra)
    assert rc == 2
    _one_line(err)
    assert err.startswith("error: ") and TARGET_CASES[case][1] in err
    assert _tree(sandbox) == before


def test_force_replaces_a_project_run_and_keeps_nothing_aside(sandbox, capsys):
    src = _ckpt(sandbox)
    out = write_small_run(sandbox / "out" / "r", levels=1)
    rc, err = _cli(capsys, src, "--out", out, "--force")
    assert rc == 0, err
    assert load_run(out).methods == ["imported"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no staging, no old run left


@pytest.mark.parametrize("flag", [False, True])
def test_force_never_replaces_an_embedded_run_without_the_flag(flag, sandbox, capsys, monkeypatch):
    embedded = sandbox / "inputs" / "artifacts"
    monkeypatch.setattr(run_writer, "EMBEDDED_ROOT", embedded.resolve())
    run = write_small_run(embedded / "fashion", levels=1)
    before = _tree(embedded)
    rc, err = _cli(capsys, _ckpt(sandbox), "--out", run, "--force", *(["--replace-embedded"] if flag else []))
    if flag:
        assert rc == 0 and load_run(run).methods == ["imported"]
    else:
        assert rc == 2 and "embedded run under artifacts/" in err and "--replace-embedded" in err
        assert _tree(embedded) == before


def test_the_real_embedded_runs_are_protected(capsys, sandbox):
    target = REPO / "artifacts" / "fashion-mlp-class-sweep" / "seed-0"
    before = _tree(target)
    rc, err = _cli(capsys, _ckpt(sandbox), "--out", target, "--force")
    assert rc == 2 and "embedded run under artifacts/" in err
    assert _tree(target) == before


def test_a_failed_swap_puts_the_old_run_back(sandbox, monkeypatch):
    out = write_small_run(sandbox / "out" / "r", levels=1)
    before = _tree(out)
    real = os.replace

    def replace(a, b):
        if ".import-" in str(a):  # the new run's rename fails (e.g. EXDEV, power cut)
            raise OSError(errno.EIO, "Input/output error", str(a))
        return real(a, b)

    monkeypatch.setattr(run_writer.os, "replace", replace)
    with pytest.raises(CheckpointError, match="Input/output error"):
        import_checkpoints([_ckpt(sandbox)], out, force=True)
    assert _tree(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("kind", ["import", "replaced_with_run_in_place", "replaced_without_run"])
def test_stale_staging_of_dead_processes_is_swept(kind, sandbox):
    out = sandbox / "out" / "r"
    dead = _dead_pid()
    if kind == "import":
        stale = out.parent / f".r.import-{dead}-abcd"
        (stale / "imported").mkdir(parents=True)
        (stale / "imported" / "big.bin").write_bytes(b"\0" * 4096)
    else:
        stale = write_small_run(out.parent / f".r.replaced-{dead}-abcd", levels=1)
        if kind == "replaced_with_run_in_place":
            write_small_run(out, levels=1)
    alive = out.parent / f".r.import-{os.getpid()}-live"  # a running import: left alone
    alive.mkdir()
    swept = run_writer.sweep_stale(out)
    assert swept == [stale] and not stale.exists() and alive.exists()
    if kind == "replaced_without_run":
        assert set(load_run(out).methods) == {"rtl", "imp"}  # the old run came back


def test_next_import_removes_a_killed_imports_staging(sandbox):
    out = sandbox / "out" / "r"
    stale = out.parent / f".r.import-{_dead_pid()}-zz"
    stale.mkdir()
    import_checkpoints([_ckpt(sandbox)], out)
    assert not stale.exists() and sorted(p.name for p in out.parent.iterdir()) == ["r"]


def test_killed_import_leaves_only_a_staging_folder_that_is_then_swept(sandbox):
    """A real kill: a forked importer is SIGKILLed while writing, then a new import cleans up."""
    src = _ckpt(sandbox)
    out = sandbox / "out" / "r"
    pid = os.fork()
    if pid == 0:  # the child: import, and die by SIGKILL right after the first level is written
        try:
            real = run_writer.write_level

            def die(*a, **k):
                real(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)

            run_writer.write_level = die
            import_checkpoints([src], out)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    left = [p.name for p in out.parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".r.import-{pid}-") and not out.exists()
    import_checkpoints([src], out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]


# ----------------------------------------------------------------------------- faults of the system


def _enospc(path="x"):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


FAULTS = {
    "disk_full_writing_json": (
        lambda mp: mp.setattr(rf, "_atomic_write_bytes", lambda p, d: (_ for _ in ()).throw(_enospc(p))),
        "no space left on the device (disk full)",
    ),
    "disk_full_in_safetensors": (
        lambda mp: mp.setattr(
            rf,
            "save_file",
            lambda *a, **k: (_ for _ in ()).throw(
                SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
            ),
        ),
        "no space left on the device (disk full)",
    ),
    "disk_full_in_parquet": (
        lambda mp: mp.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(_enospc())),
        "no space left on the device (disk full)",
    ),
    "read_only_target": (
        lambda mp: mp.setattr(
            run_writer.tempfile,
            "mkdtemp",
            lambda *a, **k: (_ for _ in ()).throw(
                OSError(errno.EROFS, "Read-only file system", k.get("dir"))
            ),
        ),
        "read-only file system",
    ),
    "permission_denied_creating_parent": (
        lambda mp: mp.setattr(
            Path,
            "mkdir",
            lambda self, *a, **k: (_ for _ in ()).throw(
                PermissionError(errno.EACCES, "Permission denied", str(self))
            ),
        ),
        "permission denied",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("entry", ["api", "cli", "upload"])
def test_system_fault_gives_one_line_and_leaves_nothing(entry, fault, sandbox, monkeypatch, capsys):
    src = _ckpt(sandbox)
    data = src.read_bytes()
    out = sandbox / "out" / "new" / "r"  # the parent does not exist yet: it must not stay behind
    before = _tree(sandbox)
    FAULTS[fault][0](monkeypatch)
    if entry == "cli":
        rc, msg = _cli(capsys, src, "--out", out)
        assert rc == 2 and msg.startswith("error: ")
    else:
        with pytest.raises(CheckpointError) as info:
            if entry == "api":
                import_checkpoints([src], out)
            else:
                work = sandbox / "out"
                import_upload(data, "t.pt", work)
        msg = str(info.value)
    monkeypatch.undo()
    _one_line(msg)
    assert FAULTS[fault][1] in msg
    if entry == "upload":
        assert "t.pt" in msg and str(sandbox / "out") not in msg
    else:
        assert str(out) in msg
    assert _tree(sandbox) == before


def _lottery(capsys, *argv) -> tuple[int, str]:
    from lottery.cli import main as lottery_main

    rc = lottery_main(list(map(str, argv)))
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("out_under_a_file", "a file is in the way where a folder should be"),
        ("read_only_target", "read-only file system"),
        ("disk_full_in_training", "no space left on the device (disk full)"),
        ("permission_denied", "permission denied"),
    ],
)
def test_lottery_train_system_fault(case, fragment, sandbox, monkeypatch, capsys):
    out = sandbox / "out" / "run"
    if case == "out_under_a_file":
        _touch(sandbox / "out" / "f")
        out = sandbox / "out" / "f" / "run"
    elif case == "read_only_target":
        monkeypatch.setattr(
            Path,
            "mkdir",
            lambda self, *a, **k: (_ for _ in ()).throw(
                OSError(errno.EROFS, "Read-only file system", str(self))
            ),
        )
    elif case == "permission_denied":
        monkeypatch.setattr(
            Path,
            "mkdir",
            lambda self, *a, **k: (_ for _ in ()).throw(
                PermissionError(errno.EACCES, "Permission denied", str(self))
            ),
        )
    else:  # the disk fills while a level is written: train_run's own code path up to the write
        import lottery.pipeline as pipeline

        def full(*a, **k):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

        monkeypatch.setattr(pipeline, "train_run", lambda desc, run_dir, **k: full())
    before = _tree(sandbox)
    rc, err = _lottery(capsys, "train", "--preset", "smoke", "--quiet", "--out", out)
    assert rc == 2
    _one_line(err)
    assert err.startswith("error: ") and fragment in err
    assert _tree(sandbox) == before


def test_write_level_on_a_full_disk_leaves_no_partial_level(tmp_path, monkeypatch):
    run = write_small_run(tmp_path / "run", levels=1)
    before = _tree(tmp_path)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(_enospc()))
    masks = {n: np.ones((3, *s), bool) for n, s in SHAPES.items()}
    with pytest.raises(OSError):
        rf.write_level(run, "rtl", 1, masks=masks, predictions=empty_predictions(), info={"sparsity": 0.1})
    with pytest.raises(SafetensorError):
        monkeypatch.setattr(
            rf, "save_file", lambda *a, **k: (_ for _ in ()).throw(SafetensorError("os error 28"))
        )
        rf.save_tensors(run / rf.THETA0, {"x": np.ones(3)})
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- too many tickets


def test_pair_sample_is_fixed_and_bounded():
    a, b = pair_limits.pair_sample(10_000), pair_limits.pair_sample(10_000)
    np.testing.assert_array_equal(a, b)
    assert len(a) == pair_limits.max_pair_tickets() == 256 and len(np.unique(a)) == 256
    np.testing.assert_array_equal(pair_limits.pair_sample(5), np.arange(5))


def test_many_tickets_are_summarised_on_a_sample(tmp_path, monkeypatch):
    monkeypatch.setenv(pair_limits.PAIR_ENV, "8")
    run = load_run(write_small_run(tmp_path / "run", k=40))
    from analysis.collapse import collapse_curves
    from analysis.similarity import similarity_frame, similarity_table

    table = similarity_table(run, "rtl", layers=False)
    sampled = set(table["ticket_a"]) | set(table["ticket_b"])
    idx = pair_limits.pair_sample(40)
    assert sampled == {f"t{i}" for i in idx}
    # the sample's numbers are exactly those of the full computation restricted to it
    masks = run.masks("rtl", 1)
    monkeypatch.setenv(pair_limits.PAIR_ENV, "64")
    full = similarity_frame(masks, run.ticket_names("rtl"), layers=False)
    full = full[full["ticket_a"].isin(sampled) & full["ticket_b"].isin(sampled)]
    mine = table[table["level"] == 1].drop(columns=["level", "sparsity"])
    np.testing.assert_allclose(
        mine.sort_values(["ticket_a", "ticket_b"])["jaccard"],
        full.sort_values(["ticket_a", "ticket_b"])["jaccard"],
    )
    monkeypatch.setenv(pair_limits.PAIR_ENV, "8")
    curves = collapse_curves(run, ["rtl"])
    per_ticket = curves[(curves["signal"] == "mean_jaccard") & curves["ticket"].notna()]
    assert set(per_ticket["ticket"].astype(int)) == set(idx.tolist())  # original ticket numbers


def test_a_heatmap_of_too_many_chosen_tickets_is_refused_with_advice(monkeypatch):
    monkeypatch.setenv(pair_limits.PAIR_ENV, "8")
    with pytest.raises(pair_limits.PairLimitError, match="Narrow the sidebar's ticket filter to at most 8"):
        pair_limits.check_pair_count(9, limit=pair_limits.max_pair_tickets())
    from analysis.similarity import pairwise_jaccard

    with pytest.raises(pair_limits.PairLimitError):  # backstop: no K x K past 16 x the limit
        pairwise_jaccard(np.ones((129, 4), bool))


# ----------------------------------------------------------------------------- the app stays alive

APP_KINDS = {
    "manifest_field": RUN_CASES["tickets_is_string"][0],
    "method_traversal": RUN_CASES["method_traversal_into_victim"][0],
    "level_field": RUN_CASES["level_sparsity_lots"][0],
    "mask_shape": RUN_CASES["mask_16x20_stored_as_4x80"][0],
    "mask_file": RUN_CASES["mask_shapes_is_list"][0],
}


def test_app_survives_each_kind_of_run_that_breaks_while_open(tmp_path, monkeypatch):
    """One AppTest session: open each victim run, break it, rerun: one message, no exception."""
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    good = write_small_run(runs / "good", levels=1)
    victims = {kind: write_small_run(runs / f"victim_{kind}", levels=2) for kind in APP_KINDS}
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs))
    from app import data as app_data

    # Discovery as it was before the damage (its cache lives 5 s): the broken run is still offered.
    offered = [str(p) for p in find_runs(runs)]
    monkeypatch.setattr(app_data, "discover_runs", lambda roots: (offered, []))
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    for kind, victim in victims.items():
        at.session_state["sidebar.run"] = str(victim)
        at.run()
        assert not at.exception and not at.error, kind
        APP_KINDS[kind](victim)  # broken after discovery: opening it in the sidebar fails
        at.run()
        assert not at.exception, (kind, [e.value for e in at.exception])
        text = " ".join(str(e.value) for e in at.error)
        assert "This run cannot be opened" in text and f"victim_{kind}" in text, kind
    at.session_state["sidebar.run"] = str(good)  # the rest of the app is alive
    at.run()
    assert not at.exception and not at.error
    assert any("good" in str(t.value) for t in at.title)


def test_app_shows_a_page_error_for_a_run_whose_page_data_is_broken(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    victim = write_small_run(runs / "victim", levels=2)
    (rf.level_dir(victim, "rtl", 1) / rf.PREDICTIONS).write_bytes(b"PAR1 not parquet")
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    at.session_state["sidebar.run"] = str(victim)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(str(e.value) for e in at.error)
    assert "cannot be shown" in text and "corrupt predictions file" in text


def test_app_lists_unreadable_runs_with_file_and_field(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    write_small_run(runs / "good", levels=1)
    for name, damage in APP_KINDS.items():
        damage(write_small_run(runs / name, levels=2))
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    at.session_state["sidebar.run"] = str(runs / "good")
    at.run()
    assert not at.exception and not at.error
    captions = " ".join(str(c.value) for c in at.sidebar.caption)
    for name in APP_KINDS:
        assert f"{runs / name}" in captions
    assert "field methods/rtl/tickets" in captions and "field sparsity" in captions


def test_hostile_suite_has_at_least_150_cases():
    n = (
        len(RUN_CASES)
        + len(CKPT_REFUSED)
        + len(CKPT_ACCEPTED)
        + len(UPLOAD_REFUSED)
        + len(TARGET_CASES)
        + 3 * len(FAULTS)
        + 4  # lottery train faults
        + len(APP_KINDS)
    )
    assert n >= 150, n


def test_app_pages_stay_bounded_with_more_tickets_than_the_pair_limit(tmp_path, monkeypatch):
    """40 tickets with the limit at 8: Overview and Collapse use a sample, Similarity asks to narrow."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(pair_limits.PAIR_ENV, "8")
    runs = tmp_path / "runs"
    many = write_small_run(runs / "many", k=40, levels=2)
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    at.session_state["sidebar.run"] = str(many)
    at.run()
    assert not at.exception and not at.error
    at.switch_page("views/collapse.py").run()
    assert not at.exception and not at.error
    at.switch_page("views/similarity.py").run()
    assert not at.exception
    text = " ".join(str(e.value) for e in at.error)
    assert "40 chosen tickets are too many" in text
    assert "Narrow the sidebar's ticket filter to at most 8" in text
    at.sidebar.multiselect(key="sidebar.tickets").set_value(["t3", "t5", "t7"]).run()  # narrowed: exact pairs
    assert not at.exception and not at.error


@pytest.mark.parametrize("name", ["model.zip", "model.safetensors", "model.bin", "model"])
def test_upload_torch_zip_is_a_checkpoint_whatever_its_name(name, sandbox):
    run = import_upload(_torch_bytes(_pair(_M)), name, sandbox / "out")
    np.testing.assert_array_equal(load_run(run).masks("imported", 0)["fc.weight"][0], _M.numpy() != 0)
