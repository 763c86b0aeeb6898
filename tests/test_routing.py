"""Routing of samples to tickets and the prediction columns (pure numpy; oracles from sklearn)."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import recall_score

from lottery.routing import (
    ABSTAIN,
    DEFAULT_ROUTING,
    ROUTINGS,
    detector_columns,
    expert_columns,
    route,
    routing_definitions,
)

RNG = np.random.default_rng(0)
N, K, C = 300, 4, 6


@pytest.fixture
def detector_case():
    subset = RNG.integers(0, K, N)
    logits = RNG.normal(size=(N, K)) + 3.0 * np.eye(K)[subset]  # the own detector tends to fire
    centroid = np.where(RNG.random(N) < 0.7, subset, RNG.integers(0, K, N))
    return logits, subset, centroid


@pytest.fixture
def expert_case():
    subset = RNG.integers(0, K, N)
    probs = RNG.dirichlet(np.ones(C), size=(K, N))  # (K, N, C)
    centroid = RNG.integers(0, K, N)
    return probs, subset, centroid


def test_every_routing_has_a_column_and_a_definition(detector_case, expert_case):
    det = detector_columns(*detector_case)
    exp = expert_columns(*expert_case)
    for cols in (det, exp):
        for r in ROUTINGS:
            assert f"pred_{r}" in cols and f"route_{r}" in cols
        for k in range(K):
            assert f"score_{k}" in cols and f"detect_{k}" in cols
            assert cols[f"detect_{k}"].dtype == bool
            assert ((cols[f"score_{k}"] >= 0) & (cols[f"score_{k}"] <= 1)).all()
        assert all(len(v) == N for v in cols.values())
    np.testing.assert_array_equal(det["pred"], det[f"pred_{DEFAULT_ROUTING['detector']}"])
    np.testing.assert_array_equal(exp["pred"], exp[f"pred_{DEFAULT_ROUTING['expert']}"])
    for kind in ("detector", "expert"):
        assert set(routing_definitions(kind)) == set(ROUTINGS)


def test_oracle_routing_uses_only_the_known_subset(detector_case, expert_case):
    logits, subset, centroid = detector_case
    base = detector_columns(logits, subset, centroid)
    np.testing.assert_array_equal(base["route_oracle"], subset)
    # scramble everything but each sample's own detector and the centroid route: oracle output is unchanged
    scrambled = RNG.normal(size=logits.shape) * 10
    scrambled[np.arange(N), subset] = logits[np.arange(N), subset]
    other = detector_columns(scrambled, subset, RNG.integers(0, K, N))
    np.testing.assert_array_equal(other["route_oracle"], base["route_oracle"])
    np.testing.assert_array_equal(other["pred_oracle"], base["pred_oracle"])

    probs, subset, centroid = expert_case
    base = expert_columns(probs, subset, centroid)
    noisy = RNG.dirichlet(np.ones(C), size=(K, N))
    noisy[subset, np.arange(N)] = probs[subset, np.arange(N)]  # keep only the routed expert
    other = expert_columns(noisy, subset, RNG.integers(0, K, N))
    np.testing.assert_array_equal(other["pred_oracle"], base["pred_oracle"])
    np.testing.assert_array_equal(base["pred_oracle"], probs[subset, np.arange(N)].argmax(1))


def test_detector_predictions(detector_case):
    logits, subset, centroid = detector_case
    cols = detector_columns(logits, subset, centroid)
    fires = logits > 0
    np.testing.assert_array_equal(cols["pred_max_score"], logits.argmax(1))
    expected_oracle = np.where(fires[np.arange(N), subset], subset, ABSTAIN)
    np.testing.assert_array_equal(cols["pred_oracle"], expected_oracle)
    expected_centroid = np.where(fires[np.arange(N), centroid], centroid, ABSTAIN)
    np.testing.assert_array_equal(cols["pred_centroid"], expected_centroid)
    # oracle-routed K-way accuracy == pooled one-vs-rest recall of the detectors (sklearn)
    y_true = np.concatenate([subset == k for k in range(K)])
    y_det = np.concatenate([cols[f"detect_{k}"] for k in range(K)])
    assert np.mean(cols["pred_oracle"] == subset) == pytest.approx(recall_score(y_true, y_det))


def test_detector_scores_do_not_overflow_and_ties_break_low():
    logits = np.array([[800.0, 800.0, -800.0], [-5.0, 2.0, 2.0], [0.0, -1e-9, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cols = detector_columns(logits, np.array([0, 1, 2]), np.array([2, 2, 0]))
    assert cols["score_0"][0] == 1.0 and cols["score_2"][0] == 0.0
    np.testing.assert_array_equal(cols["pred_max_score"], [0, 1, 0])
    assert not cols["detect_0"][2]  # logit exactly 0 does not fire (sigmoid 0.5)
    assert cols["score_0"][2] == 0.5
    np.testing.assert_array_equal(cols["pred_oracle"], [0, 1, ABSTAIN])
    np.testing.assert_array_equal(cols["pred_centroid"], [ABSTAIN, 2, ABSTAIN])


def test_expert_predictions(expert_case):
    probs, subset, centroid = expert_case
    cols = expert_columns(probs, subset, centroid)
    conf = probs.max(2).T  # (N, K)
    chosen = conf.argmax(1)
    np.testing.assert_array_equal(cols["route_max_score"], chosen)
    np.testing.assert_array_equal(cols["pred_max_score"], probs[chosen, np.arange(N)].argmax(1))
    np.testing.assert_array_equal(cols["pred_centroid"], probs[centroid, np.arange(N)].argmax(1))
    for k in range(K):
        np.testing.assert_array_equal(cols[f"detect_{k}"], chosen == k)
        np.testing.assert_allclose(cols[f"score_{k}"], conf[:, k], atol=5e-5)
    # exactly one ticket claims each sample
    assert (np.sum([cols[f"detect_{k}"] for k in range(K)], axis=0) == 1).all()


def test_identical_experts_route_to_ticket_zero():
    probs = np.repeat(RNG.dirichlet(np.ones(C), size=(1, N)), K, axis=0)
    cols = expert_columns(probs, np.zeros(N, int), np.zeros(N, int))
    assert (cols["route_max_score"] == 0).all()


def test_unknown_routing_is_refused():
    with pytest.raises(ValueError, match="unknown routing"):
        route("coin_flip", np.zeros((2, 2)), np.zeros(2, int), np.zeros(2, int))
