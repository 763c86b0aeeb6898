"""The fast engine against its references: stacked networks, fused per-ticket optimiser state,
batched extraction and evaluation, index-sampled joint retraining, the IMP loop."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.func import functional_call

from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.masks import Masks
from lottery.models import ModelConfig, build_model
from lottery.pipeline import build_context
from lottery.sampling import TicketBatches, draw_batches
from lottery.stacked import stack_params, stacked_forward
from lottery.ticket_optim import TicketOptimizer
from lottery.tickets import extract_tickets, initial_masks, joint_retrain, ticket_logits
from lottery.train import seeded_generator, train_masked

DETECTORS = RunDescription(
    data=DataConfig(name="digits", partition="class"),
    model=ModelSpec(name="mlp", hidden=(24, 12)),
    train=TrainConfig(epochs=1, batch_size=32, lr=1e-2),
    prune=PruneConfig(fraction=0.3, levels=1),
    rtl=RTLConfig(ticket_kind="detector", retrain_epochs=1),
    methods=("rtl",),
)
# k-means subsets differ in size: the tickets take different step counts
EXPERTS = dataclasses.replace(
    DETECTORS,
    data=DataConfig(name="digits", partition="kmeans", k=3),
    rtl=RTLConfig(ticket_kind="expert", retrain_epochs=1),
)


# one torch thread for the module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pruned(ctx, seed=0, keep=0.6) -> Masks:
    g = torch.Generator().manual_seed(seed)
    return Masks({n: m & (torch.rand(m.shape, generator=g) < keep) for n, m in initial_masks(ctx).items()})


# ----------------------------------------------------------------------------- stacked networks


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig("mlp", (1, 8, 8), 10, hidden=(16, 8)),
        ModelConfig("cnn", (1, 8, 8), 10, hidden=(4, 6)),
        ModelConfig("vit", (1, 8, 8), 5, dim=16, depth=2, heads=4, patch=4),
    ],
)
def test_stacked_forward_is_each_network_on_its_own_inputs(cfg):
    torch.manual_seed(0)
    nets = [build_model(cfg) for _ in range(3)]
    params = stack_params([{n: p.detach() for n, p in net.named_parameters()} for net in nets])
    x = torch.randn(3, 7, *cfg.input_shape)
    out = stacked_forward(nets[0], params, x)
    with torch.no_grad():
        ref = torch.stack([net(x[k]) for k, net in enumerate(nets)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_stacked_forward_falls_back_to_vmap_for_other_models():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)) for _ in range(2)]
    params = stack_params([{n: p.detach() for n, p in net.named_parameters()} for net in nets])
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        ref = torch.stack([net(x[k]) for k, net in enumerate(nets)])
    torch.testing.assert_close(stacked_forward(nets[0], params, x), ref)


def test_stacked_gradients_are_each_networks_own():
    torch.manual_seed(1)
    model = build_model(ModelConfig("mlp", (6,), 3, hidden=(5,)))
    states = [{n: torch.randn(p.shape) for n, p in model.named_parameters()} for _ in range(3)]
    params = {n: t.requires_grad_(True) for n, t in stack_params(states).items()}
    x, y = torch.randn(3, 4, 6), torch.randint(0, 3, (3, 4))
    logits = stacked_forward(model, params, x)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(3, 4)
    grads = torch.autograd.grad(loss.mean(1).sum(), list(params.values()))
    for k, state in enumerate(states):
        own = {n: v.clone().requires_grad_(True) for n, v in state.items()}
        ref = torch.autograd.grad(
            nn.functional.cross_entropy(functional_call(model, own, (x[k],)), y[k]), list(own.values())
        )
        for g, r in zip(grads, ref, strict=True):
            torch.testing.assert_close(g[k], r)


# ----------------------------------------------------------------------------- fused optimiser


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(6, 5, generator=g), "b": torch.randn(6, generator=g)}


CONFIGS = [
    TrainConfig(lr=1e-2),
    TrainConfig(lr=1e-2, weight_decay=0.1),
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fused_steps_equal_the_reference_and_keep_outside_weights_bit_identical(cfg):
    g = torch.Generator().manual_seed(2)
    masks = {"w": torch.rand(3, 6, 5, generator=g) < 0.5}
    fused, ref = _params(), _params()
    opt_f = TicketOptimizer(fused, masks, cfg, 3, fused=True)
    opt_r = TicketOptimizer(ref, masks, cfg, 3)
    for k in (0, 1, 2, 1, 0, 2, 2, 0):
        grads = {n: torch.randn(p.shape, generator=g) for n, p in fused.items()}
        before = {n: p.clone() for n, p in fused.items()}
        opt_r.step(k, {n: v.clone() for n, v in grads.items()})
        opt_f.step(k, {n: v.clone() for n, v in grads.items()})
        outside = ~masks["w"][k]
        assert torch.equal(fused["w"][outside], before["w"][outside])
        assert (fused["w"][masks["w"][k]] != before["w"][masks["w"][k]]).all()
        for n in fused:
            torch.testing.assert_close(fused[n], ref[n], rtol=1e-5, atol=1e-6)


def test_fused_ticket_state_is_its_own():
    # ticket 1's steps leave ticket 0's moments and step count untouched, bit for bit
    params = _params()
    masks = {"w": torch.ones(2, 6, 5, dtype=torch.bool)}
    opt = TicketOptimizer(params, masks, TrainConfig(lr=1e-2), 2, fused=True)
    g = torch.Generator().manual_seed(3)
    opt.step(0, {n: torch.randn(p.shape, generator=g) for n, p in params.items()})
    state0 = {n: (opt.exp_avg[n][0].clone(), opt.exp_avg_sq[n][0].clone()) for n in params}
    steps0 = [t.clone() for t in opt._step_t[0]]
    for _ in range(3):
        opt.step(1, {n: torch.randn(p.shape, generator=g) for n, p in params.items()})
    for n in params:
        assert torch.equal(opt.exp_avg[n][0], state0[n][0])
        assert torch.equal(opt.exp_avg_sq[n][0], state0[n][1])
        assert not torch.equal(opt.exp_avg[n][1], torch.zeros_like(opt.exp_avg[n][1]))
    assert all(torch.equal(a, b) for a, b in zip(opt._step_t[0], steps0, strict=True))
    assert opt.steps == [1, 3]


def test_state_rows_carries_on_the_remaining_tickets():
    g = torch.Generator().manual_seed(4)
    full = {"w": torch.randn(3, 4, 5, generator=g)}
    masks = {"w": (torch.rand(1, 3, 4, 5, generator=g) < 0.7)}
    opt = TicketOptimizer(full, masks, TrainConfig(lr=1e-2), 1, fused=True)
    grads = [torch.randn(3, 4, 5, generator=g) for _ in range(4)]
    opt.step(0, [grads[0].clone()])
    rows = torch.tensor([0, 2])
    part = {"w": full["w"][rows].clone()}
    sub = opt.state_rows(rows, part)
    for gr in grads[1:]:
        opt.step(0, [gr.clone()])
        sub.step(0, [gr[rows].clone()])
    assert torch.equal(part["w"], full["w"][rows])


# ----------------------------------------------------------------------------- batched extraction


@pytest.mark.parametrize("desc", [DETECTORS, EXPERTS], ids=["detector", "expert"])
def test_batched_extraction_equals_the_reference(desc, tmp_path):
    ctx = build_context(desc, tmp_path, "cpu")
    masks = _pruned(ctx)
    w_b, steps_b = extract_tickets(ctx, masks, 1, ctx.theta0())
    w_r, steps_r = extract_tickets(ctx, masks, 1, ctx.theta0(), engine="reference")
    assert steps_b == steps_r
    if desc is EXPERTS:
        assert len(set(steps_b)) > 1  # tickets leave the stack at different steps
    for n in w_r:
        torch.testing.assert_close(w_b[n], w_r[n], rtol=1e-4, atol=1e-5)
    for n, m in masks.items():
        assert (w_b[n][~m] == 0).all()  # pruned weights exactly zero


def test_batched_extraction_weights_outside_masks_never_move(tmp_path):
    # zero steps: the output is the rewind point; pruned entries exactly 0, the rest theta_0
    ctx = build_context(
        dataclasses.replace(EXPERTS, train=TrainConfig(epochs=0, batch_size=32)), tmp_path, "cpu"
    )
    masks = _pruned(ctx, 1)
    w, steps = extract_tickets(ctx, masks, 1, ctx.theta0())
    assert steps == [0, 0, 0]
    theta0 = ctx.theta0()
    for n, v in theta0.items():
        expected = torch.as_tensor(v).expand(3, *v.shape)
        if n in masks:
            expected = expected * masks[n]
        assert torch.equal(w[n], expected)


def test_progress_is_called_once_per_ticket(tmp_path):
    ctx = build_context(EXPERTS, tmp_path, "cpu")
    calls = []
    extract_tickets(ctx, initial_masks(ctx), 0, ctx.theta0(), progress=lambda: calls.append(1))
    assert len(calls) == ctx.k


def test_unknown_engine_is_refused(tmp_path):
    ctx = build_context(EXPERTS, tmp_path, "cpu")
    with pytest.raises(ValueError, match="engine"):
        extract_tickets(ctx, initial_masks(ctx), 0, ctx.theta0(), engine="fast")


# ----------------------------------------------------------------------------- joint retraining


@pytest.mark.parametrize("desc", [DETECTORS, EXPERTS], ids=["detector", "expert"])
def test_batched_joint_retraining_equals_the_reference(desc, tmp_path):
    ctx = build_context(desc, tmp_path, "cpu")
    masks = _pruned(ctx, 2)
    theta_b, steps_b = joint_retrain(ctx, masks, 1, ctx.theta0())
    theta_r, steps_r = joint_retrain(ctx, masks, 1, ctx.theta0(), engine="reference")
    assert steps_b == steps_r
    theta0 = ctx.theta0()
    for n in theta_r:
        torch.testing.assert_close(theta_b[n], theta_r[n], rtol=1e-4, atol=1e-5)
    for n, m in masks.items():
        outside = ~m.any(0)  # no ticket holds these weights: bit-identical to theta_0
        assert torch.equal(theta_b[n][outside], torch.as_tensor(theta0[n])[outside])


def test_joint_retraining_step_isolates_tickets_on_the_fused_path(tmp_path):
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    masks = _pruned(ctx, 3)
    model = build_model(ctx.model_cfg)
    theta = {n: torch.as_tensor(v).clone().requires_grad_(True) for n, v in ctx.theta0().items()}
    fmasks = {n: m.float() for n, m in masks.items()}
    cfg = dataclasses.replace(DETECTORS.train, weight_decay=1e-3)
    opt = TicketOptimizer(theta, fmasks, cfg, ctx.k, fused=True, premasked=True)
    samplers = [
        TicketBatches(ctx.subset_train, ctx.y_train, k, "detector", 32, seeded_generator(k))
        for k in range(ctx.k)
    ]

    def step(k):
        idx, target = samplers[k].next()
        w = {n: p * fmasks[n][k] if n in fmasks else p for n, p in theta.items()}
        logits = stacked_forward(model, {n: v[None] for n, v in w.items()}, ctx.x_train[idx][None])[0]
        loss = nn.functional.binary_cross_entropy_with_logits(logits[:, k], target)
        opt.step(k, torch.autograd.grad(loss, list(theta.values())))

    for k in list(range(ctx.k)) * 2:
        step(k)
    for k in (4, 0, 9):
        before = {n: p.detach().clone() for n, p in theta.items()}
        step(k)
        for name, m in masks.items():
            assert torch.equal(theta[name].detach()[~m[k]], before[name][~m[k]]), name
            assert not torch.equal(theta[name].detach()[m[k]], before[name][m[k]])


def test_draw_batches_are_the_stream_in_order(tmp_path):
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    a = TicketBatches(ctx.subset_train, ctx.y_train, 2, "detector", 32, torch.Generator().manual_seed(5))
    b = TicketBatches(ctx.subset_train, ctx.y_train, 2, "detector", 32, torch.Generator().manual_seed(5))
    idx, target = draw_batches(a, 7)
    assert idx.shape == target.shape == (7, 32)
    for s in range(7):
        i, t = b.next()
        assert torch.equal(idx[s], i) and torch.equal(target[s], t)
    empty_idx, empty_target = draw_batches(b, 0)
    assert empty_idx.shape == empty_target.shape == (0, 32)


# ----------------------------------------------------------------------------- evaluation and IMP


def test_batched_ticket_logits_equal_the_reference(tmp_path):
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    masks = _pruned(ctx, 4)
    g = torch.Generator().manual_seed(6)
    states = [{n: torch.randn(s.shape, generator=g) for n, s in ctx.theta0().items()} for _ in range(ctx.k)]
    x = ctx.x_test[:300]
    got = ticket_logits(ctx, lambda k: states[k], masks, x, batch_size=128)
    ref = ticket_logits(ctx, lambda k: states[k], masks, x, batch_size=128, engine="reference")
    assert got.shape == (ctx.k, 300, 10)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS[1:3])
def test_train_masked_keeps_pruned_weights_exactly_zero_without_remasking(cfg, tmp_path):
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    model = ctx.new_model()
    g = torch.Generator().manual_seed(7)
    mask = {n: torch.rand(s, generator=g) < 0.5 for n, s in ctx.shapes.items()}
    seen = []
    params = dict(model.named_parameters())

    def on_step(_):
        seen.append(all((params[n].detach()[~m] == 0).all() for n, m in mask.items()))

    steps = train_masked(
        model,
        mask,
        ctx.x_train,
        ctx.y_train,
        dataclasses.replace(cfg, epochs=1, batch_size=64),
        g,
        on_step=on_step,
    )
    assert steps == len(seen) > 0 and all(seen)
    for n, m in mask.items():
        assert (params[n].detach()[m] != 0).all()


def test_killed_and_resumed_independent_run_equals_uninterrupted(tmp_path, monkeypatch):
    from artifacts import run_format as rf
    from lottery.pipeline import train_run

    desc = dataclasses.replace(EXPERTS, prune=PruneConfig(fraction=0.3, levels=2), methods=("independent",))
    ref = rf.load_run(train_run(desc, tmp_path / "ref", device="cpu", show_progress=False))
    out = tmp_path / "killed"
    real_write, calls = rf.write_level, {"n": 0}

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # die while writing level 1
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(rf, "write_level", dying_write)
    with pytest.raises(KeyboardInterrupt):
        train_run(desc, out, device="cpu", show_progress=False)
    monkeypatch.setattr(rf, "write_level", real_write)
    resumed = rf.load_run(train_run(desc, out, device="cpu", show_progress=False))
    assert resumed.levels("independent") == ref.levels("independent") == [0, 1, 2]
    for lv in ref.levels("independent"):
        for name, m in ref.masks("independent", lv).items():
            assert (m == resumed.masks("independent", lv)[name]).all()
        for name, w in ref.weights("independent", lv).items():
            assert (w == resumed.weights("independent", lv)[name]).all()


# ----------------------------------------------------------------------------- hand-written MLP step, pruning


@pytest.mark.parametrize("kind", ["detector", "expert"])
def test_mlp_grads_match_autograd(kind):
    """The hand-written stacked MLP backward gives autograd's gradients of the stacked ticket loss."""
    from functools import partial

    from lottery.stacked import flat_views, flatten_stacked, mlp_grads
    from lottery.tickets import stacked_ticket_loss, stacked_ticket_loss_grad

    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", (1, 8, 8), 10, hidden=(16, 8)))
    a, b = 3, 7
    params = stack_params([{n: p.detach() + 0.1 * i for n, p in model.named_parameters()} for i in range(a)])
    x = torch.randn(a, b, 1, 8, 8)
    ids = torch.tensor([4, 0, 9])
    target = (torch.rand(a, b) < 0.5).float() if kind == "detector" else torch.randint(0, 10, (a, b))
    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    expected = torch.autograd.grad(
        stacked_ticket_loss(kind, stacked_forward(model, leaves, x), target, ids), list(leaves.values())
    )
    shapes = {n: tuple(p.shape[1:]) for n, p in params.items()}
    grad = torch.full_like(flatten_stacked(params), float("nan"))  # every entry must be written
    logits = mlp_grads(
        model,
        flat_views(flatten_stacked(params), shapes),
        x,
        partial(stacked_ticket_loss_grad, kind, target=target, tickets=ids),
        flat_views(grad, shapes),
    )
    torch.testing.assert_close(logits, stacked_forward(model, params, x))
    for n, g in zip(params, expected, strict=True):
        torch.testing.assert_close(flat_views(grad, shapes)[n], g, msg=n)


