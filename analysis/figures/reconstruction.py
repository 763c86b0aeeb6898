"""Figures of INR region tickets (tables and arrays from :mod:`analysis.reconstruction`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_DASH = {"rtl": "solid", "imp": "dash"}
_HOVER = "<br>sparsity %{x:.1f} %<br>PSNR %{y:.2f} dB<extra></extra>"


def _uint8(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) image as uint8: float images are taken to lie in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def region_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinguishable (r, g, b) colours, 0..255 (plotly's Dark24 then Light24, cycled)."""
    palette = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
    return [tuple(px.colors.hex_to_rgb(palette[i % len(palette)])) for i in range(n)]


def image_panels(
    panels: Mapping[str, np.ndarray],
    *,
    regions: np.ndarray | None = None,
    region_names: Sequence[str] | None = None,
    overlay_alpha: float = 0.5,
    height: int = 330,
) -> go.Figure:
    """Images side by side (original, reconstructions), optionally one panel with the regions overlaid.

    Parameters
    ----------
    panels : mapping of str to ndarray, shape (S, S, 3)
        Panel title to image, uint8 or float in [0, 1]; drawn left to right.
    regions : ndarray of int, shape (S, S), optional
        Region id of every pixel. When given, a first panel shows the first
        image with the regions blended over it in distinct colours (hover: the
        region's name).
    region_names : sequence of str, optional
        Name of every region id (default ``"0", "1", ...``).
    overlay_alpha : float
        Weight of the region colour in the overlay, 0..1.
    height : int
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Image`` trace per panel, pixel-exact, axes hidden.
    """
    items = list(panels.items())
    if not items:
        raise ValueError("no image to show")
    titles = [t for t, _ in items]
    images = [_uint8(im) for _, im in items]
    if regions is not None:
        regions = np.asarray(regions)
        n = int(regions.max()) + 1
        names = list(region_names) if region_names is not None else [str(i) for i in range(n)]
        colours = np.array(region_colours(n), dtype=np.float64)  # (n, 3)
        base = images[0].astype(np.float64)
        blend = (1 - overlay_alpha) * base + overlay_alpha * colours[regions]
        titles = ["regions", *titles]
        images = [np.round(blend).astype(np.uint8), *images]
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=titles, horizontal_spacing=0.02)
    for i, im in enumerate(images, start=1):
        trace = go.Image(z=im, hovertemplate="row %{y}, col %{x}<br>rgb %{z}<extra></extra>")
        if regions is not None and i == 1:
            trace = go.Image(
                z=im,
                customdata=np.asarray(names, dtype=object)[regions],
                hovertemplate="%{customdata}<br>row %{y}, col %{x}<extra></extra>",
            )
        fig.add_trace(trace, row=1, col=i)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=height, margin={"l": 5, "r": 5, "t": 40, "b": 5})
    return fig


def psnr_vs_sparsity(
    table: pd.DataFrame,
    *,
    scope: str = "region",
    paper: pd.DataFrame | None = None,
    title: str = "PSNR against sparsity",
) -> go.Figure:
    """PSNR per region (or per image) against sparsity, one line per region and method.

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.reconstruction.psnr_table` rows of one image.
    scope : {"region", "image"}
        Plot the region rows (colour = region, dash = method) or the image rows
        (colour = method).
    paper : DataFrame, optional
        ``base, target_sparsity, paper_psnr`` (:data:`analysis.reconstruction.PAPER_PSNR`),
        drawn as markers; only with ``scope="image"``.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        x: sparsity in percent; y: PSNR in dB.
    """
    if scope not in ("region", "image"):
        raise ValueError(f"scope must be region or image, got {scope!r}")
    rows = table[table["scope"] == scope].sort_values(["base", "region", "level"])
    fig = go.Figure()
    if scope == "region":
        names = list(dict.fromkeys(rows.sort_values("ticket")["region"]))
        colour = dict(zip(names, px.colors.qualitative.Dark24, strict=False))
        for (base, region), g in rows.groupby(["base", "region"], sort=False):
            fig.add_trace(
                go.Scatter(
                    x=100 * g["sparsity"],
                    y=g["psnr"],
                    mode="lines+markers",
                    name=f"{base} · {region}",
                    legendgroup=str(region),
                    line={"color": colour.get(region), "dash": _DASH.get(str(base), "dot")},
                    marker={"size": 5},
                    hovertemplate=f"{base} · {region}" + _HOVER,
                )
            )
    else:
        palette = {"rtl": px.colors.qualitative.Plotly[0], "imp": px.colors.qualitative.Plotly[1]}
        for base, g in rows.groupby("base", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=100 * g["sparsity"],
                    y=g["psnr"],
                    mode="lines+markers",
                    name=f"{base} (ours)",
                    line={"color": palette.get(str(base))},
                    hovertemplate=f"{base}" + _HOVER,
                )
            )
        if paper is not None:
            for base, g in paper.groupby("base", sort=False):
                fig.add_trace(
                    go.Scatter(
                        x=100 * g["target_sparsity"],
                        y=g["paper_psnr"],
                        mode="markers",
                        name=f"{base} (paper, its image)",
                        marker={"symbol": "x", "size": 10, "color": palette.get(str(base))},
                        hovertemplate=f"paper {base}" + _HOVER,
                    )
                )
    fig.update_layout(
        title=title,
        xaxis_title="sparsity (% of prunable weights removed)",
        yaxis_title="PSNR (dB)",
        legend={"groupclick": "toggleitem"},
        margin={"t": 60},
    )
    return fig


def psnr_similarity_scatter(regions: pd.DataFrame, correlation: pd.DataFrame | None = None) -> go.Figure:
    """Region PSNR against the region ticket's mean Jaccard to the other regions.

    Parameters
    ----------
    regions : DataFrame
        :func:`analysis.reconstruction.region_similarity` rows (one or several images).
    correlation : DataFrame, optional
        ``image, rho, p_value`` rows, shown in the legend.

    Returns
    -------
    plotly.graph_objects.Figure
        One marker trace per image, labelled by region.
    """
    rho = {} if correlation is None else dict(zip(correlation["image"], correlation["rho"], strict=True))
    fig = go.Figure()
    for image, g in regions.groupby("image", sort=False):
        label = (
            f"{image} (Spearman ρ = {rho[image]:.2f})" if image in rho and np.isfinite(rho[image]) else image
        )
        fig.add_trace(
            go.Scatter(
                x=g["mean_jaccard"],
                y=g["psnr"],
                mode="markers+text",
                text=g["region"].str.split("/").str[-1],
                textposition="top center",
                name=label,
                customdata=g["region"],
                hovertemplate="%{customdata}<br>mean J %{x:.3f}<br>PSNR %{y:.2f} dB<extra></extra>",
            )
        )
    fig.update_layout(
        title="Region PSNR against mask similarity to the other regions",
        xaxis_title="mean Jaccard to the other region tickets",
        yaxis_title="PSNR (dB)",
        margin={"t": 60},
    )
    return fig
