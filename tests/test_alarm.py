"""The frozen collapse alarm: label-free, calibrated apart from its evaluation, and scored honestly."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from seed_groups import SMOKE_OVERRIDES, build_smoke_group
from test_signals import _strip_labels, write_run

from analysis import alarm as A
from analysis.cli import main
from artifacts import run_format as rf

REPO = Path(__file__).resolve().parents[1]


def _study():
    spec = importlib.util.spec_from_file_location("alarm_study", REPO / "scripts" / "alarm_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _params(rules: list[A.SignalRule], combine: str = "any") -> A.AlarmParams:
    fallback = tuple(r for r in rules if r.signal in A.MASK_SIGNALS)
    return A.AlarmParams(primary=tuple(rules), combine=combine, fallback=fallback, fixed_sparsity=0.5)


# Rules with small k so that they fire on the tiny synthetic run (predictions degrade with the level).
RULES = [
    A.SignalRule("dense_disagreement", "method", 1, "first", 1.0, 1, 0.01),
    A.SignalRule("mean_jaccard", "ticket", 1, "first", 0.5, 1, 0.001),
    A.SignalRule("margin", "method", -1, "first", 1.0, 2, 0.01),
]


# ----------------------------------------------------------------------------- label-freeness


@pytest.mark.parametrize("mode", ["drop", "permute"])
def test_alarm_without_labels_equals_alarm_with_them(tmp_path: Path, mode: str) -> None:
    run_dir = write_run(tmp_path / "a", n_levels=6)
    params = _params(RULES)
    before = A.run_alarm(rf.load_run(run_dir), params)
    assert before["fired"].any(), "the test rules must fire somewhere, or the comparison proves nothing"
    copy = shutil.copytree(run_dir, tmp_path / "b")
    _strip_labels(copy, mode=mode)
    after = A.run_alarm(rf.load_run(copy), params)
    pd.testing.assert_frame_equal(before, after)
    # and with the frozen parameters
    frozen = A.load_alarm_params()
    pd.testing.assert_frame_equal(
        A.run_alarm(rf.load_run(run_dir), frozen), A.run_alarm(rf.load_run(copy), frozen)
    )


def test_alarm_rows_cover_every_method_and_ticket(tmp_path: Path) -> None:
    run = rf.load_run(write_run(tmp_path / "a", n_levels=5))
    out = A.run_alarm(run, _params(RULES))
    assert list(out.columns) == A.ALARM_COLUMNS
    for m in run.methods:
        assert list(out.loc[out["method"] == m, "ticket_name"]) == list(run.ticket_names(m))
    fired = out[out["fired"]]
    assert fired["level"].notna().all() and (fired["signals"] != "").all()
    assert out.loc[~out["fired"], "level"].isna().all()


# ----------------------------------------------------------------------------- the rule


def test_rule_fires_after_m_consecutive_departures() -> None:
    """A flat signal with a known band that jumps at level 6: fires at 6 (m=1) and 7 (m=2), never at k=50."""
    levels = np.arange(0, 10)
    value = np.where(levels >= 6, 0.5, 0.1)
    value[8] = 0.1  # a dip back: m=3 never sees three in a row before level 9
    table = pd.DataFrame(
        {
            "method": "m",
            "level": levels,
            "sparsity": 1 - 0.8**levels,
            "ticket": pd.array([None] * 10, dtype="Int64"),
            "signal": "margin",
            "value": value,
            "null": np.nan,
            "low": value - 0.01,
            "high": value + 0.01,
            "band": "bootstrap",
        }
    )
    dep = A.departures(table, "margin", "method", "first", 1, 0.0)
    assert dep["level"].min() == 2  # measured after the first pruned level
    np.testing.assert_allclose(dep.loc[dep["level"] == 6, "z"], 0.4 / 0.02)
    assert A.fire_levels(dep, 3, 1)["level"].iloc[0] == 6
    assert A.fire_levels(dep, 3, 2)["level"].iloc[0] == 7
    assert pd.isna(A.fire_levels(dep, 3, 3)["level"].iloc[0])
    assert pd.isna(A.fire_levels(dep, 50, 1)["level"].iloc[0])
    down = A.departures(table, "margin", "method", "first", -1, 0.0)
    assert pd.isna(A.fire_levels(down, 3, 1)["level"].iloc[0])


def test_vectorised_calibration_agrees_with_the_rule() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for t in range(4):
        for lv in range(1, 15):
            rows.append(
                ("m", t, lv, 1 - 0.8**lv, 0, 0, 0, 0, rng.normal(lv / 5, 1), 1, rng.normal(lv / 5, 1))
            )
    dep = pd.DataFrame(rows, columns=["method", "ticket", "level", "sparsity", *"abcde", "noise", "z"])
    dep["ticket"] = dep["ticket"].astype("Int64")
    ks = np.array(sorted(A.K_GRID), dtype=float)
    for m in A.M_GRID:
        table = A._fire_table(dep, ks, m)
        for i, k in enumerate(ks):
            direct = A.fire_levels(dep, k, m)
            for r in direct.itertuples(index=False):
                got = table[("m", int(r.ticket))][i]
                assert (np.isnan(got) and pd.isna(r.level)) or got == r.level


# ----------------------------------------------------------------------------- scoring


def _curves(collapse_at: int, n_levels: int = 10, tickets: int = 3) -> pd.DataFrame:
    rows = []
    for lv in range(n_levels):
        for t in [*range(tickets), None]:
            v = 0.9 if lv < collapse_at else 0.6
            rows.append(("m", lv, 1 - 0.8**lv, t, "balanced_accuracy", v))
    df = pd.DataFrame(rows, columns=["method", "level", "sparsity", "ticket", "signal", "value"])
    df["ticket"] = pd.array(list(df["ticket"]), dtype="Int64")
    return df


def test_always_firing_alarm_scores_early_with_regret() -> None:
    curves = _curves(collapse_at=7)
    alarm = pd.DataFrame({"method": "m", "ticket": pd.array([0, 1, 2], dtype="Int64"), "level": 1})
    alarm["sparsity"] = 0.2
    ev = A.evaluate_run_alarm(alarm, curves)
    assert list(ev["outcome"]) == ["early"] * 3
    np.testing.assert_allclose(ev["sparsity_given_up"], (1 - 0.8**6) - 0.2)
    hit = alarm.assign(level=5, sparsity=1 - 0.8**5)
    assert list(A.evaluate_run_alarm(hit, curves)["outcome"]) == ["hit"] * 3
    # the fast calibration scorer counts the same outcomes as the bounded-lead scorer
    points = A.case_points(curves)
    fires = alarm.assign(ticket=pd.array([None] * 3, dtype="Int64")).iloc[:1]
    assert A._score(fires, points) == {
        "collapsing": 3,
        "stable": 0,
        "hit": 0,
        "early": 3,
        "late": 0,
        "miss": 0,
        "false_alarm": 0,
    }


def test_collapse_is_read_against_the_dense_reference_not_the_methods_own_level_0() -> None:
    # a method whose own level 0 is already poor (0.9 then 0.6 from level 7): against itself it
    # collapses at 7; against a dense model at 1.0 it is collapsed from level 1 on
    curves = _curves(collapse_at=7)
    ref = curves[curves["level"] == 0].assign(method="imp", value=1.0)
    assert A.case_points(curves)["collapse_level"].tolist() == [7, 7, 7]
    assert A.case_points(curves, reference=ref)["collapse_level"].tolist() == [1, 1, 1]
    alarm = pd.DataFrame({"method": "m", "ticket": pd.array([0, 1, 2], dtype="Int64"), "level": 5})
    alarm["sparsity"] = 1 - 0.8**5
    assert list(A.evaluate_run_alarm(alarm, curves)["outcome"]) == ["hit"] * 3
    assert list(A.evaluate_run_alarm(alarm, curves, reference=ref)["outcome"]) == ["late"] * 3


def test_a_single_ticket_scored_on_the_whole_task_is_scored_from_its_one_row() -> None:
    # imp on Adult: one ticket, and its curves hold only the aggregate row (ticket <NA>)
    curves = _curves(collapse_at=7)
    curves = curves[curves["ticket"].isna()]
    alarm = pd.DataFrame({"method": "m", "ticket": pd.array([0], dtype="Int64"), "level": 5})
    alarm["sparsity"] = 1 - 0.8**5
    ev = A.evaluate_run_alarm(alarm, curves)
    assert ev["outcome"].tolist() == ["hit"] and ev["collapse_level"].tolist() == [7]
    assert A.case_points(curves, n_tickets={"m": 1})["collapse_level"].tolist() == [7]


def test_never_stop_and_fixed_sparsity_baselines() -> None:
    table = _curves(collapse_at=7).rename(columns={})
    table["signal"] = "margin"
    never = A.never_levels(table)
    assert never["level"].isna().all()
    fixed = A.fixed_sparsity_levels(table, 0.7)
    assert int(fixed["level"].iloc[0]) == 6  # 1 - 0.8**6 = 0.738 is the first level past 70 %


# ----------------------------------------------------------------------------- frozen params, study record


def test_frozen_params_load_and_are_label_free() -> None:
    p = A.load_alarm_params()
    assert p.primary and p.fallback and p.created
    assert all(r.signal in A.LABEL_FREE_SIGNALS and r.signal not in A.GROUP_ONLY_SIGNALS for r in p.primary)
    assert all(r.signal in A.MASK_SIGNALS for r in p.fallback)
    assert "atc_accuracy" not in {r.signal for r in (*p.primary, *p.fallback)}
    assert p.calibration and all({"name", "description_hash", "seeds"} <= set(c) for c in p.calibration)
    assert A.AlarmParams.from_json(p.to_json()) == p


def test_malformed_params_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"primary": {"rules": [{"signal": "margin", "scope": "nowhere"}]}}))
    with pytest.raises(ValueError, match="malformed"):
        A.load_alarm_params(bad)


def test_calibration_and_evaluation_sets_are_disjoint_and_recorded() -> None:
    p = A.load_alarm_params()
    record = json.loads(A.EVALUATION_PATH.with_suffix(".json").read_text())
    cal = {(c["description_hash"], s) for c in record["calibration"] for s in c["seeds"]}
    ev = {(c["description_hash"], s) for c in record["evaluation"] for s in c["seeds"]}
    assert cal and ev and not (cal & ev)
    assert {c["name"] for c in record["calibration"]} == {c["name"] for c in p.calibration}
    table = A.load_alarm_evaluation()
    assert set(table.loc[table["role"] == "evaluation", "sweep"]) == {c["name"] for c in record["evaluation"]}
    assert not set(table.loc[table["role"] == "evaluation", "sweep"]) & {c["name"] for c in p.calibration}
    study = _study()
    study.assert_disjoint(record["calibration"], record["evaluation"])
    with pytest.raises(SystemExit, match="repeats calibration runs"):
        study.assert_disjoint(record["calibration"], [{**record["calibration"][0], "path": "/elsewhere"}])


# ----------------------------------------------------------------------------- adding held-out sweeps


@pytest.fixture(scope="module")
def tiny_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new held-out group: digits smoke, rtl only, one seed, 1 epoch, 80 % pruned per level (collapses)."""
    overrides = [*SMOKE_OVERRIDES, "prune.fraction=0.8", "methods=rtl"]
    return build_smoke_group(
        tmp_path_factory.mktemp("alarm-add") / "tiny-digits", seeds=(0,), overrides=overrides
    )