def test_keep_top_is_the_stable_sort():
    """Pruning's selection keeps exactly the set a stable descending sort keeps, ties by position."""
    from lottery.prune import _keep_top

    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = int(torch.randint(1, 40, (1,), generator=g))
        scores = torch.randint(-1, 3, (n,), generator=g).float() if trial % 2 else torch.rand(n, generator=g)
        order = torch.argsort(scores, descending=True, stable=True)
        for keep in range(n + 1):
            expected = torch.zeros(n, dtype=torch.bool)
            expected[order[:keep]] = True
            assert torch.equal(_keep_top(scores, keep), expected), (scores, keep)


@pytest.mark.parametrize("kind", ["detector", "expert"])
def test_hand_written_mlp_retraining_isolates_tickets(kind, tmp_path):
    """Each step of the flat MLP loop moves ticket k's weights only; the others stay bit-identical."""
    from lottery.tickets import _retrain_mlp

    desc = DETECTORS if kind == "detector" else EXPERTS
    ctx = build_context(desc, tmp_path, "cpu")
    masks = _pruned(ctx, 4)
    fmasks = {n: m.float() for n, m in masks.items()}
    cfg = dataclasses.replace(desc.train, weight_decay=1e-3)
    theta = {n: torch.as_tensor(v).clone() for n, v in ctx.theta0().items()}
    gen = torch.Generator().manual_seed(0)
    n_steps = 2 * ctx.k + 3
    idx = torch.randint(len(ctx.y_train), (ctx.k, n_steps, 16), generator=gen)
    target = (
        (torch.rand(ctx.k, n_steps, 16, generator=gen) < 0.5).float()
        if kind == "detector"
        else ctx.y_train[idx]
    )
    # two warm-up rounds, then one step each of three tickets, compared step by step
    order = list(range(ctx.k)) * 2
    for k in (ctx.k - 1, 0, 1):
        before, _ = _retrain_mlp(
            build_model(ctx.model_cfg),
            theta,
            fmasks,
            cfg,
            torch.tensor(order),
            idx,
            target,
            ctx.x_train,
            kind,
            None,
        )
        order.append(k)
        after, _ = _retrain_mlp(
            build_model(ctx.model_cfg),
            theta,
            fmasks,
            cfg,
            torch.tensor(order),
            idx,
            target,
            ctx.x_train,
            kind,
            None,
        )
        for name, m in masks.items():
            assert torch.equal(after[name][~m[k]], before[name][~m[k]]), name
            assert not torch.equal(after[name][m[k]], before[name][m[k]]), name


