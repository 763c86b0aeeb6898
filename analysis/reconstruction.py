"""Region tickets of an implicit neural representation: PSNR per region, image, level and method.

An INR run (``manifest["task"] == "inr"``, written by ``python -m lottery inr``)
holds one experiment per image: methods ``rtl-<image>`` (one ticket per
region) and ``imp-<image>`` (one ticket for all pixels); each manifest entry
names its ``method`` (``rtl`` / ``imp``) and ``image``. Its predictions have
one row per region with ``n_pixels``, ``mse`` and ``psnr`` (images in [0, 1],
PSNR in dB with peak 1), and every level keeps its reconstructed image.

PSNR table (:func:`psnr_table`), one row per (method, level, region) plus one
per (method, level) for the whole image:

method : str
    Run method, e.g. ``rtl-china``.
base : str
    ``rtl`` or ``imp``.
image : str
level : int
sparsity : float
    Fraction of prunable weights removed (mean over tickets), 0..1.
scope : str
    ``region`` or ``image``.
region : str
    Region name ``<image>/<j>``; ``""`` for an image row.
ticket : Int64
    Region (ticket) id within the image; ``<NA>`` for an image row.
n_pixels : int
mse : float
    Mean squared error over the pixels and the 3 channels; for an image row
    the pixel-weighted mean of its regions' MSEs (the MSE of the whole image).
psnr : float
    ``10 log10(1 / mse)`` dB.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.collapse import mask_signals
from analysis.latent import ticket_latent_correlation
from analysis.levels import nearest_level
from analysis.similarity import GLOBAL, similarity_frame, ticket_similarity_summary

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "BASES",
    "PAPER_PSNR",
    "PSNR_COLUMNS",
    "TARGET_SPARSITIES",
    "add_reconstruction_command",
    "closest_level",
    "inr_methods",
    "is_inr_run",
    "level_table",
    "main",
    "paper_comparison",
    "paper_table",
    "psnr",
    "psnr_frame",
    "psnr_similarity_correlation",
    "psnr_table",
    "reconstruction",
    "reconstruction_curves",
    "region_gaps",
    "region_similarity",
    "run_images",
    "with_params",
]

BASES = ("rtl", "imp")
PSNR_COLUMNS = [
    "method",
    "base",
    "image",
    "level",
    "sparsity",
    "scope",
    "region",
    "ticket",
    "n_pixels",
    "mse",
    "psnr",
]
TARGET_SPARSITIES = (0.25, 0.5, 0.75, 0.9)
# The paper's INR table (5-layer MLP, 128 hidden, Fourier features, one image):
# PSNR in dB at 25 / 50 / 75 % sparsity. Their image and data, not ours.
PAPER_PSNR = pd.DataFrame(
    {
        "base": ["rtl"] * 3 + ["imp"] * 3,
        "target_sparsity": [0.25, 0.5, 0.75] * 2,
        "paper_psnr": [18.86, 17.25, 14.87, 15.94, 14.72, 12.69],
    }
)


def psnr(mse: float | np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    mse : float or ndarray of float
        Mean squared error(s), >= 0.
    peak : float
        Largest possible signal value (1 for images in [0, 1], 255 for uint8).

    Returns
    -------
    ndarray of float64
        ``10 log10(peak^2 / mse)``, same shape as ``mse``; ``inf`` where mse is 0.
    """
    mse = np.asarray(mse, dtype=np.float64)
    if (mse < 0).any():
        raise ValueError("mse must be >= 0")
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / mse)


# ----------------------------------------------------------------------------- the run


def is_inr_run(run: Run) -> bool:
    """Whether a run holds INR region tickets (``manifest["task"] == "inr"``)."""
    return run.manifest.get("task") == "inr"


def inr_methods(run: Run) -> pd.DataFrame:
    """The methods of an INR run with their base method and image.

    Returns
    -------
    DataFrame
        Columns ``method``, ``base``, ``image`` (str), in run order.
    """
    if not is_inr_run(run):
        raise ValueError(f"{run.path} is not an INR run (manifest task {run.manifest.get('task')!r})")
    rows = [
        (m, run.manifest["methods"][m]["method"], run.manifest["methods"][m]["image"]) for m in run.methods
    ]
    return pd.DataFrame(rows, columns=["method", "base", "image"])


