"""Speech enhancement: SI-SNR improvement per environment, method and sparsity, and listening examples.

Reads the per-mixture predictions of a speech run (``manifest["task"] ==
"speech"``, written by :mod:`lottery.speech.run`): one row per held-out
mixture with ``environment``, ``snr_db``, ``si_snr_in``, ``si_snr_out`` and
``si_snri`` (dB).

Denoising table (:func:`denoising_table`), one row per (method, level,
environment, metric):

method : str
level : int
sparsity : float
    Fraction of prunable weights removed (mean over tickets), 0..1.
environment : str
    An environment, or ``"all"`` for every held-out mixture.
metric : str
    ``si_snri`` (improvement), ``si_snr_in`` (noisy input), ``si_snr_out`` (enhanced output).
value : float
    Mean over the mixtures, dB.
ci_low, ci_high : float
    95 % percentile-bootstrap interval of the mean (mixtures resampled
    within the environment; seeded), dB.
n : int
    Mixtures behind the value.

Run ``python -m analysis.denoising RUN`` to print the paper-style table
(SI-SNRi at 25 / 50 / 75 % sparsity next to the paper's numbers).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.levels import nearest_level

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "DENOISING_COLUMNS",
    "METRICS",
    "PAPER_SISNRI",
    "denoising_frame",
    "denoising_table",
    "is_speech_run",
    "listening_examples",
    "paper_comparison",
]

METRICS = ("si_snri", "si_snr_in", "si_snr_out")
ALL = "all"
DENOISING_COLUMNS = [
    "method",
    "level",
    "sparsity",
    "environment",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
]
# The paper's Table (speech enhancement, 3 acoustic scenes, U-Net): SI-SNRi in dB at 25 / 50 / 75 % sparsity.
PAPER_SPARSITIES = (0.25, 0.50, 0.75)
PAPER_SISNRI = {
    "rtl": (7.25, 7.18, 6.99),
    "imp": (6.89, 6.97, 6.97),
    "independent": (5.30, 5.78, 5.90),
}


def is_speech_run(run: Run) -> bool:
    """Whether ``run`` is a speech-enhancement run (its predictions carry SI-SNR columns)."""
    return run.manifest.get("task") == "speech"


def _bootstrap_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    if len(values) < 2 or n_boot == 0:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))  # (n_boot, n)
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def denoising_frame(
    predictions: pd.DataFrame, group: str = "environment", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean SI-SNR in / out / improvement per group and over all mixtures, for ONE level.

    Parameters
    ----------
    predictions : DataFrame
        One row per mixture with ``group`` and the :data:`METRICS` columns.
    group : str
        Group column (``environment``, ``speaker``, ``snr_db``).
    n_boot : int
        Bootstrap resamples of each interval (0: no interval).
    seed : int

    Returns
    -------
    DataFrame
        Columns ``<group>`` (str; ``"all"`` for every mixture), ``metric``,
        ``value``, ``ci_low``, ``ci_high``, ``n``; groups in order of first appearance.
    """
    missing = [c for c in (group, *METRICS) if c not in predictions.columns]
    if missing:
        raise KeyError(f"predictions lack columns {missing}: not a speech-enhancement run")
    rng = np.random.default_rng(seed)
    rows = []
    parts = [(str(g), rows_g) for g, rows_g in predictions.groupby(group, sort=False)]
    for name, part in [*parts, (ALL, predictions)]:
        for metric in METRICS:
            values = part[metric].to_numpy(dtype=np.float64)
            lo, hi = _bootstrap_ci(values, n_boot, rng)
            mean = float(values.mean()) if len(values) else float("nan")
            rows.append((name, metric, mean, lo, hi, len(values)))
    return pd.DataFrame(rows, columns=[group, "metric", "value", "ci_low", "ci_high", "n"])


