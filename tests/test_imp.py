"""IMP on digits: nesting, exact rewinding, pruned weights at zero, resume == uninterrupted."""

import numpy as np
import pytest
import torch

from artifacts import run_format as rf
from lottery.config import DataConfig, ModelSpec, PruneConfig, RunDescription, TrainConfig
from lottery.models import build_model
from lottery.pipeline import build_context, train_run
from lottery.train import load_state_numpy, seeded_generator, train_masked

DESC = RunDescription(
    data=DataConfig(name="digits", partition="class"),
    model=ModelSpec(name="mlp", hidden=(32, 16)),
    train=TrainConfig(epochs=4, batch_size=64, lr=1e-2),
    prune=PruneConfig(fraction=0.3, levels=3),
    methods=("imp",),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp") / "run"
    train_run(DESC, out, device="cpu", show_progress=False)
    return rf.load_run(out)


def test_levels_and_sparsity(run):
    assert run.levels("imp") == [0, 1, 2, 3]
    total = sum(np.prod(s) for s in run.manifest["prunable"].values())
    n_layers = len(run.manifest["prunable"])
    for level in run.levels("imp"):
        expected = 1 - 0.7**level
        assert abs(run.sparsity("imp", level) - expected) <= n_layers / total


def test_masks_nested_across_levels(run):
    levels = run.levels("imp")
    for a, b in zip(levels[:-1], levels[1:], strict=True):
        ma, mb = run.masks("imp", a), run.masks("imp", b)
        for name in ma:
            assert not (mb[name] & ~ma[name]).any(), f"level {b} revives weights of {name}"
            assert mb[name].sum() < ma[name].sum()


def test_pruned_weights_are_exactly_zero_after_training(run):
    for level in run.levels("imp"):
        w, m = run.weights("imp", level), run.masks("imp", level)
        for name, mask in m.items():
            assert np.all(w[name][~mask[0]] == 0.0)
            assert np.count_nonzero(w[name][mask[0]]) > 0.9 * mask[0].sum()


def test_theta0_shared_and_rewind_is_theta0(run):
    theta0 = rf.load_tensors(run.path / "theta0.safetensors")
    init = run.init_weights("imp")
    for name in theta0:
        np.testing.assert_array_equal(theta0[name], init[name])


def test_rewinding_is_exact_on_surviving_weights(tmp_path):
    # with zero epochs a level's stored weights are exactly the rewind point under its mask
    desc = RunDescription(
        data=DESC.data, model=DESC.model, train=TrainConfig(epochs=0), prune=DESC.prune, methods=("imp",)
    )
    run = rf.load_run(train_run(desc, tmp_path / "r", device="cpu", show_progress=False))
    theta0 = rf.load_tensors(tmp_path / "r" / "theta0.safetensors")
    for level in run.levels("imp"):
        w, m = run.weights("imp", level), run.masks("imp", level)
        for name, mask in m.items():
            np.testing.assert_array_equal(w[name], theta0[name] * mask[0])
        for name in w:
            if name not in m:  # biases are never pruned and rewind exactly too
                np.testing.assert_array_equal(w[name], theta0[name])


def test_late_rewinding_keeps_weights_after_k_steps(tmp_path):
    k = 5
    desc = RunDescription(
        data=DESC.data,
        model=DESC.model,
        train=DESC.train,
        prune=PruneConfig(fraction=0.3, levels=1, rewind_iter=k),
        methods=("imp",),
    )
    out = train_run(desc, tmp_path / "r", device="cpu", show_progress=False)
    rewind = rf.load_tensors(out / "imp" / rf.INIT)
    # replay: k steps of the dense level-0 training from theta_0
    ctx = build_context(desc, out, "cpu")
    model = build_model(ctx.model_cfg)
    load_state_numpy(model, rf.load_tensors(out / "theta0.safetensors"))
    dense = {n: torch.ones(s, dtype=torch.bool) for n, s in ctx.shapes.items()}
    cfg = TrainConfig(**{**desc.train.__dict__, "epochs": 1})
    snap = {}

    def hook(step):
        if step == k:
            snap.update({n: p.detach().numpy().copy() for n, p in model.named_parameters()})

    train_masked(model, dense, ctx.x_train, ctx.y_train, cfg, seeded_generator(0, "imp", 0), on_step=hook)
    for name, value in snap.items():
        np.testing.assert_array_equal(rewind[name], value)
    theta0 = rf.load_tensors(out / "theta0.safetensors")
    assert any(not np.array_equal(rewind[n], theta0[n]) for n in theta0)


def test_killed_and_resumed_run_equals_uninterrupted(run, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    real_write = rf.write_level
    calls = {"n": 0}

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # die while writing level 2
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(rf, "write_level", dying_write)
    with pytest.raises(KeyboardInterrupt):
        train_run(DESC, out, device="cpu", show_progress=False)
    assert rf.completed_levels(out, "imp") == [0, 1]
    (out / "imp" / "level_02.tmp-dead").mkdir()  # debris of a kill mid-write
    monkeypatch.setattr(rf, "write_level", real_write)
    train_run(DESC, out, device="cpu", show_progress=False)
    assert not (out / "imp" / "level_02.tmp-dead").exists()
    resumed = rf.load_run(out)
    assert resumed.levels("imp") == run.levels("imp")
    for level in run.levels("imp"):
        for name, m in run.masks("imp", level).items():
            np.testing.assert_array_equal(m, resumed.masks("imp", level)[name])
        for name, w in run.weights("imp", level).items():
            np.testing.assert_array_equal(w, resumed.weights("imp", level)[name])
        a, b = run.predictions("imp", level), resumed.predictions("imp", level)
        assert a.equals(b)


def test_rerun_of_complete_run_changes_nothing(run):
    before = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    train_run(DESC, run.path, device="cpu", show_progress=False)
    after = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    assert before == after


def test_other_description_refuses_existing_run(run):
    other = RunDescription(data=DESC.data, model=DESC.model, train=DESC.train, prune=DESC.prune, seed=1)
    with pytest.raises(ValueError, match="different run"):
        train_run(other, run.path, device="cpu", show_progress=False)


def test_predictions_columns(run):
    frame = run.predictions("imp", 0)
    for col in ["sample", "label", "label_name", "subset", "class", "pred", "score_0", "detect_9"]:
        assert col in frame.columns
    assert run.ticket_names("imp") == ["all"]
    assert (frame["pred"] == frame["label"]).mean() > 0.8  # a trained digits classifier


def test_a_run_of_another_task_is_never_resumed_into(tmp_path):
    from lottery.config import RunDescription as Default

    rf.write_manifest(tmp_path, {"name": "inr", "task": "inr", "run_hash": Default().hash(), "methods": {}})
    with pytest.raises(ValueError, match="different run"):
        train_run(Default(), tmp_path, device="cpu", show_progress=False)