def run_images(run: Run) -> dict[str, dict[str, np.ndarray | list[str]]]:
    """The represented images and their regions.

    Returns
    -------
    dict of str to dict
        ``{image: {"image": float32 (S, S, 3) in [0, 1], "regions": int32 (S, S),
        "names": list of str (region names by id)}}``.
    """
    extra = run.extra("images")
    names = run.manifest["dataset"]["images"]
    regions = run.manifest["partition"]["names"]
    out = {}
    for i, name in enumerate(names):
        out[name] = {
            "image": extra["images"][i],
            "regions": extra["regions"][i],
            "names": [r for r in regions if r.split("/")[0] == name],
        }
    return out


def reconstruction(run: Run, method: str, level: int) -> np.ndarray:
    """The reconstructed image of a method at a level, uint8 (S, S, 3)."""
    return run.level_arrays(method, level)["reconstruction"]


def closest_level(run: Run, method: str, sparsity: float) -> int:
    """The level of ``method`` nearest ``sparsity`` (:func:`analysis.levels.nearest_level`)."""
    return nearest_level(run, method, sparsity)


# ----------------------------------------------------------------------------- PSNR


def psnr_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """PSNR of every region and of the whole image from one level's predictions.

    Parameters
    ----------
    predictions : DataFrame
        One row per region with ``subset``, ``image``, ``region``, ``n_pixels``, ``mse``.

    Returns
    -------
    DataFrame
        Columns ``image, scope, region, ticket, n_pixels, mse, psnr`` (module
        docstring): the region rows, then one ``image`` row per image.
    """
    reg = pd.DataFrame(
        {
            "image": predictions["image"].astype(str).to_numpy(),
            "scope": "region",
            "region": predictions["region"].astype(str).to_numpy(),
            "ticket": pd.array(predictions["subset"].to_numpy(), dtype="Int64"),
            "n_pixels": predictions["n_pixels"].to_numpy(dtype=np.int64),
            "mse": predictions["mse"].to_numpy(dtype=np.float64),
        }
    )
    sse = reg.assign(sse=reg["mse"] * reg["n_pixels"]).groupby("image", sort=False)[["sse", "n_pixels"]].sum()
    img = pd.DataFrame(
        {
            "image": sse.index.astype(str),
            "scope": "image",
            "region": "",
            "ticket": pd.array([None] * len(sse), dtype="Int64"),
            "n_pixels": sse["n_pixels"].to_numpy(dtype=np.int64),
            "mse": (sse["sse"] / sse["n_pixels"]).to_numpy(dtype=np.float64),
        }
    )
    out = pd.concat([reg, img], ignore_index=True)
    out["psnr"] = psnr(out["mse"].to_numpy())
    return out


def psnr_table(
    run: Run, methods: Sequence[str] | None = None, levels: Sequence[int] | None = None
) -> pd.DataFrame:
    """PSNR per region and per image at every level of every method (columns: module docstring).

    Parameters
    ----------
    run : Run
        An INR run.
    methods : sequence of str, optional
        Run methods (``rtl-china``...); default all.
    levels : sequence of int, optional
        Default: every completed level of each method.
    """
    info = inr_methods(run).set_index("method")
    frames = []
    for method in methods or list(info.index):
        for level in run.levels(method) if levels is None else levels:
            df = psnr_frame(run.predictions(method, level))
            df.insert(0, "sparsity", run.sparsity(method, level))
            df.insert(0, "level", int(level))
            df.insert(0, "base", info.loc[method, "base"])
            df.insert(0, "method", method)
            frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["level"] = out["level"].astype(np.int64)
    return out[PSNR_COLUMNS]


