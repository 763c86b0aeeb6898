"""Test-time routing of a sample to one of K tickets, and the prediction columns it yields.

Three routings, recorded side by side for every sample (``route_<r>`` is the
ticket chosen, ``pred_<r>`` the resulting K-way class prediction):

``oracle``
    The sample's true subset id (known at test time in the paper: a label,
    a cluster id, an environment). Uses nothing but the ``subset`` column.
``max_score``
    Every ticket scores the sample; the most confident ticket wins (no labels).
    A detector's score is its logit (argmax over logits, because sigmoids of
    large logits tie in float32); an expert's score is its maximum class
    probability. Ties go to the lower ticket index.
``centroid``
    The subset whose mean training input is nearest in input space
    (:func:`lottery.data.fit_centroids` / :func:`lottery.data.nearest_centroid`;
    no labels at test time). For a k-means partition this is, up to k-means'
    convergence tolerance, the partition's own rule, so it nearly equals ``oracle``.

What the chosen ticket predicts depends on its kind.

Expert tickets (a classifier per subset): ``pred_<r>`` is the class predicted
by the routed ticket and ``detect_<k>`` is "max-score routing sends the sample
to k". ``score_<k>`` depends on the partition (:func:`score_definition`, recorded
as ``manifest["methods"][m]["score"]``):

- subsets that are sets of classes (``class``, ``map``): ``subset_mass``, the
  probability mass expert k puts on subset k's classes, the same score one
  ticket serving all subsets gets (:func:`subset_mass`); a one-vs-rest score of
  "the sample is in subset k". Max-score routing still reads the confidences,
  and their maximum over the experts is stored as ``confidence``;
- otherwise (``kmeans``, ``random``): ``confidence``, expert k's maximum class
  probability (runs without the manifest key used this definition).

Detector tickets (a one-vs-rest detector per class; class partitions only, so
ticket k stands for class k): ``score_<k>`` is sigmoid(logit_k) and
``detect_<k>`` is logit_k > 0. A detector alone only says yes or no, so:

- ``pred_max_score`` = argmax_k logit_k, the usual one-vs-rest multi-class rule
  (always a class, even when no detector fires);
- ``pred_oracle`` and ``pred_centroid``: the routed ticket's decision. If the
  routed detector fires, the prediction is its class, otherwise ``ABSTAIN``
  (-1, never a correct class). So the oracle-routed K-way accuracy equals the
  pooled recall of the detectors (each sample asks only its own detector, as in
  the paper), and false positives of the other detectors do not count there;
  they show in the one-vs-rest precision of ``detect_<k>``.

Stored scores are float32 rounded to ``SCORE_DECIMALS`` decimals (repeated
values compress, which halves the predictions files of the embedded runs);
routes and decisions are computed from the unrounded logits and probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUTINGS = ("oracle", "max_score", "centroid")
SCORE_DECIMALS = 4  # stored scores are rounded: halves the predictions files, decisions use full precision
DEFAULT_ROUTING = {"detector": "max_score", "expert": "oracle"}
ABSTAIN = -1


def route(routing: str, scores: np.ndarray, subset: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Ticket chosen for each sample.

    Parameters
    ----------
    routing : {"oracle", "max_score", "centroid"}
    scores : ndarray of float, shape (N, K)
        Ticket scores (detector logits or expert confidences); only ``max_score`` reads them.
    subset : ndarray of int, shape (N,)
        True subset of each sample; only ``oracle`` reads it.
    centroid : ndarray of int, shape (N,)
        Nearest-centroid subset of each sample; only ``centroid`` reads it.

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    if routing == "oracle":
        return np.asarray(subset, dtype=np.int64)
    if routing == "max_score":
        return np.asarray(scores).argmax(axis=1).astype(np.int64)
    if routing == "centroid":
        return np.asarray(centroid, dtype=np.int64)
    raise ValueError(f"unknown routing {routing!r}; choose from {ROUTINGS}")


def routing_definitions(kind: str) -> dict[str, str]:
    """One sentence per routing saying what ``pred_<routing>`` holds for this ticket kind."""
    if kind == "detector":
        return {
            "oracle": "ticket of the true subset; pred = its class if that detector fires, else -1 (abstain)",
            "max_score": "argmax of the detector logits (label-free one-vs-rest rule)",
            "centroid": (
                "ticket of the nearest subset centroid in input space; pred = its class if it fires, else -1"
            ),
        }
    return {
        "oracle": "ticket of the true subset; pred = that expert's class prediction",
        "max_score": "the most confident expert (max class probability); pred = its class prediction",
        "centroid": "expert of the nearest subset centroid in input space; pred = its class prediction",
    }


SCORE_DEFINITIONS = {
    "sigmoid": "detector k's sigmoid(logit_k): the probability that the sample is in subset k",
    "subset_mass": "the probability mass the ticket puts on subset k's classes",
    "confidence": "expert k's maximum class probability",
}


def score_definition(ticket_kind: str, subset_of_class: Sequence[int] | None) -> str | None:
    """Which score ``score_<k>`` holds (a key of ``SCORE_DEFINITIONS``), for the manifest.

    Parameters
    ----------
    ticket_kind : {"detector", "expert", "single"}
        How the method's tickets are used.
    subset_of_class : sequence of int, optional
        ``Partition.subset_of_class``: the subset of each class, None when subsets
        are not sets of classes (kmeans, random).

    Returns
    -------
    str or None
        None for one ticket over subsets that are not sets of classes (no scores stored).
    """
    if ticket_kind == "detector":
        return "sigmoid"
    if subset_of_class is not None:
        return "subset_mass"
    return "confidence" if ticket_kind == "expert" else None


def subset_mass(probs: np.ndarray, subset_of_class: Sequence[int]) -> np.ndarray:
    """Probability mass on each subset's classes.

    Parameters
    ----------
    probs : ndarray of float, shape (..., C)
        Class probabilities.
    subset_of_class : sequence of int, length C
        Subset id of each class, in ``range(K)``.

    Returns
    -------
    ndarray of float, shape (..., K)
        ``out[..., k] = sum of probs[..., c] over the classes c of subset k``.
    """
    probs = np.asarray(probs)
    sub = np.asarray(subset_of_class)
    if sub.shape != probs.shape[-1:]:
        raise ValueError(f"subset_of_class has {sub.size} classes, probabilities {probs.shape[-1]}")
    k = int(sub.max()) + 1 if sub.size else 0
    return np.stack([probs[..., sub == t].sum(-1) for t in range(k)], axis=-1)


def stored_score(x: np.ndarray) -> np.ndarray:
    """Scores as stored: float32, rounded to ``SCORE_DECIMALS`` decimals."""
    return np.round(np.asarray(x, dtype=np.float32), SCORE_DECIMALS)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


def detector_columns(logits: np.ndarray, subset: np.ndarray, centroid: np.ndarray) -> dict[str, np.ndarray]:
    """Prediction columns of K one-vs-rest class detectors (ticket k = class k).

    Parameters
    ----------
    logits : ndarray of float, shape (N, K)
        Logit of each detector for each sample.
    subset, centroid : ndarray of int, shape (N,)
        True subset and nearest-centroid subset.

    Returns
    -------
    dict of str to ndarray, each shape (N,)
        ``score_<k>`` (float32), ``detect_<k>`` (bool), ``route_<r>`` and
        ``pred_<r>`` (int64) for every routing, and ``pred`` (= ``pred_max_score``).
    """
    logits = np.asarray(logits, dtype=np.float64)
    n, k = logits.shape
    fires = logits > 0.0  # (N, K)
    cols: dict[str, np.ndarray] = {}
    for t in range(k):
        cols[f"score_{t}"] = stored_score(_sigmoid(logits[:, t]))
        cols[f"detect_{t}"] = fires[:, t]
    rows = np.arange(n)
    for r in ROUTINGS:
        chosen = route(r, logits, subset, centroid)
        cols[f"route_{r}"] = chosen
        if r == "max_score":
            cols[f"pred_{r}"] = chosen
        else:
            cols[f"pred_{r}"] = np.where(fires[rows, chosen], chosen, ABSTAIN).astype(np.int64)
    cols["pred"] = cols[f"pred_{DEFAULT_ROUTING['detector']}"]
    return cols


def expert_columns(
    probs: np.ndarray,
    subset: np.ndarray,
    centroid: np.ndarray,
    subset_of_class: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Prediction columns of K expert classifiers (ticket k trained on subset k).

    Parameters
    ----------
    probs : ndarray of float, shape (K, N, C)
        Class probabilities of every expert for every sample.
    subset, centroid : ndarray of int, shape (N,)
        True subset and nearest-centroid subset.
    subset_of_class : sequence of int, length C, optional
        Subset of each class when the subsets are sets of classes (class and map
        partitions): ``score_<k>`` is then expert k's mass on subset k's classes.

    Returns
    -------
    dict of str to ndarray, each shape (N,)
        ``score_<k>`` (float32: confidence, or subset mass with ``subset_of_class``),
        ``detect_<k>`` (bool, max-score routing picks k), ``route_<r>`` and
        ``pred_<r>`` (int64), ``pred`` (= ``pred_oracle``); with ``subset_of_class``
        also ``confidence`` (float32, the largest expert confidence, which max-score
        routing follows).
    """
    probs = np.asarray(probs)
    k, n, _ = probs.shape
    confidence = probs.max(axis=2).T  # (N, K)
    classes = probs.argmax(axis=2).T  # (N, K)
    if subset_of_class is None:
        score = confidence
    else:
        score = subset_mass(probs, subset_of_class)[
            np.arange(k), :, np.arange(k)
        ].T  # (N, K): expert t, subset t
    cols: dict[str, np.ndarray] = {}
    by_score = route("max_score", confidence, subset, centroid)
    for t in range(k):
        cols[f"score_{t}"] = stored_score(score[:, t])
        cols[f"detect_{t}"] = by_score == t
    if subset_of_class is not None:
        cols["confidence"] = stored_score(confidence.max(axis=1))
    rows = np.arange(n)
    for r in ROUTINGS:
        chosen = route(r, confidence, subset, centroid)
        cols[f"route_{r}"] = chosen
        cols[f"pred_{r}"] = classes[rows, chosen].astype(np.int64)
    cols["pred"] = cols[f"pred_{DEFAULT_ROUTING['expert']}"]
    return cols
