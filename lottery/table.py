"""The paper's Table 1 for a run: metrics per method at the levels nearest some target sparsities.

Everything is recomputed with :mod:`sklearn.metrics` from the stored
predictions (columns: :mod:`artifacts.run_format`):

- ``balanced_accuracy``, ``precision``, ``recall``: ticket k's one-vs-rest
  decision ``detect_<k>`` against ``subset == k``, averaged over the tickets
  (unweighted, as the paper reports; precision of a ticket that never fires
  is 0). For one ticket serving all subsets (``imp``), ``detect_<k>`` is
  "the predicted class lies in subset k"; it is absent for k-means partitions,
  and so are these three rows.
- ``accuracy_<routing>``: K-way accuracy of ``pred_<routing>``; ``accuracy``:
  of ``pred`` (the method's default routing, or its only prediction).
- ``params``: ``params_total`` of ``level.json`` (the union of the masks for
  RTL, the sum over networks for the independent baseline, one ticket for IMP).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score, recall_score

from artifacts import run_format as rf
from lottery.routing import ROUTINGS

_DETECT = re.compile(r"^detect_(\d+)$")
ROW_ORDER = ["sparsity", "balanced_accuracy", "precision", "recall", "accuracy"]
LABELS = {
    "sparsity": "sparsity (level)",
    "balanced_accuracy": "balanced accuracy (1-vs-rest, mean over tickets)",
    "precision": "precision (1-vs-rest, mean)",
    "recall": "recall (1-vs-rest, mean)",
    "accuracy": "K-way accuracy, default routing",
    "params": "parameters (prunable weights)",
}


def nearest_level(run: rf.Run, method: str, target: float) -> int:
    """Level of ``method`` whose sparsity (a fraction) is nearest ``target``; ties go to the lower level."""
    levels = run.levels(method)
    gaps = [abs(run.sparsity(method, lv) - target) for lv in levels]
    return levels[int(np.argmin(gaps))]


def level_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """One-vs-rest means and K-way accuracies of one level (see the module docstring)."""
    subset, label = predictions["subset"].to_numpy(), predictions["label"].to_numpy()
    out: dict[str, float] = {}
    detect = sorted(int(m.group(1)) for c in predictions.columns if (m := _DETECT.match(str(c))))
    if detect:
        ba, prec, rec = [], [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", UserWarning)
            for k in detect:
                y_true, y_det = subset == k, predictions[f"detect_{k}"].to_numpy().astype(bool)
                ba.append(balanced_accuracy_score(y_true, y_det))
                prec.append(precision_score(y_true, y_det, zero_division=0.0))
                if y_true.any():
                    rec.append(recall_score(y_true, y_det))
        out.update(
            balanced_accuracy=float(np.mean(ba)), precision=float(np.mean(prec)), recall=float(np.mean(rec))
        )
    out["accuracy"] = float(accuracy_score(label, predictions["pred"].to_numpy()))
    for col in predictions.columns:
        if str(col).startswith("pred_"):
            out[f"accuracy_{col[5:]}"] = float(accuracy_score(label, predictions[col].to_numpy()))
    return out


def table_frame(run_dir: str | rf.Run, targets_percent: list[float]) -> pd.DataFrame:
    """Tidy table: one row per (method, target, metric).

    Parameters
    ----------
    run_dir : str, Path or Run
    targets_percent : list of float
        Target sparsities in percent.

    Returns
    -------
    DataFrame
        Columns ``method``, ``target`` (percent), ``level``, ``sparsity``
        (fraction), ``metric``, ``value``.
    """
    run = run_dir if isinstance(run_dir, rf.Run) else rf.load_run(run_dir)
    rows = []
    for method in run.methods:
        for target in targets_percent:
            level = nearest_level(run, method, target / 100.0)
            info = run.level_info(method, level)
            values = level_metrics(run.predictions(method, level))
            values["params"] = float(info.get("params_total", np.nan))
            for metric, value in values.items():
                rows.append((method, target, level, float(info["sparsity"]), metric, value))
    return pd.DataFrame(rows, columns=["method", "target", "level", "sparsity", "metric", "value"])


def _fmt(metric: str, value: float) -> str:
    if np.isnan(value):
        return "–"
    if metric == "params":
        return f"{value / 1e3:.1f}K" if value >= 1e3 else f"{value:.0f}"
    return f"{value:.3f}"


def paper_table(run_dir: str | rf.Run, targets_percent: list[float]) -> str:
    """The table as markdown: rows (metric, method), one column per target sparsity."""
    run = run_dir if isinstance(run_dir, rf.Run) else rf.load_run(run_dir)
    tidy = table_frame(run, targets_percent)
    present = set(tidy["metric"])
    routed = [f"accuracy_{r}" for r in ROUTINGS if f"accuracy_{r}" in present]
    routed += sorted(m for m in present if m.startswith("accuracy_") and m not in routed)
    metrics = ["sparsity"] + [m for m in ROW_ORDER[1:] if m in present] + routed + ["params"]
    ds = run.manifest.get("dataset", {})
    part = run.manifest.get("partition", {})
    kinds = {m: run.manifest["methods"][m].get("ticket_kind") for m in run.methods}
    head = (
        f"**{run.name}**: {ds.get('name')}, {part.get('k')} {part.get('kind')} subsets, "
        f"{ds.get('n_test')} test samples; ticket kinds {kinds}"
    )
    cols = [f"~{t:g} %" for t in targets_percent]
    lines = [head, "", "| metric | method | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for metric in metrics:
        for i, method in enumerate(run.methods):
            sub = tidy[tidy["method"] == method]
            cells = []
            for t in targets_percent:
                at = sub[sub["target"] == t]
                if metric == "sparsity":
                    cells.append(f"{100 * at['sparsity'].iloc[0]:.1f} % (L{at['level'].iloc[0]})")
                    continue
                hit = at[at["metric"] == metric]["value"]
                cells.append(_fmt(metric, float(hit.iloc[0]) if len(hit) else np.nan))
            label = LABELS.get(metric, f"K-way accuracy, {metric[len('accuracy_') :]} routing")
            lines.append(f"| {label if i == 0 else ''} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
