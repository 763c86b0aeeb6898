"""Issue 12's engine side: random-partition null control, overlap scaling, epochs chosen on the
validation split, sweeps until collapse, the dense reference, compact mask storage."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chi2_contingency

from artifacts import run_format as rf
from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.data import load_dataset, make_partition
from lottery.pipeline import build_context, train_run

TINY = RunDescription(
    data=DataConfig(name="digits", partition="class"),
    model=ModelSpec(name="mlp", hidden=(16, 8)),
    train=TrainConfig(epochs=1, batch_size=64, lr=1e-2),
    prune=PruneConfig(fraction=0.5, levels=1),
    rtl=RTLConfig(ticket_kind="detector", retrain_epochs=1),
    methods=("rtl",),
)


# one torch thread for the module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ----------------------------------------------------------------------------- 1. random partition


@pytest.mark.parametrize(("null_of", "extra"), [("class", {}), ("kmeans", {"k": 4})])
def test_random_partition_copies_sizes_and_ignores_labels(digits, null_of, extra):
    real = make_partition(null_of, digits, seed=3, **extra)
    rand = make_partition("random", digits, seed=3, null_of=null_of, **extra)
    assert rand.kind == "random" and rand.k == real.k
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        r, s = real.assign(x, y), rand.assign(x, y)
        np.testing.assert_array_equal(np.bincount(s, minlength=rand.k), np.bincount(r, minlength=real.k))
        assert (s != r).mean() > 0.5  # shuffled, not the real membership
    # membership independent of the labels: chi-square test of subset x class, and each
    # subset's class mix close to the overall mix
    s, y = rand.assign(digits.x_train, digits.y_train), digits.y_train
    table = np.zeros((rand.k, 10))
    np.add.at(table, (s, y), 1)
    assert chi2_contingency(table).pvalue > 0.01
    overall = np.bincount(y, minlength=10) / len(y)
    for k in range(rand.k):
        mix = table[k] / table[k].sum()
        assert np.abs(mix - overall).max() < 0.12
    # the real class partition is the opposite: fully dependent on labels
    if null_of == "class":
        assert chi2_contingency(np.eye(10) * 100 + 1).pvalue < 1e-10


def test_random_partition_is_deterministic_per_seed(digits):
    a = make_partition("random", digits, seed=1, null_of="class").assign(digits.x_train, digits.y_train)
    b = make_partition("random", digits, seed=1, null_of="class").assign(digits.x_train, digits.y_train)
    c = make_partition("random", digits, seed=2, null_of="class").assign(digits.x_train, digits.y_train)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    with pytest.raises(ValueError, match="null_of"):
        make_partition("random", digits)


def test_random_partition_config_and_hashes():
    with pytest.raises(ValueError, match="null_of"):
        DataConfig(partition="random")
    with pytest.raises(ValueError, match="null_of"):
        DataConfig(partition="class", null_of="class")
    with pytest.raises(ValueError, match="partition_map"):
        DataConfig(partition="random", null_of="map")
    d = dataclasses.replace(TINY, data=DataConfig(partition="random", null_of="class"))
    assert d.hash() != TINY.hash()
    assert RunDescription.from_dict(d.to_dict()) == d


def test_random_partition_run_shares_theta0(tmp_path):
    null = dataclasses.replace(TINY, data=DataConfig(name="digits", partition="random", null_of="class"))
    real_ctx = build_context(TINY, tmp_path / "real", device="cpu")
    null_ctx = build_context(null, tmp_path / "null", device="cpu")
    (tmp_path / "real").mkdir()
    (tmp_path / "null").mkdir()
    t_real, t_null = real_ctx.theta0(), null_ctx.theta0()
    assert t_real.keys() == t_null.keys()
    for n in t_real:
        np.testing.assert_array_equal(t_real[n], t_null[n])
    # a full run of the null control: detectors of random subsets, manifest names the null
    train_run(null, tmp_path / "run", device="cpu", show_progress=False)
    run = rf.load_run(tmp_path / "run")
    part = run.manifest["partition"]
    assert part["kind"] == "random" and part["null_of"]["kind"] == "class"
    frame = run.predictions("rtl", 1)
    assert frame["cluster"].str.startswith("random").all()
    np.testing.assert_array_equal(
        np.bincount(frame["subset"], minlength=10), np.bincount(frame["label"], minlength=10)
    )


# ----------------------------------------------------------------------------- 6. the dense reference


def test_run_without_imp_gets_the_dense_reference_equal_to_imp_level0(tmp_path):
    train_run(TINY, tmp_path / "rtl", device="cpu", show_progress=False)
    run = rf.load_run(tmp_path / "rtl")
    assert run.manifest["dense_reference"] == {"method": "dense", "level": 0}
    assert run.levels("dense") == [0]
    assert run.sparsity("dense", 0) == 0.0
    # the same training as imp's level 0 of the same description
    imp_only = dataclasses.replace(TINY, methods=("imp",))
    train_run(imp_only, tmp_path / "imp", device="cpu", show_progress=False)
    imp = rf.load_run(tmp_path / "imp")
    assert imp.manifest["dense_reference"] == {"method": "imp", "level": 0}
    assert "dense" not in imp.manifest["methods"]
    a, b = run.predictions("dense", 0), imp.predictions("imp", 0)
    np.testing.assert_array_equal(a["pred"], b["pred"])
    np.testing.assert_array_equal(a["confidence"], b["confidence"])


# ----------------------------------------------------------------------------- 3. epochs from validation


def test_epochs_chosen_on_validation_split_for_every_phase(tmp_path):
    from lottery.tickets import rtl_budget, subset_sizes
    from lottery.train import predict_logits, seeded_generator, train_masked

    base = dataclasses.replace(TINY, methods=("rtl", "imp"), prune=PruneConfig(fraction=0.5, levels=1))
    assert "epochs_from_validation" not in str(base.canonical())  # default off: hashes unchanged
    desc = dataclasses.replace(
        base, train=dataclasses.replace(base.train, epochs_from_validation=True, max_epochs=6, patience=2)
    )
    out = tmp_path / "run"
    train_run(desc, out, device="cpu", show_progress=False)
    run = rf.load_run(out)
    sel = run.manifest["epoch_selection"]
    losses = sel["val_loss"]
    best = int(np.argmin(losses))
    assert sel["epochs"] == best + 1
    assert len(losses) == min(6, best + 1 + 2)  # early stopping after `patience` epochs without gain
    assert run.manifest["run_hash"] == desc.hash()
    # oracle: the dense model trained for the chosen epochs from theta_0 on imp's level-0 stream
    ctx = build_context(desc, out, device="cpu")
    assert ctx.desc.train.epochs == sel["epochs"] and ctx.desc.rtl.retrain_epochs == sel["epochs"]
    model = ctx.new_model()
    dense = {n: torch.ones(s, dtype=torch.bool) for n, s in ctx.shapes.items()}
    cfg = dataclasses.replace(desc.train, epochs=sel["epochs"])
    steps = train_masked(model, dense, ctx.x_train, ctx.y_train, cfg, seeded_generator(desc.seed, "imp", 0))
    logits = predict_logits(model, torch.as_tensor(ctx.data.x_val))
    y_val = torch.as_tensor(ctx.data.y_val)
    assert float(torch.nn.functional.cross_entropy(logits, y_val)) == pytest.approx(losses[best], rel=1e-5)
    # every phase used it: imp level 0 equals that model, rtl's budget counts those epochs
    assert run.level_info("imp", 0)["steps"] == steps
    imp0 = run.weights("imp", 0)
    reference = {n: p.detach().numpy() for n, p in model.named_parameters()}
    for n in reference:
        np.testing.assert_allclose(imp0[n], reference[n], rtol=0, atol=1e-6)
    assert run.level_info("rtl", 1)["budget"] == rtl_budget(ctx.desc, subset_sizes(ctx))


# ----------------------------------------------------------------------------- 5. until collapse


def test_until_collapse_stops_two_levels_after_the_labelled_collapse(tmp_path):
    from sklearn.metrics import balanced_accuracy_score

    desc = dataclasses.replace(
        TINY,
        train=TrainConfig(epochs=2, batch_size=64, lr=1e-2),
        prune=PruneConfig(fraction=0.85, levels=6, until_collapse=True, extra_levels=1),
        rtl=RTLConfig(ticket_kind="detector", retrain_epochs=2),
        methods=("imp", "rtl"),
    )
    train_run(desc, tmp_path / "run", device="cpu", show_progress=False)
    run = rf.load_run(tmp_path / "run")
    assert run.manifest["stopping"]["rule"] == "until_collapse"
    assert run.manifest["dense_reference"] == {"method": "imp", "level": 0}

    def ba(method, level):
        f = run.predictions(method, level)
        return balanced_accuracy_score(f["label"], f["pred"])

    dense = ba("imp", 0)
    for method in ("imp", "rtl"):
        levels = run.levels(method)
        collapsed = [lv for lv in levels if lv >= 1 and ba(method, lv) <= dense - 0.05]
        assert collapsed, f"{method} never collapsed on {levels}"
        assert levels == list(range(min(6, collapsed[0] + 1) + 1))
        record = rf.read_json(rf.method_dir(run.path, method) / rf.STOPPING)
        assert record["collapse_level"] == collapsed[0]
        assert record["reference_value"] == pytest.approx(dense)
        assert record["last_level"] == levels[-1]
    # resuming changes nothing
    train_run(desc, tmp_path / "run", device="cpu", show_progress=False)
    assert rf.load_run(tmp_path / "run").levels("rtl") == run.levels("rtl")


# ----------------------------------------------------------------------------- 7. compact storage


def _nested_masks(rng, shapes, k, n_levels, fraction=0.3):
    """Nested (K, *shape) masks for levels 0..n_levels: each level drops a random 30 % of survivors."""
    levels = [{n: np.ones((k, *s), bool) for n, s in shapes.items()}]
    levels[0]["head.weight"][:] = False
    for t in range(k):
        levels[0]["head.weight"][t, t] = True  # a detector's own head row
    for _ in range(n_levels):
        nxt = {}
        for n, m in levels[-1].items():
            drop = rng.random(m.shape) < fraction
            nxt[n] = m & ~drop
        levels.append(nxt)
    return levels


def _write_synthetic(run_dir, masks_per_level, methods=("independent", "rtl"), mask_levels=True):
    rng = np.random.default_rng(1)
    k = next(iter(masks_per_level[0].values())).shape[0]
    shapes = {n: list(m.shape[1:]) for n, m in masks_per_level[0].items()}
    rf.write_manifest(
        run_dir,
        {
            "name": "synthetic",
            "methods": {m: {"tickets": [f"t{i}" for i in range(k)]} for m in methods},
            "prunable": shapes,
        },
    )
    n = 50
    frame = {"sample": np.arange(n), "label": rng.integers(0, k, n), "pred": rng.integers(0, k, n)}
    for t in range(k):
        frame[f"score_{t}"] = np.round(rng.random(n).astype(np.float32), 4)
    frame = pd.DataFrame(frame)
    for lv, masks in enumerate(masks_per_level):
        for i, m in enumerate(methods):
            source = "initial" if lv == 0 else "extraction" if i == 0 else methods[0]
            info = {"sparsity": 0.5, "masks_from": source}
            rf.write_level(run_dir, m, lv, masks=masks, predictions=frame, info=info)
            if mask_levels:
                rf.sync_mask_levels(run_dir, m)
    return frame


def test_mask_levels_encode_every_level_and_runs_read_them(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {"fc1.weight": (12, 20), "head.weight": (4, 12)}
    truth = _nested_masks(rng, shapes, k=4, n_levels=3)
    frame = _write_synthetic(tmp_path, truth)
    old = rf.load_run(tmp_path)  # per-level files: the format of every existing run
    for lv, masks in enumerate(truth):
        for n in shapes:
            np.testing.assert_array_equal(old.masks("rtl", lv)[n], masks[n])
            np.testing.assert_array_equal(rf.masks_from_levels(tmp_path, "rtl", lv)[n], masks[n])
    codes = rf.load_tensors(rf.method_dir(tmp_path, "rtl") / rf.MASK_LEVELS)
    assert codes["fc1.weight"].dtype == np.uint8 and codes["fc1.weight"].shape == (4, 12, 20)
    # compacting drops every per-level mask file and rtl's duplicate of independent's masks
    report = rf.compact_masks(tmp_path)
    assert report["removed"] == 2 * len(truth)
    assert report["bytes_after"] < report["bytes_before"]
    assert not (rf.method_dir(tmp_path, "rtl") / rf.MASK_LEVELS).exists()
    assert (rf.method_dir(tmp_path, "independent") / rf.MASK_LEVELS).exists()
    new = rf.load_run(tmp_path)
    for lv, masks in enumerate(truth):
        for method in ("rtl", "independent"):
            got = new.masks(method, lv)
            for n in shapes:
                np.testing.assert_array_equal(got[n], masks[n])
    # quantised scores read back as the float32 values written (4 decimals)
    back = new.predictions("rtl", 2)
    for t in range(4):
        assert back[f"score_{t}"].dtype == np.float32
        np.testing.assert_allclose(back[f"score_{t}"], frame[f"score_{t}"], atol=1e-7)


def test_old_runs_stay_readable(tmp_path):
    # runs written before compact storage hold per-level bit-packed masks and float32 predictions
    # only (no mask_levels file, no samples.parquet)
    rng = np.random.default_rng(3)
    truth = _nested_masks(rng, {"fc1.weight": (6, 5), "head.weight": (3, 6)}, k=3, n_levels=3)
    frame = _write_synthetic(tmp_path, truth, mask_levels=False)
    assert not (rf.method_dir(tmp_path, "rtl") / rf.MASK_LEVELS).exists()
    run = rf.load_run(tmp_path)
    for lv, masks in enumerate(truth):
        got = run.masks("rtl", lv)
        for n, m in masks.items():
            np.testing.assert_array_equal(got[n], m)
        back = run.predictions("rtl", lv)
        assert back["score_0"].dtype == np.float32
        pd.testing.assert_frame_equal(back[frame.columns].reset_index(drop=True), frame, check_dtype=False)


def test_mask_levels_refuse_masks_that_are_not_nested(tmp_path):
    rng = np.random.default_rng(0)
    truth = _nested_masks(rng, {"fc1.weight": (6, 5), "head.weight": (3, 6)}, k=3, n_levels=2)
    truth[2]["fc1.weight"][0] = True  # a weight coming back
    with pytest.raises(rf.RunFormatError, match="nested"):
        _write_synthetic(tmp_path, truth, methods=("rtl",))


# ----------------------------------------------------------------------------- 2. overlap scaling


def _overlap_ctx(tmp_path, scaling):
    from lottery.tickets import initial_masks

    desc = dataclasses.replace(
        TINY,
        data=DataConfig(name="digits", partition="class", limit=400),
        train=TrainConfig(epochs=1, batch_size=32, lr=0.05, optimizer="sgd", momentum=0.0),
        rtl=RTLConfig(ticket_kind="detector", retrain_epochs=1, overlap_scaling=scaling),
    )
    (tmp_path / scaling).mkdir()
    ctx = build_context(desc, tmp_path / scaling, device="cpu")
    masks = initial_masks(ctx)
    rng = torch.Generator().manual_seed(0)
    for n in masks:  # random nested-looking masks: weights shared by 0..K tickets
        if n != "head.weight":
            masks[n].logical_and_(torch.rand(masks[n].shape, generator=rng) < 0.15)
    return ctx, masks


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_overlap_count_moves_a_shared_weight_by_the_mean_step(tmp_path, engine):
    from lottery.overlap import keep_counts
    from lottery.sampling import TicketBatches, interleaved_order
    from lottery.tickets import joint_retrain, masked_forward, rtl_budget, subset_sizes, ticket_loss
    from lottery.train import seeded_generator

    ctx, masks = _overlap_ctx(tmp_path, "count")
    theta0 = ctx.theta0()
    got, steps = joint_retrain(ctx, masks, 1, theta0, engine=engine)
    # hand computation: plain SGD, ticket k's step on a weight kept by c tickets is -lr * g / c
    desc, k_all = ctx.desc, masks.k
    counts = keep_counts(masks)
    theta = {n: torch.as_tensor(v).clone() for n, v in theta0.items()}
    samplers = [
        TicketBatches(
            ctx.subset_train, ctx.y_train, k, "detector", 32, seeded_generator(desc.seed, "rtl", 1, k)
        )
        for k in range(k_all)
    ]
    rounds = rtl_budget(desc, subset_sizes(ctx))["retrain_steps_per_ticket"]
    order = interleaved_order(k_all, rounds, seeded_generator(desc.seed, "rtl", 1, "order"))
    model = ctx.new_model()
    for k in order.tolist():
        idx, target = samplers[k].next()
        params = {n: p.clone().requires_grad_(True) for n, p in theta.items()}
        fmask = {n: m[k].float() for n, m in masks.items()}
        loss = ticket_loss("detector", masked_forward(model, params, fmask, ctx.x_train[idx]), target, k)
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        for n in theta:
            step = desc.train.lr * grads[n]
            if n in masks:
                step = step * fmask[n] / counts[n].clamp(min=1).float()
            theta[n] = theta[n] - step
    assert steps == len(order) > k_all
    for n in theta:
        torch.testing.assert_close(got[n], theta[n], rtol=1e-5, atol=1e-6)
    # weights no ticket keeps never moved: bit-identical to theta_0
    assert any((~masks[n].any(0)).any() for n in masks) and any((counts[n] > 1).any() for n in masks)
    for n in masks:
        outside = ~masks[n].any(0)
        assert torch.equal(got[n][outside], torch.as_tensor(theta0[n])[outside])


def test_overlap_count_is_the_mean_on_one_shared_weight():
    from lottery.overlap import scale_updates, update_scales

    # two tickets keep weight 0, one keeps weight 1, none keeps weight 2
    masks = {"w": torch.tensor([[True, True, False], [True, False, False]])}
    scales = update_scales(masks, torch.float32)["w"]
    w = torch.tensor([1.0, 1.0, 1.0])
    for step in (
        torch.tensor([-0.2, -0.4, 0.0]),
        torch.tensor([-0.6, 0.0, 0.0]),
    ):  # SGD steps of tickets 0, 1
        before = [w.clone()]
        w += step
        scale_updates([w], before, [scales])
    assert w[0].item() == pytest.approx(1.0 - (0.2 + 0.6) / 2)  # the mean of the two steps, not their sum
    assert w[1].item() == pytest.approx(0.6)  # c = 1: the step as it was
    assert w[2].item() == 1.0


def test_overlap_none_is_the_default_and_unchanged_and_levels_record_c(tmp_path):
    from lottery.tickets import joint_retrain

    assert RTLConfig().overlap_scaling == "none"
    ctx, masks = _overlap_ctx(tmp_path, "none")
    default = dataclasses.replace(ctx.desc, rtl=dataclasses.replace(ctx.desc.rtl, overlap_scaling="none"))
    assert (
        default.hash()
        == dataclasses.replace(default, rtl=RTLConfig(ticket_kind="detector", retrain_epochs=1)).hash()
    )
    got, _ = joint_retrain(ctx, masks, 1, ctx.theta0())
    ctx_c, _ = _overlap_ctx(tmp_path, "count")
    counted, _ = joint_retrain(ctx_c, masks, 1, ctx_c.theta0())
    assert not torch.equal(got["layers.0.weight"], counted["layers.0.weight"])
    # level.json of rtl records the distribution of c
    train_run(TINY, tmp_path / "run", device="cpu", show_progress=False)
    run = rf.load_run(tmp_path / "run")
    m = run.masks("rtl", 1)
    c = sum(np.bincount(v.sum(0).ravel(), minlength=11)[1:] for v in m.values())
    record = run.level_info("rtl", 1)["overlap"]
    assert record["histogram"] == c.tolist()
    assert record["mean"] == pytest.approx((np.arange(1, 11) * c).sum() / c.sum())


# ----------------------------------------------------------------------------- 4, 5, 8. presets


SWEEPS = ("fashion-mlp-class-sweep", "fashion-vit-cluster-sweep", "adult-mlp-cluster-sweep")


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_presets_and_their_null_controls(name):
    from lottery.embedded import EMBEDDED
    from lottery.presets import get_preset

    real, null = get_preset(name), get_preset(f"{name}-null")
    assert real.data.eval_limit is None and real.data.limit is None  # the full test split
    assert real.train.epochs_from_validation and real.prune.until_collapse
    assert 1 - (1 - real.prune.fraction) ** real.prune.levels >= 0.995  # the cap reaches 99.5 %
    assert null.data.partition == "random" and null.data.null_of == real.data.partition
    assert (null.data.k, null.data.partition_map, null.model, null.seed) == (
        real.data.k,
        real.data.partition_map,
        real.model,
        real.seed,
    )
    assert null.prune.levels == real.prune.levels and not null.prune.until_collapse
    assert EMBEDDED[name].seeds == EMBEDDED[f"{name}-null"].seeds == (0, 1, 2)
    assert EMBEDDED[f"{name}-null"].keep_methods == ()


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Fashion-MNIST"
)
def test_sweep_presets_evaluate_on_the_whole_fashion_test_split(tmp_path):
    from lottery.presets import get_preset

    ctx = build_context(get_preset("fashion-mlp-class-sweep"), tmp_path / "r", device="cpu")
    assert len(ctx.test_frame) == 10_000
    null = build_context(get_preset("fashion-mlp-class-sweep-null"), tmp_path / "n", device="cpu")
    np.testing.assert_array_equal(
        np.bincount(null.subset_test.numpy(), minlength=10),
        np.bincount(ctx.subset_test.numpy(), minlength=10),
    )


def test_planned_methods_add_the_dense_reference_and_order_it_for_collapse():
    from lottery.protocol import dense_reference, planned_methods

    assert planned_methods(TINY) == ("rtl", "dense")
    assert planned_methods(dataclasses.replace(TINY, methods=("imp",))) == ("imp",)
    both = dataclasses.replace(TINY, methods=("independent", "rtl", "imp"))
    assert planned_methods(both) == ("independent", "rtl", "imp")
    collapse = dataclasses.replace(both, prune=PruneConfig(levels=3, until_collapse=True))
    assert planned_methods(collapse) == ("imp", "independent", "rtl")
    assert dense_reference(planned_methods(TINY)) == {"method": "dense", "level": 0}


def test_shrink_folds_a_real_runs_masks_once_and_resumes(tmp_path):
    from lottery.embedded import Embedded, shrink

    desc = dataclasses.replace(TINY, methods=("independent", "rtl"))
    out = train_run(desc, tmp_path / "r", device="cpu", show_progress=False)
    before = {
        (m, lv): rf.load_run(out).masks(m, lv)
        for m in ("independent", "rtl", "dense")
        for lv in (0, 1)[: 1 + (m != "dense")]
    }
    theta0 = rf.load_tensors(out / rf.THETA0)
    counts = shrink(out, Embedded(fold_masks=True))
    assert counts["mask_files_removed"] == 5  # independent 0-1, rtl 0-1, dense 0
    assert not (out / rf.THETA0).exists()  # the seed redraws it bit for bit
    assert not list(out.rglob(rf.MASKS))
    assert not (out / "rtl" / rf.MASK_LEVELS).exists()  # identical to independent's: stored once
    run = rf.load_run(out)
    for (m, lv), masks in before.items():
        got = run.masks(m, lv)
        assert all(np.array_equal(got[n], masks[n]) for n in masks)
    # a folded run resumes: rtl's level 1 is redone from independent's folded masks
    preds = run.predictions("rtl", 1)
    shutil.rmtree(rf.level_dir(out, "rtl", 1))
    train_run(desc, out, device="cpu", show_progress=False)
    again = rf.load_run(out)
    pd.testing.assert_frame_equal(again.predictions("rtl", 1), preds)
    assert again.level_info("rtl", 1)["masks_from"] == "independent"
    redrawn = rf.load_tensors(out / rf.THETA0)  # the resume wrote theta_0 again, exactly
    assert redrawn.keys() == theta0.keys() and all(np.array_equal(redrawn[n], theta0[n]) for n in theta0)


def test_shrink_keeps_a_theta0_its_seed_does_not_redraw(tmp_path):
    from lottery.embedded import Embedded, shrink

    out = train_run(TINY, tmp_path / "r", device="cpu", show_progress=False)
    theta0 = rf.load_tensors(out / rf.THETA0)
    name = sorted(theta0)[0]
    theta0[name] = theta0[name] + 1.0  # not what torch.manual_seed(seed) draws
    rf.save_tensors(out / rf.THETA0, theta0)
    shrink(out, Embedded(fold_masks=True))
    kept = rf.load_tensors(out / rf.THETA0)
    assert np.array_equal(kept[name], theta0[name])


def test_shrink_embedded_group_and_make_embedded_points_groups_to_the_sweep(tmp_path, monkeypatch):
    from lottery import embedded

    group = tmp_path / "tiny-sweep"
    for seed in (0, 1):
        train_run(
            dataclasses.replace(TINY, seed=seed), group / f"seed-{seed}", device="cpu", show_progress=False
        )
    rf.write_group_manifest(group, {"runs": ["seed-0", "seed-1"], "seeds": [0, 1], "preset": "tiny-sweep"})
    monkeypatch.setitem(embedded.EMBEDDED, "tiny-sweep", embedded.Embedded(seeds=(0, 1), fold_masks=True))
    out = embedded.shrink_embedded("tiny-sweep", tmp_path)
    assert out["runs"] == 2 and out["mask_files_removed"] == 2 * 3  # rtl 0-1 and dense 0, per seed
    assert out["removed"] > 0 and not list(group.rglob(rf.WEIGHTS))
    for run in rf.load_group(group).runs():
        assert run.masks("rtl", 1) and run.manifest["dense_reference"]["method"] == "dense"
    with pytest.raises(ValueError, match="lottery sweep --preset tiny-sweep --seeds 0 1"):
        embedded.make_embedded("tiny-sweep", tmp_path)


def _all_predictions(run_dir):
    run = rf.load_run(run_dir)
    return {(m, lv): run.predictions(m, lv) for m in run.methods for lv in run.levels(m)}


def test_shared_sample_columns_are_stored_once_and_read_back_identically(tmp_path):
    desc = dataclasses.replace(TINY, methods=("independent", "rtl", "imp"))
    out = train_run(desc, tmp_path / "r", device="cpu", show_progress=False)
    before = _all_predictions(out)
    size_before = sum(f.stat().st_size for f in out.rglob(rf.PREDICTIONS))
    report = rf.share_sample_columns(out)
    assert report["files"] == len(before) and report["columns"] >= 3
    shared = pd.read_parquet(out / rf.SHARED_SAMPLES)
    # exactly the non-score columns every level of every method holds with the same values
    common = set.intersection(*(set(f.columns) for f in before.values()))
    same = {
        c
        for c in common
        if not c.startswith("score_")
        and c != "confidence"
        and all(f[c].equals(next(iter(before.values()))[c]) for f in before.values())
    }
    assert {"sample", "label", "subset"} <= set(shared.columns) == same
    after = _all_predictions(out)
    for key, frame in before.items():
        pd.testing.assert_frame_equal(after[key], frame)  # same columns, order, dtypes, values
        level = rf.level_dir(out, *key)
        for cols in (["label", "pred"], ["pred"], ["label"], ["sample", "score_0"]):
            cols = [c for c in cols if c in frame]
            pd.testing.assert_frame_equal(rf.read_predictions(level, columns=cols), frame[cols])
    size_after = (
        sum(f.stat().st_size for f in out.rglob(rf.PREDICTIONS)) + (out / rf.SHARED_SAMPLES).stat().st_size
    )
    assert size_after < size_before
    assert rf.share_sample_columns(out) == {"files": 0, "columns": shared.shape[1]}  # idempotent
    # a level written after sharing (a resumed run) holds every column and is shared on the next call
    shutil.rmtree(rf.level_dir(out, "rtl", 1))
    train_run(desc, out, device="cpu", show_progress=False)
    pd.testing.assert_frame_equal(rf.load_run(out).predictions("rtl", 1), before[("rtl", 1)])
    assert rf.share_sample_columns(out)["files"] == 1
    pd.testing.assert_frame_equal(rf.load_run(out).predictions("rtl", 1), before[("rtl", 1)])


def test_shared_sample_columns_keep_what_differs_between_levels(tmp_path):
    rng = np.random.default_rng(0)
    truth = _nested_masks(rng, {"fc1.weight": (6, 5), "head.weight": (3, 6)}, k=3, n_levels=1)
    frame = _write_synthetic(tmp_path, truth)
    other = frame.assign(label=(frame["label"] + 1) % 3)  # one level whose labels differ
    shutil.rmtree(rf.level_dir(tmp_path, "rtl", 1))
    rf.write_level(tmp_path, "rtl", 1, masks=truth[1], predictions=other, info={"sparsity": 0.5})
    before = _all_predictions(tmp_path)
    rf.share_sample_columns(tmp_path)
    shared = list(pd.read_parquet(tmp_path / rf.SHARED_SAMPLES).columns)
    assert "sample" in shared and "label" not in shared  # one level disagrees: labels stay per level
    for key, got in _all_predictions(tmp_path).items():
        pd.testing.assert_frame_equal(got, before[key])


def test_shared_sample_columns_missing_or_wrong_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    truth = _nested_masks(rng, {"fc1.weight": (6, 5), "head.weight": (3, 6)}, k=3, n_levels=1)
    _write_synthetic(tmp_path, truth)
    rf.share_sample_columns(tmp_path)
    level = rf.level_dir(tmp_path, "rtl", 1)
    table = pd.read_parquet(tmp_path / rf.SHARED_SAMPLES)
    table.iloc[:10].to_parquet(tmp_path / rf.SHARED_SAMPLES)  # fewer rows than recorded
    with pytest.raises(rf.RunFormatError, match="rows recorded"):
        rf.read_predictions(level)
    (tmp_path / rf.SHARED_SAMPLES).write_bytes(b"not parquet")
    with pytest.raises(rf.RunFormatError, match="corrupt shared samples"):
        rf.read_predictions(level)
    (tmp_path / rf.SHARED_SAMPLES).unlink()
    with pytest.raises(rf.RunFormatError, match="missing file"):
        rf.load_run(tmp_path).predictions("rtl", 1)
    # reading only columns the level file holds itself does not need the shared table
    assert list(rf.read_predictions(level, columns=["score_0"]).columns) == ["score_0"]


def test_shrink_drops_scores_but_keeps_class_records(tmp_path):
    from lottery.embedded import Embedded, shrink

    desc = dataclasses.replace(TINY, methods=("independent", "rtl"))
    out = train_run(desc, tmp_path / "r", device="cpu", show_progress=False)
    before = _all_predictions(out)
    counts = shrink(out, Embedded(fold_masks=True, drop_scores=True))
    assert counts["score_files_stripped"] == len(before)
    for key, frame in _all_predictions(out).items():
        kept = [c for c in before[key].columns if not c.startswith("score_") and c != "confidence"]
        assert list(frame.columns) == kept
        pd.testing.assert_frame_equal(frame, before[key][kept])
    assert rf.drop_scores(out) == 0  # nothing left to drop
