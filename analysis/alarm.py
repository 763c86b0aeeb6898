"""A label-free collapse alarm, calibrated on some sweeps, frozen, and judged on others (issue 14).

The alarm reads only the label-free signals of :mod:`analysis.signals` (masks
and predictions on unlabelled inputs; never ATC, whose threshold is fitted on
labelled dense rows). Its thresholds were chosen on calibration sweeps by
:func:`calibrate` and frozen in ``analysis/alarm_params.json``
(:data:`PARAMS_PATH`), with the calibration sweeps' descriptions, hashes and
the date; ``scripts/alarm_study.py`` scores the frozen rules on held-out sweeps
with the bounded-lead scorer (:func:`analysis.collapse.evaluate_alarm`) and
writes ``analysis/data/alarm_evaluation.csv`` (:data:`EVALUATION_PATH`).

A signal rule (:class:`SignalRule`)
-----------------------------------
For one signal of :func:`analysis.signals.run_signals`, per ticket
(``scope="ticket"``, the ticket's own rows) or per method (``scope="method"``,
the aggregate row; every ticket of the method gets its level):

- reference ``"first"``: the departure at level ``L`` is
  ``d * (value_L - value_ref)``, ``ref`` being the first pruned level
  (sparsity > 0) and ``d = +1`` (rise) or ``-1`` (fall); its noise is
  ``h_L + h_ref``, the half-widths of the two rows' bands (bootstrap over
  unlabelled samples, or the random-mask null);
- reference ``"null"``: the departure is ``d * (value_L - null_L)`` (the value
  random masks of the same per-layer densities give), its noise ``h_L``;
- the noise used is ``max(noise, floor)``: ``floor`` is the spread across seeds
  of the same departure at the same level (the median over levels of the
  standard deviation over seeds, measured on the calibration sweeps), so a
  signal without a band, or with a band narrower than what reseeding moves it
  by, is still compared with its noise;
- the rule fires at the first level ``L > ref`` where
  ``departure > k * noise`` at ``L`` and the ``m - 1`` levels before it.

``k`` and ``m`` (and ``d``, the reference) are chosen per signal on the
calibration sweeps: the combination with the most hits (fired 1 to 2 levels
before the ticket's labelled collapse) minus early alarms (more than 2 levels
before: on a sweep stopped a little earlier they would be false alarms) minus
false alarms on tickets that do not collapse; ties go to the larger ``k``. The
floor is at least 1e-3 (:data:`MIN_FLOOR`), so that for a signal without seed
spread (a layer's density under layer-wise pruning) ``k`` is a threshold in
units of 1e-3.

The alarm (:class:`AlarmParams`)
--------------------------------
``primary``: one rule or several combined by ``"any"`` (the earliest firing)
or ``"all"`` (when every rule has fired), the best on the calibration sweeps
among rules that any single run can compute (no seed disagreement, no ATC).
``fallback``: the best rule on mask signals alone, used for a method whose
predictions are missing (imported sweeps) or carry no class scores.

Alarm table (:func:`run_alarm`)
-------------------------------
One row per (method, ticket):

method : str
ticket : int
ticket_name : str
rule : str
    ``"primary"`` or ``"fallback"`` (the rule set the method could compute).
fired : bool
level : Int64
    First level at which the alarm fires (``<NA>``: never within the sweep).
sparsity : float
signals : str
    The rules that had fired at that level, joined by ``" + "``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.signals import run_signals

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "ALARM_COLUMNS",
    "EVALUATION_PATH",
    "LABEL_FREE_SIGNALS",
    "PARAMS_PATH",
    "AlarmParams",
    "SignalRule",
    "alarm_evidence",
    "alarm_signal_table",
    "calibrate",
    "departures",
    "evaluate_run_alarm",
    "fire_levels",
    "labelled_curves",
    "load_alarm_evaluation",
    "load_alarm_params",
    "reference_curve",
    "run_alarm",
]

PARAMS_PATH = Path(__file__).with_name("alarm_params.json")
EVALUATION_PATH = Path(__file__).parent / "data" / "alarm_evaluation.csv"
ALARM_COLUMNS = ["method", "ticket", "ticket_name", "rule", "fired", "level", "sparsity", "signals"]
# Every signal of analysis.signals except ATC (its threshold reads the dense level's labels).
LABEL_FREE_SIGNALS = (
    "mean_jaccard",
    "mean_jaccard_star",
    "mean_jaccard_layers",
    "mean_jaccard_star_layers",
    "union_growth",
    "core_growth",
    "min_layer_density",
    "mask_excess_removal",
    "mask_level_jaccard",
    "fire_count",
    "fire_none",
    "fire_multi",
    "margin",
    "confidence",
    "pred_entropy",
    "churn",
    "dense_disagreement",
    "imp_disagreement",
    "seed_disagreement",
)
MASK_SIGNALS = LABEL_FREE_SIGNALS[:9]
# Signals a single run cannot compute: not in the primary rule.
GROUP_ONLY_SIGNALS = ("seed_disagreement",)
K_GRID = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
M_GRID = (1, 2, 3)
HIT_WINDOW = 2
# Smallest noise floor: signals that are deterministic functions of the schedule (a layer's density
# under layer-wise pruning) have no seed spread; their k then acts as an absolute threshold in 1e-3 units.
MIN_FLOOR = 1e-3
_EPS = 1e-9


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class SignalRule:
    """Departure of one signal beyond ``k`` times its noise for ``m`` consecutive levels (module docstring).

    Parameters
    ----------
    signal : str
        A signal of :data:`LABEL_FREE_SIGNALS` (``atc_accuracy`` only as a study candidate).
    scope : {"ticket", "method"}
        Per-ticket rows, or the method's aggregate row.
    direction : {1, -1}
        Rise (+1) or fall (-1).
    reference : {"first", "null"}
        First pruned level, or the random-mask null.
    k : float
        Multiple of the noise the departure must exceed.
    m : int
        Consecutive levels.
    floor : float
        Seed spread of the departure (calibrated); the noise is at least this.
    """

    signal: str
    scope: str = "method"
    direction: int = 1
    reference: str = "first"
    k: float = 3.0
    m: int = 1
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.scope not in ("ticket", "method"):
            raise ValueError(f"scope must be 'ticket' or 'method', not {self.scope!r}")
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, not {self.direction!r}")
        if self.reference not in ("first", "null"):
            raise ValueError(f"reference must be 'first' or 'null', not {self.reference!r}")
        if not (self.k >= 0 and self.m >= 1 and self.floor >= 0):
            raise ValueError("need k >= 0, m >= 1, floor >= 0")

    @property
    def name(self) -> str:
        """Short description, e.g. ``"margin↓ (method, vs first, k=3, m=2)"``."""
        arrow = "↑" if self.direction > 0 else "↓"
        ref = "vs first pruned level" if self.reference == "first" else "vs random-mask null"
        return f"{self.signal}{arrow} ({self.scope}, {ref}, k={self.k:g}, m={self.m})"

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> SignalRule:
        """Inverse of :meth:`to_dict` (unknown keys refused)."""
        return cls(**{k: d[k] for k in d})


def departures(
    table: pd.DataFrame, signal: str, scope: str, reference: str, direction: int = 1, floor: float = 0.0
) -> pd.DataFrame:
    """Standardised departure of one signal per level (the quantity a :class:`SignalRule` thresholds).

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.signals.run_signals` output (columns ``SIGNAL_COLUMNS``).
    signal, scope, reference, direction, floor
        As in :class:`SignalRule`.

    Returns
    -------
    DataFrame
        Columns ``method, ticket`` (Int64, ``<NA>`` for the method scope),
        ``level, sparsity, value, low, high, reference_value`` (the value the
        departure is measured from), ``departure``, ``noise`` (after the
        floor), ``z = departure / noise``; only levels after the reference
        level (NaN ``z`` where the signal is undefined). Empty when the signal
        is absent.
    """
    rows = table[table["signal"] == signal]
    rows = rows[rows["ticket"].notna()] if scope == "ticket" else rows[rows["ticket"].isna()]
    cols = ["method", "ticket", "level", "sparsity", "value", "low", "high", "reference_value"]
    cols += ["departure", "noise", "z"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    half = ((rows["high"] - rows["low"]) / 2).where(rows["band"].isin(["bootstrap", "null"]), 0.0)
    rows = rows.assign(_h=half.fillna(0.0))
    out = []
    for (_, _), g in rows.groupby(["method", "ticket"], dropna=False, sort=False):
        g = g.sort_values("level")
        pruned = g[g["sparsity"] > 0]
        if pruned.empty:
            continue
        ref_level = int(pruned["level"].iloc[0])
        ref_row = pruned.iloc[0]
        later = g[g["level"] > ref_level] if reference == "first" else g[g["level"] >= ref_level]
        if reference == "first":
            ref_value = np.full(len(later), float(ref_row["value"]))
            noise = later["_h"].to_numpy() + float(ref_row["_h"])
        else:
            ref_value = later["null"].to_numpy(dtype=float)
            noise = later["_h"].to_numpy(dtype=float)
        dep = direction * (later["value"].to_numpy(dtype=float) - ref_value)
        noise = np.maximum(noise, max(floor, _EPS))
        part = later[["method", "ticket", "level", "sparsity", "value", "low", "high"]].copy()
        part["reference_value"] = ref_value
        part["departure"] = dep
        part["noise"] = noise
        part["z"] = dep / noise
        out.append(part)
    if not out:
        return pd.DataFrame(columns=cols)
    df = pd.concat(out, ignore_index=True)[cols]
    df["ticket"] = pd.array(list(df["ticket"]), dtype="Int64")
    return df


def _first_run(z: np.ndarray, k: float, m: int) -> int | None:
    """Index of the first position where ``z > k`` holds there and at the ``m - 1`` before it."""
    above = np.nan_to_num(z, nan=-np.inf) > k
    run = 0
    for i, a in enumerate(above):
        run = run + 1 if a else 0
        if run >= m:
            return i
    return None


def fire_levels(dep: pd.DataFrame, k: float, m: int) -> pd.DataFrame:
    """First level per (method, ticket) at which ``z > k`` for ``m`` consecutive levels.

    Parameters
    ----------
    dep : DataFrame
        :func:`departures` output.
    k : float
    m : int

    Returns
    -------
    DataFrame
        Columns ``method, ticket, level`` (Int64, ``<NA>`` never), ``sparsity``.
    """
    out = []
    for (method, ticket), g in dep.groupby(["method", "ticket"], dropna=False, sort=False):
        g = g.sort_values("level")
        i = _first_run(g["z"].to_numpy(dtype=float), k, m)
        if i is None:
            out.append((method, ticket, None, np.nan))
        else:
            out.append((method, ticket, int(g["level"].iloc[i]), float(g["sparsity"].iloc[i])))
    df = pd.DataFrame(out, columns=["method", "ticket", "level", "sparsity"])
    df["ticket"] = pd.array(list(df["ticket"]), dtype="Int64")
    df["level"] = pd.array(list(df["level"]), dtype="Int64")
    return df


# ----------------------------------------------------------------------------- frozen parameters


@dataclass(frozen=True)
class AlarmParams:
    """The frozen alarm and the record of its calibration.

    Attributes
    ----------
    primary : tuple of SignalRule
    combine : {"any", "all"}
    fallback : tuple of SignalRule
        Mask-signal rules, for methods without class predictions.
    fallback_combine : {"any", "all"}
    fixed_sparsity : float
        The "stop at a fixed sparsity" baseline chosen on the calibration sweeps.
    per_signal : dict of str to SignalRule
        The best rule of each candidate signal (keys ``signal/scope``).
    calibration : list of dict
        The calibration sweeps: ``name``, ``path``, ``description_hash``, ``seeds``.
    created : str
        ISO date of the calibration.
    """

    primary: tuple[SignalRule, ...]
    combine: str = "any"
    fallback: tuple[SignalRule, ...] = ()
    fallback_combine: str = "any"
    fixed_sparsity: float = float("nan")
    per_signal: dict = field(default_factory=dict)
    calibration: list = field(default_factory=list)
    created: str = ""
    calibration_score: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready dict (the format of ``alarm_params.json``)."""
        return {
            "created": self.created,
            "primary": {"combine": self.combine, "rules": [r.to_dict() for r in self.primary]},
            "fallback": {"combine": self.fallback_combine, "rules": [r.to_dict() for r in self.fallback]},
            "fixed_sparsity": self.fixed_sparsity,
            "per_signal": {k: r.to_dict() for k, r in self.per_signal.items()},
            "calibration": self.calibration,
            "calibration_score": self.calibration_score,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> AlarmParams:
        """Inverse of :meth:`to_json`; a clear ``ValueError`` for a malformed file."""
        try:
            return cls(
                primary=tuple(SignalRule.from_dict(r) for r in d["primary"]["rules"]),
                combine=str(d["primary"]["combine"]),
                fallback=tuple(SignalRule.from_dict(r) for r in d["fallback"]["rules"]),
                fallback_combine=str(d["fallback"]["combine"]),
                fixed_sparsity=float(d["fixed_sparsity"]),
                per_signal={k: SignalRule.from_dict(r) for k, r in d["per_signal"].items()},
                calibration=list(d["calibration"]),
                created=str(d["created"]),
                calibration_score=dict(d.get("calibration_score", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed alarm parameters: {e!r}") from e

    @property
    def description(self) -> str:
        """The primary rule in words."""
        joint = " or " if self.combine == "any" else " and "
        return joint.join(r.name for r in self.primary)


def load_alarm_params(path: str | Path | None = None) -> AlarmParams:
    """Read the frozen alarm (default :data:`PARAMS_PATH`).

    Raises
    ------
    FileNotFoundError
        When the file is missing.
    ValueError
        When it is not a valid parameter file.
    """
    p = Path(path) if path is not None else PARAMS_PATH
    return AlarmParams.from_json(json.loads(p.read_text()))


def load_alarm_evaluation(path: str | Path | None = None) -> pd.DataFrame:
    """The committed held-out evaluation table (default :data:`EVALUATION_PATH`); empty if absent.

    Returns
    -------
    DataFrame
        Columns of :func:`scripts.alarm_study` summaries: ``role, sweep, candidate, n, collapsing,
        hit, early, late, miss, false_alarm, true_negative, hit_rate, mean_lead_levels,
        mean_sparsity_given_up, mean_metric_lost``.
    """
    p = Path(path) if path is not None else EVALUATION_PATH
    return pd.read_csv(p) if p.is_file() else pd.DataFrame()


# ----------------------------------------------------------------------------- applying the alarm


def _combine_levels(per_rule: list[pd.DataFrame], names: list[str], combine: str, tickets: pd.DataFrame):
    """Combine per-rule firing levels per (method, ticket) (method-scope rules broadcast to tickets)."""
    out = []
    for row in tickets.itertuples(index=False):
        fired = []
        for f, name in zip(per_rule, names, strict=True):
            g = f[(f["method"] == row.method) & ((f["ticket"] == row.ticket) | f["ticket"].isna())]
            if len(g) and pd.notna(g["level"].iloc[0]):
                fired.append((int(g["level"].iloc[0]), float(g["sparsity"].iloc[0]), name))
            elif combine == "all":
                fired = []
                break
        if not fired:
            out.append((None, np.nan, ""))
            continue
        fired.sort()
        level, sparsity = (fired[0][:2]) if combine == "any" else (fired[-1][:2])
        out.append((level, sparsity, " + ".join(n for lv, _, n in fired if lv <= level)))
    return out


def alarm_signal_table(
    run: Run, methods: Sequence[str] | None = None, seeds: Sequence[Run] | None = None, n_boot: int = 200
) -> pd.DataFrame:
    """The signals the alarm reads: :func:`analysis.signals.run_signals` with no label read (no ATC)."""
    return run_signals(run, methods, seeds=seeds or None, atc=False, n_boot=n_boot)


def apply_rules(
    table: pd.DataFrame,
    tickets: pd.DataFrame,
    rules: Sequence[SignalRule],
    combine: str = "any",
) -> pd.DataFrame:
    """Firing level of a rule set per (method, ticket).

    Parameters
    ----------
    table : DataFrame
        Signal table (:func:`alarm_signal_table`).
    tickets : DataFrame
        Columns ``method, ticket``: the rows to report.
    rules : sequence of SignalRule
    combine : {"any", "all"}

    Returns
    -------
    DataFrame
        ``tickets`` plus ``fired, level, sparsity, signals``.
    """
    per_rule = [
        fire_levels(departures(table, r.signal, r.scope, r.reference, r.direction, r.floor), r.k, r.m)
        for r in rules
    ]
    res = _combine_levels(per_rule, [r.signal for r in rules], combine, tickets)
    out = tickets.copy()
    out["fired"] = [lv is not None for lv, _, _ in res]
    out["level"] = pd.array([lv for lv, _, _ in res], dtype="Int64")
    out["sparsity"] = [s for _, s, _ in res]
    out["signals"] = [n for _, _, n in res]
    return out


def _has_signals(table: pd.DataFrame, method: str, rules: Iterable[SignalRule]) -> bool:
    have = set(table.loc[table["method"] == method, "signal"])
    return all(r.signal in have for r in rules)


def run_alarm(
    run: Run,
    params: AlarmParams | None = None,
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[Run] | None = None,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Where the frozen alarm fires, per method and ticket, reading no label.

    Parameters
    ----------
    run : Run
    params : AlarmParams, optional
        Default: the frozen :func:`load_alarm_params`.
    methods : sequence of str, optional
        Default: every method of the run.
    seeds : sequence of Run, optional
        Other seeds of the run's group (adds seed disagreement to the table).
    table : DataFrame, optional
        A precomputed :func:`alarm_signal_table`.

    Returns
    -------
    DataFrame
        Columns :data:`ALARM_COLUMNS` (module docstring).
    """
    params = params or load_alarm_params()
    methods = list(methods or run.methods)
    table = alarm_signal_table(run, methods, seeds) if table is None else table
    frames = []
    for method in methods:
        names = list(run.ticket_names(method))
        tickets = pd.DataFrame({"method": method, "ticket": pd.array(range(len(names)), dtype="Int64")})
        if _has_signals(table, method, params.primary):
            rules, combine, which = params.primary, params.combine, "primary"
        else:
            rules, combine, which = params.fallback, params.fallback_combine, "fallback"
        res = apply_rules(table[table["method"] == method], tickets, rules, combine)
        res.insert(2, "ticket_name", names)
        res.insert(3, "rule", which)
        frames.append(res)
    if not frames:
        return pd.DataFrame(columns=ALARM_COLUMNS)
    return pd.concat(frames, ignore_index=True)[ALARM_COLUMNS]


def alarm_evidence(
    table: pd.DataFrame, method: str, params: AlarmParams | None = None, ticket: int | None = None
) -> pd.DataFrame:
    """The curves behind the alarm of one method: each rule's signal, its band and its threshold.

    Parameters
    ----------
    table : DataFrame
        :func:`alarm_signal_table` output.
    method : str
    params : AlarmParams, optional
    ticket : int, optional
        For ticket-scope rules, the ticket to show (default: the mean over tickets).

    Returns
    -------
    DataFrame
        Columns ``rule, signal, level, sparsity, value, low, high, threshold``
        (the value at which the rule's departure reaches ``k * noise``) and
        ``above`` (the departure exceeds it).
    """
    params = params or load_alarm_params()
    t = table[table["method"] == method]
    rules = params.primary if _has_signals(t, method, params.primary) else params.fallback
    out = []
    for r in rules:
        dep = departures(t, r.signal, r.scope, r.reference, r.direction, r.floor)
        if dep.empty:
            continue
        if r.scope == "ticket":
            if ticket is not None:
                dep = dep[dep["ticket"] == ticket]
            else:
                dep = dep.groupby("level", as_index=False).agg(
                    {c: "mean" for c in ["sparsity", "value", "low", "high", "reference_value", "noise", "z"]}
                )
        part = dep[["level", "sparsity", "value", "low", "high"]].copy()
        part["threshold"] = dep["reference_value"] + r.direction * r.k * dep["noise"]
        part["above"] = dep["z"].to_numpy(dtype=float) > r.k
        part.insert(0, "signal", r.signal)
        part.insert(0, "rule", r.name)
        out.append(part)
    cols = ["rule", "signal", "level", "sparsity", "value", "low", "high", "threshold", "above"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


# ----------------------------------------------------------------------------- labels (evaluation only)


def labelled_curves(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Collapse curves with the labelled metrics (:func:`analysis.collapse.collapse_curves`)."""
    from analysis.collapse import collapse_curves

    return collapse_curves(run, methods)


def reference_curve(run: Run, curves: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of ``curves`` at the run's dense reference (:func:`analysis.levels.dense_reference`).

    Every method's labelled collapse is a drop below this one dense model, as on
    the Collapse page (:func:`analysis.collapse.collapse_evaluation`); None when
    the run names none (then each method is read against its own level 0).
    """
    from analysis.collapse import reference_rows
    from analysis.levels import dense_reference

    return reference_rows(curves, dense_reference(run))


def labelled_metric(curves: pd.DataFrame, metric: str = "balanced_accuracy") -> str | None:
    """The labelled signal a method's collapse is read from.

    As :func:`analysis.overview.collapse_evaluation_by_method`: an expert's
    accuracy on its own subset, else ``metric``, else ``accuracy``, else an
    accuracy the source logged (imported sweeps).
    """
    from analysis.overview import _LOGGED_ACCURACY, EXPERT_METRIC

    signals = set(curves["signal"])
    if metric == "balanced_accuracy" and EXPERT_METRIC in signals:
        return EXPERT_METRIC
    for s in (metric, "accuracy", *_LOGGED_ACCURACY):
        if s in signals:
            return s
    return None


def evaluate_run_alarm(
    alarm: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    metric: str = "balanced_accuracy",
    margin: float = 0.05,
    window: int = HIT_WINDOW,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score per-ticket alarm levels against the labelled collapse (bounded lead, regret).

    Parameters
    ----------
    alarm : DataFrame
        Columns ``method, ticket, level, sparsity`` (e.g. :func:`run_alarm`).
    curves : DataFrame
        :func:`labelled_curves` of the same run.
    metric, margin, window
        See :func:`analysis.collapse.evaluate_alarm`.
    reference : DataFrame, optional
        The dense reference's curve rows (:func:`analysis.collapse.reference_rows`
        of :func:`analysis.levels.dense_reference`): every method's collapse is a
        drop below the same dense model. None: each method's own level 0.

    Returns
    -------
    DataFrame
        One row per (method, ticket): ``method``, ``metric`` and the columns
        of :func:`analysis.collapse.evaluate_alarm`. Methods without a
        labelled metric are left out.
    """
    from analysis.collapse import evaluate_alarm, labelled_collapse_points

    frames = []
    for method, c in curves.groupby("method", sort=False):
        used = labelled_metric(c, metric)
        a = alarm[alarm["method"] == method]
        if used is None or a.empty:
            continue
        points = labelled_collapse_points(c, used, margin, reference=reference)
        values = c[c["signal"] == used][["ticket", "level", "sparsity", "value"]]
        if a["ticket"].nunique() == 1 and (points["ticket"].notna().sum() != 1):
            # one ticket for all subsets (imp): its collapse is that of its mean over the subsets
            # (the only row when the run scores it on the whole task, e.g. Adult's income)
            points, values = _as_ticket_zero(points), _as_ticket_zero(values)
        a = a.assign(_lv=a["level"].astype("Float64").fillna(-1).astype(int))
        for lv, g in a.groupby("_lv", sort=True):  # one scoring call per distinct alarm level
            p = points[points["ticket"].isin(list(g["ticket"]))]
            if p.empty:
                continue
            fired = lv >= 0
            ev = evaluate_alarm(
                p,
                int(lv) if fired else None,
                float(g["sparsity"].iloc[0]) if fired else None,
                values=values,
                margin=margin,
                window=window,
            )
            ev.insert(0, "metric", used)
            ev.insert(0, "method", method)
            frames.append(ev)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["method", "ticket"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- calibration


@dataclass
class Case:
    """One run's material for calibration and evaluation.

    Attributes
    ----------
    sweep : str
        Sweep (group) name.
    seed : int
    table : DataFrame
        :func:`analysis.signals.run_signals` (with ATC and seed disagreement).
    curves : DataFrame
        :func:`labelled_curves`.
    points : DataFrame
        Columns ``method, ticket, collapse_level`` (Int64), one row per ticket.
    reference : DataFrame or None
        :func:`reference_curve` of the run: the dense model every method's
        collapse is read against (None: each method's own level 0).
    """

    sweep: str
    seed: int
    table: pd.DataFrame
    curves: pd.DataFrame
    points: pd.DataFrame
    reference: pd.DataFrame | None = None


def _as_ticket_zero(df: pd.DataFrame) -> pd.DataFrame:
    """The aggregate rows (ticket ``<NA>``) renamed ticket 0."""
    out = df[df["ticket"].isna()].copy()
    out["ticket"] = pd.array([0] * len(out), dtype="Int64")
    return out


def case_points(
    curves: pd.DataFrame,
    margin: float = 0.05,
    n_tickets: Mapping[str, int] | None = None,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Labelled collapse level per (method, ticket) of one run's curves (tickets only, not the mean).

    A method with one ticket for all subsets (``n_tickets[method] == 1``) has
    one row, ticket 0, read from the mean over subsets. ``reference``: as in
    :func:`evaluate_run_alarm` (the dense model every method drops from).
    """
    from analysis.collapse import labelled_collapse_points

    frames = []
    for method, c in curves.groupby("method", sort=False):
        used = labelled_metric(c)
        if used is None:
            continue
        p = labelled_collapse_points(c, used, margin, reference=reference)
        if n_tickets is not None and n_tickets.get(method) == 1:
            p = _as_ticket_zero(p)
        p = p[p["ticket"].notna()][["ticket", "collapse_level"]]
        p.insert(0, "method", method)
        frames.append(p)
    return pd.concat(frames, ignore_index=True)


def _score(fires: pd.DataFrame, points: pd.DataFrame, window: int = HIT_WINDOW) -> dict:
    """Outcome counts of firing levels (method, ticket or <NA>) against collapse points."""
    broadcast = fires[fires["ticket"].isna()].drop(columns="ticket")
    own = fires[fires["ticket"].notna()]
    m = points.merge(own, on=["method", "ticket"], how="left", suffixes=("", "_own"))
    if len(broadcast):
        m = m.merge(broadcast, on="method", how="left", suffixes=("", "_agg"))
        lv = m["level"].astype("Float64").fillna(m["level_agg"].astype("Float64"))
    else:
        lv = m["level"].astype("Float64")
    alarm = lv.to_numpy(dtype=float, na_value=np.nan)
    coll = m["collapse_level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    dropped = np.isfinite(coll)
    fired = np.isfinite(alarm)
    lead = coll - alarm
    hit = dropped & fired & (lead >= 1) & (lead <= window)
    return {
        "collapsing": int(dropped.sum()),
        "stable": int((~dropped).sum()),
        "hit": int(hit.sum()),
        "early": int((dropped & fired & (lead > window)).sum()),
        "late": int((dropped & fired & (lead < 1)).sum()),
        "miss": int((dropped & ~fired).sum()),
        "false_alarm": int((~dropped & fired).sum()),
    }


def _objective(s: dict) -> float:
    """Hits minus early alarms minus false alarms, per ticket.

    An early alarm would be a false alarm on a sweep stopped a little earlier.
    """
    n = s["collapsing"] + s["stable"]
    return (s["hit"] - s["early"] - s["false_alarm"]) / n if n else 0.0


def _seed_floor(cases: Sequence[Case], signal: str, scope: str, reference: str) -> float:
    """Median over (sweep, method, ticket, level) of the std over seeds of the raw departure."""
    parts = []
    for c in cases:
        d = departures(c.table, signal, scope, reference, 1, 0.0)
        if len(d):
            parts.append(d.assign(sweep=c.sweep)[["sweep", "method", "ticket", "level", "departure"]])
    if not parts:
        return MIN_FLOOR
    d = pd.concat(parts, ignore_index=True)
    d["ticket"] = d["ticket"].astype("Float64").fillna(-1)
    sd = d.groupby(["sweep", "method", "ticket", "level"])["departure"].std(ddof=1).dropna()
    return max(float(np.nanmedian(sd)), MIN_FLOOR) if len(sd) else MIN_FLOOR


def _candidate_signals(cases: Sequence[Case]) -> list[tuple[str, str, str]]:
    """(signal, scope, reference) triples present in the calibration tables."""
    out = []
    for sig in (*LABEL_FREE_SIGNALS, "atc_accuracy"):
        for scope in ("method", "ticket"):
            rows = [
                c.table[(c.table["signal"] == sig) & (c.table["ticket"].isna() == (scope == "method"))]
                for c in cases
            ]
            if not any(len(r) for r in rows):
                continue
            out.append((sig, scope, "first"))
            if any(np.isfinite(r["null"]).any() for r in rows if len(r)):
                out.append((sig, scope, "null"))
    return out


def _fire_table(dep: pd.DataFrame, ks: np.ndarray, m: int) -> dict:
    """``{(method, ticket or None): levels}``: the firing level for every k (NaN: never), shape (len(ks),)."""
    out = {}
    for (method, ticket), g in dep.groupby(["method", "ticket"], dropna=False, sort=False):
        g = g.sort_values("level")
        z = np.nan_to_num(g["z"].to_numpy(dtype=float), nan=-np.inf)
        lv = g["level"].to_numpy(dtype=float)
        if z.size < m:
            out[(method, None if pd.isna(ticket) else int(ticket))] = np.full(ks.size, np.nan)
            continue
        # a run of m levels ending at i is above k iff the min over the window is above k
        win = np.lib.stride_tricks.sliding_window_view(z, m).min(axis=1)  # (n - m + 1,)
        peak = np.maximum.accumulate(win)  # first i with win[i] > k == first i with peak[i] > k
        idx = np.searchsorted(peak, ks, side="right")  # (len(ks),)
        ok = idx < win.size
        fired = np.full(ks.size, np.nan)
        fired[ok] = lv[m - 1 :][idx[ok]]
        out[(method, None if pd.isna(ticket) else int(ticket))] = fired
    return out


def _counts(alarm: np.ndarray, collapse: np.ndarray, window: int = HIT_WINDOW) -> dict:
    """Outcome counts summed over tickets, per column.

    ``alarm`` is (n_tickets, n_rules) alarm levels (NaN: never), ``collapse``
    (n_tickets,) labelled collapse levels (NaN: none).
    """
    c = collapse[:, None]
    dropped = np.isfinite(c)
    fired = np.isfinite(alarm)
    with np.errstate(invalid="ignore"):
        lead = c - alarm
        return {
            "collapsing": np.broadcast_to(dropped, alarm.shape).sum(axis=0),
            "stable": np.broadcast_to(~dropped, alarm.shape).sum(axis=0),
            "hit": (dropped & fired & (lead >= 1) & (lead <= window)).sum(axis=0),
            "early": (dropped & fired & (lead > window)).sum(axis=0),
            "late": (dropped & fired & (lead < 1)).sum(axis=0),
            "miss": (dropped & ~fired).sum(axis=0),
            "false_alarm": (~dropped & fired).sum(axis=0),
        }


def _alarm_matrix(table: dict, points: pd.DataFrame, n: int) -> np.ndarray:
    """Per ticket of ``points``, its own firing levels, else its method's, else never: (n_tickets, n)."""
    rows = []
    for method, ticket in zip(points["method"], points["ticket"], strict=True):
        own = table.get((method, int(ticket)))
        rows.append(own if own is not None else table.get((method, None), np.full(n, np.nan)))
    return np.array(rows).reshape(len(rows), n)


def _tune(cases: Sequence[Case], signal: str, scope: str, reference: str, floor: float) -> tuple:
    """Best (score, counts, rule) of one signal over direction, k and m on the calibration cases."""
    ks = np.array(sorted(K_GRID), dtype=float)
    best = None
    collapse = [
        c.points["collapse_level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan) for c in cases
    ]
    for direction in (1, -1):
        deps = [departures(c.table, signal, scope, reference, direction, floor) for c in cases]
        for m in M_GRID:
            tot: dict = {}
            for c, d, coll in zip(cases, deps, collapse, strict=True):
                alarm = _alarm_matrix(_fire_table(d, ks, m) if len(d) else {}, c.points, ks.size)
                for key, v in _counts(alarm, coll).items():
                    tot[key] = tot.get(key, 0) + v
            for i in range(ks.size - 1, -1, -1):  # ties go to the larger k (seen first)
                counts = {key: int(v[i]) for key, v in tot.items()}
                score = _objective(counts)
                if best is None or score > best[0] + 1e-12:
                    rule = SignalRule(signal, scope, direction, reference, float(ks[i]), int(m), float(floor))
                    best = (score, counts, rule)
    return best


def _fixed_sparsity(cases: Sequence[Case]) -> tuple[float, dict]:
    """The schedule sparsity that maximises hits on the calibration cases."""
    sparsities = sorted({round(float(s), 6) for c in cases for s in c.table["sparsity"] if s > 0})
    best = None
    for s in sparsities:
        tot: dict = {}
        for c in cases:
            fires = fixed_sparsity_levels(c.table, s)
            for key, v in _score(fires, c.points).items():
                tot[key] = tot.get(key, 0) + v
        score = _objective(tot)
        if best is None or score > best[0] + 1e-12:
            best = (score, s, tot)
    return best[1], best[2]


def fixed_sparsity_levels(table: pd.DataFrame, sparsity: float) -> pd.DataFrame:
    """Stop at a fixed sparsity: per method, the first level at or past ``sparsity`` (``<NA>`` if none)."""
    out = []
    for method, g in table.groupby("method", sort=False):
        lv = g[["level", "sparsity"]].drop_duplicates("level").sort_values("level")
        past = lv[lv["sparsity"] >= sparsity - 1e-6]
        out.append(
            (
                method,
                None,
                *(
                    (int(past["level"].iloc[0]), float(past["sparsity"].iloc[0]))
                    if len(past)
                    else (None, np.nan)
                ),
            )
        )
    df = pd.DataFrame(out, columns=["method", "ticket", "level", "sparsity"])
    df["ticket"] = pd.array([None] * len(df), dtype="Int64")
    df["level"] = pd.array(list(df["level"]), dtype="Int64")
    return df


def _combo_fires(case: Case, rules: Sequence[SignalRule], combine: str) -> pd.DataFrame:
    tickets = case.points[["method", "ticket"]]
    res = apply_rules(case.table, tickets, rules, combine)
    return res[["method", "ticket", "level", "sparsity"]]


def calibrate(
    cases: Sequence[Case], calibration: list[dict], created: str, progress: bool = True
) -> AlarmParams:
    """Choose every rule's thresholds on calibration cases and the alarm among them.

    Parameters
    ----------
    cases : sequence of Case
        Runs of the calibration sweeps (several seeds each).
    calibration : list of dict
        Their record (``name, path, description_hash, seeds``), stored in the params.
    created : str
        Date to stamp.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    AlarmParams
    """
    from tqdm import tqdm

    triples = _candidate_signals(cases)
    tuned = {}
    for sig, scope, ref in tqdm(triples, desc="calibrating", unit="signal", disable=not progress):
        floor = _seed_floor(cases, sig, scope, ref)
        tuned[(sig, scope, ref)] = _tune(cases, sig, scope, ref, floor)
    per_signal: dict[str, tuple] = {}
    for (sig, scope, _), res in tuned.items():
        key = f"{sig}/{scope}"
        if key not in per_signal or res[0] > per_signal[key][0]:
            per_signal[key] = res
    ranked = sorted(per_signal.values(), key=lambda r: -r[0])
    single_ok = [r for r in ranked if r[2].signal not in (*GROUP_ONLY_SIGNALS, "atc_accuracy")]
    mask_ok = [r for r in single_ok if r[2].signal in MASK_SIGNALS]

    def best_set(pool: list) -> tuple[tuple[SignalRule, ...], str, dict, float]:
        best = (tuple([pool[0][2]]), "any", pool[0][1], pool[0][0])
        top = [r[2] for r in pool[:4]]
        for i in range(len(top)):
            for j in range(i + 1, len(top)):
                for combine in ("any", "all"):
                    tot: dict = {}
                    for c in cases:
                        for key, v in _score(_combo_fires(c, [top[i], top[j]], combine), c.points).items():
                            tot[key] = tot.get(key, 0) + v
                    sc = _objective(tot)
                    if sc > best[3] + 1e-12:
                        best = ((top[i], top[j]), combine, tot, sc)
        return best

    primary, combine, p_counts, p_score = best_set(single_ok)
    fallback, f_combine, f_counts, f_score = best_set(mask_ok)
    fixed, fixed_counts = _fixed_sparsity(cases)
    return AlarmParams(
        primary=primary,
        combine=combine,
        fallback=fallback,
        fallback_combine=f_combine,
        fixed_sparsity=fixed,
        per_signal={k: r[2] for k, r in per_signal.items()},
        calibration=calibration,
        created=created,
        calibration_score={
            "primary": {**p_counts, "objective": p_score},
            "fallback": {**f_counts, "objective": f_score},
            "fixed_sparsity": fixed_counts,
            "per_signal": {k: {**r[1], "objective": r[0]} for k, r in per_signal.items()},
        },
    )


def description_hash(description: Mapping) -> str:
    """SHA-256 (first 16 hex digits) of a run description's canonical JSON."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- baselines


def paper_iou_levels(table: pd.DataFrame, tol: float = 1e-9) -> pd.DataFrame:
    """The paper's rule, as stated: alarm when the tickets' mean IoU (Jaccard) rises.

    Per method, the aggregate ``mean_jaccard`` (mean over tickets of the mean
    Jaccard to the others); the alarm fires at the first level after the first
    pruned level whose value exceeds the minimum over the earlier pruned levels
    (by more than ``tol``). No noise model: the rule as the paper suggests it.

    Returns
    -------
    DataFrame
        Columns ``method, ticket`` (``<NA>``: the whole method), ``level, sparsity``.
    """
    out = []
    rows = table[(table["signal"] == "mean_jaccard") & table["ticket"].isna()]
    for method, g in rows.groupby("method", sort=False):
        g = g[g["sparsity"] > 0].sort_values("level")
        v = g["value"].to_numpy(dtype=float)
        hit = None
        for i in range(1, len(v)):
            prior = v[:i][np.isfinite(v[:i])]
            if prior.size and np.isfinite(v[i]) and v[i] > prior.min() + tol:
                hit = i
                break
        out.append(
            (
                method,
                None,
                *(
                    (int(g["level"].iloc[hit]), float(g["sparsity"].iloc[hit]))
                    if hit is not None
                    else (None, np.nan)
                ),
            )
        )
    df = pd.DataFrame(out, columns=["method", "ticket", "level", "sparsity"])
    df["ticket"] = pd.array([None] * len(df), dtype="Int64")
    df["level"] = pd.array(list(df["level"]), dtype="Int64")
    return df


def collapse_alarm_levels(curves: pd.DataFrame) -> pd.DataFrame:
    """Today's :class:`analysis.collapse.CollapseAlarm`, fitted per method (``ticket`` ``<NA>``)."""
    from analysis.collapse import CollapseAlarm

    out = []
    for method, c in curves.groupby("method", sort=False):
        a = CollapseAlarm().fit(c)
        out.append((method, None, a.level_, np.nan if a.sparsity_ is None else a.sparsity_))
    df = pd.DataFrame(out, columns=["method", "ticket", "level", "sparsity"])
    df["ticket"] = pd.array([None] * len(df), dtype="Int64")
    df["level"] = pd.array(list(df["level"]), dtype="Int64")
    return df


def never_levels(table: pd.DataFrame) -> pd.DataFrame:
    """Never stop: no alarm for any method."""
    methods = list(dict.fromkeys(table["method"]))
    return pd.DataFrame(
        {
            "method": methods,
            "ticket": pd.array([None] * len(methods), dtype="Int64"),
            "level": pd.array([None] * len(methods), dtype="Int64"),
            "sparsity": np.full(len(methods), np.nan),
        }
    )


def broadcast(fires: pd.DataFrame, tickets: pd.DataFrame) -> pd.DataFrame:
    """Per-ticket firing levels from rows that may be per method (``ticket`` ``<NA>``).

    Parameters
    ----------
    fires : DataFrame
        Columns ``method, ticket, level, sparsity``.
    tickets : DataFrame
        Columns ``method, ticket``.

    Returns
    -------
    DataFrame
        ``tickets`` plus ``level`` (Int64) and ``sparsity``.
    """
    own = fires[fires["ticket"].notna()][["method", "ticket", "level", "sparsity"]]
    agg = fires[fires["ticket"].isna()][["method", "level", "sparsity"]]
    m = tickets.merge(own, on=["method", "ticket"], how="left")
    m = m.merge(agg, on="method", how="left", suffixes=("", "_agg"))
    use_agg = m["level"].isna() & m["level_agg"].notna() if len(agg) else pd.Series(False, index=m.index)
    m["level"] = m["level"].astype("Int64").where(~use_agg, m["level_agg"].astype("Int64"))
    m["sparsity"] = m["sparsity"].where(~use_agg, m["sparsity_agg"])
    return m[[*tickets.columns, "level", "sparsity"]]


# ----------------------------------------------------------------------------- command line


def _alarm_of_path(path: Path, params: AlarmParams, evaluate: bool) -> tuple[pd.DataFrame, list[str]]:
    """Alarm rows (and, with ``evaluate``, their scores) of a run or of every run of a group."""
    from artifacts.run_format import is_group, load_group, load_run

    notes: list[str] = []
    if is_group(path):
        g = load_group(path)
        runs = g.runs()
        items = [
            (f"seed {s}", r, [o for o in runs if o is not r]) for s, r in zip(g.seeds, runs, strict=True)
        ]
    else:
        items = [("", load_run(path), [])]
    frames = []
    for label, run, others in items:
        res = run_alarm(run, params, seeds=others or None)
        if evaluate:
            res = _with_scores(run, res, notes, label)
        if label:
            res.insert(0, "seed", int(label.split()[1]))
        frames.append(res)
    return pd.concat(frames, ignore_index=True), notes


def _with_scores(run: Run, res: pd.DataFrame, notes: list[str], label: str) -> pd.DataFrame:
    """Add the labelled collapse point and the bounded-lead outcome to alarm rows (where labels exist)."""
    try:
        curves = labelled_curves(run)
        ev = evaluate_run_alarm(res, curves, reference=reference_curve(run, curves))
    except (KeyError, ValueError) as e:  # predictions without labels: nothing to score against
        notes.append(f"{label or run.name}: no labelled metric to score against ({e}); alarm only")
        return res
    if ev.empty:
        notes.append(f"{label or run.name}: no labelled metric to score against; alarm only")
        return res
    keep = ["method", "ticket", "metric", "collapse_level", "collapse_sparsity", "outcome"]
    keep += ["lead_levels", "sparsity_given_up", "metric_lost"]
    return res.merge(ev[keep], on=["method", "ticket"], how="left")


def add_alarm_command(subparsers) -> None:
    """Register ``python -m analysis alarm RUN_DIR [--json] [--evaluate] [--params FILE]``."""
    p = subparsers.add_parser(
        "alarm",
        help="where the frozen label-free collapse alarm fires, per method and ticket",
        description=(
            "Apply the frozen collapse alarm (analysis/alarm_params.json) to a run or a run group: "
            "for each method and ticket, the level and sparsity at which it fires and the signals "
            "that fired. No label is read. --evaluate adds the labelled collapse point and the "
            "bounded-lead score where the run has labels (or logged accuracies)."
        ),
    )
    p.add_argument("run", type=Path, help="run folder (manifest.json) or run group folder (group.json)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON records")
    p.add_argument("--evaluate", action="store_true", help="also score against the labelled collapse")
    p.add_argument("--params", type=Path, default=None, help="alarm parameter file (default: the frozen one)")

    def _run(args) -> int:
        import sys

        params = load_alarm_params(args.params)
        table, notes = _alarm_of_path(args.run, params, args.evaluate)
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
        if args.json:
            print(table.to_json(orient="records", double_precision=6))
        else:
            print(f"alarm: {params.description} (frozen {params.created})")
            with pd.option_context("display.max_rows", None, "display.width", 200):
                print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return 0

    p.set_defaults(func=_run)
