"""Sweeps on Ray: a 2-seed grid of the digits smoke preset, resumed after a kill, read back as a group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from artifacts import run_format as rf
from lottery.config import replace

ray = pytest.importorskip("ray")

from lottery import sweep  # noqa: E402
from lottery.presets import get_preset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the smoke preset shrunk to seconds: 2 pruning levels, one epoch per phase
OVERRIDES = ["prune.levels=2", "train.epochs=1", "rtl.retrain_epochs=1"]
METHODS = ("independent", "rtl", "imp")
SEEDS = (0, 1)


def _desc():
    return replace(sweep.override_description(get_preset("smoke"), OVERRIDES), methods=METHODS)


def _cli(*args, quiet=True, **kwargs):
    argv = [sys.executable, "-m", "lottery", "sweep", "--preset", "smoke"] + (["--quiet"] if quiet else [])
    argv += [a for o in OVERRIDES for a in ("--set", o)] + ["--methods", *METHODS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return argv + list(args), dict(cwd=REPO, env=env, text=True, **kwargs)


def _masks(run_dir: Path) -> dict:
    run = rf.load_run(run_dir)
    return {(m, lv): run.masks(m, lv) for m in run.methods for lv in run.levels(m)}


def _assert_same_masks(a: Path, b: Path) -> None:
    ma, mb = _masks(a), _masks(b)
    assert ma.keys() == mb.keys()
    for key in ma:
        assert ma[key].keys() == mb[key].keys()
        for layer in ma[key]:
            np.testing.assert_array_equal(ma[key][layer], mb[key][layer], err_msg=f"{key} {layer}")


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray with 2 CPUs for the module (start-up is slow); its address for CLI subprocesses."""
    if ray.is_initialized():
        ray.shutdown()
    ctx = ray.init(num_cpus=2, **sweep.ray_init_options())
    yield ctx.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def group(ray_address, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "smoke-group"
    result = sweep.run_sweep(
        _desc(), SEEDS, out, preset="smoke", overrides=OVERRIDES, device="cpu", show_progress=False
    )
    assert result.ok, result.failures
    assert result.levels_done == result.levels_total == len(SEEDS) * len(METHODS) * 3
    assert sorted(result.finished) == sorted((f"seed-{s}", m) for s in SEEDS for m in METHODS)
    return out


def test_sweep_writes_a_group_of_complete_runs(group):
    g = rf.load_group(group)
    assert g.seeds == list(SEEDS) and g.run_names == ["seed-0", "seed-1"]
    assert g.manifest["preset"] == "smoke" and g.manifest["overrides"] == OVERRIDES
    assert g.manifest["methods"] == list(METHODS)
    assert "seed" not in g.manifest["description"]
    runs = g.runs()
    assert [r.path for r in runs] == [group / "seed-0", group / "seed-1"]
    for seed, run in zip(SEEDS, runs, strict=True):
        assert run.manifest["description"]["seed"] == seed
        assert run.manifest["run_hash"] == replace(_desc(), seed=seed).hash()
        for m in METHODS:
            assert run.levels(m) == [0, 1, 2]
        assert run.sparsity("imp", 2) == pytest.approx(1 - 0.8**2, abs=0.01)
    # the seeds are different draws
    t0, t1 = (rf.load_tensors(group / n / rf.THETA0) for n in g.run_names)
    assert any(not np.array_equal(t0[k], t1[k]) for k in t0)
    # the run rtl ran after independent in the same seed and reused its masks
    assert runs[0].level_info("rtl", 1)["masks_from"] == "independent"
    assert g.run_path(1) == group / "seed-1"
    assert rf.is_group(group) and not rf.is_group(group / "seed-0")


def test_find_runs_sees_the_runs_inside_groups(group):
    assert rf.find_runs(group.parent) == [group / "seed-0", group / "seed-1"]
    assert rf.find_runs(group) == [group / "seed-0", group / "seed-1"]
    assert rf.find_runs(group / "seed-1") == [group / "seed-1"]
    assert rf.find_groups(group.parent) == [group]


def test_sweep_run_equals_a_plain_train_run(group, tmp_path):
    from lottery.pipeline import train_run

    plain = train_run(replace(_desc(), seed=1), tmp_path / "plain", device="cpu", show_progress=False)
    _assert_same_masks(plain, group / "seed-1")


def test_killed_sweep_resumes_to_the_same_runs(group, ray_address, tmp_path):
    out = tmp_path / "killed"
    argv, kw = _cli("--seeds", *map(str, SEEDS), "--out", str(out), "--address", ray_address)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw
    )
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob("seed-*/*/level_*/level.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no level finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    # the cluster stops the dead driver's tasks; wait until no level folder appears any more
    seen, still = None, 0
    while still < 6:
        now = sorted(str(p) for p in out.glob("seed-*/*/level_*"))
        still = still + 1 if now == seen else 0
        seen = now
        time.sleep(0.5)
    total = len(SEEDS) * len(METHODS) * 3
    done = {p.parent: p.parent.stat().st_ino for p in out.glob("seed-*/*/level_*/level.json")}
    assert 0 < len(done) < total, "the kill should interrupt the sweep"

    argv, kw = _cli("--seeds", *map(str, SEEDS), "--out", str(out), "--address", ray_address, quiet=False)
    rerun = subprocess.run(argv, capture_output=True, timeout=300, **kw)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{total}/{total} levels" in rerun.stdout
    # one progress bar over the grid: it starts at the levels already there and ends at the total
    bar = [s for s in rerun.stderr.replace("\r", "\n").splitlines() if s.startswith("sweep levels")]
    assert bar and f"{len(done)}/{total}" in bar[0] and f"{total}/{total}" in bar[-1], rerun.stderr[-2000:]
    for level_dir, inode in done.items():  # finished levels were kept, not redone
        assert level_dir.stat().st_ino == inode
    assert not list(out.glob("seed-*/*/*.tmp-*"))
    for name in ("seed-0", "seed-1"):
        _assert_same_masks(out / name, group / name)


def test_failing_task_is_reported_and_the_others_finish(group, tmp_path):
    out = tmp_path / "broken"
    shutil.copytree(group, out)
    # seed 1: imp's level 0 is corrupt, so imp cannot prune level 1
    for lv in (1, 2):
        shutil.rmtree(rf.level_dir(out / "seed-1", "imp", lv))
    (rf.level_dir(out / "seed-1", "imp", 0) / rf.MASKS).write_bytes(b"not a safetensors file")
    # seed 0: rtl lost its last level, which the sweep must write again
    shutil.rmtree(rf.level_dir(out / "seed-0", "rtl", 2))

    # no --address: the sweep starts (and stops) its own local Ray on the machine's cores
    argv, kw = _cli("--seeds", *map(str, SEEDS), "--out", str(out))
    proc = subprocess.run(argv, capture_output=True, timeout=300, **kw)
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "seed-1 imp" in failed[0] and "RunFormatError" in failed[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "5 task(s) finished, 1 failed" in proc.stdout
    _assert_same_masks(out / "seed-0", group / "seed-0")


def test_group_folder_of_another_description_is_refused(group, tmp_path):
    other = replace(_desc(), prune=replace(_desc(), **{"prune.levels": 3}).prune)
    with pytest.raises(ValueError, match="another description"):
        sweep.write_group(group, other, [0], preset="smoke", overrides=[])
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no run group"):
        sweep.write_group(tmp_path, _desc(), [0], preset="smoke", overrides=[])
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_group_is_extended_with_more_seeds(group, tmp_path):
    copy = tmp_path / "g"
    copy.mkdir()
    shutil.copy(group / rf.GROUP_MANIFEST, copy / rf.GROUP_MANIFEST)
    created = rf.load_group(copy).manifest["created"]
    assert sweep.write_group(copy, _desc(), [1, 2], preset="smoke", overrides=OVERRIDES) == [0, 1, 2]
    g = rf.load_group(copy)
    assert g.run_names == ["seed-0", "seed-1", "seed-2"] and g.manifest["created"] == created


def test_bad_group_manifests_are_refused(tmp_path):
    base = {"runs": ["seed-0"], "seeds": [0]}
    rf.write_group_manifest(tmp_path, base)
    assert rf.load_group(tmp_path).run_paths() == []  # seed-0 not started yet
    for bad in ({"runs": ["../x"], "seeds": [0]}, {"runs": ["a", "b"], "seeds": [0]}, {"runs": []}):
        with pytest.raises(rf.RunFormatError):
            rf.write_group_manifest(tmp_path / "g", {**base, **bad})
    rf.write_json(tmp_path / rf.GROUP_MANIFEST, {**base, "kind": "run_group", "runs": ["/etc"]})
    with pytest.raises(rf.RunFormatError, match="plain names"):
        rf.load_group(tmp_path)
    assert rf.find_runs(tmp_path) == []  # an unreadable group lists nothing
    (tmp_path / rf.GROUP_MANIFEST).write_text("{not json")
    with pytest.raises(rf.RunFormatError, match="corrupt"):
        rf.load_group(tmp_path)
    with pytest.raises(rf.RunFormatError):
        rf.load_group(tmp_path / "missing")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "prune.nope=3"], "nope"),
        (["--set", "prune.levels"], "KEY=VALUE"),
        (["--methods", "magic"], "unknown methods"),
        (["--cpus-per-run", "0"], "positive"),
        (["--local-cpus", "0"], "--local-cpus"),
        (["--local-cpus", "1", "--address", "10.0.0.1:6379"], "--local-cpus"),
    ],
)
def test_bad_sweep_arguments_give_one_line(args, message, tmp_path, capsys):
    from lottery.cli import main

    code = main(["sweep", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path), "--quiet", *args])
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / rf.GROUP_MANIFEST).exists()


