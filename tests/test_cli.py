"""The lottery CLI as a user runs it: one clear line for bad input, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from analysis import load_run

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "lottery", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_presets_lists_smoke():
    out = _cli("presets")
    assert out.returncode == 0
    assert any(line.startswith("smoke ") for line in out.stdout.splitlines())


def test_smoke_preset_trains_and_loads(tmp_path):
    out = _cli("train", "--preset", "smoke", "--out", str(tmp_path / "x"), "--quiet", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "x")
    assert "imp" in run.methods
    assert run.levels("imp")[-1] >= 3
    assert run.sparsity("imp", run.levels("imp")[-1]) > 0.45


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "--preset", "smoke", "--device", "cuda"], None),
    ],
)
def test_bad_arguments_give_one_line(args, message):
    out = _cli(*args)
    if message is None and out.returncode == 0:
        pytest.skip("CUDA is available here")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    if message:
        assert message in lines[0]


def test_out_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    out = _cli("train", "--preset", "smoke", "--out", str(tmp_path), "--quiet")
    assert out.returncode == 2 and "not empty" in out.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
