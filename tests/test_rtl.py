"""RTL on digits: shared theta_0, nested ticket masks, isolated joint retraining, balanced and
cyclic batches, routing columns, stored weights that reproduce the predictions, resume."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from artifacts import run_format as rf
from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.masks import Masks
from lottery.models import build_model
from lottery.pipeline import build_context, train_run
from lottery.probe import probe_indices
from lottery.routing import ROUTINGS
from lottery.sampling import TicketBatches, index_stream, interleaved_order
from lottery.ticket_optim import TicketOptimizer
from lottery.tickets import (
    initial_masks,
    joint_retrain,
    masked_forward,
    matched_imp_epochs,
    rtl_budget,
    subset_sizes,
    ticket_step,
)
from lottery.train import load_state_numpy, seeded_generator

DESC = RunDescription(
    data=DataConfig(name="digits", partition="class"),
    model=ModelSpec(name="mlp", hidden=(32, 16)),
    train=TrainConfig(epochs=2, batch_size=32, lr=1e-2),
    prune=PruneConfig(fraction=0.3, levels=2),
    rtl=RTLConfig(ticket_kind="detector", retrain_epochs=2, match_imp_budget=True),
    methods=("independent", "rtl", "imp"),
)
RTL_ONLY = dataclasses.replace(DESC, methods=("rtl",))


# one torch thread for the module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl") / "run"
    train_run(DESC, out, device="cpu", show_progress=False)
    return rf.load_run(out)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return build_context(DESC, tmp_path_factory.mktemp("ctx"), "cpu")


# ----------------------------------------------------------------------------- batches and schedule


def test_index_stream_covers_each_pass_exactly_once():
    idx = torch.arange(10, 17)  # 7 indices, batches of 3 straddle passes
    stream = index_stream(idx, 3, torch.Generator().manual_seed(0))
    drawn = torch.cat([next(stream) for _ in range(7)])  # 21 = 3 passes
    for p in range(3):
        assert sorted(drawn[7 * p : 7 * (p + 1)].tolist()) == list(range(10, 17))
    with pytest.raises(ValueError, match="empty"):
        next(index_stream(idx[:0], 3, torch.Generator()))


def test_detector_batches_are_balanced(ctx):
    for k in (0, 7):
        batches = TicketBatches(
            ctx.subset_train, ctx.y_train, k, "detector", 33, torch.Generator().manual_seed(k)
        )
        for _ in range(20):
            idx, target = batches.next()
            pos, neg = idx[target == 1], idx[target == 0]
            assert len(pos) == len(neg) == 16
            assert (ctx.subset_train[pos] == k).all()
            assert (ctx.subset_train[neg] != k).all()


def test_expert_batches_stay_in_their_subset(ctx):
    batches = TicketBatches(ctx.subset_train, ctx.y_train, 3, "expert", 32, torch.Generator().manual_seed(0))
    idx, target = batches.next()
    assert len(idx) == 32 and (ctx.subset_train[idx] == 3).all()
    assert torch.equal(target, ctx.y_train[idx])


def test_interleaved_order_gives_every_ticket_equal_steps():
    order = interleaved_order(5, 7, torch.Generator().manual_seed(0))
    assert torch.bincount(order, minlength=5).tolist() == [7] * 5
    for r in range(7):
        assert sorted(order[5 * r : 5 * (r + 1)].tolist()) == list(range(5))
    assert len(interleaved_order(5, 0, torch.Generator())) == 0


def test_cyclic_repetition_gives_unequal_subsets_equal_updates(tmp_path, monkeypatch):
    desc = dataclasses.replace(
        DESC,
        data=DataConfig(name="digits", partition="kmeans", k=3),
        rtl=RTLConfig(ticket_kind="expert", retrain_epochs=1),
        methods=("rtl",),
    )
    c = build_context(desc, tmp_path, "cpu")
    sizes = subset_sizes(c)
    assert len(set(sizes)) > 1  # k-means clusters of digits differ in size
    counts, seen = [0, 0, 0], [[], [], []]
    real_step, real_next = TicketOptimizer.step, TicketBatches.next

    def counting_step(self, k, grads):
        counts[k] += 1
        return real_step(self, k, grads)

    def recording_next(self):
        idx, target = real_next(self)
        seen[self.k].append(idx)
        return idx, target

    monkeypatch.setattr(TicketOptimizer, "step", counting_step)
    monkeypatch.setattr(TicketBatches, "next", recording_next)
    joint_retrain(c, initial_masks(c), 0, c.theta0())
    per_ticket = rtl_budget(desc, sizes)["retrain_steps_per_ticket"]
    assert counts == [per_ticket] * 3
    assert per_ticket == -(-max(sizes) // desc.train.batch_size)
    for k in range(3):
        drawn = torch.cat(seen[k])
        assert (c.subset_train[drawn] == k).all()
        # the smallest subset repeats cyclically: every sample drawn floor or ceil(times) times
        reps = torch.bincount(drawn, minlength=len(c.y_train))[c.subset_train == k]
        assert reps.max() - reps.min() <= 1 and reps.min() >= 1


# ----------------------------------------------------------------------------- optimiser and isolation


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(6, 5, generator=g), "b": torch.randn(6, generator=g)}


@pytest.mark.parametrize(
    "cfg", [TrainConfig(lr=1e-2), TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.01)]
)
def test_unmasked_single_ticket_step_is_torch_optimizer(cfg):
    ours = {n: p.clone() for n, p in _params().items()}
    ref = {n: p.clone().requires_grad_(True) for n, p in _params().items()}
    torch_opt = torch.optim.Adam(ref.values(), lr=cfg.lr, foreach=False) if cfg.optimizer == "adam" else None
    if torch_opt is None:
        torch_opt = torch.optim.SGD(
            ref.values(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False
        )
    opt = TicketOptimizer(ours, {}, cfg, 1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = {n: torch.randn(p.shape, generator=g) for n, p in ours.items()}
        opt.step(0, grads)
        for n, p in ref.items():
            p.grad = grads[n].clone()
        torch_opt.step()
    for n in ours:
        assert torch.equal(ours[n], ref[n].detach())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_step_moves_only_weights_inside_the_ticket_mask(optimizer):
    params = _params()
    g = torch.Generator().manual_seed(2)
    masks = {"w": torch.rand(3, 6, 5, generator=g) < 0.5}
    opt = TicketOptimizer(params, masks, TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.1), 3)
    for k in (0, 1, 2, 1, 0, 2):  # momentum and weight decay everywhere
        opt.step(k, {n: torch.randn(p.shape, generator=g) for n, p in params.items()})
    for k in range(3):
        before = {n: p.clone() for n, p in params.items()}
        opt.step(k, {n: torch.randn(p.shape, generator=g) for n, p in params.items()})
        outside = ~masks["w"][k]
        assert torch.equal(params["w"][outside], before["w"][outside])
        assert (params["w"][masks["w"][k]] != before["w"][masks["w"][k]]).all()
        assert (params["b"] != before["b"]).all()  # unmasked parameters are shared by all tickets


def test_joint_retraining_step_isolates_tickets_in_the_model(ctx):
    # real model, real losses, Adam with momentum from other tickets' steps
    g = torch.Generator().manual_seed(3)
    masks = {n: m & (torch.rand(m.shape, generator=g) < 0.6) for n, m in initial_masks(ctx).items()}
    model = build_model(ctx.model_cfg)
    theta = {n: torch.as_tensor(v).clone().requires_grad_(True) for n, v in ctx.theta0().items()}
    fmasks = {n: m.float() for n, m in masks.items()}
    opt = TicketOptimizer(theta, fmasks, dataclasses.replace(DESC.train, weight_decay=1e-3), ctx.k)
    samplers = [
        TicketBatches(ctx.subset_train, ctx.y_train, k, "detector", 32, seeded_generator(k))
        for k in range(ctx.k)
    ]

    def step(k):
        idx, target = samplers[k].next()
        ticket_step(
            model,
            theta,
            {n: m[k] for n, m in fmasks.items()},
            opt,
            k,
            k,
            ctx.x_train[idx],
            target,
            "detector",
        )

    for k in list(range(ctx.k)) * 2:
        step(k)
    for k in (4, 0, 9):
        before = {n: p.detach().clone() for n, p in theta.items()}
        step(k)
        for name, m in masks.items():
            outside = ~m[k]
            assert torch.equal(theta[name].detach()[outside], before[name][outside]), name
            assert not torch.equal(theta[name].detach()[m[k]], before[name][m[k]])


# ----------------------------------------------------------------------------- whole runs


def test_theta0_shared_by_every_method(run):
    theta0 = rf.load_tensors(run.path / "theta0.safetensors")
    for method in run.methods:
        init = run.init_weights(method)
        for name in theta0:
            np.testing.assert_array_equal(init[name], theta0[name])


def test_manifest_entries(run):
    names = run.manifest["partition"]["names"]
    for method in ("rtl", "independent"):
        entry = run.manifest["methods"][method]
        assert entry["tickets"] == names
        assert entry["ticket_kind"] == "detector"
        assert entry["routings"] == list(ROUTINGS)
        assert entry["default_routing"] == "max_score"
        assert set(entry["routing_definitions"]) == set(ROUTINGS)


def test_ticket_masks_nested_and_pruned_per_layer(run):
    p = DESC.prune.fraction
    for lv in run.levels("rtl")[1:]:
        before, after = run.masks("rtl", lv - 1), run.masks("rtl", lv)
        for name in after:
            assert not (after[name] & ~before[name]).any(), f"level {lv} revives weights of {name}"
            for k in range(after[name].shape[0]):
                n0 = run.masks("rtl", 0)[name][k].sum()
                assert after[name][k].sum() == round((1 - p) ** lv * n0)


def test_detector_head_is_the_tickets_own_row(run):
    head = run.masks("rtl", 0)["head.weight"]  # (K, n_out, hidden)
    for k in range(head.shape[0]):
        assert head[k, k].all()
        assert not np.delete(head[k], k, axis=0).any()


def test_rtl_and_independent_draw_identical_masks(run, tmp_path):
    for lv in run.levels("rtl"):
        a, b = run.masks("rtl", lv), run.masks("independent", lv)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert run.level_info("rtl", 1)["masks_from"] == "independent"


def test_parameter_counts(run):
    for lv in run.levels("rtl"):
        m = Masks(run.masks("rtl", lv))
        info = run.level_info("rtl", lv)
        assert info["params_per_ticket"] == [int(c) for c in m.counts()]
        union = sum(int(np.any(v, axis=0).sum()) for v in run.masks("rtl", lv).values())
        assert info["params_union"] == info["params_total"] == union
        ind = run.level_info("independent", lv)
        assert ind["params_total"] == sum(ind["params_per_ticket"]) > union
        assert info["sparsity"] == pytest.approx(float(m.sparsity().mean()))


def test_prediction_columns(run):
    k = len(run.ticket_names("rtl"))
    for method in ("rtl", "independent"):
        frame = run.predictions(method, 1)
        for r in ROUTINGS:
            assert f"pred_{r}" in frame and f"route_{r}" in frame
        for t in range(k):
            assert f"score_{t}" in frame and f"detect_{t}" in frame
        np.testing.assert_array_equal(frame["route_oracle"], frame["subset"])
        assert frame["pred"].equals(frame["pred_max_score"])
        assert len(frame) == run.manifest["dataset"]["n_test"]


def test_stored_shared_weights_reproduce_the_predictions(run, ctx):
    level = run.levels("rtl")[-1]
    w, masks = run.weights("rtl", level), run.masks("rtl", level)
    union = {n: m.any(0) for n, m in masks.items()}
    for name, u in union.items():
        assert np.all(w[name][~u] == 0)
    model = build_model(ctx.model_cfg)
    frame = run.predictions("rtl", level)
    for k in range(len(run.ticket_names("rtl"))):
        state = dict(w)
        for name, m in masks.items():
            state[name] = w[name] * m[k]
        load_state_numpy(model, state)
        with torch.no_grad():
            logit = model(ctx.x_test)[:, k]
        np.testing.assert_allclose(torch.sigmoid(logit).numpy(), frame[f"score_{k}"], atol=6e-5)


def test_matched_imp_budget(run, ctx):
    budget = rtl_budget(DESC, subset_sizes(ctx))
    epochs = matched_imp_epochs(DESC, subset_sizes(ctx))
    n = len(ctx.y_train)
    assert abs(epochs * n - budget["presentations"]) <= n / 2
    info = run.level_info("imp", 1)
    assert info["sample_presentations"] == epochs * n
    assert run.level_info("rtl", 1)["sample_presentations"] == budget["presentations"]


def test_detectors_need_a_class_partition(tmp_path):
    desc = dataclasses.replace(RTL_ONLY, data=DataConfig(name="digits", partition="kmeans", k=3))
    with pytest.raises(ValueError, match="detector"):
        train_run(desc, tmp_path / "r", device="cpu", show_progress=False)


def test_killed_and_resumed_rtl_equals_uninterrupted(tmp_path, monkeypatch):
    # rtl alone draws its masks by extraction (no independent run to reuse)
    ref = rf.load_run(train_run(RTL_ONLY, tmp_path / "ref", device="cpu", show_progress=False))
    out = tmp_path / "killed"
    real_write = rf.write_level
    calls = {"n": 0}

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # die while writing level 1
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(rf, "write_level", dying_write)
    with pytest.raises(KeyboardInterrupt):
        train_run(RTL_ONLY, out, device="cpu", show_progress=False)
    assert rf.completed_levels(out, "rtl") == [0]
    monkeypatch.setattr(rf, "write_level", real_write)
    resumed = rf.load_run(train_run(RTL_ONLY, out, device="cpu", show_progress=False))
    assert resumed.levels("rtl") == ref.levels("rtl") == [0, 1, 2]
    for lv in ref.levels("rtl"):
        for name, m in ref.masks("rtl", lv).items():
            np.testing.assert_array_equal(m, resumed.masks("rtl", lv)[name])
        for name, w in ref.weights("rtl", lv).items():
            np.testing.assert_array_equal(w, resumed.weights("rtl", lv)[name])
        pd.testing.assert_frame_equal(ref.predictions("rtl", lv), resumed.predictions("rtl", lv))
    assert ref.level_info("rtl", 1)["masks_from"] == "extraction"


def test_extraction_alone_equals_the_independent_masks(run, tmp_path):
    alone = rf.load_run(train_run(RTL_ONLY, tmp_path / "alone", device="cpu", show_progress=False))
    for lv in alone.levels("rtl"):
        for name, m in alone.masks("rtl", lv).items():
            np.testing.assert_array_equal(m, run.masks("independent", lv)[name])


# ----------------------------------------------------------------------------- table and probe


def test_probe_batch_is_balanced_and_deterministic():
    subset = np.array([0, 0, 1, 2, 0, 1, 2, 2, 0])
    rows = probe_indices(subset, 7, 3)
    assert rows.tolist() == [0, 2, 3, 1, 5, 6, 4]
    assert probe_indices(subset, 100, 3).tolist() == [0, 2, 3, 1, 5, 6, 4, 7, 8]


def test_probe_written_with_the_run(tmp_path):
    desc = dataclasses.replace(RTL_ONLY, prune=PruneConfig(levels=0), probe_size=12)
    out = train_run(desc, tmp_path / "p", device="cpu", show_progress=False)
    run = rf.load_run(out)
    probe = run.extra("probe")
    assert probe["x"].shape == (12, 1, 8, 8) and probe["x"].dtype == np.float32
    np.testing.assert_array_equal(np.bincount(probe["subset"], minlength=10)[:2], [2, 2])
    frame = run.predictions("rtl", 0)
    np.testing.assert_array_equal(frame["label"].to_numpy()[probe["sample"]], probe["label"])


def test_masked_forward_gradient_is_zero_outside_the_mask(ctx):
    model = build_model(ctx.model_cfg)
    params = {n: torch.as_tensor(v).clone().requires_grad_(True) for n, v in ctx.theta0().items()}
    mask = {n: (torch.rand(s) < 0.5).float() for n, s in ctx.shapes.items()}
    loss = masked_forward(model, params, mask, ctx.x_train[:16]).sum()
    loss.backward()
    for name, m in mask.items():
        assert (params[name].grad[m == 0] == 0).all()


def test_shrink_keeps_listed_weights_in_float16(tmp_path):
    from lottery.embedded import Embedded, folder_bytes, shrink

    desc = dataclasses.replace(DESC, prune=PruneConfig(fraction=0.3, levels=1), methods=("rtl", "imp"))
    out = train_run(desc, tmp_path / "r", device="cpu", show_progress=False)
    before = {lv: rf.load_tensors(rf.level_dir(out, "rtl", lv) / rf.WEIGHTS) for lv in (0, 1)}
    size = folder_bytes(out)
    counts = shrink(out, Embedded(keep_methods=("rtl",)))
    # imp weights, both init copies of theta_0, and theta_0 itself (its seed redraws it)
    assert counts == {"removed": 2 + 2 + 1, "halved": 2}
    assert not (out / rf.THETA0).exists()
    run = rf.load_run(out)
    assert not run.has_weights("imp", 0) and not (out / "rtl" / rf.INIT).exists()
    for lv in (0, 1):
        w = run.weights("rtl", lv)
        for name, v in w.items():
            assert v.dtype == np.float16
            np.testing.assert_array_equal(v, before[lv][name].astype(np.float16))
    assert folder_bytes(out) < size
    assert shrink(out, Embedded(keep_methods=("rtl",))) == {"removed": 0, "halved": 0}  # idempotent
    # the shrunk run still resumes: nothing left to train, theta_0 drawn again from the seed
    train_run(desc, out, device="cpu", show_progress=False)
    assert rf.load_run(out).levels("rtl") == [0, 1]
    assert (out / rf.THETA0).is_file()


def test_stored_scores_are_rounded(run):
    frame = run.predictions("rtl", 1)
    for k in range(len(run.ticket_names("rtl"))):
        s = frame[f"score_{k}"].to_numpy()
        assert s.dtype == np.float32
        np.testing.assert_array_equal(np.round(s, 4), s)