def test_local_cpus_size_the_local_ray(monkeypatch):
    """``--local-cpus N`` starts a local Ray of N CPUs (two 1-CPU sweeps share a 2-core machine)."""
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert sweep._connect(None, 1) is True
    assert sweep._connect(None) is True
    assert [c["num_cpus"] for c in calls] == [1, os.cpu_count() or 1]
    assert all(c["address"] == "local" for c in calls)


# ----------------------------------------------------------------------------- the dashboard's run picker


def _picker_app(monkeypatch, root: Path, **query):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RTL_RUNS_DIR", str(root))
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=180)
    for k, v in query.items():
        at.query_params[k] = v
    return at


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """A runs folder: one plain run, a group of 3 seeds (seed 2 not started), an unreadable group."""
    from conftest import write_synthetic_run

    root = tmp_path_factory.mktemp("picker")
    write_synthetic_run(root / "single", seed=5)
    group = root / "sweep-x"
    rf.write_group_manifest(group, {"runs": ["seed-0", "seed-1", "seed-2"], "seeds": [0, 1, 2]})
    for s in (0, 1):
        write_synthetic_run(group / f"seed-{s}", n_levels=3 + s, seed=s)
    (root / "broken").mkdir()
    (root / "broken" / rf.GROUP_MANIFEST).write_text('{"kind": "run_group", "runs": ["../up"], "seeds": [0]}')
    return root


