"""The LLM-scale benchmark at a small scale: every step runs, the streamed numbers equal the old path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_llm_scale import generate, shapes_for, tensor_shapes  # noqa: E402


def test_generated_checkpoints_are_wanda_pruned_per_row(tmp_path):
    from safetensors.numpy import load_file

    c = shapes_for(0.05, 1)
    folders = generate(tmp_path, c)
    assert [f.name for f in folders] == ["code", "math", "web", "wiki"]
    shards = [load_file(str(p)) for p in sorted(folders[0].glob("*.safetensors"))]
    got = {k: v for s in shards for k, v in s.items()}
    assert {k: v.shape for k, v in got.items()} == tensor_shapes(c)
    up = got["model.layers.0.mlp.up_proj.weight"]
    assert up.dtype == np.float16
    np.testing.assert_array_equal((up != 0).sum(axis=1), up.shape[1] // 2)  # 50 % of every row
    assert (got["model.embed_tokens.weight"] != 0).all()  # embeddings stay dense
    other = {k: v for p in sorted(folders[1].glob("*.safetensors")) for k, v in load_file(str(p)).items()}
    # The same pretrained weights, masked differently by each domain's activation norms.
    same = other["model.layers.0.mlp.up_proj.weight"]
    both = (up != 0) & (same != 0)
    np.testing.assert_array_equal(up[both], same[both])
    assert 0.4 < both.mean() < 0.5


def test_small_benchmark_meets_its_targets_and_matches_the_old_path():
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_llm_scale.py",
            "--scale",
            "0.05",
            "--layers",
            "2",
            "--steps",
            "similarity,coding",  # pages: tests/test_app_open_folder.py opens them on an HF import
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    out = proc.stdout
    assert "streamed numbers equal the in-memory ones: yes" in out, out + proc.stderr[-2000:]
    for step in ("import (streamed)", "similarity", "coding"):
        assert step in out
    assert "x the read floor" in out
    assert proc.returncode == 0 and "all targets met" in out, out
