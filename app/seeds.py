"""Views across seeds, drawn inside the pages: the seed toggle, bands, the null control.

A run opened from a run group (a sweep's runs, one per seed) can be shown as
the mean over the group's seeds with a 95 % Student-t band; a group's
random-partition control (same description, ``data.partition=random``), when
one lies beside it, is drawn as a grey dashed band. Tables and figures come
finished from :mod:`app.data` and :mod:`analysis.figures.seeds`; nothing is
computed here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pandas as pd
import streamlit as st

from analysis import RunFormatError
from analysis.figures.seeds import seed_band_figure
from analysis.seeds import SeedAlignmentError
from app import data, ui

NULL_MAKE = (
    "Make one with the same preset and overrides plus `data.partition=random` and `data.null_of` = the "
    "real partition (K random subsets of the real subsets' sizes, same theta_0), written next to this "
    "group: `python -m lottery sweep --preset P --seeds 0 1 2 --set data.partition=random "
    "--set data.null_of=class --out <folder beside the group>` (the embedded sweeps have presets "
    "`NAME-null`)."
)
NULL_HOW = "No random-partition control was found beside this group. " + NULL_MAKE


def _guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Show a group whose seeds cannot be aligned (or a run being rewritten) as a warning, not a crash."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except (SeedAlignmentError, RunFormatError) as e:
            st.warning(f"Across seeds: {e}")

    return wrapper


def seeds_caption(n: int) -> str:
    """``"1 seed"`` or ``"n seeds"``."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def across_seeds(path: str, key: str) -> dict | None:
    """The group to average over, or None (the checkbox is off, or the run has one seed).

    Draws the "Across seeds" checkbox (default on) when the run belongs to a
    group with more than one finished seed; a run alone, or the only seed of
    its group, gets a "1 seed" caption instead.

    Parameters
    ----------
    path : str
        The opened run.
    key : str
        Widget key (namespaced per page).
    """
    group = data.group_of(path)
    n = len(group["seeds"]) if group else 1
    if n < 2:
        st.caption("1 seed: no interval across seeds (a sweep with `--seeds 0 1 2` gives one).")
        return None
    on = st.checkbox(
        "Across seeds",
        key=ui.remembered(key, True),
        help=f"Mean over the {n} seeds of the group `{group['name']}` with a 95 % Student-t band; "
        "off: the sidebar's seed alone.",
    )
    ui.remember(key)
    if not on:
        st.caption(f"The sidebar's seed alone (the group has {seeds_caption(n)}).")
        return None
    st.caption(
        f"Across seeds: mean of {seeds_caption(n)} ({', '.join(map(str, group['seeds']))}) of the group "
        f"`{group['name']}`; band and ± = 95 % Student-t interval of the mean."
    )
    return group


def _null_rows(long: pd.DataFrame, layer: str, measure: str) -> pd.DataFrame:
    return long[(long["layer"] == layer) & (long["measure"] == measure) & (long["side"] == "null")]


@_guarded
def similarity_band(group: dict, methods: list[str], layer: str, measure: str, label: str, key: str) -> None:
    """Mean pair measure against sparsity across seeds, with the null control's band when there is one."""
    from analysis.similarity import GLOBAL, LAYER_MEAN

    sim = data.seed_similarity(group, tuple(methods))
    if layer not in (GLOBAL, LAYER_MEAN):
        st.caption("Across seeds the curve is shown pooled over all layers (per-layer curves: one seed).")
        layer = GLOBAL
    rows = sim[(sim["layer"] == layer) & (sim["measure"] == measure)]
    null = data.null_control(group["path"])
    nd = None
    if null is not None and measure in ("jaccard", "jaccard_star"):
        nd = _null_rows(data.null_similarity(group, null, tuple(methods))["long"], layer, measure)
    elif null is not None:
        st.caption("The null control is drawn for J and J*.")
    scope = "pooled over all weights" if layer == GLOBAL else "equal layer weights"
    ui.figure(
        seed_band_figure(rows, null=nd, title=f"Mean over ticket pairs · {label} · {scope}", yaxis=label),
        f"{group['name']}-similarity-across-seeds",
        key=f"{key}.fig",
    )
    null_section(group, null, methods, key)
    with st.expander("Table across seeds"):
        ui.table(rows, f"{group['name']}-similarity-across-seeds", key=f"{key}.table")