def test_picker_lists_a_group_with_a_seed_selector(monkeypatch, runs_root):
    group = runs_root / "sweep-x"
    at = _picker_app(monkeypatch, runs_root)
    at.session_state["sidebar.run"] = str(group)
    at.run()
    assert not at.exception, at.exception
    run_box = at.selectbox(key="sidebar.run")
    labels = [o for o in run_box.options if str(runs_root) in o]
    assert len(labels) == 2  # the plain run and the group, not one entry per seed
    assert any(o.startswith("sweep-x (group, 3 seeds)") for o in labels), labels
    assert any(o.startswith("single") for o in labels), labels
    seed_box = at.selectbox(key="sidebar.seed")
    assert seed_box.options == ["seed 0", "seed 1"]  # seed 2 has no finished level yet
    assert any("2 of 3 seeds" in c.value for c in at.sidebar.caption)
    assert at.session_state["sidebar.selection"].path == str(group / "seed-0")
    assert at.query_params["run"] == "sweep-x/seed-0"

    seed_box.set_value(str(group / "seed-1")).run()
    assert not at.exception, at.exception
    sel = at.session_state["sidebar.selection"]
    assert sel.path == str(group / "seed-1")
    assert set(sel.levels["level"]) == {0, 1, 2, 3}  # seed 1's run has one level more than seed 0's
    assert at.query_params["run"] == "sweep-x/seed-1"
    # the unreadable group is listed with its reason
    assert any("could not be read" in e.label for e in at.sidebar.expander)

    at.selectbox(key="sidebar.run").set_value(str(runs_root / "single")).run()
    assert not at.exception, at.exception
    assert at.session_state["sidebar.selection"].path == str(runs_root / "single")
    assert not _has_key(at, "sidebar.seed")


def _has_key(at, key: str) -> bool:
    return any(getattr(w, "key", None) == key for w in at.selectbox)


def test_a_link_to_a_seed_opens_its_group(monkeypatch, runs_root):
    at = _picker_app(monkeypatch, runs_root, run="sweep-x/seed-1").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="sidebar.run").value == str(runs_root / "sweep-x")
    assert at.selectbox(key="sidebar.seed").value == str(runs_root / "sweep-x" / "seed-1")


def test_dashboard_opens_a_swept_run(monkeypatch, group):
    at = _picker_app(monkeypatch, group.parent, run=f"{group.name}/seed-1").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="sidebar.run").value == str(group)
    assert at.selectbox(key="sidebar.seed").options == ["seed 0", "seed 1"]
    sel = at.session_state["sidebar.selection"]
    assert sel.path == str(group / "seed-1") and set(sel.methods) == set(METHODS)
