import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from analysis.metrics import ticket_metrics


def test_single_ticket_without_detectors_reports_subset_accuracy():
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"label": rng.integers(0, 2, n), "subset": rng.integers(0, 4, n)})
    frame["pred"] = np.where(rng.random(n) < 0.8, frame["label"], 1 - frame["label"])
    out = ticket_metrics(frame, "single")
    for k in range(4):
        rows = frame[frame["subset"] == k]
        got = out[(out["ticket"] == k) & (out["metric"] == "subset_accuracy")]["value"].item()
        assert got == accuracy_score(rows["label"], rows["pred"])
    overall = out[out["ticket"].isna() & (out["metric"] == "accuracy")]["value"].item()
    assert overall == accuracy_score(frame["label"], frame["pred"])
    assert not out["value"].isna().any()


def test_imported_tickets_without_records_give_empty_table():
    empty = pd.DataFrame({"sample": [], "label": [], "subset": [], "pred": []})
    out = ticket_metrics(empty, "imported")
    assert out.empty and list(out.columns) == ["ticket", "metric", "value", "n"]