def _study_copy(root: Path, calibration: list[dict] | None = None) -> tuple[Path, Path]:
    """Copies of the committed evaluation and frozen params under ``root`` (with ``calibration`` if given).

    The params keep two of their single-signal candidates, to keep the test fast.
    """
    (root / "data").mkdir(parents=True)
    out = root / "data" / A.EVALUATION_PATH.name
    shutil.copy(A.EVALUATION_PATH, out)
    shutil.copy(A.EVALUATION_PATH.with_suffix(".json"), out.with_suffix(".json"))
    params = root / A.PARAMS_PATH.name
    doc = json.loads(A.PARAMS_PATH.read_text())
    doc["per_signal"] = {k: doc["per_signal"][k] for k in ("mean_jaccard/ticket", "margin/method")}
    params.write_text(json.dumps(doc))
    if calibration is not None:
        for path in (params, out.with_suffix(".json")):
            doc = json.loads(path.read_text())
            path.write_text(json.dumps({**doc, "calibration": calibration}))
    return out, params


def test_committed_evaluation_scores_every_candidate_of_the_frozen_params() -> None:
    names = list(_study().candidates(A.load_alarm_params()))
    table = A.load_alarm_evaluation()
    for (_, sweep), g in table.groupby(["role", "sweep"], sort=False):
        got = list(g["candidate"])
        # in the params' order; only a per-signal candidate whose signal the sweep does not
        # hold (prediction signals of a run stored without scores, detector-only signals of
        # expert tickets) may be absent
        assert got == [n for n in names if n in got], sweep
        assert all(n in got for n in names if not n.startswith("signal ")), sweep


