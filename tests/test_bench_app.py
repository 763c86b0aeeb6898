"""The run names in the table ``benchmarks/bench_app.py`` prints."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_app import run_label  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_a_run_in_a_group_is_named_with_its_group():
    # Every embedded group has a seed-0: the table must tell them apart.
    groups = ["fashion-mlp-class-sweep", "fashion-vit-cluster-sweep", "adult-mlp-cluster-sweep"]
    labels = [run_label(REPO / "artifacts" / g / "seed-0") for g in groups]
    assert labels == [f"{g}/seed-0" for g in groups]


def test_a_run_outside_a_group_keeps_its_folder_name(tmp_path):
    run = tmp_path / "my_tickets"
    run.mkdir()
    assert run_label(run) == "my_tickets"