def region_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Best minus worst region PSNR per method and level (the fairness gap across regions).

    Parameters
    ----------
    table : DataFrame
        Output of :func:`psnr_table`.

    Returns
    -------
    DataFrame
        Columns ``method, base, image, level, sparsity, best_region, best_psnr,
        worst_region, worst_psnr, gap`` (dB).
    """
    reg = table[table["scope"] == "region"]
    rows = []
    for (method, level), g in reg.groupby(["method", "level"], sort=False):
        best, worst = g.loc[g["psnr"].idxmax()], g.loc[g["psnr"].idxmin()]
        rows.append(
            (
                method,
                best["base"],
                best["image"],
                int(level),
                float(best["sparsity"]),
                best["region"],
                float(best["psnr"]),
                worst["region"],
                float(worst["psnr"]),
                float(best["psnr"] - worst["psnr"]),
            )
        )
    cols = ["method", "base", "image", "level", "sparsity", "best_region", "best_psnr"]
    return pd.DataFrame(rows, columns=[*cols, "worst_region", "worst_psnr", "gap"])


def paper_comparison(table: pd.DataFrame, sparsities: Sequence[float] = TARGET_SPARSITIES) -> pd.DataFrame:
    """Whole-image PSNR at the levels nearest the paper's sparsities, next to the paper's figures.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`psnr_table`.
    sparsities : sequence of float
        Target sparsities (the paper reports 0.25, 0.5, 0.75).

    Returns
    -------
    DataFrame
        Columns ``target_sparsity, base, image, level, sparsity, psnr,
        paper_psnr``: one row per target, base method and image (at that
        method's level of nearest sparsity, ties to the denser level), plus an
        ``image == "mean"`` row per target and base averaging the images'
        PSNRs (``level`` ``<NA>``, ``sparsity`` their mean). ``paper_psnr`` is
        the paper's figure for the base method at that target (NaN where it
        reports none).
    """
    img = table[table["scope"] == "image"]
    rows = []
    for target in sparsities:
        for base in [b for b in BASES if b in set(img["base"])]:
            picked = []
            for method, g in img[img["base"] == base].groupby("method", sort=False):
                levels = g.drop_duplicates("level").sort_values("level")
                row = levels[levels["level"] == nearest_level(levels, str(method), target)].iloc[0]
                picked.append((target, base, row["image"], int(row["level"]), row["sparsity"], row["psnr"]))
            rows += picked
            if picked:
                sp = float(np.mean([p[4] for p in picked]))
                rows.append((target, base, "mean", None, sp, float(np.mean([p[5] for p in picked]))))
    out = pd.DataFrame(rows, columns=["target_sparsity", "base", "image", "level", "sparsity", "psnr"])
    out["level"] = out["level"].astype("Int64")
    return out.merge(PAPER_PSNR, on=["base", "target_sparsity"], how="left")


def paper_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """Wide view of :func:`paper_comparison`: one row per target sparsity and base method.

    Returns
    -------
    DataFrame
        Columns ``target_sparsity``, ``base``, one PSNR column per image, ``mean``,
        ``paper`` (dB), ``sparsity_<image>`` (the sparsity actually reached) and,
        when the comparison has a ``params`` column (:func:`with_params`),
        ``params_<image>``.
    """
    c = comparison
    psnr_w = c.pivot_table(index=["target_sparsity", "base"], columns="image", values="psnr", sort=False)
    sp = c[c["image"] != "mean"].pivot_table(
        index=["target_sparsity", "base"], columns="image", values="sparsity", sort=False
    )
    sp.columns = [f"sparsity_{i}" for i in sp.columns]
    parts = [sp]
    if "params" in c:
        params = c[c["image"] != "mean"].pivot_table(
            index=["target_sparsity", "base"], columns="image", values="params", sort=False
        )
        params.columns = [f"params_{i}" for i in params.columns]
        parts.append(params.astype("Int64"))
    paper = c.groupby(["target_sparsity", "base"], sort=False)["paper_psnr"].first().rename("paper")
    images = [i for i in dict.fromkeys(c["image"]) if i != "mean"]
    out = pd.concat([psnr_w[[*images, "mean"]], paper, *parts], axis=1).reset_index()
    out["base"] = pd.Categorical(out["base"], categories=[b for b in BASES if b in set(out["base"])])
    out = out.sort_values(["target_sparsity", "base"]).reset_index(drop=True)
    out["base"] = out["base"].astype(str)
    out.columns.name = None
    return out


def with_params(run: Run, comparison: pd.DataFrame) -> pd.DataFrame:
    """:func:`paper_comparison` plus ``params``: the weights a method stores at that level.

    For rtl this is the union of its tickets' masks (the paper's RTL count), for
    imp its one mask (the first layer includes the region embedding's columns).

    Returns
    -------
    DataFrame
        ``comparison`` with a ``params`` column (Int64; ``<NA>`` on the ``mean`` rows).
    """
    out = comparison.copy()
    params = []
    for _, row in out.iterrows():
        if row["image"] == "mean" or pd.isna(row["level"]):
            params.append(None)
        else:
            info = run.level_info(f"{row['base']}-{row['image']}", int(row["level"]))
            params.append(info.get("params_union"))
    out["params"] = pd.array(params, dtype="Int64")
    return out


def level_table(table: pd.DataFrame) -> pd.DataFrame:
    """Whole-image PSNR of every level, one column per method.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`psnr_table`.

    Returns
    -------
    DataFrame
        Columns ``level``, ``sparsity`` (of the first method, 0..1), then one
        PSNR column (dB) per method, in table order.
    """
    img = table[table["scope"] == "image"]
    wide = img.pivot_table(index="level", columns="method", values="psnr", sort=False)
    wide = wide[list(dict.fromkeys(img["method"]))]
    sparsity = img.groupby("level")["sparsity"].first().rename("sparsity")
    out = pd.concat([sparsity, wide], axis=1).reset_index()
    out.columns.name = None
    return out


# ----------------------------------------------------------------------------- PSNR and mask similarity


def region_similarity(run: Run, method: str, level: int) -> pd.DataFrame:
    """Each region ticket's PSNR next to its mean mask similarity to the other regions' tickets.

    Parameters
    ----------
    run : Run
    method : str
        A multi-ticket method (``rtl-<image>``).
    level : int

    Returns
    -------
    DataFrame
        Columns ``method, image, level, sparsity, region, ticket (int), psnr,
        mean_jaccard, mean_jaccard_star``: Jaccard over all prunable weights,
        averaged over the other K - 1 tickets (:mod:`analysis.similarity`).
    """
    tickets = run.ticket_names(method)
    if len(tickets) < 2:
        raise ValueError(f"{method} has a single ticket: no mask similarity between regions")
    sim = ticket_similarity_summary(similarity_frame(run.masks(method, level), tickets, layers=False))
    sim = sim[sim["layer"] == GLOBAL].set_index("ticket")
    frame = psnr_frame(run.predictions(method, level))
    reg = frame[frame["scope"] == "region"]
    return pd.DataFrame(
        {
            "method": method,
            "image": reg["image"].to_numpy(),
            "level": int(level),
            "sparsity": run.sparsity(method, level),
            "region": reg["region"].to_numpy(),
            "ticket": reg["ticket"].to_numpy(dtype=np.int64),
            "psnr": reg["psnr"].to_numpy(),
            "mean_jaccard": sim.loc[reg["region"], "mean_jaccard"].to_numpy(dtype=np.float64),
            "mean_jaccard_star": sim.loc[reg["region"], "mean_jaccard_star"].to_numpy(dtype=np.float64),
        }
    )


def psnr_similarity_correlation(
    run: Run, sparsity: float = 0.5, base: str = "rtl"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spearman correlation between a region's PSNR and its mask similarity to the other regions.

    The paper reports about 0.98 on one image with 15 regions at 50 % sparsity.

    Parameters
    ----------
    run : Run
        An INR run.
    sparsity : float
        Each image's level is the one nearest this sparsity.
    base : str
        Base method with one ticket per region.

    Returns
    -------
    regions : DataFrame
        :func:`region_similarity` of every image, stacked.
    correlation : DataFrame
        Columns ``image, level, sparsity, n, rho, p_value`` (``scipy.stats.spearmanr``
        of ``psnr`` against ``mean_jaccard``), one row per image. NaN when an
        image has fewer than 3 regions or a constant column.
    """
    info = inr_methods(run)
    frames, rows = [], []
    for method, image in info.loc[info["base"] == base, ["method", "image"]].itertuples(index=False):
        level = closest_level(run, method, sparsity)
        reg = region_similarity(run, method, level)
        frames.append(reg)
        rho, p = _spearman(reg["psnr"].to_numpy(), reg["mean_jaccard"].to_numpy())
        rows.append((image, level, float(reg["sparsity"].iloc[0]), len(reg), rho, p))
    if not frames:
        raise ValueError(f"the run has no {base!r} method")
    corr = pd.DataFrame(rows, columns=["image", "level", "sparsity", "n", "rho", "p_value"])
    return pd.concat(frames, ignore_index=True), corr


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


# ----------------------------------------------------------------------------- collapse curves


def reconstruction_curves(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Collapse curves of an INR run, PSNR standing for the labelled metric.

    The output has the shape of :func:`analysis.collapse.collapse_curves`, so
    :class:`analysis.collapse.CollapseAlarm` and
    :func:`analysis.collapse.labelled_collapse_points` (``metric="psnr"``,
    ``margin`` in dB) apply unchanged.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, ticket, signal, value``. Signals:
        ``psnr`` per ticket (region; for ``imp`` the regions it serves) and
        aggregate (the whole image); for multi-ticket methods
        ``mean_jaccard`` and ``mean_jaccard_star`` per ticket and their mean;
        the mask signals of :func:`analysis.collapse.mask_signals`.
    """
    frames = []
    for method in methods or run.methods:
        tickets = run.ticket_names(method)
        multi = len(tickets) > 1
        for level in run.levels(method):
            masks = run.masks(method, level)
            frame = psnr_frame(run.predictions(method, level))
            reg, img = frame[frame["scope"] == "region"], frame[frame["scope"] == "image"]
            parts = [
                _long(list(reg["ticket"].astype(int)), "psnr", reg["psnr"]),
                _long([None] * len(img), "psnr", img["psnr"]),
                mask_signals(masks, per_ticket=multi),
            ]
            if multi:
                sim = ticket_similarity_summary(similarity_frame(masks, layers=False))
                sim = sim[sim["layer"] == GLOBAL]
                t = sim["ticket"].astype(int).tolist()
                sim = sim.assign(mean_latent_corr=ticket_latent_correlation(masks)[t])  # what the alarm reads
                for sig in ("mean_jaccard", "mean_jaccard_star", "mean_latent_corr"):
                    parts += [_long(t, sig, sim[sig]), _long([None], sig, [sim[sig].mean()])]
            df = pd.concat(parts, ignore_index=True)
            df.insert(0, "sparsity", run.sparsity(method, level))
            df.insert(0, "level", level)
            df.insert(0, "method", method)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _long(ticket: list, signal: str, value) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket": pd.array(ticket, dtype="Int64"),
            "signal": pd.Series([signal] * len(ticket), dtype=object),
            "value": np.asarray(value, dtype=np.float64),
        }
    )


# ----------------------------------------------------------------------------- command line


def add_reconstruction_command(sub: argparse._SubParsersAction) -> None:
    """Register ``inr-table`` on a subparsers object (for ``python -m analysis``)."""
    p = sub.add_parser(
        "inr-table", help="PSNR of an INR run next to the paper's, and PSNR-similarity correlation"
    )
    _arguments(p)
    p.set_defaults(func=_report)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="INR run folder, e.g. artifacts/image-inr-region")
    p.add_argument("--sparsity", type=float, default=0.5, help="sparsity of the PSNR-similarity correlation")
    p.add_argument("--all-levels", action="store_true", help="also print the whole-image PSNR of every level")


def _report(args: argparse.Namespace) -> int:
    from artifacts.run_format import load_run

    run = load_run(args.run)
    table = psnr_table(run)
    wide = paper_table(with_params(run, paper_comparison(table)))
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.float_format", "{:.2f}".format
    ):
        print(f"PSNR (dB) of {run.name}: whole image at the level nearest each target sparsity")
        print(wide.to_string(index=False))
        if args.all_levels:
            print("\nPSNR (dB) of the whole image at every level")
            print(level_table(table).to_string(index=False))
        regions, corr = psnr_similarity_correlation(run, args.sparsity)
        print(f"\nSpearman(region PSNR, mean Jaccard to the other regions) near {args.sparsity:.0%} sparsity")
        print(corr.to_string(index=False))
        seconds = sum(
            run.level_info(m, lv).get("train_seconds", 0.0) for m in run.methods for lv in run.levels(m)
        )
        print(f"\ntraining time summed over levels: {seconds / 60:.1f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis.reconstruction RUN``: print the PSNR table and the correlation."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.reconstruction", description=__doc__.splitlines()[0]
    )
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _report(args)
    except ValueError as e:  # RunFormatError included
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