def _add(out: Path, params: Path, *groups: Path) -> int:
    argv = ["--add", *map(str, groups), "--params", str(params), "--out", str(out)]
    return _study().main([*argv, "--cache", str(out.parent / "cache"), "--n-boot", "20"])


def test_add_scores_a_new_sweep_and_leaves_the_other_rows(tiny_group: Path, tmp_path: Path) -> None:
    out, params = _study_copy(tmp_path)
    before_csv, before = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    assert _add(out, params, tiny_group) == 0
    # every existing row byte for byte, in place; the new sweep's rows after them
    assert out.read_text().startswith(before_csv)
    table = pd.read_csv(out)
    new = table[table["sweep"] == "tiny-digits"]
    assert set(new["role"]) == {"evaluation"}
    assert list(new["candidate"]) == list(_study().candidates(A.load_alarm_params(params)))
    run = rf.load_group(tiny_group).runs()[0]
    assert set(new["n"]) == {sum(len(run.ticket_names(m)) for m in run.methods)}
    assert (new["collapsing"] > 0).all(), (
        "80 % per level must collapse some tickets, or the scores prove little"
    )
    # the scorer's outcomes partition the tickets
    np.testing.assert_array_equal(new[["hit", "early", "late", "miss"]].sum(axis=1), new["collapsing"])
    np.testing.assert_array_equal(
        new[["false_alarm", "true_negative"]].sum(axis=1), new["n"] - new["collapsing"]
    )
    never = new[new["candidate"] == "never stop"].iloc[0]
    assert never["miss"] == never["collapsing"] and never[["hit", "early", "late", "false_alarm"]].sum() == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["calibration"] == before["calibration"]
    assert record["evaluation"][:-1] == before["evaluation"]
    assert record["evaluation"][-1]["name"] == "tiny-digits" and record["evaluation"][-1]["seeds"] == [0]

    # adding it again replaces its rows (spoilt here so that a replacement shows) and its record
    after_first = out.read_text()
    spoilt = table.assign(hit=np.where(table["sweep"] == "tiny-digits", 999, table["hit"]))
    spoilt.to_csv(out, index=False, float_format="%.4f")
    assert _add(out, params, tiny_group, tiny_group) == 0
    assert out.read_text() == after_first
    assert json.loads(out.with_suffix(".json").read_text()) == record