# ----------------------------------------------------------------------------- IMP's hand-written MLP step


@pytest.mark.parametrize(
    ("cfg", "keep", "hidden", "n_out", "batch"),
    [(cfg, 0.6, (24, 12), 10, 32) for cfg in CONFIGS]
    + [(CONFIGS[1], 1.0, (24, 12), 10, 32), (CONFIGS[0], 0.6, (100, 50), 2, 128)],
    ids=["adam", "adam-wd", "sgd-momentum-wd", "sgd", "adam-wd-dense", "adam-100-50-2"],
)
def test_train_masked_mlp_step_equals_autograd_and_torch_optim(cfg, keep, hidden, n_out, batch, tmp_path):
    """IMP's flat MLP step equals the autograd loop with torch.optim (the reference engine) bit for bit.

    The last case is Adult's MLP shape (widths 100-50, two classes): written into a flat buffer
    at an offset that is no multiple of 16 floats, its head's weight gradient rounds differently
    from a separate allocation's (MKL, one thread), so the flat buffers must keep every
    parameter 64-byte aligned.
    """
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    model_cfg = dataclasses.replace(ctx.model_cfg, hidden=hidden, n_out=n_out)
    shapes = {n: p.shape for n, p in build_model(model_cfg).named_parameters() if n.endswith("weight")}
    g = torch.Generator().manual_seed(8)
    mask = {n: torch.rand(s, generator=g) < keep for n, s in shapes.items()}
    # 3 full batches and a short one per epoch
    cfg = dataclasses.replace(cfg, epochs=2, batch_size=batch)
    n = 3 * batch + 4
    x, y = ctx.x_train[:n], ctx.y_train[:n] % n_out
    torch.manual_seed(3)
    start = build_model(model_cfg).state_dict()
    models, seen = {}, {}
    for engine in ("batched", "reference"):
        model = build_model(model_cfg)
        model.load_state_dict(start)
        params = dict(model.named_parameters())
        snaps = []

        def on_step(step, params=params, snaps=snaps):
            # the model's own parameters hold the current weights, their .grad the step's gradient
            snaps.append({n: (p.detach().clone(), p.grad.clone()) for n, p in params.items()})

        steps = train_masked(
            model, mask, x, y, cfg, seeded_generator(0, "imp", 1), on_step=on_step, engine=engine
        )
        assert steps == 8
        models[engine], seen[engine] = params, snaps
    fast, ref = models["batched"], models["reference"]
    # the same kernels in the same order: shipped runs drawn with either engine are the same runs
    # (a gradient 1 ulp off can leave the weights equal for a few steps: compare both)
    for step, (a, b) in enumerate(zip(seen["batched"], seen["reference"], strict=True), start=1):
        for n in a:
            assert torch.equal(a[n][1], b[n][1]), f"gradient of {n} at step {step}"
            assert torch.equal(a[n][0], b[n][0]), f"{n} after step {step}"
    for n, p in fast.items():
        assert torch.equal(p.detach(), ref[n].detach()), n
        assert (
            p.untyped_storage().nbytes() == p.numel() * p.element_size()
        )  # no longer a view of the flat buffer
    for n, p in fast.items():
        if n in mask:
            assert torch.equal(p.detach()[~mask[n]], torch.zeros(int((~mask[n]).sum())))  # pruned: exactly 0
            assert (p.detach()[mask[n]] != 0).all()
        else:  # biases moved
            assert not torch.equal(p.detach(), start[n])


def test_train_masked_refuses_an_unknown_engine(tmp_path):
    ctx = build_context(DETECTORS, tmp_path, "cpu")
    with pytest.raises(ValueError, match="engine"):
        train_masked(
            ctx.new_model(), {}, ctx.x_train, ctx.y_train, DETECTORS.train, torch.Generator(), engine="fast"
        )
