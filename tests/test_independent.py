"""The independent baseline: K disjoint networks, each IMP-pruned on its own subset."""

import dataclasses

import numpy as np
import pytest
import torch

from artifacts import run_format as rf
from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.masks import Masks
from lottery.models import build_model
from lottery.pipeline import build_context, train_run
from lottery.tickets import extract_tickets, initial_masks
from lottery.train import load_state_numpy

DESC = RunDescription(
    data=DataConfig(name="digits", partition="kmeans", k=3),
    model=ModelSpec(name="mlp", hidden=(24, 12)),
    train=TrainConfig(epochs=2, batch_size=32, lr=1e-2),
    prune=PruneConfig(fraction=0.4, levels=2),
    rtl=RTLConfig(ticket_kind="expert", retrain_epochs=1),
    methods=("independent",),
)


# one torch thread for the module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("independent") / "run"
    train_run(DESC, out, device="cpu", show_progress=False)
    return rf.load_run(out)


def test_k_disjoint_weight_sets(run):
    k = len(run.ticket_names("independent"))
    shapes = run.manifest["prunable"]
    for lv in run.levels("independent"):
        w, masks = run.weights("independent", lv), run.masks("independent", lv)
        for value in w.values():
            assert value.shape[0] == k  # one stacked copy of every parameter per network
        for name in shapes:
            # network t has non-zero weights only inside its own mask
            assert np.all(w[name][~masks[name]] == 0)
        info = run.level_info("independent", lv)
        assert info["params_total"] == sum(info["params_per_ticket"]) == int(Masks(masks).counts().sum())
    # the networks are not copies of one another
    last = run.weights("independent", run.levels("independent")[-1])
    for a in range(k):
        for b in range(a + 1, k):
            assert not np.array_equal(last["layers.0.weight"][a], last["layers.0.weight"][b])


def test_a_network_does_not_depend_on_the_others(tmp_path):
    # prune ticket 1 hard: tickets 0 and 2 train exactly as before, since no weight is shared
    ctx = build_context(dataclasses.replace(DESC, methods=("independent",)), tmp_path, "cpu")
    masks = initial_masks(ctx)
    w_ref, _ = extract_tickets(ctx, masks, 0, ctx.theta0())
    g = torch.Generator().manual_seed(0)
    changed = Masks(
        {
            n: torch.stack([m[0], m[1] & (torch.rand(m[1].shape, generator=g) < 0.1), m[2]])
            for n, m in masks.items()
        }
    )
    w_new, _ = extract_tickets(ctx, changed, 0, ctx.theta0())
    for name in w_ref:
        assert torch.equal(w_ref[name][0], w_new[name][0])
        assert torch.equal(w_ref[name][2], w_new[name][2])
    assert not torch.equal(w_ref["layers.0.weight"][1], w_new["layers.0.weight"][1])


def test_masks_are_magnitude_pruned_per_ticket_and_layer(run):
    p = DESC.prune.fraction
    for lv in run.levels("independent")[1:]:
        w_prev = run.weights("independent", lv - 1)
        before, after = run.masks("independent", lv - 1), run.masks("independent", lv)
        for name in after:
            for t in range(after[name].shape[0]):
                kept, alive = after[name][t], before[name][t]
                assert not (kept & ~alive).any()
                assert kept.sum() == round((1 - p) ** lv * kept.size)
                mags = np.abs(w_prev[name][t])
                dropped = alive & ~kept
                if dropped.any():  # every survivor is at least as large as every pruned weight
                    assert mags[kept].min() >= mags[dropped].max()


def test_stored_networks_reproduce_the_predictions(run, tmp_path):
    ctx = build_context(DESC, tmp_path, "cpu")
    lv = run.levels("independent")[-1]
    w = run.weights("independent", lv)
    frame = run.predictions("independent", lv)
    model = build_model(ctx.model_cfg)
    for t in range(len(run.ticket_names("independent"))):
        load_state_numpy(model, {n: v[t] for n, v in w.items()})
        with torch.no_grad():
            probs = model(ctx.x_test).softmax(-1).numpy()
        np.testing.assert_allclose(probs.max(1), frame[f"score_{t}"], atol=6e-5)
        chosen = frame["route_oracle"].to_numpy() == t
        np.testing.assert_array_equal(probs.argmax(1)[chosen], frame["pred_oracle"].to_numpy()[chosen])


def test_expert_run_columns(run):
    frame = run.predictions("independent", 0)
    entry = run.manifest["methods"]["independent"]
    assert entry["ticket_kind"] == "expert" and entry["default_routing"] == "oracle"
    assert entry["weights_layout"] == "stacked"
    assert frame["pred"].equals(frame["pred_oracle"])
    # k-means partition: centroid routing is the partition's own rule, up to k-means' tolerance
    assert (frame["route_centroid"] == frame["subset"]).mean() > 0.95
