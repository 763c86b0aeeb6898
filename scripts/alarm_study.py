"""The collapse-alarm study (issue 14): calibrate on some sweeps, freeze, score on the others.

Usage (after ``bash scripts/alarm_sweeps.sh``)::

    python scripts/alarm_study.py --freeze \
        --calibrate runs/alarm-study/digits-mlp-class runs/alarm-study/digits-mlp-kmeans \
        --evaluate runs/alarm-study/digits-mlp-class-s345 runs/alarm-study/digits-cnn-class ...

``--freeze`` chooses every rule's thresholds on the calibration sweeps and
writes ``analysis/alarm_params.json``; without it the frozen file is read, and
its recorded calibration sweeps must be the ``--calibrate`` ones. Either way
the held-out sweeps must be disjoint from the calibration ones (folders, and
(description, seed) pairs): the script refuses otherwise. It writes
``analysis/data/alarm_evaluation.csv`` (one row per role, sweep and candidate,
with both sets recorded in its ``role`` column and in the JSON beside it) and
prints the README tables.

``--add`` scores new held-out sweeps with the frozen params without the other
sweeps on disk::

    python scripts/alarm_study.py --add runs/alarm-study/digits-mlp-map runs/alarm-study/digits-vit-class

It reads the committed CSV and JSON, checks that the params file's calibration
set is the one the JSON records, refuses a sweep that overlaps it (as above),
scores the new sweeps with the same candidates and scorer, replaces their rows
and records (or appends them), leaves every other row as it is, and prints the
README tables of the whole updated CSV.

Per-run signal tables and labelled curves are cached under
``runs/alarm-study/.cache`` (keyed on the run's modification time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import alarm as A  # noqa: E402
from analysis.collapse import alarm_summary  # noqa: E402
from analysis.signals import run_signals  # noqa: E402
from artifacts.run_format import load_group  # noqa: E402

SUMMARY_COLUMNS = [
    "role",
    "sweep",
    "candidate",
    "n",
    "collapsing",
    "hit",
    "early",
    "late",
    "miss",
    "false_alarm",
    "true_negative",
    "hit_rate",
    "mean_lead_levels",
    "mean_sparsity_given_up",
    "mean_metric_lost",
]


def _where(path: str | Path) -> Path:
    """A recorded sweep path as an absolute one (relative paths are relative to the repository)."""
    return (ROOT / path).resolve()


def sweep_record(path: Path) -> dict:
    """Name, path (relative to the repository when inside it), description hash and seeds of a run group."""
    g = load_group(path)
    desc = g.manifest.get("description", {})
    where = path.resolve()
    return {
        "name": g.name,
        "path": str(where.relative_to(ROOT) if where.is_relative_to(ROOT) else where),
        "description_hash": A.description_hash(desc),
        "seeds": list(g.seeds),
        "preset": g.manifest.get("preset"),
        "overrides": g.manifest.get("overrides"),
    }


def assert_disjoint(calibration: list[dict], evaluation: list[dict]) -> None:
    """Refuse overlapping sets: the same folder, or the same description and seed."""
    cal_paths = {_where(r["path"]) for r in calibration}
    cal_pairs = {(r["description_hash"], s) for r in calibration for s in r["seeds"]}
    for r in evaluation:
        if _where(r["path"]) in cal_paths:
            raise SystemExit(f"error: {r['path']} is both a calibration and an evaluation sweep")
        both = cal_pairs & {(r["description_hash"], s) for s in r["seeds"]}
        if both:
            raise SystemExit(
                f"error: {r['path']} repeats calibration runs (description, seed) {sorted(both)}"
            )


def load_cases(path: Path, cache: Path, n_boot: int) -> list[A.Case]:
    """One Case per seed of a group, from the cache when the run is unchanged."""
    g = load_group(path)
    runs = g.runs()
    cases = []
    for seed, run in zip(g.seeds, runs, strict=True):
        key = cache / f"{g.name}-seed{seed}-{run.mtime():.0f}-b{n_boot}-ref.pkl"
        n_tickets = {m: len(run.ticket_names(m)) for m in run.methods}
        if key.is_file():
            case = pickle.loads(key.read_bytes())
        else:
            others = [r for r in runs if r is not run]
            table = run_signals(run, seeds=others or None, atc=True, n_boot=n_boot)
            curves = A.labelled_curves(run)
            ref = A.reference_curve(run, curves)
            case = A.Case(g.name, seed, table, curves, A.case_points(curves, reference=ref), ref)
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(pickle.dumps(case))
        case.points = A.case_points(case.curves, n_tickets=n_tickets, reference=case.reference)
        cases.append(case)
    return cases


def candidates(params: A.AlarmParams) -> dict:
    """Candidate name -> function(Case) -> firing levels (method, ticket, level, sparsity)."""
    out = {
        "alarm (frozen)": lambda c: A.apply_rules(
            c.table, c.points[["method", "ticket"]], params.primary, params.combine
        ),
        "paper IoU rise": lambda c: A.paper_iou_levels(c.table),
        "CollapseAlarm (before)": lambda c: A.collapse_alarm_levels(c.curves),
        "never stop": lambda c: A.never_levels(c.table),
        f"fixed sparsity {params.fixed_sparsity:.1%}": lambda c: A.fixed_sparsity_levels(
            c.table, params.fixed_sparsity
        ),
    }
    if params.fallback and params.fallback != params.primary:
        out["alarm fallback (masks only)"] = lambda c: A.apply_rules(
            c.table, c.points[["method", "ticket"]], params.fallback, params.fallback_combine
        )
    for key, rule in params.per_signal.items():
        out[f"signal {key}"] = lambda c, r=rule: A.apply_rules(c.table, c.points[["method", "ticket"]], [r])
    return out


def score_case(case: A.Case, fires: pd.DataFrame) -> pd.DataFrame:
    """Bounded-lead evaluation (with regret) of per-ticket firing levels on one run."""
    tickets = case.points[["method", "ticket"]]
    per_ticket = A.broadcast(fires[["method", "ticket", "level", "sparsity"]], tickets)
    return A.evaluate_run_alarm(per_ticket, case.curves, reference=case.reference)


def summarise(role: str, sweep: str, name: str, ev: pd.DataFrame) -> dict:
    """One summary row (``SUMMARY_COLUMNS``) of a candidate's per-ticket evaluation on one sweep."""
    s = alarm_summary(ev).iloc[0].to_dict()
    collapsing = int(ev["collapse_level"].notna().sum())
    return {
        "role": role,
        "sweep": sweep,
        "candidate": name,
        "n": int(s["n"]),
        "collapsing": collapsing,
        **{k: int(s[k]) for k in ("hit", "early", "late", "miss", "false_alarm", "true_negative")},
        "hit_rate": s["hit"] / collapsing if collapsing else np.nan,
        "mean_lead_levels": s["mean_lead_levels"],
        "mean_sparsity_given_up": s["mean_sparsity_given_up"],
        "mean_metric_lost": s["mean_metric_lost"],
    }