def test_add_refuses_calibration_runs_and_other_params(
    tiny_group: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study = _study()
    calibration = [study.sweep_record(tiny_group)]
    copy = shutil.copytree(tiny_group, tmp_path / "copy" / "tiny-digits")
    for i, (group, message) in enumerate(
        [
            (tiny_group, "both a calibration and an evaluation sweep"),  # the same folder
            (copy, "repeats calibration runs"),  # the same description and seed elsewhere
        ]
    ):
        out, params = _study_copy(tmp_path / str(i), calibration)
        before = out.read_text()
        with pytest.raises(SystemExit, match=message):
            _add(out, params, group)
        assert out.read_text() == before
    # params whose calibration is not the one the evaluation records
    out, params = _study_copy(tmp_path / "mismatch")
    doc = json.loads(params.read_text())
    params.write_text(json.dumps({**doc, "calibration": calibration}))
    with pytest.raises(SystemExit, match="not the frozen params"):
        _add(out, params, tiny_group)


# ----------------------------------------------------------------------------- command line


def test_cli_on_a_synthetic_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = write_run(tmp_path / "a", n_levels=5)
    assert main(["alarm", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} == {"imp", "rtl", "moe"}
    assert main(["alarm", str(run_dir), "--evaluate"]) == 0
    out = capsys.readouterr().out
    assert "outcome" in out and "alarm:" in out


def test_cli_on_an_unlabelled_run_only_alarms(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = write_run(tmp_path / "a", n_levels=5)
    _strip_labels(run_dir, mode="drop")
    assert main(["alarm", str(run_dir), "--json", "--evaluate"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows and all("outcome" not in r for r in rows)
    assert "no labelled metric" in captured.err


def test_cli_refuses_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["alarm", str(tmp_path / "nothing")]) == 2
    assert "error:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the Collapse page


def test_collapse_page_shows_the_frozen_alarm_and_hides_its_labelled_evaluation(
    monkeypatch: pytest.MonkeyPatch, synthetic_runs_dir: Path
) -> None:
    from test_app import _app, _charts, _no_exception

    at = _app(monkeypatch, synthetic_runs_dir, synthetic_runs_dir / "multi")
    at.switch_page("views/collapse.py").run()
    _no_exception(at, "collapse")
    traces = {str(t.get("name", "")) for c in _charts(at) for t in c["data"]}
    assert "threshold (k × noise)" in traces  # the alarm's evidence
    assert any("frozen" in str(c.value).lower() for c in at.caption)
    held = [d.value for d in at.dataframe if "candidate" in d.value.columns]
    assert held and set(held[0]["sweep"]) == set(
        A.load_alarm_evaluation().query("role == 'evaluation'")["sweep"]
    )
    at.toggle(key="collapse.label_free").set_value(True).run()
    _no_exception(at, "collapse, label-free")
    assert not [d for d in at.dataframe if "candidate" in d.value.columns or "outcome" in d.value.columns]
    traces = {str(t.get("name", "")) for c in _charts(at) for t in c["data"]}
    assert "threshold (k × noise)" in traces


def test_cli_on_a_run_group(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    group = tmp_path / "g"
    for seed in (0, 1):
        write_run(group / f"seed-{seed}", n_levels=4, seed=seed)
    rf.write_group_manifest(group, {"runs": ["seed-0", "seed-1"], "seeds": [0, 1]})
    assert main(["alarm", str(group), "--json"]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert set(rows["seed"]) == {0, 1}
    assert len(rows) == 2 * (1 + 6 + 6)  # imp's one ticket, rtl's and moe's six, per seed


def test_cli_on_an_imported_openlth_sweep(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No predictions: a mask-signal rule alarms; --evaluate scores against the logged accuracy."""
    from test_importers import make_openlth

    from ingest import import_checkpoints

    make_openlth(tmp_path / "open_lth_data", levels=5)
    run_dir = import_checkpoints([tmp_path / "open_lth_data"], tmp_path / "run")
    assert main(["alarm", str(run_dir), "--json", "--evaluate"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["ticket_name"] for r in rows] == ["replicate_1", "replicate_2"]
    masks_only = all(r.signal in A.MASK_SIGNALS for r in A.load_alarm_params().primary)
    assert {r["rule"] for r in rows} == {"primary" if masks_only else "fallback"}
    assert {r["metric"] for r in rows} == {"test_accuracy"}
    assert all(
        r["outcome"] in ("hit", "early", "late", "miss") for r in rows
    )  # accuracy falls 0.05 by level 2
    # a primary rule on predictions cannot run here: the mask-only fallback takes over
    params = tmp_path / "params.json"
    params.write_text(json.dumps(_params(RULES).to_json()))
    assert main(["alarm", str(run_dir), "--json", "--params", str(params)]) == 0
    assert {r["rule"] for r in json.loads(capsys.readouterr().out)} == {"fallback"}


def test_a_candidate_without_its_signal_gets_no_row_rather_than_misses() -> None:
    study = _study()
    table = pd.DataFrame({"signal": ["union_growth", "margin"], "value": [0.1, np.nan]})
    case = A.Case("s", 0, table, pd.DataFrame(), pd.DataFrame({"method": [], "ticket": []}))
    assert study.computable(case, "union_growth") and not study.computable(case, "margin")

    def never_called(_case):
        raise AssertionError("a candidate whose signal the sweep lacks must not be scored")

    cands = {"signal margin/method": never_called}
    assert study.sweep_rows("evaluation", [case], cands, {"signal margin/method": "margin"}) == []


def test_regret_table_holds_each_sweeps_headline_candidates_only() -> None:
    study = _study()
    rows = [
        ("evaluation", "a", "alarm (frozen)", 2.0, 0.0125, 0.031),
        ("evaluation", "a", "signal margin/method", 1.0, 0.5, 0.5),
        ("evaluation", "b", "alarm (frozen)", np.nan, 0.0, 0.2),
        ("evaluation", "b", "never stop", np.nan, 0.0, 0.25),
    ]
    held = pd.DataFrame(
        rows,
        columns=[
            "role",
            "sweep",
            "candidate",
            "mean_lead_levels",
            "mean_sparsity_given_up",
            "mean_metric_lost",
        ],
    )
    t = study.regret_table(held)
    assert list(t.columns) == ["sweep", "alarm (frozen)", "never stop"]  # per-signal rules left out
    assert t.set_index("sweep").loc["a"].tolist() == [
        "2.0 / 0.013 / 0.03",
        "–",
    ]  # a sweep without a row: a dash
    assert t.set_index("sweep").loc["b"].tolist() == ["– / 0.000 / 0.20", "– / 0.000 / 0.25"]
