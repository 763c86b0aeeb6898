"""Importers: every checkpoint format round-trips into the run format, bit for bit.

Fixtures are built with the real libraries where they exist here
(``torch.nn.utils.prune.custom_from_mask``) and by hand, as the tools write
them, for ShrinkBench, OpenLTH and NNI; the oracle is what went into them.
"""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as save_safetensors
from torch import nn
from torch.nn.utils import prune

from artifacts.run_format import load_run
from ingest import (
    CheckpointError,
    import_checkpoints,
    import_upload,
    read_tickets,
)

ROOT = Path(__file__).resolve().parents[1]
METHOD = "imported"


def _masks(run, level=0, method=METHOD):
    return run.masks(method, level)


def _sparsity(masks_by_layer: dict[str, np.ndarray]) -> float:
    """Oracle: 1 - kept / total over all layers of one ticket."""
    kept = sum(int(m.sum()) for m in masks_by_layer.values())
    total = sum(m.size for m in masks_by_layer.values())
    return 1.0 - kept / total


# ----------------------------------------------------------------------------- fixtures


class TinyNet(nn.Module):
    """Layers ``conv.weight`` (4, 1, 3, 3) and ``fc.weight`` (3, 16), like every fixture below."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)  # (B, 1, 4, 4) -> (B, 4, 2, 2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def make_torch_prune(path: Path, seed: int = 0) -> dict:
    """A torch.nn.utils.prune checkpoint; returns the source masks and masked weights."""
    torch.manual_seed(seed)
    net = TinyNet()
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for mod in ("conv", "fc"):
        module = net.get_submodule(mod)
        m = torch.rand(module.weight.shape, generator=g) < 0.6
        prune.custom_from_mask(module, "weight", m)
        masks[f"{mod}.weight"] = m.numpy()
    net(torch.zeros(1, 1, 4, 4))  # the pruned model runs
    torch.save(net.state_dict(), path)
    weights = {f"{m}.weight": net.get_submodule(m).weight.detach().numpy().copy() for m in ("conv", "fc")}
    return {"masks": masks, "weights": weights}


def make_shrinkbench(path: Path) -> dict:
    rng = np.random.default_rng(1)
    masks = {"conv.weight": rng.random((4, 1, 3, 3)) < 0.5, "fc.weight": rng.random((3, 16)) < 0.3}
    sd, weights = {}, {}
    for name, m in masks.items():
        w = rng.standard_normal(m.shape).astype(np.float32) * m
        sd[name] = torch.from_numpy(w)
        sd[name + "_mask"] = torch.from_numpy(m.astype(np.float32))
        sd[name.replace("weight", "bias")] = torch.zeros(m.shape[0])
        sd[name.replace("weight", "bias_mask")] = torch.ones(m.shape[0])  # ShrinkBench may mask biases
        weights[name] = w
    torch.save({"model_state_dict": sd, "optim_state_dict": {"state": {}}, "epoch": 7}, path)
    return {"masks": masks, "weights": weights}


def make_nni(path: Path, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    masks = {"conv": rng.random((4, 1, 3, 3)) < 0.5, "fc": rng.random((3, 16)) < 0.4}
    nni = {
        mod: {"weight": torch.from_numpy(m.astype(np.float32)), "bias": torch.ones(m.shape[0])}
        for mod, m in masks.items()
    }
    torch.save(nni, path)
    return {"masks": {f"{k}.weight": v for k, v in masks.items()}}


def make_plain(path: Path) -> dict:
    rng = np.random.default_rng(3)
    conv = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((3, 16)).astype(np.float32)
    conv[rng.random(conv.shape) < 0.5] = 0
    fc[rng.random(fc.shape) < 0.7] = 0
    sd = {
        "conv.weight": torch.from_numpy(conv),
        "conv.bias": torch.zeros(4),  # 1-D: excluded
        "bn.weight": torch.zeros(4),  # 1-D norm weight with zeros: excluded
        "bn.num_batches_tracked": torch.tensor(5),
        "fc.weight": torch.from_numpy(fc),
    }
    torch.save(sd, path)
    return {
        "masks": {"conv.weight": conv != 0, "fc.weight": fc != 0},
        "weights": {"conv.weight": conv, "fc.weight": fc},
    }


OPENLTH_LAYERS = {"fc_layers.0.weight": (8, 6), "fc.weight": (3, 8)}


def make_openlth(root: Path, replicates=(1, 2), levels=4, with_models=True) -> dict:
    """An OpenLTH tree as open_lth writes it; returns masks/accuracies/weights per replicate."""
    out = {}
    for r in replicates:
        rng = np.random.default_rng(10 + r)
        scores = {k: rng.random(s) for k, s in OPENLTH_LAYERS.items()}
        rep = {"masks": [], "acc": [], "weights": []}
        for lv in range(levels):
            main = root / "lottery_0123abcd" / f"replicate_{r}" / f"level_{lv}" / "main"
            main.mkdir(parents=True)
            # nested masks: level lv keeps the top 0.8**lv by a fixed score
            mask = {
                k: s >= np.quantile(s, 1 - 0.8**lv) if lv else np.ones(s.shape, bool)
                for k, s in scores.items()
            }
            torch.save({k: torch.from_numpy(m).int() for k, m in mask.items()}, main / "mask.pth")
            total = sum(m.size for m in mask.values())
            kept = sum(int(m.sum()) for m in mask.values())
            (main / "sparsity_report.json").write_text(
                json.dumps({"total": float(total), "unpruned": float(kept)}, indent=4)
            )
            acc = float(np.round(0.9 - 0.05 * lv**1.5 + 0.01 * r, 6))
            lines = [f"test_loss,0,{2.3 + lv}", "test_accuracy,0,0.1", f"test_accuracy,900,{acc}"]
            lines.insert(1, "test_accuracy,450,0.5")  # mid-training value: not the last iteration
            (main / "logger").write_text("\n".join(lines))
            if with_models:
                trained = {
                    k: torch.from_numpy(rng.standard_normal(s).astype(np.float32))
                    for k, s in OPENLTH_LAYERS.items()
                }
                trained["fc.bias"] = torch.zeros(3)
                torch.save({k: torch.randn(v.shape) for k, v in trained.items()}, main / "model_ep0_it0.pth")
                torch.save(trained, main / "model_ep2_it0.pth")
                rep["weights"].append({k: trained[k].numpy() * mask[k] for k in OPENLTH_LAYERS})
            rep["masks"].append(mask)
            rep["acc"].append(acc)
        out[f"replicate_{r}"] = rep
    return out


# ----------------------------------------------------------------------------- API round trips


def test_torch_prune_round_trip(tmp_path):
    src = make_torch_prune(tmp_path / "pruned.pt")
    run = load_run(import_checkpoints([tmp_path / "pruned.pt"], tmp_path / "run"))
    m = run.manifest
    assert m["methods"][METHOD]["tickets"] == ["pruned"]
    assert m["methods"][METHOD]["ticket_kind"] == "imported"
    assert m["source"]["format"] == "torch_prune" and m["source"]["inferred_masks"] is False
    assert m["prunable"] == {"conv.weight": [4, 1, 3, 3], "fc.weight": [3, 16]}  # biases are not prunable
    masks = _masks(run)
    for name, want in src["masks"].items():
        assert masks[name].dtype == bool and np.array_equal(masks[name][0], want)
    weights = run.weights(METHOD, 0)
    for name, want in src["weights"].items():  # module.weight == weight_orig * weight_mask
        assert weights[name].dtype == np.float32 and np.array_equal(weights[name][0], want)
    assert run.sparsity(METHOD, 0) == pytest.approx(_sparsity(src["masks"]), abs=1e-15)
    assert run.levels(METHOD) == [0]


def test_shrinkbench_nested_under_model_state_dict(tmp_path):
    src = make_shrinkbench(tmp_path / "sb.pth")
    run = load_run(import_checkpoints([tmp_path / "sb.pth"], tmp_path / "run", name="sb run"))
    assert run.name == "sb run" and run.manifest["source"]["format"] == "shrinkbench"
    masks, weights = _masks(run), run.weights(METHOD, 0)
    assert set(masks) == set(src["masks"])  # weights only: bias masks are skipped
    for name in src["masks"]:
        assert np.array_equal(masks[name][0], src["masks"][name])
        assert np.array_equal(weights[name][0], src["weights"][name])
    info = run.level_info(METHOD, 0)
    kept = sum(int(m.sum()) for m in src["masks"].values())
    assert info["params_per_ticket"] == [kept] and info["params_total"] == kept
    assert info["metrics"] == {}  # the checkpoint logs no accuracy


def test_nni_masks_only(tmp_path):
    src = make_nni(tmp_path / "masks.pth")
    run = load_run(import_checkpoints([tmp_path / "masks.pth"], tmp_path / "run"))
    assert run.manifest["source"]["format"] == "nni"
    assert list(run.masks(METHOD, 0)) == ["conv.weight", "fc.weight"]  # source order, no bias
    for name, want in src["masks"].items():
        assert np.array_equal(_masks(run)[name][0], want)
    assert not run.has_weights(METHOD, 0)


def test_plain_state_dict_infers_masks_from_zeros(tmp_path):
    src = make_plain(tmp_path / "dense.pt")
    run = load_run(import_checkpoints([tmp_path / "dense.pt"], tmp_path / "run"))
    assert run.manifest["source"]["inferred_masks"] is True
    assert run.manifest["source"]["format"] == "state_dict"
    assert set(run.manifest["prunable"]) == {"conv.weight", "fc.weight"}  # no bias, no norm
    for name, want in src["masks"].items():
        assert np.array_equal(_masks(run)[name][0], want)
        assert np.array_equal(run.weights(METHOD, 0)[name][0], src["weights"][name])
    assert run.sparsity(METHOD, 0) == pytest.approx(_sparsity(src["masks"]), abs=1e-15)


def test_openlth_sweep_with_accuracy_is_a_collapse_curve(tmp_path):
    src = make_openlth(tmp_path / "open_lth_data")
    run = load_run(import_checkpoints([tmp_path / "open_lth_data"], tmp_path / "run"))
    assert run.manifest["source"]["format"] == "openlth"
    assert run.ticket_names(METHOD) == ["replicate_1", "replicate_2"]
    assert run.levels(METHOD) == [0, 1, 2, 3]
    for lv in range(4):
        masks = _masks(run, lv)
        info = run.level_info(METHOD, lv)
        for k, (ticket, rep) in enumerate(src.items()):
            for name in OPENLTH_LAYERS:
                assert np.array_equal(masks[name][k], rep["masks"][lv][name]), (ticket, lv, name)
                assert np.array_equal(run.weights(METHOD, lv)[name][k], rep["weights"][lv][name])
            assert info["ticket_metrics"][k]["test_accuracy"] == rep["acc"][lv]  # last iteration, exact
            assert info["ticket_sparsity"][k] == pytest.approx(_sparsity(rep["masks"][lv]), abs=1e-15)
        accs = [rep["acc"][lv] for rep in src.values()]
        assert info["metrics"]["test_accuracy"] == pytest.approx(np.mean(accs), abs=1e-15)
        assert run.sparsity(METHOD, lv) == pytest.approx(np.mean(info["ticket_sparsity"]), abs=1e-15)
    # masks are nested and sparsity grows: the sweep's shape survived the import
    assert [run.sparsity(METHOD, lv) for lv in range(4)] == sorted(
        run.sparsity(METHOD, lv) for lv in range(4)
    )
    assert run.sparsity(METHOD, 0) == 0.0


def test_openlth_single_replicate_folder_and_no_models(tmp_path):
    src = make_openlth(tmp_path / "tree", replicates=(3,), levels=2, with_models=False)
    rep_dir = tmp_path / "tree" / "lottery_0123abcd" / "replicate_3"
    run = load_run(import_checkpoints([rep_dir], tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["replicate_3"]
    assert not run.has_weights(METHOD, 1)
    assert np.array_equal(_masks(run, 1)["fc.weight"][0], src["replicate_3"]["masks"][1]["fc.weight"])


def test_folder_of_checkpoints_one_ticket_per_file(tmp_path):
    folder = tmp_path / "tickets"
    folder.mkdir()
    files = {"t10": "t10.pt", "t2": "t2.pth.tar", "t1": "t1.bin"}
    srcs = {stem: make_torch_prune(folder / f, seed=i) for i, (stem, f) in enumerate(files.items())}
    (folder / "README.md").write_text("not a checkpoint")
    (folder / ".hidden.pt").write_bytes(b"ignored")
    run = load_run(import_checkpoints([folder], tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["t1", "t2", "t10"]  # natural order
    masks = _masks(run)
    for k, stem in enumerate(["t1", "t2", "t10"]):
        for name, want in srcs[stem]["masks"].items():
            assert np.array_equal(masks[name][k], want)
    spars = run.level_info(METHOD, 0)["ticket_sparsity"]
    assert spars == pytest.approx([_sparsity(srcs[s]["masks"]) for s in ["t1", "t2", "t10"]], abs=1e-15)
    union = sum(int(np.logical_or.reduce([srcs[s]["masks"][n] for s in srcs]).sum()) for n in masks)
    assert run.level_info(METHOD, 0)["params_union"] == union


def test_one_file_with_several_nni_tickets(tmp_path):
    rng = np.random.default_rng(5)
    tickets = {
        name: {
            "conv": {"weight": torch.from_numpy(rng.random((2, 3)) < 0.5)},
            "fc": {"weight": torch.from_numpy(rng.random((4, 2)) < 0.5)},
        }
        for name in ["cat", "dog", "ship"]
    }
    torch.save(tickets, tmp_path / "classes.pt")
    run = load_run(import_checkpoints([tmp_path / "classes.pt"], tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["cat", "dog", "ship"]
    for k, t in enumerate(tickets.values()):
        assert np.array_equal(_masks(run)["fc.weight"][k], t["fc"]["weight"].numpy())


def test_safetensors_with_bfloat16_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    m = torch.rand(5, 4, generator=g) < 0.5
    w = (torch.randn(5, 4, generator=g) * m).to(torch.bfloat16)
    save_safetensors({"fc.weight": w, "fc.weight_mask": m}, str(tmp_path / "t.safetensors"))
    run = load_run(import_checkpoints([tmp_path / "t.safetensors"], tmp_path / "run"))
    assert np.array_equal(_masks(run)["fc.weight"][0], m.numpy())
    assert np.array_equal(run.weights(METHOD, 0)["fc.weight"][0], w.float().numpy())  # bf16 widens exactly


def test_float16_weights_and_custom_method(tmp_path):
    src = make_torch_prune(tmp_path / "p.pt")
    run = load_run(
        import_checkpoints([tmp_path / "p.pt"], tmp_path / "run", method="lth", weights_dtype="float16")
    )
    w = run.weights("lth", 0)["fc.weight"]
    assert w.dtype == np.float16
    np.testing.assert_array_equal(w[0], src["weights"]["fc.weight"].astype(np.float16))


def test_empty_predictions_read_back(tmp_path):
    make_nni(tmp_path / "m.pt")
    run = load_run(import_checkpoints([tmp_path / "m.pt"], tmp_path / "run"))
    pred = run.predictions(METHOD, 0)
    assert len(pred) == 0 and {"sample", "label", "subset", "pred"} <= set(pred.columns)
    assert run.groups() == []


def test_force_replaces_a_run_but_never_another_folder(tmp_path):
    make_nni(tmp_path / "a.pt", seed=1)
    make_nni(tmp_path / "b.pt", seed=9)
    out = tmp_path / "run"
    import_checkpoints([tmp_path / "a.pt"], out)
    with pytest.raises(CheckpointError, match="pass --force"):
        import_checkpoints([tmp_path / "b.pt"], out)
    import_checkpoints([tmp_path / "b.pt"], out, force=True)
    assert load_run(out).ticket_names(METHOD) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt", "run"]  # no staging left
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a run folder"):
        import_checkpoints([tmp_path / "a.pt"], other, force=True)
    assert (other / "holiday.jpg").read_bytes() == b"x"


def test_read_tickets_stacks_masks(tmp_path):
    make_openlth(tmp_path / "lth", levels=2, with_models=False)
    t = read_tickets([tmp_path / "lth"])
    assert t.tickets == ("replicate_1", "replicate_2") and list(t.levels) == [0, 1]
    assert t.levels[1].masks["fc.weight"].shape == (2, 3, 8)


# ----------------------------------------------------------------------------- uploads


def test_upload_single_file_and_zipped_openlth_tree(tmp_path):
    work = tmp_path / "session"
    work.mkdir()
    src = make_torch_prune(tmp_path / "mine.pt")
    run_dir = import_upload((tmp_path / "mine.pt").read_bytes(), "C:\\Users\\me\\mine.pt", work)
    assert run_dir.is_relative_to(work)
    run = load_run(run_dir)
    assert run.ticket_names(METHOD) == ["mine"] and run.manifest["source"]["paths"] == ["mine.pt"]
    assert np.array_equal(_masks(run)["conv.weight"][0], src["masks"]["conv.weight"])

    lth = make_openlth(tmp_path / "tree", levels=2, with_models=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "tree").rglob("*")):
            zf.write(p, Path("open_lth_data") / p.relative_to(tmp_path / "tree"))
        zf.writestr("__MACOSX/._mask.pth", b"resource fork")  # macOS zips carry these
    run = load_run(import_upload(buf.getvalue(), "open_lth_data.zip", work))
    assert run.levels(METHOD) == [0, 1]
    assert np.array_equal(_masks(run, 1)["fc.weight"][1], lth["replicate_2"]["masks"][1]["fc.weight"])
    assert run.level_info(METHOD, 1)["ticket_metrics"][0]["test_accuracy"] == lth["replicate_1"]["acc"][1]
    # everything stayed in the session folder; extracted sources were removed
    assert {p.name for p in work.iterdir()} == {run_dir.parent.name, run.path.parent.name}
    assert all(sorted(p.name for p in d.iterdir()) == ["run"] for d in work.iterdir())


# ----------------------------------------------------------------------------- command line


def test_cli_converts_every_format(tmp_path):
    # Four single-checkpoint formats share layers, so one process imports them as four tickets
    # (format detected per file); OpenLTH goes to a second process. Each process pays ~2 s for torch.
    singles = {
        "torch_prune": make_torch_prune(tmp_path / "tp.pt"),
        "shrinkbench": make_shrinkbench(tmp_path / "sb.pth"),
        "nni": make_nni(tmp_path / "nni.pth"),
        "state_dict": make_plain(tmp_path / "plain.bin"),
    }
    files = [tmp_path / f for f in ("tp.pt", "sb.pth", "nni.pth", "plain.bin")]
    lth = make_openlth(tmp_path / "lth", levels=3)
    commands = {
        "mixed": [*files, "--out", tmp_path / "run_mixed", "--name", "mixed"],
        "openlth": [tmp_path / "lth", "--out", tmp_path / "run_lth", "--weights", "float16"],
    }
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-m", "ingest", "import", *map(str, args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, args in commands.items()
    }
    outputs = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "Traceback" not in err, (key, err)
        outputs[key] = out

    run = load_run(tmp_path / "run_mixed")
    assert run.name == "mixed" and run.ticket_names(METHOD) == ["tp", "sb", "nni", "plain"]
    src = run.manifest["source"]
    assert src["ticket_formats"] == dict(zip(["tp", "sb", "nni", "plain"], singles, strict=True))
    assert src["inferred_masks"] is True and "inferred" in outputs["mixed"]
    masks = _masks(run)
    info = run.level_info(METHOD, 0)
    for k, want in enumerate(singles.values()):
        for name in ("conv.weight", "fc.weight"):
            assert np.array_equal(masks[name][k], want["masks"][name])
        assert info["ticket_sparsity"][k] == pytest.approx(_sparsity(want["masks"]), abs=1e-15)
    assert not run.has_weights(METHOD, 0)  # the NNI ticket has none, so none are stored

    run = load_run(tmp_path / "run_lth")
    assert run.levels(METHOD) == [0, 1, 2] and "test_accuracy" in outputs["openlth"]
    for lv in range(3):
        info = run.level_info(METHOD, lv)
        for k, rep in enumerate(lth.values()):
            for name, want in rep["masks"][lv].items():
                assert np.array_equal(_masks(run, lv)[name][k], want)
                assert np.array_equal(
                    run.weights(METHOD, lv)[name][k], rep["weights"][lv][name].astype(np.float16)
                )
            assert info["ticket_metrics"][k]["test_accuracy"] == rep["acc"][lv]
            assert info["ticket_sparsity"][k] == pytest.approx(_sparsity(rep["masks"][lv]), abs=1e-15)


def test_importing_the_package_loads_neither_torch_nor_streamlit():
    code = (
        "import sys, ingest, ingest.cli, analysis.cli; "
        "print(sorted(m for m in ('torch', 'streamlit') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
