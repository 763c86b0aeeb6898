"""Checkpoints real tools write that the importers used to drop, misread or refuse (issue 15).

Every fixture is written by the code path users run: ``torch.nn.utils.prune`` on
real ``nn.LSTM`` / ``nn.GRU`` modules, ``torch.ao.pruning``'s
``WeightNormSparsifier`` before ``squash_mask``, NNI 3.0's return type
(``collections.defaultdict(dict)``, built here without NNI), the
pytorch/examples ImageNet checkpoint layout, and runs whose files share a name.
The oracle is what went into the files.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as save_safetensors
from torch import nn
from torch.nn.utils import prune

from artifacts.run_format import load_run
from ingest import CheckpointError, import_checkpoints, read_tickets

METHOD = "imported"


def _sparsity(masks: dict[str, np.ndarray]) -> float:
    """Oracle: 1 - kept / total over all layers of one ticket."""
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values())


# ----------------------------------------------------------------------------- gap 3: RNN weights


class LSTMNet(nn.Module):
    """A 2-layer LSTM and a linear head: five prunable weights."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, T, 6) -> (B, 3)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def test_pruned_two_layer_lstm_keeps_all_five_layers(tmp_path):
    torch.manual_seed(0)
    net = LSTMNet()
    params = [(net.lstm, f"weight_{g}_l{i}") for i in range(2) for g in ("ih", "hh")] + [(net.head, "weight")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.6)
    net(torch.zeros(2, 5, 6))  # the pruned model runs
    torch.save(net.state_dict(), tmp_path / "lstm.pt")
    want = {
        ("lstm." if mod is net.lstm else "head.") + p: getattr(mod, p + "_mask").numpy().astype(bool)
        for mod, p in params
    }
    weights = {
        ("lstm." if mod is net.lstm else "head.") + p: getattr(mod, p).detach().numpy().copy()
        for mod, p in params
    }

    run = load_run(import_checkpoints([tmp_path / "lstm.pt"], tmp_path / "run"))
    assert set(run.manifest["prunable"]) == set(want)  # 5 layers, not just the head
    assert run.manifest["source"]["format"] == "torch_prune"
    masks = run.masks(METHOD, 0)
    for name, m in want.items():
        assert np.array_equal(masks[name][0], m), name
        assert np.array_equal(run.weights(METHOD, 0)[name][0], weights[name]), name
    assert run.sparsity(METHOD, 0) == pytest.approx(_sparsity(want), abs=1e-12)
    assert run.sparsity(METHOD, 0) == pytest.approx(0.6, abs=1e-3)  # global pruning at 60 %


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_bare_recurrent_module_imports(tmp_path, cls):
    torch.manual_seed(1)
    rnn = cls(4, 5, num_layers=1, bidirectional=True)
    names = [n for n, _ in rnn.named_parameters() if n.startswith("weight")]
    for n in names:
        prune.random_unstructured(rnn, n, amount=0.3)
    rnn(torch.zeros(3, 2, 4))
    torch.save(rnn.state_dict(), tmp_path / "rnn.pt")
    run = load_run(import_checkpoints([tmp_path / "rnn.pt"], tmp_path / "run"))
    assert set(run.manifest["prunable"]) == set(names)  # incl. weight_ih_l0_reverse
    for n in names:
        assert np.array_equal(run.masks(METHOD, 0)[n][0], getattr(rnn, n + "_mask").numpy().astype(bool))


def test_dense_lstm_state_dict_infers_masks_from_its_weights(tmp_path):
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 4)
    with torch.no_grad():
        lstm.weight_hh_l0[lstm.weight_hh_l0.abs() < 0.2] = 0
    torch.save(lstm.state_dict(), tmp_path / "lstm.pt")
    run = load_run(import_checkpoints([tmp_path / "lstm.pt"], tmp_path / "run"))
    assert set(run.manifest["prunable"]) == {"weight_ih_l0", "weight_hh_l0"}  # biases excluded
    assert np.array_equal(run.masks(METHOD, 0)["weight_hh_l0"][0], lstm.weight_hh_l0.detach().numpy() != 0)
    assert run.manifest["source"]["inferred_masks"] is True


# ----------------------------------------------------------------------------- gap 4: NNI 3.0 defaultdict


