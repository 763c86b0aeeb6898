"""Hugging Face model folders: sharded and single-file, streamed into packed masks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hf_fixtures import expected_masks, prune_2_4, tiny_llama, write_model

from analysis.overview import nm_structure_table
from analysis.packed import PackedMasks
from artifacts.run_format import load_masks, load_run
from ingest import CheckpointError, import_checkpoints, read_tickets
from ingest.cli import main as cli_main
from ingest.hf import PackedMaskWriter, import_hf, nm_pattern

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return [tiny_llama(root / "models" / name, seed) for name, seed in (("code", 1), ("math", 2), ("web", 3))]


@pytest.fixture(scope="module")
def run_dir(folders, tmp_path_factory):
    return import_hf(folders, tmp_path_factory.mktemp("runs") / "llm")


def test_sharded_folders_import_exactly(folders, run_dir):
    run = load_run(run_dir)
    assert run.ticket_names("imported") == ["code", "math", "web"]
    masks = run.masks("imported", 0)
    want = [expected_masks(f) for f in folders]
    # Embeddings, head and norms are not prunable; every projection is, fp16 and bf16 alike.
    assert sorted(masks) == sorted(want[0])
    assert all(".layers.1." in n for n in masks if "q_proj" in n and n.startswith("model.layers.1"))
    for name, m in masks.items():
        assert m.shape == (3, *want[0][name].shape)
        for k in range(3):
            np.testing.assert_array_equal(m[k], want[k][name])
    src = run.manifest["source"]
    assert src["format"] == "huggingface" and src["inferred_masks"] is True
    assert src["configs"]["math"]["seed"] == 2 and src["configs"]["code"]["model_type"] == "llama"
    assert "lm_head.weight" in src["dense_layers"] and "model.embed_tokens.weight" in src["dense_layers"]
    info = run.level_info("imported", 0)
    n = sum(m[0].size for m in masks.values())
    kept = [int(sum(m[k].sum() for m in masks.values())) for k in range(3)]
    assert info["params_per_ticket"] == kept and info["params_prunable"] == n
    assert info["params_union"] == int(sum(m.any(axis=0).sum() for m in masks.values()))
    assert info["sparsity"] == pytest.approx(1 - np.mean(kept) / n)
    assert 0.45 < info["sparsity"] < 0.55  # 50 % per row everywhere, 2:4 in one layer


def test_nm_structure_per_layer(run_dir):
    run = load_run(run_dir)
    nm = run.manifest["source"]["nm_structure"]
    assert nm == run.level_info("imported", 0)["nm_structure"]
    for t in ("code", "math", "web"):
        assert nm[t]["model.layers.1.self_attn.q_proj.weight"] == "2:4"
        others = {p for n, p in nm[t].items() if n != "model.layers.1.self_attn.q_proj.weight"}
        assert others == {None}  # 50 % per row unstructured: no N:M
    table = nm_structure_table(run.manifest)
    assert list(table.columns) == ["layer", "code", "math", "web"]
    assert (table["code"] == "2:4").sum() == 1


def test_nm_pattern_cases():
    rng = np.random.default_rng(0)
    w = torch.randn(16, 32)
    assert nm_pattern((prune_2_4(w) != 0).numpy()) == "2:4"
    m8 = np.zeros((4, 16), bool)
    m8[:, [0, 1, 2, 3, 8, 9, 10, 11]] = True  # 4:8 but 4 of every first 4: not 2:4
    assert nm_pattern(m8) == "4:8"
    one4 = np.zeros((4, 16), bool)
    one4[:, ::4] = True
    assert nm_pattern(one4) == "1:4"
    assert nm_pattern(rng.random((64, 64)) < 0.5) is None
    assert nm_pattern(np.zeros((4, 8), bool)) is None
    assert nm_pattern(np.ones((4, 6), bool)) is None  # no group size divides 6


def test_single_file_folder_and_explicit_masks(tmp_path):
    w = torch.randn(8, 16)
    mask = (torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) < 0.3).to(torch.uint8)
    # torch.nn.utils.prune names: weight_orig + weight_mask; the mask wins over the zeros.
    write_model(
        tmp_path / "a", {"fc.weight_orig": w, "fc.weight_mask": mask, "fc.bias": torch.zeros(8)}, None
    )
    write_model(
        tmp_path / "b", {"fc.weight_orig": w, "fc.weight_mask": 1 - mask, "fc.bias": torch.zeros(8)}, None
    )
    run = load_run(import_hf([tmp_path / "a", tmp_path / "b"], tmp_path / "run"))
    m = run.masks("imported", 0)["fc.weight"]
    np.testing.assert_array_equal(m[0], mask.bool().numpy())
    np.testing.assert_array_equal(m[1], ~mask.bool().numpy())
    assert run.manifest["source"]["inferred_masks"] is False


def test_folder_of_folders_cli_and_generic_reader(folders, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["import", str(folders[0].parent), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 ticket(s)" in text and "2:4" in text and "masks only" in text
    assert load_run(out).ticket_names("imported") == ["code", "math", "web"]
    # import_checkpoints routes HF folders to the streaming reader too.
    run2 = load_run(import_checkpoints(folders[:2], tmp_path / "api"))
    np.testing.assert_array_equal(
        run2.masks("imported", 0)["model.layers.0.mlp.up_proj.weight"],
        load_run(out).masks("imported", 0)["model.layers.0.mlp.up_proj.weight"][:2],
    )
    # The in-memory reader (uploads, mixed inputs) reads a model folder as one ticket.
    tickets = read_tickets([folders[2]])
    assert tickets.tickets == ("web",) and tickets.format == "huggingface"


def test_same_folder_names_get_distinct_tickets(tmp_path):
    a = tiny_llama(tmp_path / "wanda" / "model", 1, sharded=False)
    b = tiny_llama(tmp_path / "sparsegpt" / "model", 2, sharded=False)
    run = load_run(import_hf([a, b], tmp_path / "run"))
    assert run.ticket_names("imported") == ["wanda/model", "sparsegpt/model"]


def test_refusals(tmp_path, folders):
    bad = tiny_llama(tmp_path / "bad", 1)
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    index["weight_map"]["lm_head.weight"] = "../escape.safetensors"
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file name"):
        import_hf([bad], tmp_path / "r1")
    wide = tiny_llama(tmp_path / "wide", 1, hidden=40)
    with pytest.raises(CheckpointError, match="has shape"):
        import_hf([folders[0], wide], tmp_path / "r2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a Hugging Face"):
        import_hf([tmp_path / "empty"], tmp_path / "r3")
    nan = write_model(tmp_path / "nan", {"fc.weight": torch.full((4, 4), float("nan"))}, None)
    with pytest.raises(CheckpointError, match="NaN"):
        import_hf([nan], tmp_path / "r4")
    assert not (tmp_path / "r4").exists() and not list(tmp_path.glob(".r4.import-*"))


def test_streamed_mask_file_is_a_valid_safetensors_mask_file(tmp_path):
    rng = np.random.default_rng(1)
    masks = {
        "a": rng.random((3, 5, 7)) < 0.4,
        "b": rng.random((3, 64)) < 0.5,
        "c": rng.random((3, 1, 3)) < 0.5,
    }
    w = PackedMaskWriter(tmp_path / "m.safetensors", {n: m.shape for n, m in masks.items()})
    for n, m in masks.items():
        w.write(n, np.packbits(m.reshape(3, -1), axis=1))
    w.close()
    back = load_masks(tmp_path / "m.safetensors")  # the safetensors library reads it
    pm = PackedMasks(tmp_path / "m.safetensors")
    for n, m in masks.items():
        np.testing.assert_array_equal(back[n], m)
        np.testing.assert_array_equal(pm[n], m)


def test_memory_is_bounded_by_the_largest_layer(tmp_path):
    """Peak RSS growth while importing is a few times the largest layer, not the model size."""
    rows, cols, n_layers = 512, 1024, 24  # one layer 1 MiB in fp16; 24 MiB per ticket, 72 MiB for 3
    layer_bytes = rows * cols * 2
    for t in range(3):
        g = torch.Generator().manual_seed(t)
        tensors = {
            f"model.layers.{i}.mlp.weight": torch.randn(rows, cols, generator=g).half()
            for i in range(n_layers)
        }
        for v in tensors.values():
            v[torch.rand(rows, cols, generator=g) < 0.5] = 0
        names = list(tensors)
        write_model(tmp_path / f"t{t}", tensors, [names[:12], names[12:]])
    model_bytes = 3 * n_layers * layer_bytes
    code = textwrap.dedent(
        f"""
        import re, sys
        from pathlib import Path
        import numpy, pandas, pyarrow, torch, safetensors  # libraries loaded before the baseline
        from ingest.hf import import_hf
        from analysis.packed import packed_masks
        from analysis.similarity import similarity_table
        from analysis.coding import coding_table, joint_coding_table
        from artifacts.run_format import load_run

        def kb(key):
            return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

        paths = [Path({str(tmp_path)!r}) / f"t{{t}}" for t in range(3)]
        import_hf(paths[:1], Path({str(tmp_path)!r}) / "warm")  # first-call allocations
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
        except OSError:
            sys.exit(77)
        base = kb("VmRSS")
        run = load_run(import_hf(paths, Path({str(tmp_path)!r}) / "run"))
        similarity_table(run, "imported"); coding_table(run, "imported"); joint_coding_table(run, "imported")
        print(kb("VmHWM") - base)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"},
    )
    if proc.returncode == 77:
        pytest.skip("cannot reset the peak RSS on this kernel")
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth = int(proc.stdout.split()[-1]) * 1024
    assert growth < 8 * layer_bytes, (
        f"peak RSS grew by {growth / 2**20:.1f} MiB (model {model_bytes / 2**20:.0f} MiB)"
    )
    assert growth < model_bytes / 8


def test_uploaded_zip_of_model_folders(folders, tmp_path):
    import io
    import zipfile

    from ingest import import_upload

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in folders[:2]:
            for p in sorted(f.iterdir()):
                zf.write(p, f"models/{f.name}/{p.name}")
    run = load_run(import_upload(buf.getvalue(), "models.zip", tmp_path))
    assert run.ticket_names("imported") == ["code", "math"]
    want = expected_masks(folders[1])["model.layers.1.mlp.down_proj.weight"]
    np.testing.assert_array_equal(run.masks("imported", 0)["model.layers.1.mlp.down_proj.weight"][1], want)