def markdown(df: pd.DataFrame) -> str:
    """A markdown table (floats to 2 decimals, NaN as a dash)."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else f"{v:.2f}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns)
    return "\n".join(
        [head, *("| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False))]
    )


def computable(case: A.Case, signal: str) -> bool:
    """Whether a run's signal table holds any value of ``signal``.

    A run without stored scores has no prediction signals: a candidate reading one has
    nothing to fire on there.
    """
    t = case.table
    return bool((t["signal"].eq(signal) & t["value"].notna()).any())


def sweep_rows(
    role: str, cases: list[A.Case], cands: dict, needs: dict[str, str] | None = None
) -> list[dict]:
    """Summary rows (``SUMMARY_COLUMNS``) of every candidate on one sweep's cases (one per seed).

    ``needs`` maps a candidate to the signal it reads; a candidate whose signal no case holds
    gets no row (not computable, shown as "–"), rather than a row of misses.
    """
    rows = []
    for name, fn in cands.items():
        if needs and name in needs and not any(computable(c, needs[name]) for c in cases):
            continue
        evs = [score_case(c, fn(c)) for c in cases]
        evs = [e for e in evs if len(e)]
        if evs:
            rows.append(summarise(role, cases[0].sweep, name, pd.concat(evs, ignore_index=True)))
    return rows


def write_evaluation(table: pd.DataFrame, record: dict, out: Path) -> None:
    """Write the summary rows to ``out`` (CSV) and the sets' record beside it (JSON)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def print_tables(table: pd.DataFrame, params: A.AlarmParams) -> None:
    """Print the README tables of the held-out (``role == "evaluation"``) rows of ``table``."""
    held = table[table["role"] == "evaluation"]
    pooled = []
    for name, g in held.groupby("candidate", sort=False):
        n_coll = int(g["collapsing"].sum())
        pooled.append(
            {
                "candidate": name,
                "tickets": int(g["n"].sum()),
                "collapsing": n_coll,
                "hit": int(g["hit"].sum()),
                "early": int(g["early"].sum()),
                "late": int(g["late"].sum()),
                "miss": int(g["miss"].sum()),
                "false_alarm": int(g["false_alarm"].sum()),
                "hit_rate": g["hit"].sum() / n_coll if n_coll else np.nan,
                "sparsity_given_up": float(np.average(g["mean_sparsity_given_up"], weights=g["n"])),
                "metric_lost": float(np.average(g["mean_metric_lost"], weights=g["n"])),
            }
        )
    matrix = {}
    for name, g in held.groupby("candidate", sort=False):
        row = {"candidate": name}
        for r in g.itertuples(index=False):
            cell = f"{r.hit}/{r.collapsing}" if r.collapsing else "–"
            row[r.sweep] = cell + (f", FA {r.false_alarm}" if r.false_alarm else "")
        lead = g.dropna(subset=["mean_lead_levels"])
        w = (lead["hit"] + lead["early"] + lead["late"]).astype(float)
        row["lead (levels)"] = float(np.average(lead["mean_lead_levels"], weights=w)) if w.sum() else np.nan
        row["sparsity given up"] = float(np.average(g["mean_sparsity_given_up"], weights=g["n"]))
        row["metric lost"] = float(np.average(g["mean_metric_lost"], weights=g["n"]))
        matrix[name] = row
    print(f"Frozen alarm: {params.description}\n")
    print("Hits / collapsing tickets per held-out sweep (FA: false alarms on tickets that never collapse);")
    print("lead and regret pooled over the held-out sweeps:\n")
    print(markdown(pd.DataFrame(list(matrix.values()))))
    print()
    print("Lead (levels) / sparsity given up / metric lost per held-out sweep, headline candidates:\n")
    print(markdown(regret_table(held)))
    print()
    print("Held-out sweeps, pooled:\n")
    print(markdown(pd.DataFrame(pooled)))
    print("\nPer held-out sweep:\n")
    print(markdown(held.drop(columns=["role"])))