def _nni_compress_masks(seed: int) -> tuple[collections.defaultdict, dict[str, np.ndarray]]:
    """What NNI 3.0's ``pruner.compress()`` returns as masks: ``defaultdict(dict)`` of module -> target."""
    g = torch.Generator().manual_seed(seed)
    masks: collections.defaultdict = collections.defaultdict(dict)
    masks["conv"]["weight"] = (torch.rand(4, 1, 3, 3, generator=g) < 0.5).float()
    masks["fc"]["weight"] = (torch.rand(3, 16, generator=g) < 0.5).float()
    masks["fc"]["bias"] = torch.ones(3)
    want = {f"{m}.weight": masks[m]["weight"].numpy().astype(bool) for m in ("conv", "fc")}
    return masks, want


def test_nni3_defaultdict_masks_are_accepted(tmp_path):
    masks, want = _nni_compress_masks(0)
    torch.save(masks, tmp_path / "masks.pth")  # as NNI's README saves them
    run = load_run(import_checkpoints([tmp_path / "masks.pth"], tmp_path / "run"))
    assert run.manifest["source"]["format"] == "nni"
    for name, m in want.items():
        assert np.array_equal(run.masks(METHOD, 0)[name][0], m)


def test_nni3_several_tickets_in_one_defaultdict(tmp_path):
    tickets = collections.defaultdict(dict)
    wants = {}
    for k, name in enumerate(["code", "math"]):
        tickets[name], wants[name] = _nni_compress_masks(k)
    torch.save(tickets, tmp_path / "tickets.pth")
    run = load_run(import_checkpoints([tmp_path / "tickets.pth"], tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["code", "math"]
    for k, name in enumerate(wants):
        assert np.array_equal(run.masks(METHOD, 0)["fc.weight"][k], wants[name]["fc.weight"])


class _EvilFactory:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_defaultdict_with_code_is_still_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = collections.defaultdict(dict)
    evil["fc"]["weight"] = torch.ones(2, 2)
    evil["fc"]["payload"] = _EvilFactory(marker)
    torch.save(evil, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="could run code"):
        read_tickets([tmp_path / "evil.pth"])
    assert not marker.exists()
    # a factory that is not a plain container is refused too
    torch.save(collections.defaultdict(_EvilFactory(marker).__class__), tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="could run code"):
        read_tickets([tmp_path / "evil2.pth"])
    assert not marker.exists()


# ----------------------------------------------------------------------------- gap 5: training checkpoints


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):  # (B, 1, 4, 4) -> (B, 3)
        return self.fc(torch.relu(self.bn1(self.conv1(x))).flatten(1))


def test_pytorch_examples_checkpoint_layout(tmp_path):
    """``save_checkpoint({"epoch", "arch", "state_dict", "best_acc1", "optimizer", "scheduler"})``."""
    torch.manual_seed(3)
    model = SmallCNN()
    for mod in (model.conv1, model.fc):
        prune.l1_unstructured(mod, "weight", amount=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    loss = model(torch.randn(8, 1, 4, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    best_acc1 = torch.tensor(71.25)  # pytorch/examples keeps it as a tensor (percent)
    torch.save(
        {
            "epoch": 2,
            "arch": "smallcnn",
            "state_dict": model.state_dict(),
            "best_acc1": best_acc1,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        tmp_path / "model_best.pth.tar",
    )
    run = load_run(import_checkpoints([tmp_path / "model_best.pth.tar"], tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["model_best"]
    assert list(run.manifest["prunable"]) == ["conv1.weight", "fc.weight"]
    for mod, name in ((model.conv1, "conv1.weight"), (model.fc, "fc.weight")):
        assert np.array_equal(run.masks(METHOD, 0)[name][0], mod.weight_mask.numpy().astype(bool))
    info = run.level_info(METHOD, 0)
    assert info["ticket_metrics"] == [{"best_acc1": pytest.approx(71.25)}]


# ----------------------------------------------------------------------------- gap 6: torch.ao.pruning


def _ao_sparsified(seed: int = 0):
    from torch.ao.pruning import WeightNormSparsifier

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    sparsifier = WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=4)
    sparsifier.prepare(model, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "2.weight"}])
    sparsifier.step()
    model(torch.zeros(1, 8))
    masks = {f"{i}.weight": model[i].parametrizations.weight[0].mask.numpy().astype(bool) for i in (0, 2)}
    dense = {f"{i}.weight": model[i].parametrizations.weight.original.detach().numpy().copy() for i in (0, 2)}
    return model, sparsifier, masks, dense


def test_torch_ao_before_squash_mask_with_the_sparsifier_state(tmp_path):
    model, sparsifier, masks, dense = _ao_sparsified()
    assert 0.4 < _sparsity(masks) < 0.6
    torch.save({"model": model.state_dict(), "sparsifier": sparsifier.state_dict()}, tmp_path / "ao.pt")
    run = load_run(import_checkpoints([tmp_path / "ao.pt"], tmp_path / "run"))
    assert run.manifest["source"]["format"] == "torch_ao"
    assert list(run.manifest["prunable"]) == ["0.weight", "2.weight"]
    for name, m in masks.items():
        assert np.array_equal(run.masks(METHOD, 0)[name][0], m)
        assert np.array_equal(run.weights(METHOD, 0)[name][0], dense[name] * m)
    assert run.sparsity(METHOD, 0) == pytest.approx(_sparsity(masks), abs=1e-12)


def test_torch_ao_before_squash_mask_without_masks_is_refused(tmp_path):
    model, _, _, _ = _ao_sparsified()
    torch.save(model.state_dict(), tmp_path / "ao.pt")
    with pytest.raises(CheckpointError, match="squash_mask"):
        read_tickets([tmp_path / "ao.pt"])


def test_torch_ao_partly_sparsified_model_is_not_read_as_dense(tmp_path):
    """Only the first layer sparsified: the plain second layer once made this a dense 0 % ticket."""
    from torch.ao.pruning import WeightNormSparsifier

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    sparsifier = WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=4)
    sparsifier.prepare(model, [{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    torch.save(model.state_dict(), tmp_path / "ao.pt")
    with pytest.raises(CheckpointError, match="squash_mask"):
        read_tickets([tmp_path / "ao.pt"])
    torch.save({"state_dict": model.state_dict(), "sparsifier": sparsifier.state_dict()}, tmp_path / "ao2.pt")
    tickets = read_tickets([tmp_path / "ao2.pt"])
    want = model[0].parametrizations.weight[0].mask.numpy().astype(bool)
    assert list(tickets.layers) == ["0.weight"]  # the sparsifier's layers are the prunable ones
    assert np.array_equal(tickets.levels[0].masks["0.weight"][0], want)


def test_torch_ao_after_squash_mask_reads_the_zeros(tmp_path):
    model, sparsifier, masks, _ = _ao_sparsified()
    sparsifier.squash_mask()
    torch.save(model.state_dict(), tmp_path / "ao.pt")
    run = load_run(import_checkpoints([tmp_path / "ao.pt"], tmp_path / "run"))
    for name, m in masks.items():
        assert np.array_equal(run.masks(METHOD, 0)[name][0], m)


# ----------------------------------------------------------------------------- gap 7: files sharing a name


def _shrinkbench_checkpoint(path: Path, seed: int) -> dict[str, np.ndarray]:
    """ShrinkBench's ``checkpoints/checkpoint-<epoch>.pt``: masked weights and ``<p>_mask`` buffers."""
    rng = np.random.default_rng(seed)
    masks = {"conv.weight": rng.random((4, 1, 3, 3)) < 0.5, "fc.weight": rng.random((3, 16)) < 0.4}
    sd = {}
    for name, m in masks.items():
        sd[name] = torch.from_numpy(rng.standard_normal(m.shape).astype(np.float32) * m)
        sd[name + "_mask"] = torch.from_numpy(m.astype(np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": sd, "epoch": 30}, path)
    return masks


def test_runs_whose_files_share_a_name_are_named_by_their_folders(tmp_path):
    paths, wants = [], []
    for k, exp in enumerate(["resnet-gmp-0.5", "resnet-gmp-0.8", "resnet-lmp-0.8"]):
        p = tmp_path / "results" / exp / "checkpoints" / "checkpoint-30.pt"
        wants.append(_shrinkbench_checkpoint(p, k))
        paths.append(p)
    run = load_run(import_checkpoints(paths, tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["resnet-gmp-0.5", "resnet-gmp-0.8", "resnet-lmp-0.8"]
    for k, want in enumerate(wants):
        assert np.array_equal(run.masks(METHOD, 0)["fc.weight"][k], want["fc.weight"])


def test_hugging_face_model_files_in_several_folders(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for domain in ["code", "math"]:
        w = rng.standard_normal((6, 4)).astype(np.float32)
        w[rng.random(w.shape) < 0.5] = 0  # Wanda / SparseGPT save the zeros, no mask
        (tmp_path / f"llama-{domain}").mkdir()
        save_safetensors(
            {"model.layers.0.mlp.up_proj.weight": torch.from_numpy(w)},
            tmp_path / f"llama-{domain}" / "model.safetensors",
        )
        paths.append(tmp_path / f"llama-{domain}" / "model.safetensors")
    run = load_run(import_checkpoints(paths, tmp_path / "run"))
    assert run.ticket_names(METHOD) == ["llama-code", "llama-math"]


def test_folders_holding_the_same_file_names(tmp_path):
    for k, seed_dir in enumerate(["seed1", "seed2"]):
        for epoch in (10, 20):
            _shrinkbench_checkpoint(tmp_path / seed_dir / f"checkpoint-{epoch}.pt", 10 * k + epoch)
    tickets = read_tickets([tmp_path / "seed1", tmp_path / "seed2"])
    assert tickets.tickets == (
        "seed1/checkpoint-10",
        "seed1/checkpoint-20",
        "seed2/checkpoint-10",
        "seed2/checkpoint-20",
    )


def test_folder_of_runs_and_its_zip_upload(tmp_path):
    """ShrinkBench's ``<experiment>/checkpoints/checkpoint-30.pt`` for several experiments, as one folder."""
    import io
    import zipfile

    from ingest import import_upload

    root = tmp_path / "results"
    wants = {
        exp: _shrinkbench_checkpoint(root / exp / "checkpoints" / "checkpoint-30.pt", k)
        for k, exp in enumerate(["gmp", "lmp"])
    }
    (root / "logs").mkdir()
    (root / "logs" / "train.log").write_text("not a checkpoint")
    tickets = read_tickets([root])
    assert tickets.tickets == ("gmp", "lmp")
    for k, want in enumerate(wants.values()):
        assert np.array_equal(tickets.levels[0].masks["fc.weight"][k], want["fc.weight"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(root.rglob("*.pt")):
            zf.write(f, f"results/{f.relative_to(root)}")
    (tmp_path / "work").mkdir()
    run = load_run(import_upload(buf.getvalue(), "results.zip", tmp_path / "work"))
    assert run.ticket_names(METHOD) == ["gmp", "lmp"]


# ----------------------------------------------------------------------------- gap 2: logged accuracy


def test_openlth_logged_accuracy_is_a_labelled_collapse_signal(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_importers import make_openlth

    from analysis import collapse, overview

    src = make_openlth(tmp_path / "lth", replicates=(1, 2), levels=3)
    run = load_run(import_checkpoints([tmp_path / "lth"], tmp_path / "run"))
    curves = collapse.collapse_curves(run)
    acc = curves[curves["signal"] == "test_accuracy"]
    for k, rep in enumerate(src.values()):
        assert list(acc[acc["ticket"] == k].sort_values("level")["value"]) == rep["acc"]
    mean = acc[acc["ticket"].isna()].sort_values("level")["value"].to_numpy()
    np.testing.assert_allclose(mean, np.mean([rep["acc"] for rep in src.values()], axis=0), atol=1e-12)
    assert not (curves["signal"] == "test_loss").any()  # lower is better: not a collapse signal
    res = overview.results_table(run, curves=curves)
    got = res[res["metric"] == "test_accuracy"].sort_values("level")["value"].to_numpy()
    np.testing.assert_allclose(got, mean, atol=1e-12)
    ev = overview.collapse_evaluation_by_method(curves)
    assert set(ev["metric"]) == {"test_accuracy"}


def test_torch_ao_sparsifier_state_alone_holds_the_masks(tmp_path):
    _, sparsifier, masks, _ = _ao_sparsified()
    torch.save(sparsifier.state_dict(), tmp_path / "sparsifier.pt")
    run = load_run(import_checkpoints([tmp_path / "sparsifier.pt"], tmp_path / "run"))
    assert run.manifest["source"]["format"] == "torch_ao" and not run.has_weights(METHOD, 0)
    for name, m in masks.items():
        assert np.array_equal(run.masks(METHOD, 0)[name][0], m)