def denoising_table(
    run: Run, methods: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """:func:`denoising_frame` of every level of every method (columns: module docstring).

    Parameters
    ----------
    run : Run
        A speech run (:func:`is_speech_run`).
    methods : sequence of str, optional
        Default: every method of the run.
    n_boot, seed : int
        Bootstrap of the intervals.

    Returns
    -------
    DataFrame
    """
    frames = []
    for method in methods or run.methods:
        for level in run.levels(method):
            f = denoising_frame(run.predictions(method, level), "environment", n_boot, seed)
            f.insert(0, "sparsity", run.sparsity(method, level))
            f.insert(0, "level", level)
            f.insert(0, "method", method)
            frames.append(f)
    if not frames:
        return pd.DataFrame(columns=DENOISING_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[DENOISING_COLUMNS]
    out["level"] = out["level"].astype(int)
    out["n"] = out["n"].astype(int)
    return out


def paper_comparison(
    table: pd.DataFrame, targets: Sequence[float] = PAPER_SPARSITIES, environment: str = ALL
) -> pd.DataFrame:
    """SI-SNRi at the levels nearest 25 / 50 / 75 % sparsity, next to the paper's values.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`denoising_table`.
    targets : sequence of float
        Target sparsities, 0..1 (the paper's are 0.25, 0.5, 0.75).
    environment : str
        ``"all"`` or one environment.

    Returns
    -------
    DataFrame
        One row per (method, target): ``method``, ``target`` (float),
        ``level``, ``sparsity`` (the level's actual sparsity), ``si_snri``
        (ours, dB), ``ci_low``, ``ci_high``, ``paper`` (dB; NaN where the paper
        reports none, e.g. off its three sparsities). Ties in distance go to the denser level.
    """
    rows = []
    sel = table[(table["metric"] == "si_snri") & (table["environment"] == environment)]
    for method, part in sel.groupby("method", sort=False):
        part = part.sort_values("level")
        for t in targets:
            r = part[part["level"] == nearest_level(part, str(method), t)].iloc[0]
            paper = PAPER_SISNRI.get(str(method))
            on_paper = paper is not None and t in PAPER_SPARSITIES
            rows.append(
                {
                    "method": method,
                    "target": float(t),
                    "level": int(r["level"]),
                    "sparsity": float(r["sparsity"]),
                    "si_snri": float(r["value"]),
                    "ci_low": float(r["ci_low"]),
                    "ci_high": float(r["ci_high"]),
                    "paper": paper[PAPER_SPARSITIES.index(t)] if on_paper else float("nan"),
                }
            )
    return pd.DataFrame(
        rows, columns=["method", "target", "level", "sparsity", "si_snri", "ci_low", "ci_high", "paper"]
    )


def listening_examples(run: Run, methods: Sequence[str], level_of: dict[str, int]) -> pd.DataFrame:
    """The stored listening examples: noisy, clean and each method's enhanced clip per environment.

    Parameters
    ----------
    run : Run
    methods : sequence of str
        Methods whose enhanced clips to return (those without stored clips are left out).
    level_of : dict of str to int
        The level of each method to take the enhanced clips from.

    Returns
    -------
    DataFrame
        One row per (environment, kind): ``environment`` (str), ``kind``
        (``noisy``, ``clean`` or a method name), ``level`` (Int64; <NA> for
        noisy / clean), ``audio`` (ndarray of float32 in [-1, 1], shape (n,)),
        ``sample_rate`` (int). Empty when the run stores no examples.
    """
    columns = ["environment", "kind", "level", "audio", "sample_rate"]
    if not run.has_extra("examples"):
        return pd.DataFrame(columns=columns)
    extra = run.extra("examples")
    envs = [str(e) for e in run.manifest.get("partition", {}).get("names", [])]
    rate = int(run.manifest.get("dataset", {}).get("sample_rate", 16000))

    def f32(a: np.ndarray) -> np.ndarray:
        return (np.asarray(a, dtype=np.float32) / 32767.0).clip(-1.0, 1.0)

    rows = []
    for k, env in enumerate(envs):
        rows.append((env, "noisy", pd.NA, f32(extra["noisy"][k]), rate))
        rows.append((env, "clean", pd.NA, f32(extra["clean"][k]), rate))
        for m in methods:
            if m not in run.methods or m not in level_of:
                continue
            arrays = run.level_arrays(m, level_of[m])
            if "enhanced" in arrays:
                rows.append((env, m, level_of[m], f32(arrays["enhanced"][k]), rate))
    out = pd.DataFrame(rows, columns=columns)
    out["level"] = out["level"].astype("Int64")
    return out


def _main(argv: list[str] | None = None) -> int:
    from artifacts.run_format import RunFormatError, load_run

    parser = argparse.ArgumentParser(
        prog="python -m analysis.denoising",
        description="SI-SNRi of a speech run at 25 / 50 / 75 %% sparsity next to the paper's, "
        "and per environment.",
    )
    parser.add_argument("run", help="a speech run folder, e.g. artifacts/speech-unet-env")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run)
    except RunFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not is_speech_run(run):
        print(f"error: {args.run} is not a speech-enhancement run", file=sys.stderr)
        return 2
    table = denoising_table(run)
    comp = paper_comparison(table)
    pd.set_option("display.width", 160)
    print("SI-SNRi (dB), all held-out mixtures; ours with a 95 % bootstrap interval, paper alongside")
    print(comp.round(3).to_string(index=False))
    envs = [e for e in dict.fromkeys(table["environment"]) if e != ALL]
    for env in envs:
        print(f"\n{env}:")
        print(paper_comparison(table, environment=env).drop(columns="paper").round(3).to_string(index=False))
    noisy = table[(table["metric"] == "si_snr_in")].drop_duplicates("environment")[
        ["environment", "value", "n"]
    ]
    print("\nSI-SNR of the noisy input (dB):")
    print(noisy.rename(columns={"value": "si_snr_in"}).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
