"""The run format: round trips, atomic levels, clear errors for corrupt or unknown runs."""

import json

import numpy as np
import pandas as pd
import pytest

from artifacts import run_format as rf
from artifacts.run_format import RunFormatError, load_run


def _write_run(path, k=3, levels=2):
    rng = np.random.default_rng(0)
    rf.write_manifest(
        path,
        {"name": "t", "methods": {"rtl": {"tickets": [f"t{i}" for i in range(k)]}}, "groups": ["class"]},
    )
    masks = {}
    for level in range(levels):
        masks = {"a.weight": rng.random((k, 5, 7)) < 0.5, "b.weight": rng.random((k, 3, 2, 3, 3)) < 0.3}
        frame = pd.DataFrame({"sample": np.arange(4), "label": [0, 1, 0, 1], "class": list("abab")})
        rf.write_level(
            path,
            "rtl",
            level,
            masks=masks,
            predictions=frame,
            info={"sparsity": 0.1 * level},
            weights={"a.weight": rng.standard_normal((5, 7)).astype(np.float32)},
        )
    return masks


def test_round_trip(tmp_path):
    masks = _write_run(tmp_path)
    run = load_run(tmp_path)
    assert run.methods == ["rtl"] and run.levels("rtl") == [0, 1]
    assert run.ticket_names("rtl") == ["t0", "t1", "t2"]
    assert run.sparsity("rtl", 1) == pytest.approx(0.1)
    back = run.masks("rtl", 1)
    for name, m in masks.items():
        assert back[name].dtype == bool
        np.testing.assert_array_equal(back[name], m)
    assert run.predictions("rtl", 0)["class"].tolist() == list("abab")
    assert run.weights("rtl", 0)["a.weight"].shape == (5, 7)
    assert run.manifest["schema_version"] == rf.SCHEMA_VERSION
    assert rf.find_runs(tmp_path.parent) == [tmp_path] or tmp_path in rf.find_runs(tmp_path.parent)


def test_mask_packing_is_eight_times_smaller(tmp_path):
    m = {"w": np.ones((4, 1000, 100), dtype=bool)}
    rf.save_masks(tmp_path / "m.safetensors", m)
    assert (tmp_path / "m.safetensors").stat().st_size < 4 * 1000 * 100 / 8 + 1024


def test_level_is_never_overwritten(tmp_path):
    _write_run(tmp_path)
    with pytest.raises(FileExistsError):
        rf.write_level(
            tmp_path,
            "rtl",
            1,
            masks={"a.weight": np.ones((3, 5, 7), bool)},
            predictions=pd.DataFrame({"x": [1]}),
            info={"sparsity": 0.0},
        )
    assert not any(".tmp-" in p.name for p in (tmp_path / "rtl").iterdir())


