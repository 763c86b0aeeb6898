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


def _main(capsys, *args):
    """The CLI in this process (what ``python -m lottery`` runs): exit code and stderr."""
    from lottery.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def _one_error_line(err, message=None):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    if message:
        assert message in lines[0]


def test_presets_lists_smoke(capsys):
    from lottery.cli import main

    assert main(["presets"]) == 0
    assert any(line.startswith("smoke ") for line in capsys.readouterr().out.splitlines())


def test_smoke_preset_trains_and_loads(tmp_path):
    out = _cli("train", "--preset", "smoke", "--out", str(tmp_path / "x"), "--quiet", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "x")
    assert "imp" in run.methods
    assert run.levels("imp")[-1] >= 3
    assert run.sparsity("imp", run.levels("imp")[-1]) > 0.45


def test_bad_arguments_give_one_line_from_the_real_entry_point():
    out = _cli("train", "--preset", "nope")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    _one_error_line(out.stderr, "unknown preset")


def test_missing_cuda_gives_one_line(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, err = _main(capsys, "train", "--preset", "smoke", "--device", "cuda", "--out", str(tmp_path / "x"))
    assert code == 2
    _one_error_line(err)


def test_out_folder_with_other_files_is_refused(capsys, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    code, err = _main(capsys, "train", "--preset", "smoke", "--out", str(tmp_path), "--quiet")
    assert code == 2 and "not empty" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("train.epochz=3", "unknown key 'train.epochz'"),
        ("prune.levels=many", "prune.levels: 'many' is not an integer"),
        ("model.name=cnx", "model.name must be one of"),
    ],
)
def test_bad_set_gives_one_line(capsys, tmp_path, assignment, message):
    code, err = _main(
        capsys, "train", "--preset", "smoke", "--set", assignment, "--out", str(tmp_path / "x"), "--quiet"
    )
    assert code == 2
    _one_error_line(err, message)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["inr", "--set", "depth=x"], "depth: 'x' is not an integer"),
        (["inr", "--set", "methods=independent"], "unknown methods"),
        (["speech", "--set", "bogus=1"], "unknown key 'bogus'; valid top-level keys: environments"),
    ],
)
def test_inr_and_speech_take_set_too(capsys, tmp_path, args, message):
    code, err = _main(capsys, *args, "--out", str(tmp_path / "x"), "--quiet")
    assert code == 2
    _one_error_line(err, message)
    assert not (tmp_path / "x").exists()


def test_set_overrides_hash_into_the_default_run_folder(tmp_path):
    import json
    import os

    from lottery.config import apply_overrides
    from lottery.presets import get_preset

    sets = ["prune.levels=1", "train.epochs=1", "methods=imp", "data.limit=400"]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "lottery", "train", "--preset", "smoke", *args, "--seed", "3", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    desc = apply_overrides(get_preset("smoke"), [*sets, "seed=3"])
    run_dir = tmp_path / "runs" / f"smoke-{desc.hash()}"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_hash"] == desc.hash() != get_preset("smoke").hash()
    assert manifest["description"]["prune"]["levels"] == 1 and manifest["description"]["seed"] == 3
    assert load_run(run_dir).levels("imp") == [0, 1]


def test_device_auto_takes_cuda_when_present(monkeypatch):
    import torch

    from lottery.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