def _no_null_to_draw(group: dict, null: dict | None) -> bool:
    """Caption why no control is drawn (the group is one, or none lies beside it); True then."""
    if group.get("partition") == "random":
        st.caption(f"`{group['name']}` is itself a random-partition control.")
        return True
    if null is None:
        st.caption(NULL_HOW)
        return True
    return False


def null_section(group: dict, null: dict | None, methods: list[str], key: str) -> None:
    """The null-control caption and table (real vs null J and J*, difference with its interval)."""
    if _no_null_to_draw(group, null):
        return
    table = data.null_similarity(group, null, tuple(methods))["table"]
    st.caption(
        f"Grey dashed: the random-partition control `{null['name']}` ({seeds_caption(len(null['seeds']))}): "
        "tickets of random subsets of the same sizes, same theta_0. The similarity it reaches comes from the "
        "shared initialisation and the density alone; the real tickets' excess over it is the part the "
        "partition explains."
    )
    with st.expander("Real against null, per level (difference real - null with its 95 % interval)"):
        ui.table(table, f"{group['name']}-null-control", key=f"{key}.null")


@_guarded
def null_band(group: dict, methods: list[str], key: str) -> None:
    """Mean J* (equal layer weights) of the real tickets and of the null control (Projection page)."""
    from analysis.similarity import LAYER_MEAN

    if group.get("partition") == "random":
        st.caption(
            f"`{group['name']}` is itself a random-partition control: open the real group beside it to "
            "see the two together."
        )
        return
    null = data.null_control(group["path"])
    if null is None:
        st.caption(NULL_HOW)
        return
    out = data.null_similarity(group, null, tuple(methods))
    long = out["long"]
    rows = long[
        (long["layer"] == LAYER_MEAN) & (long["measure"] == "jaccard_star") & (long["side"] == "real")
    ]
    ui.figure(
        seed_band_figure(
            rows,
            null=_null_rows(long, LAYER_MEAN, "jaccard_star"),
            title="Mean J* (equal layer weights): real tickets against the random-partition control",
            yaxis="J*",
        ),
        f"{group['name']}-null-control",
        key=f"{key}.fig",
    )
    null_section(group, null, methods, key)


@_guarded
def collapse_band(group: dict, method: str, signals: list[str], key: str, label=str) -> None:
    """The mean-over-tickets collapse signals of one method across seeds, one band figure each.

    With a random-partition control beside the group, each figure also draws the
    same signal of the control's ``method`` (mean over its tickets, its band over
    its seeds) at the control's sparsities.
    """
    curves = data.seed_method_curves(group, method)
    agg = curves[curves["ticket"].isna()]
    null = data.null_control(group["path"]) if group.get("partition") != "random" else None
    null_agg = None
    if null is not None:
        null_curves = data.seed_method_curves(null, method)
        null_agg = null_curves[null_curves["ticket"].isna()]
    cols = st.columns(len(signals)) if signals else []
    for col, signal in zip(cols, signals, strict=True):
        rows = agg[agg["signal"] == signal]
        with col:
            if rows.empty:
                st.caption(f"No {label(signal)} across seeds.")
                continue
            nd = None if null_agg is None else null_agg[null_agg["signal"] == signal]
            ui.figure(
                seed_band_figure(
                    rows, null=nd, title=f"{method} · {label(signal)}, mean over tickets", yaxis=label(signal)
                ),
                f"{group['name']}-{method}-{signal}-across-seeds",
                key=f"{key}.{signal}",
            )
            if nd is not None and nd.empty:
                st.caption(f"The null control `{null['name']}` has no {label(signal)} for {method}.")
    if not _no_null_to_draw(group, null):
        st.caption(
            f"Dashed grey: the random-partition control `{null['name']}` "
            f"({seeds_caption(len(null['seeds']))}; K random subsets of the real subsets' sizes, same "
            "theta_0), the same signal of the same method at its own sparsities."
        )