def test_failed_level_write_leaves_nothing(tmp_path):
    _write_run(tmp_path)
    with pytest.raises(RunFormatError):  # non-bool masks are refused mid-write
        rf.write_level(
            tmp_path,
            "rtl",
            2,
            masks={"a.weight": np.ones((3, 5, 7))},
            predictions=pd.DataFrame({"x": [1]}),
            info={"sparsity": 0.0},
        )
    assert rf.completed_levels(tmp_path, "rtl") == [0, 1]
    assert not any(".tmp-" in p.name for p in (tmp_path / "rtl").iterdir())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").unlink(), "missing file"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "corrupt JSON"),
        (lambda p: (p / "manifest.json").write_text("[1, 2]"), "not a JSON object"),
        (
            lambda p: (p / "manifest.json").write_text(json.dumps({"schema_version": 99, "methods": {}})),
            "unknown schema version 99",
        ),
        (
            lambda p: (p / "manifest.json").write_text(json.dumps({"schema_version": 1, "methods": {}})),
            "declares no methods",
        ),
    ],
)
def test_broken_manifest_raises_clear_error(tmp_path, damage, message):
    _write_run(tmp_path)
    damage(tmp_path)
    with pytest.raises(RunFormatError, match=message):
        load_run(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(RunFormatError, match="no run folder"):
        load_run(tmp_path / "nope")


@pytest.mark.parametrize(
    "filename, payload, message",
    [
        (rf.MASKS, b"\x00\x01garbage", "corrupt mask file"),
        (rf.MASKS, b"", "corrupt mask file"),
        (rf.PREDICTIONS, b"PAR1 truncated", "corrupt predictions"),
        (rf.WEIGHTS, b"12345678", "corrupt tensor file"),
    ],
)
def test_corrupt_level_files_raise_clear_error(tmp_path, filename, payload, message):
    _write_run(tmp_path)
    (rf.level_dir(tmp_path, "rtl", 1) / filename).write_bytes(payload)
    with pytest.raises(RunFormatError, match=message):  # masks are checked at load already
        run = load_run(tmp_path)
        {rf.MASKS: run.masks, rf.PREDICTIONS: run.predictions, rf.WEIGHTS: run.weights}[filename]("rtl", 1)


def test_truncated_mask_file(tmp_path):
    _write_run(tmp_path)
    path = rf.level_dir(tmp_path, "rtl", 1) / rf.MASKS
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RunFormatError):
        load_run(tmp_path).masks("rtl", 1)


def test_missing_level_and_method(tmp_path):
    _write_run(tmp_path)
    run = load_run(tmp_path)
    with pytest.raises(RunFormatError, match="no completed level 5"):
        run.masks("rtl", 5)
    with pytest.raises(RunFormatError, match="no method 'imp'"):
        run.levels("imp")


def test_mtime_changes_when_a_level_file_is_rewritten_in_place(tmp_path):
    import os

    path = tmp_path / "r"
    _write_run(path)
    run = load_run(path)
    before = run.mtime()
    info = rf.level_dir(path, "rtl", 1) / "level.json"
    folder_time = info.parent.stat().st_mtime
    os.utime(info, (before + 10, before + 10))  # as an in-place rewrite: the folder's time stays
    assert info.parent.stat().st_mtime == folder_time
    assert run.mtime() == before + 10


def test_run_version_changes_with_any_write_below_the_run_down_to_level_files(tmp_path):
    """The key validated readers are kept by: a file rewritten in place, a level begun, a new file."""
    import os

    path = tmp_path / "r"
    _write_run(path)
    first = rf.run_version(path)
    assert first == rf.run_version(path)
    info = rf.level_dir(path, "rtl", 1) / "level.json"
    os.utime(info, ns=(first + 10, first + 10))  # in place: no folder's time changes
    assert rf.run_version(path) == first + 10
    begun = path / "rtl" / "level_02"
    begun.mkdir()  # a level being written (no level.json yet)
    (begun / "masks.tmp").write_bytes(b"x")
    later = rf.run_version(path) + 10**9
    os.utime(begun / "masks.tmp", ns=(later, later))  # the file inside it, written last
    assert rf.run_version(path) == later
    with pytest.raises(RunFormatError, match="not a folder"):
        rf.run_version(tmp_path / "missing")


def test_file_version_changes_when_a_file_is_written_again(tmp_path):
    """The key the readers cache parsed files by: a rewrite (in place or by rename) gives a new key."""
    import os

    from artifacts.run_format import file_version

    f = tmp_path / "a.bin"
    f.write_bytes(b"1234")
    first = file_version(f)
    assert first == file_version(f) and first[0] == os.path.abspath(f) and first[2] == 4
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same bytes, touched
    touched = file_version(f)
    assert touched != first
    other = tmp_path / "b.bin"
    other.write_bytes(b"1234")
    os.utime(other, ns=(st.st_atime_ns, touched[1]))
    os.replace(other, f)  # same size and mtime, another file (inode)
    assert file_version(f) != touched
