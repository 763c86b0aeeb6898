"""Label-free collapse signals: label-freeness guard, simulations with known answers, oracles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from analysis import signals as sg
from analysis.similarity import similarity_frame, ticket_similarity_summary
from artifacts import run_format as rf

REPO = Path(__file__).resolve().parents[1]
FASHION = REPO / "artifacts" / "fashion-mlp-class-sweep" / "seed-0"
SHAPES = {"fc1.weight": (40, 30), "fc2.weight": (20, 40), "head.weight": (6, 20)}


# ----------------------------------------------------------------------------- synthetic runs


def _nested_masks(rng: np.random.Generator, k: int, n_levels: int) -> list[dict[str, np.ndarray]]:
    """Independent per-ticket masks, nested across levels (20 % of survivors removed)."""
    out = []
    score = {n: rng.random((k, *s)) for n, s in SHAPES.items()}
    for level in range(n_levels):
        d = 0.8**level
        out.append(
            {n: s >= np.quantile(s.reshape(k, -1), 1 - d, axis=1).reshape(k, 1, 1) for n, s in score.items()}
        )
    return out


def _predictions(rng, kind: str, k: int, label: np.ndarray, flip: float) -> pd.DataFrame:
    n = label.size
    df = pd.DataFrame({"sample": np.arange(n), "label": label, "label_name": [f"c{i}" for i in label]})
    df["subset"] = label
    df["class"] = df["label_name"]
    df["sex"] = rng.choice(["F", "M"], n)
    logits = rng.normal(0, 1, (n, k)) + 3.0 * (np.arange(k) == label[:, None]) * (1 - flip)
    if kind == "single":
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        df["pred"] = p.argmax(1)
        df["confidence"] = p.max(1).round(4)
        for t in range(k):
            df[f"score_{t}"] = p[:, t].round(4)
            df[f"detect_{t}"] = df["pred"] == t
        return df
    score = 1 / (1 + np.exp(-logits)) if kind == "detector" else 0.5 + 0.5 * rng.random((n, k))
    for t in range(k):
        df[f"score_{t}"] = score[:, t].round(4)
        df[f"detect_{t}"] = logits[:, t] > 0 if kind == "detector" else score.argmax(1) == t
    df["route_oracle"] = label
    df["pred_oracle"] = label
    df["route_max_score"] = logits.argmax(1) if kind == "detector" else score.argmax(1)
    df["pred_max_score"] = df["route_max_score"] if kind == "detector" else rng.integers(0, k, n)
    df["pred"] = df["pred_oracle"]  # oracle default routing: derived from labels
    return df


def write_run(run_dir: Path, *, k: int = 6, n_levels: int = 4, n: int = 300, seed: int = 0) -> Path:
    """A tiny run with a detector (rtl), an expert (moe) and a single-ticket (imp) method."""
    rng = np.random.default_rng(seed)
    methods = {
        "imp": {"tickets": ["all"], "ticket_kind": "single", "routings": [], "default_routing": None},
        "rtl": {
            "tickets": [f"s{i}" for i in range(k)],
            "ticket_kind": "detector",
            "default_routing": "oracle",
        },
        "moe": {"tickets": [f"s{i}" for i in range(k)], "ticket_kind": "expert", "default_routing": "oracle"},
    }
    rf.write_manifest(run_dir, {"name": run_dir.name, "groups": ["class", "sex"], "methods": methods})
    label = rng.integers(0, k, n)  # the same test samples at every level
    for method, spec in methods.items():
        kk = len(spec["tickets"])
        for level, masks in enumerate(_nested_masks(rng, kk, n_levels)):
            preds = _predictions(rng, spec["ticket_kind"], k, label, flip=0.2 * level)
            rf.write_level(
                run_dir, method, level, masks=masks, predictions=preds, info={"sparsity": 1 - 0.8**level}
            )
    return run_dir


def _strip_labels(run_dir: Path, *, levels_from: int = 0, mode: str = "permute", seed: int = 1) -> None:
    """Permute (or drop) every label-derived column of every level >= levels_from, in place."""
    run = rf.load_run(run_dir)
    if (run_dir / rf.SHARED_SAMPLES).is_file():  # labels stored once per run: put them back in each level
        for method in run.methods:
            for level in run.levels(method):
                lv = rf.level_dir(run_dir, method, level)
                rf.write_predictions(lv / rf.PREDICTIONS, rf.read_predictions(lv))
        (run_dir / rf.SHARED_SAMPLES).unlink()
    rng = np.random.default_rng(seed)
    label_cols = {"label", "label_name", "subset", *run.groups()}
    for method in run.methods:
        routed = run.manifest["methods"][method]["ticket_kind"] != "single"  # its pred used the oracle
        for level in run.levels(method):
            if level < levels_from:
                continue
            path = rf.level_dir(run_dir, method, level) / rf.PREDICTIONS
            df = pd.read_parquet(path)
            cols = [
                c
                for c in df.columns
                if c in label_cols
                or c.endswith("_oracle")
                or c.endswith("_centroid")
                or (c == "pred" and routed)
            ]
            if mode == "drop":
                df = df.drop(columns=cols)
            else:
                for c in cols:
                    df[c] = rng.permutation(df[c].to_numpy())
            df.to_parquet(path, index=False)


def _copy_levels(src: Path, dst: Path, n_levels: int) -> Path:
    shutil.copytree(
        src,
        dst,
        ignore=lambda d, names: [n for n in names if n.startswith("level_") and int(n[6:]) >= n_levels],
    )
    return dst


# ----------------------------------------------------------------------------- label-freeness guard


@pytest.mark.parametrize("mode", ["permute", "drop"])
def test_signals_do_not_read_labels_synthetic(tmp_path: Path, mode: str) -> None:
    run_dir = write_run(tmp_path / "a")
    before = sg.run_signals(rf.load_run(run_dir), atc=False)
    atc = sg.run_signals(rf.load_run(run_dir)).query("signal == 'atc_accuracy'")
    assert set(atc["method"]) == {"imp", "rtl", "moe"}
    copy = shutil.copytree(run_dir, tmp_path / "b")
    _strip_labels(copy, mode=mode)
    after = sg.run_signals(rf.load_run(copy), atc=False)
    pd.testing.assert_frame_equal(before, after)
    assert {"churn", "dense_disagreement", "imp_disagreement", "pred_entropy", "fire_count", "margin"} <= set(
        after["signal"]
    )


def test_atc_reads_labels_at_level_zero_only(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "a")
    before = sg.run_signals(rf.load_run(run_dir))
    copy = shutil.copytree(run_dir, tmp_path / "b")
    _strip_labels(copy, levels_from=1, mode="drop")
    pd.testing.assert_frame_equal(before, sg.run_signals(rf.load_run(copy)))
    # Without any label, ATC needs a threshold from elsewhere; then everything matches again.
    _strip_labels(copy, levels_from=0, mode="drop")
    no_labels = sg.run_signals(rf.load_run(copy))
    assert "atc_accuracy" not in set(no_labels["signal"])
    run = rf.load_run(run_dir)
    thr = {m: sg.fit_atc_threshold(*_dense_conf_correct(run, m)) for m in run.methods}
    pd.testing.assert_frame_equal(before, sg.run_signals(rf.load_run(copy), atc_threshold=thr))


def _dense_conf_correct(run: rf.Run, method: str) -> tuple[np.ndarray, np.ndarray]:
    kind = run.manifest["methods"][method]["ticket_kind"]
    df = run.predictions(method, 0).sort_values("sample")
    view = sg.label_free_view(df, kind)
    truth = df["subset" if kind == "detector" else "label"].to_numpy()
    return view.confidence, view.prediction == truth


def test_guard_can_fail(tmp_path: Path) -> None:
    """Permuting a column the signals do read changes them: the guard is not vacuous."""
    run_dir = write_run(tmp_path / "a", n_levels=2)
    before = sg.run_signals(rf.load_run(run_dir), methods=["rtl"], atc=False)
    path = rf.level_dir(run_dir, "rtl", 1) / rf.PREDICTIONS
    df = pd.read_parquet(path)
    df["route_max_score"] = np.random.default_rng(0).permutation(df["route_max_score"].to_numpy())
    df.to_parquet(path, index=False)
    after = sg.run_signals(rf.load_run(run_dir), methods=["rtl"], atc=False)
    assert not before["value"].equals(after["value"])


def test_shipped_run_signals_are_label_free(tmp_path: Path) -> None:
    src = _copy_levels(FASHION, tmp_path / "a", 3)
    before = sg.run_signals(rf.load_run(src), atc=False, n_boot=50)
    dst = shutil.copytree(src, tmp_path / "b")
    _strip_labels(dst, mode="permute")
    pd.testing.assert_frame_equal(before, sg.run_signals(rf.load_run(dst), atc=False, n_boot=50))
    _strip_labels(dst, mode="drop")
    pd.testing.assert_frame_equal(before, sg.run_signals(rf.load_run(dst), atc=False, n_boot=50))
    assert set(before["method"]) == {"imp", "independent", "rtl"}


# ----------------------------------------------------------------------------- mask simulations


def _copy_model_masks(rng, k: int, n: int, d: float, target_star: float) -> np.ndarray:
    """K masks of density d whose pairwise chance-corrected Jaccard is ``target_star`` in expectation.

    Each weight copies a shared Bernoulli(d) bit with probability c, else draws its
    own: P(both kept) = d^2 + c^2 d (1 - d). c is solved from the target J*.
    """
    j0 = d / (2 - d)
    j = j0 + target_star * (1 - j0)
    p11 = 2 * d * j / (1 + j)
    c = np.sqrt((p11 - d * d) / (d * (1 - d)))
    shared = rng.random(n) < d
    own = rng.random((k, n)) < d
    copy = rng.random((k, n)) < c
    return np.where(copy, shared[None, :], own)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_constant_chance_corrected_similarity_is_flat(rho: float) -> None:
    rng = np.random.default_rng(int(rho * 10))
    densities = [0.8, 0.5, 0.3, 0.15, 0.05]
    masks = {lv: {"w": _copy_model_masks(rng, 5, 60_000, d, rho)} for lv, d in enumerate(densities)}
    table = sg.mask_signal_table(masks, {lv: 1 - d for lv, d in enumerate(densities)}, "sim")
    agg = table[table["ticket"].isna()].set_index(["signal", "level"])["value"]
    star = agg["mean_jaccard_star"].to_numpy()
    raw = agg["mean_jaccard"].to_numpy()
    np.testing.assert_allclose(star, rho, atol=0.02)
    assert raw.max() - raw.min() > 3 * (star.max() - star.min())  # raw J follows the density


def test_constant_phi_is_not_flat_in_chance_corrected_similarity() -> None:
    """Known answer: at a fixed Pearson correlation phi, J* still depends on the density.

    P(both kept) = d^2 + phi d (1 - d); J = p11 / (2 d - p11), E[J] = d / (2 - d).
    """
    rng = np.random.default_rng(7)
    phi, densities = 0.5, [0.8, 0.5, 0.2]
    masks = {}
    for lv, d in enumerate(densities):
        shared = rng.random(200_000) < d
        masks[lv] = {
            "w": np.where(rng.random((4, 200_000)) < np.sqrt(phi), shared, rng.random((4, 200_000)) < d)
        }
    table = sg.mask_signal_table(masks, {lv: 1 - d for lv, d in enumerate(densities)}, "sim")
    star = table[(table["signal"] == "mean_jaccard_star") & table["ticket"].isna()]["value"].to_numpy()
    expected = []
    for d in densities:
        p11 = d * d + phi * d * (1 - d)
        j, j0 = p11 / (2 * d - p11), d / (2 - d)
        expected.append((j - j0) / (1 - j0))
    np.testing.assert_allclose(star, expected, atol=0.01)
    assert expected[0] - expected[-1] > 0.05  # 0.45 at d = 0.8, 0.36 at d = 0.2


def test_random_masks_have_zero_chance_corrected_similarity() -> None:
    rng = np.random.default_rng(3)
    densities = [0.8, 0.4, 0.1]
    masks = {
        lv: {n: rng.random((6, *s)) < d for n, s in {"a": (200, 300), "b": (100, 200)}.items()}
        for lv, d in enumerate(densities)
    }
    table = sg.mask_signal_table(
        masks, {lv: 1 - d for lv, d in enumerate(densities)}, "sim", exclude_layers=[]
    )
    for name in ("mean_jaccard_star", "mean_jaccard_star_layers"):
        rows = table[(table["signal"] == name) & table["ticket"].notna()]
        np.testing.assert_allclose(rows["value"], 0.0, atol=0.01)
        inside = (rows["value"] >= rows["low"]) & (rows["value"] <= rows["high"])
        assert inside.mean() >= 0.8  # the null band covers random masks
    j = table[(table["signal"] == "mean_jaccard") & table["ticket"].isna()]
    np.testing.assert_allclose(j["value"], j["null"], atol=0.005)


def test_mask_similarity_matches_similarity_module() -> None:
    masks = _nested_masks(np.random.default_rng(5), 4, 3)
    table = sg.mask_signal_table(dict(enumerate(masks)), {0: 0, 1: 0.2, 2: 0.36}, "m", exclude_layers=[])
    for level, m in enumerate(masks):
        oracle = ticket_similarity_summary(similarity_frame(m, layers=True))
        glob = oracle[oracle["layer"] == "__global__"].set_index("ticket")
        per_layer = oracle[oracle["layer"] != "__global__"].groupby("ticket")["mean_jaccard"].mean()
        rows = table[(table["level"] == level) & table["ticket"].notna()]
        got = rows.pivot(index="ticket", columns="signal", values="value")
        got.index = got.index.astype(str)
        np.testing.assert_allclose(got["mean_jaccard"], glob.loc[got.index, "mean_jaccard"])
        np.testing.assert_allclose(
            got["mean_jaccard_star"], glob.loc[got.index, "mean_jaccard_star"], equal_nan=True
        )
        np.testing.assert_allclose(got["mean_jaccard_layers"], per_layer.loc[got.index])


def test_level_change_union_core_and_min_density() -> None:
    masks = _nested_masks(np.random.default_rng(6), 3, 3)
    table = sg.mask_signal_table(dict(enumerate(masks)), {0: 0, 1: 0.2, 2: 0.36}, "m")
    t = table.set_index(["signal", "level", "ticket"])["value"]
    # Nested masks: nothing comes back, and consecutive Jaccard is |m_L| / |m_{L-1}|.
    for ticket in range(3):
        assert t[("mask_excess_removal", 2, ticket)] == 0.0
        a = sum(m[ticket].sum() for m in masks[1].values())
        b = sum(m[ticket].sum() for m in masks[2].values())
        assert t[("mask_level_jaccard", 2, ticket)] == pytest.approx(b / a)
        dens = min(m[ticket].mean() for m in masks[2].values())
        assert t[("min_layer_density", 2, ticket)] == pytest.approx(dens)
    u1 = sum(m.any(0).sum() for m in masks[1].values())
    u2 = sum(m.any(0).sum() for m in masks[2].values())
    c1 = sum(m.all(0).sum() for m in masks[1].values())
    c2 = sum(m.all(0).sum() for m in masks[2].values())
    agg = table[table["ticket"].isna()].set_index(["signal", "level"])["value"]
    assert agg[("union_growth", 2)] == pytest.approx((u2 - u1) / u1)
    assert agg[("core_growth", 2)] == pytest.approx((c2 - c1) / c1)
    assert np.isnan(agg[("union_growth", 0)])
    # A mask that regrows weights has positive excess removal.
    regrown = {n: np.roll(m, 1, axis=-1) for n, m in masks[2].items()}
    t2 = sg.mask_signal_table({0: masks[1], 1: regrown}, {0: 0.2, 1: 0.36}, "m").set_index(
        ["signal", "ticket"]
    )
    assert (t2.loc["mask_excess_removal"]["value"].dropna() > 0.05).all()


def test_disjoint_head_rows_are_left_out() -> None:
    k = 4
    head = np.zeros((k, k, 10), dtype=bool)
    head[np.arange(k), np.arange(k)] = True
    body = np.ones((k, 30, 20), dtype=bool)
    assert sg.disjoint_layers({"body": body, "head": head}) == ["head"]


# ----------------------------------------------------------------------------- prediction simulations


def _view(pred, conf=None, scores=None, fires=None, sample=None) -> sg.LabelFreeView:
    pred = np.asarray(pred)
    sample = np.arange(pred.size) if sample is None else sample
    conf = np.full(pred.size, 0.9) if conf is None else conf
    return sg.LabelFreeView(sample, pred, conf, scores, fires, ())


def test_identical_predictions_have_zero_churn_and_disagreement() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, 1000)
    views = {lv: _view(pred) for lv in range(4)}
    t = sg.prediction_signal_table(views, {lv: 0.2 * lv for lv in range(4)}, "single", "m")
    for name in ("churn", "dense_disagreement"):
        v = t[(t["signal"] == name) & (t["level"] > 0)]
        assert (v[["value", "low", "high"]] == 0).all().all()
    # Flip exactly 10 % at level 2: churn 0.1 at 2 and at 3, disagreement with level 0 stays 0.1.
    flipped = pred.copy()
    flipped[:100] = (flipped[:100] + 1) % 5
    views[2] = views[3] = _view(flipped)
    t = sg.prediction_signal_table(views, {lv: 0.2 * lv for lv in range(4)}, "single", "m").set_index(
        ["signal", "level"]
    )
    assert t.loc[("churn", 2), "value"] == pytest.approx(0.1)
    assert t.loc[("churn", 3), "value"] == 0.0
    assert t.loc[("dense_disagreement", 3), "value"] == pytest.approx(0.1)
    assert t.loc[("churn", 2), "low"] < 0.1 < t.loc[("churn", 2), "high"]


def test_entropy_firing_and_margin_against_oracles() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((500, 4))
    fires = scores > 0.6
    pred = scores.argmax(1)
    t = sg.prediction_signal_table(
        {0: _view(pred, scores.max(1), scores, fires)}, {0: 0.0}, "detector", "m"
    ).set_index("signal")["value"]
    assert t["pred_entropy"] == pytest.approx(entropy(np.bincount(pred)))
    assert t["fire_count"] == pytest.approx(fires.sum(1).mean())
    assert t["fire_none"] == pytest.approx((fires.sum(1) == 0).mean())
    assert t["fire_multi"] == pytest.approx((fires.sum(1) > 1).mean())
    top = np.sort(scores, 1)
    assert t["margin"] == pytest.approx((top[:, -1] - top[:, -2]).mean())


def test_bootstrap_band_matches_binomial_interval() -> None:
    rng = np.random.default_rng(2)
    x = rng.random(4000) < 0.3
    idx = rng.integers(0, x.size, (2000, x.size))
    value, lo, hi = sg.bootstrap_band(x, idx)
    se = np.sqrt(value * (1 - value) / x.size)
    assert lo == pytest.approx(value - 1.96 * se, abs=0.004)
    assert hi == pytest.approx(value + 1.96 * se, abs=0.004)
    h, hlo, hhi = sg.entropy_band(rng.integers(0, 3, 4000), idx)
    assert hlo <= h <= hhi


def _calibrated(rng, n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    conf = 0.5 + 0.5 * rng.beta(a, b, n)
    return conf, rng.random(n) < conf


def test_atc_equals_accuracy_when_calibrated() -> None:
    rng = np.random.default_rng(4)
    conf, correct = _calibrated(rng, 50_000, 5, 1)
    t = sg.fit_atc_threshold(conf, correct)
    assert sg.atc_estimate(conf, t).mean() == pytest.approx(correct.mean(), abs=1e-4)
    # A fresh unlabelled draw of the same calibrated model: the estimate is its accuracy.
    conf2, correct2 = _calibrated(rng, 50_000, 5, 1)
    idx = rng.integers(0, conf2.size, (300, conf2.size))
    value, lo, hi = sg.bootstrap_band(sg.atc_estimate(conf2, t), idx)
    assert value == pytest.approx(correct2.mean(), abs=0.01)
    # Under a calibrated shift to lower confidence, ATC falls with the accuracy
    # (it over-reacts in this family: the estimate stays below the truth).
    conf3, correct3 = _calibrated(rng, 50_000, 2, 1)
    est = sg.atc_estimate(conf3, t).mean()
    assert est < value and correct3.mean() < correct2.mean() and est <= correct3.mean()


def test_seed_disagreement_of_two_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "seed-0", n_levels=2)
    b = shutil.copytree(a, tmp_path / "seed-1")
    path = rf.level_dir(b, "imp", 1) / rf.PREDICTIONS
    df = pd.read_parquet(path)
    df.loc[:29, "pred"] = (df.loc[:29, "pred"] + 1) % 6  # 30 of 300 samples differ
    df.to_parquet(path, index=False)
    t = sg.seed_disagreement_table([rf.load_run(a), rf.load_run(b)]).set_index(["method", "level"])
    assert t.loc[("imp", 1), "value"] == pytest.approx(0.1)
    assert t.loc[("imp", 0), "value"] == 0.0
    assert t.loc[("rtl", 1), "value"] == 0.0
    full = sg.run_signals(rf.load_run(a), seeds=[rf.load_run(b)], n_boot=20)
    assert "seed_disagreement" in set(full["signal"])
    with pytest.raises(ValueError, match="two runs"):
        sg.seed_disagreement_table([rf.load_run(a)])


@pytest.mark.parametrize(("name", "method"), [("image-inr-region", "rtl-china"), ("speech-unet-env", "imp")])
def test_non_classification_methods_get_mask_signals_only(name: str, method: str) -> None:
    run = rf.load_run(REPO / "artifacts" / name)
    t = sg.run_signals(run, methods=[method])
    assert set(t["signal"]) <= {
        "mean_jaccard",
        "mean_jaccard_star",
        "mean_jaccard_layers",
        "mean_jaccard_star_layers",
        "min_layer_density",
        "mask_excess_removal",
        "mask_level_jaccard",
        "union_growth",
        "core_growth",
    }
    assert list(t.columns) == sg.SIGNAL_COLUMNS


def test_label_free_view_refuses_missing_columns() -> None:
    with pytest.raises(ValueError, match="score_"):
        sg.label_free_view(pd.DataFrame({"sample": [0], "label": [1]}), "detector")
    with pytest.raises(ValueError, match="ticket kind"):
        sg.label_free_view(pd.DataFrame({"sample": [0]}), "region")


# ----------------------------------------------------------------------------- CLI


def test_cli_signals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from analysis.cli import main

    run_dir = write_run(tmp_path / "run", n_levels=2)
    out = tmp_path / "s.csv"
    assert main(["signals", str(run_dir), "--out", str(out), "--n-boot", "20"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == sg.SIGNAL_COLUMNS
    assert "mean_jaccard_star" in capsys.readouterr().out
    assert main(["signals", str(run_dir), "--json", "--method", "rtl", "--n-boot", "20"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} == {"rtl"}
    assert main(["signals", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_first_departures() -> None:
    rows = []
    for level, (v, lo, hi) in enumerate(
        [(0.5, 0.4, 0.6), (0.5, 0.45, 0.55), (0.6, 0.55, 0.65), (0.9, 0.85, 0.95)]
    ):
        rows.append(("m", level, 0.2 * level, None, "x", v, np.nan, lo, hi, "bootstrap"))
        rows.append(("m", level, 0.2 * level, None, "flat", 1.0, np.nan, np.nan, np.nan, "none"))
    table = pd.DataFrame(rows, columns=sg.SIGNAL_COLUMNS)
    d = sg.first_departures(table).set_index("signal")
    assert d.loc["x", "level"] == 3  # 0.6 at level 2 is within 0.05 + 0.05 of 0.5; 0.9 is not
    assert d.loc["x", "direction"] == 1
    assert pd.isna(d.loc["flat", "level"]) and d.loc["flat", "direction"] == 0


def test_min_layer_density_of_a_detector_head_is_its_own_row() -> None:
    k = 4
    head = np.zeros((k, k, 10), dtype=bool)
    head[np.arange(k), np.arange(k)] = True
    body = np.ones((k, 30, 20), dtype=bool)
    pruned_head = head.copy()
    pruned_head[:, :, 5:] = False  # half of each ticket's row left
    table = sg.mask_signal_table(
        {0: {"body": body, "head": head}, 1: {"body": body, "head": pruned_head}}, {0: 0.0, 1: 0.1}, "m"
    )
    t = table[(table["signal"] == "min_layer_density") & table["ticket"].isna()].set_index("level")["value"]
    assert t[0] == 1.0 and t[1] == 0.5