@_guarded
def results_pm(group: dict, methods: tuple[str, ...], paper: pd.DataFrame, key: str) -> None:
    """The results table's rows (method, level) as ``mean ± half-width`` across seeds."""
    pairs = tuple((str(m), int(lv)) for m, lv in zip(paper["method"], paper["level"], strict=True))
    table = data.seed_results_pm(group, methods, pairs)
    ui.table(
        table,
        f"{group['name']}-results-across-seeds",
        key=key,
        caption="Mean ± half-width of the 95 % Student-t interval across "
        f"{seeds_caption(len(group['seeds']))} (same levels and metrics as above).",
    )


@_guarded
def null_for_run(path: str, methods: list[str], key: str) -> None:
    """The null control of the run's group at its seeds, or the caption saying how to make one."""
    group = data.group_of(path)
    if group is None:
        st.caption(
            "Null control: this run is not part of a run group, so no random-partition control can be "
            "matched to it. " + NULL_MAKE
        )
        return
    null_band(group, methods, key)


@_guarded
def fairness_band(
    group: dict,
    methods: tuple[str, ...],
    group_by: tuple[str, ...],
    min_count: int,
    metric: str,
    statistic: str,
    key: str,
) -> None:
    """One gap statistic of each method against sparsity, as mean and 95 % band across seeds."""
    gaps = data.seed_fairness_gaps(group, methods, group_by, min_count, metric)
    rows = gaps[gaps["statistic"] == statistic]
    ui.figure(
        seed_band_figure(rows, title=f"{metric} · {statistic} across groups", yaxis=statistic),
        f"{group['name']}-{metric}-{statistic}-across-seeds",
        key=f"{key}.fig",
    )
    st.caption(
        "Band: 95 % Student-t interval of the mean over seeds of the per-seed point estimate (the error "
        "bars above are the bootstrap interval of one seed's evaluation samples)."
    )
    with st.expander("Gap table across seeds"):
        ui.table(rows, f"{group['name']}-fairness-across-seeds", key=f"{key}.table")


@_guarded
def attention_band(
    group: dict, method: str, tickets: tuple[int, ...], layer: str, images: str, key: str
) -> None:
    """Mean attention entropy of each chosen ticket against sparsity, as mean and 95 % band across seeds."""
    out = data.seed_attention(group, method, tuple(tickets))
    for seed, reason in out["skipped"].items():
        st.caption(f"Seed {seed} is left out of the attention across seeds: {reason}")
    table = out["table"]
    if table is None:
        st.info("No seed of the group can be probed for attention.", icon=":material/info:")
        return
    shown = table[(table["layer"] == layer) & (table["images"] == images)]
    rows = shown[shown["measure"] == "mean_entropy"]
    n = len(out["seeds"])
    ui.figure(
        seed_band_figure(
            rows,
            by="ticket",
            title=f"{method} · attention entropy · {layer} · {images}",
            yaxis="mean normalised entropy (1 = uniform)",
        ),
        f"{group['name']}-{method}-attention-across-seeds",
        key=f"{key}.fig",
    )
    if n < 2:
        st.caption(f"1 seed ({out['seeds'][0]}) can be probed: its mean entropy is shown, with no interval.")
    else:
        st.caption(
            f"One line per ticket: the mean over {seeds_caption(n)} ({', '.join(map(str, out['seeds']))}) "
            "of each seed's mean entropy over its probe images. Band: 95 % Student-t interval of that mean "
            "across seeds (off: the sidebar's seed alone, with intervals over its probe images)."
        )
    with st.expander("Attention table across seeds"):
        ui.table(shown, f"{group['name']}-{method}-attention-across-seeds", key=f"{key}.table")