def regret_table(held: pd.DataFrame) -> pd.DataFrame:
    """Sweeps x headline candidates (not the per-signal rules): ``lead / sparsity given up / metric lost``.

    Parameters
    ----------
    held : DataFrame
        Summary rows (``SUMMARY_COLUMNS``) of the held-out sweeps.
    """

    def cell(r) -> str:
        lead = "–" if not np.isfinite(r.mean_lead_levels) else f"{r.mean_lead_levels:.1f}"
        return f"{lead} / {r.mean_sparsity_given_up:.3f} / {r.mean_metric_lost:.2f}"

    heads = [c for c in dict.fromkeys(held["candidate"]) if not c.startswith("signal ")]
    rows = []
    for sweep, g in held.groupby("sweep", sort=False):
        by = {r.candidate: cell(r) for r in g.itertuples(index=False)}
        rows.append({"sweep": sweep, **{c: by.get(c, "–") for c in heads}})
    return pd.DataFrame(rows)


def _sets(records: list[dict]) -> set[tuple[str, tuple[int, ...]]]:
    return {(r["description_hash"], tuple(r["seeds"])) for r in records}


def study(args: argparse.Namespace) -> int:
    """Score calibration and held-out sweeps (after freezing the params with ``--freeze``)."""
    cal = [sweep_record(d) for d in args.calibrate]
    ev = [sweep_record(d) for d in args.evaluate]
    assert_disjoint(cal, ev)
    cal_cases = [
        c
        for d in tqdm(args.calibrate, desc="calibration runs")
        for c in load_cases(d, args.cache, args.n_boot)
    ]
    if args.freeze:
        params = A.calibrate(cal_cases, cal, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"))
        args.params.write_text(json.dumps(params.to_json(), indent=2) + "\n")
        print(f"froze {args.params}: {params.description}", file=sys.stderr)
    else:
        params = A.load_alarm_params(args.params)
        if _sets(params.calibration) != _sets(cal):
            raise SystemExit("error: --calibrate differs from the sweeps recorded in the frozen params")
    assert_disjoint(params.calibration, ev)

    rows = []
    cands = candidates(params)
    needs = {f"signal {k}": r.signal for k, r in params.per_signal.items()}
    for role, dirs in (("calibration", args.calibrate), ("evaluation", args.evaluate)):
        for d in tqdm(dirs, desc=f"{role} sweeps"):
            cases = cal_cases if role == "calibration" else load_cases(d, args.cache, args.n_boot)
            rows += sweep_rows(role, [c for c in cases if c.sweep == load_group(d).name], cands, needs)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    write_evaluation(table, {"calibration": cal, "evaluation": ev, "params": str(args.params.name)}, args.out)
    print_tables(table, params)
    return 0


def add(args: argparse.Namespace) -> int:
    """Score new held-out sweeps with the frozen params; replace or append their rows and records.

    Needs neither the calibration sweeps nor the other held-out sweeps on disk: the
    committed CSV and JSON hold their rows and records, which are kept as they are.
    """
    record_path = args.out.with_suffix(".json")
    if not (args.out.is_file() and record_path.is_file()):
        raise SystemExit(f"error: {args.out} or {record_path.name} is missing: run the full study first")
    record = json.loads(record_path.read_text())
    table = pd.read_csv(args.out)
    params = A.load_alarm_params(args.params)
    if record.get("params") != args.params.name or _sets(params.calibration) != _sets(record["calibration"]):
        raise SystemExit(f"error: {args.params} is not the frozen params that {record_path.name} records")
    dirs = {sweep_record(d)["name"]: d for d in args.add}  # a sweep named twice is scored once
    new = [sweep_record(d) for d in dirs.values()]
    assert_disjoint(params.calibration, new)
    cal_names = {r["name"] for r in params.calibration}
    clash = [r["name"] for r in new if r["name"] in cal_names]
    if clash:
        raise SystemExit(f"error: {clash[0]} is the name of a calibration sweep: rename the group")

    cands = candidates(params)
    needs = {f"signal {k}": r.signal for k, r in params.per_signal.items()}
    blocks = {
        ("evaluation", name): pd.DataFrame(
            sweep_rows("evaluation", load_cases(d, args.cache, args.n_boot), cands, needs),
            columns=SUMMARY_COLUMNS,
        )
        for name, d in tqdm(dirs.items(), desc="new held-out sweeps")
    }
    # Rows of a re-added sweep take the place of its old rows; other rows are untouched.
    keys = list(dict.fromkeys(zip(table["role"], table["sweep"], strict=True)))
    keys += [k for k in blocks if k not in keys]
    old = table.groupby(["role", "sweep"], sort=False)
    table = pd.concat([blocks[k] if k in blocks else old.get_group(k) for k in keys], ignore_index=True)[
        SUMMARY_COLUMNS
    ]
    kept = [r for r in record["evaluation"] if r["name"] not in {n["name"] for n in new}]
    names = [r["name"] for r in record["evaluation"]]
    record["evaluation"] = sorted(
        kept + new, key=lambda r: names.index(r["name"]) if r["name"] in names else len(names)
    )
    write_evaluation(table, record, args.out)
    print_tables(table, params)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the study, or add held-out sweeps to it; 0 on success (refusals exit with a message)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calibrate", type=Path, nargs="+", help="calibration run groups")
    p.add_argument("--evaluate", type=Path, nargs="+", help="held-out run groups")
    p.add_argument("--freeze", action="store_true", help="recalibrate and write the params file")
    p.add_argument(
        "--add",
        type=Path,
        nargs="+",
        help="new held-out run groups, scored with the frozen params into the existing evaluation",
    )
    p.add_argument("--params", type=Path, default=A.PARAMS_PATH)
    p.add_argument("--out", type=Path, default=A.EVALUATION_PATH)
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "alarm-study" / ".cache")
    p.add_argument("--n-boot", type=int, default=200)
    args = p.parse_args(argv)
    if args.add:
        if args.calibrate or args.evaluate or args.freeze:
            p.error("--add takes no --calibrate, --evaluate or --freeze")
        return add(args)
    if not (args.calibrate and args.evaluate):
        p.error("give --calibrate and --evaluate (or --add)")
    return study(args)


if __name__ == "__main__":
    raise SystemExit(main())
