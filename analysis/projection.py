"""Maps of tickets, and whether mask similarity follows semantic similarity.

Two questions about the ticket-by-ticket Jaccard matrix:

1. Which tickets sit near which? :class:`TicketMap` lays tickets out in 2-D from
   the Jaccard distance ``1 - J`` (UMAP on the precomputed distance, or metric MDS
   for a handful of points), and :func:`ticket_map_table` does so for the
   tickets of a run, one level at a time or all levels and methods on one map.
2. Do tickets of similar classes share weights? :func:`mantel` correlates the
   off-diagonal entries of the ticket-similarity matrix with those of a
   class-similarity matrix (Spearman), with a permutation p-value;
   :func:`alignment_table` does this per level and per layer group (shallow /
   middle / deep thirds), against sparsity. :func:`fashion_class_similarity`
   loads a shipped reference matrix for the 10 Fashion-MNIST classes.
3. Is that more than the inputs? The shipped class hierarchy itself follows the
   pixel-space similarity of the class centroids, so a raw alignment may only
   mirror the inputs. :func:`partial_mantel` controls for it: the correlation of
   mask with class similarity once both are regressed on the input-space
   similarity of the subsets' centroids (:func:`centroid_similarity`).

Map table columns (:func:`ticket_map_table`)
--------------------------------------------
method, level, sparsity, ticket, density, x, y
    ``density`` is the ticket's kept fraction of prunable weights.

Alignment table columns (:func:`alignment_frame`, :func:`alignment_table`)
-------------------------------------------------------------------------
level, sparsity : int, float
    Run tables only.
layer_group : str
    ``"all"`` (every prunable layer), ``"shallow"``, ``"middle"``, ``"deep"``.
n_layers, n_pairs : int
rho : float
    Spearman correlation of ticket similarity with reference similarity.
p_value : float
    Mantel permutation p-value (one-sided, ``rho`` greater than by chance, by default).
n_perm : int
partial_rho : float
    Partial Mantel statistic: Spearman correlation of ticket similarity with
    reference similarity once both are controlled for the input-space similarity
    of the subsets' centroids (:func:`partial_mantel`). NaN without a control.
partial_p_value : float
    Its permutation p-value (one-sided, greater).

Layers whose rows are disjoint by construction (one-vs-rest detector heads,
:func:`analysis.similarity.shared_rows`) are left out before the layers are
split into thirds, and partly disjoint layers count only their shared rows:
a similarity that is 0 by construction carries no information about classes.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.similarity import (
    _restricted_counts,
    layer_groups,
    measures_from_counts,
    method_shared_rows,
)

if TYPE_CHECKING:
    from artifacts.run_format import Run

DATA_DIR = Path(__file__).resolve().parent / "data"
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# The hierarchy behind analysis/data/fashion_similarity.csv.
FASHION_CLUSTERS = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "bottoms": ["Trouser", "Dress"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bags": ["Bag"],
}
MAP_COLUMNS = ["method", "level", "sparsity", "ticket", "density", "x", "y"]
ALIGNMENT_COLUMNS = [
    "layer_group",
    "n_layers",
    "n_pairs",
    "rho",
    "p_value",
    "n_perm",
    "partial_rho",
    "partial_p_value",
]

# At or below this many points the map is metric MDS, not UMAP: with <= 4 points
# every point is a neighbour of every other, UMAP's fuzzy graph carries almost no
# distance information and its layout is set by the random init, while metric MDS
# reproduces a small distance matrix (nearly) exactly.
MDS_MAX_POINTS = 4

_UMAP_LOCK = threading.Lock()
_UMAP: ModuleType | None = None  # set by the first import_umap()


def import_umap() -> ModuleType:
    """Import umap-learn with its numba kernels cached on disk; once per process.

    umap-learn does not ask numba to cache its kernels (the neighbour search on a
    precomputed distance, ``smooth_knn_dist``, the membership strengths, the layout
    epochs), so every process compiled them again on its first map: 10-20 s on this
    machine, the whole of the dashboard's first Projection page. This enables
    numba's on-disk cache for every jitted function of ``umap.umap_``,
    ``umap.layouts`` and ``umap.utils`` before any of them compiles: the first map
    on a machine compiles and saves, every later process loads the compiled code
    instead of compiling it.
    numba keeps the cache beside the package (``__pycache__``) when that is
    writable, else in the user's cache folder, or in ``NUMBA_CACHE_DIR``, and keys
    it by the source file, so another umap version compiles afresh (its own
    mechanism for ``@njit(cache=True)``, which pynndescent already uses). Where no
    cache folder is writable the kernels compile as before.
    """
    global _UMAP
    with _UMAP_LOCK:  # the app's warm-up thread and a page may ask at once
        if _UMAP is not None:
            return _UMAP
        import umap  # heavy (numba)
        import umap.layouts
        import umap.umap_
        import umap.utils
        from numba.core.registry import CPUDispatcher

        for module in (umap.umap_, umap.layouts, umap.utils):
            for fn in vars(module).values():
                if isinstance(fn, CPUDispatcher) and fn.__module__ == module.__name__:
                    try:
                        fn.enable_caching()
                    except RuntimeError:  # numba found no writable cache folder: compile per process
                        pass
        _UMAP = umap
        return umap


# ----------------------------------------------------------------------------- 2-D map


def _check_distance(distance: np.ndarray) -> np.ndarray:
    d = np.asarray(distance, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance must be a square matrix, got shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("distance must be finite and non-negative")
    if not np.allclose(d, d.T) or not np.allclose(np.diag(d), 0.0):
        raise ValueError("distance must be symmetric with a zero diagonal")
    return (d + d.T) / 2  # exact symmetry for the embedders


class TicketMap:
    """2-D layout of points from a precomputed distance matrix (e.g. ``1 - Jaccard``).

    UMAP (``metric="precomputed"``, ``init="random"``, since the spectral init
    needs a connected neighbour graph of more points) for more than
    ``mds_max_points`` points; metric MDS for fewer (see ``MDS_MAX_POINTS``);
    one point sits at the origin. ``n_neighbors`` is capped at ``n - 1``.

    Parameters
    ----------
    n_neighbors : int
        UMAP neighbourhood size (before capping).
    min_dist : float
        UMAP minimum distance between embedded points.
    mds_max_points : int
        Largest number of points laid out by MDS instead of UMAP.
    random_state : int
        Seed; the same seed and distances give the same layout.

    Attributes
    ----------
    embedding_ : ndarray of float64, shape (n, 2)
    method_ : str
        ``"umap"``, ``"mds"`` or ``"single"``.
    n_neighbors_ : int or None
        Neighbourhood size UMAP used (None for MDS).
    """

    def __init__(
        self,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        *,
        mds_max_points: int = MDS_MAX_POINTS,
        random_state: int = 0,
    ):
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.mds_max_points = mds_max_points
        self.random_state = random_state

    def fit(self, distance: np.ndarray) -> TicketMap:
        """Lay out the points.

        Parameters
        ----------
        distance : ndarray of float, shape (n, n)
            Symmetric, non-negative, zero diagonal.

        Returns
        -------
        TicketMap
            ``self``, with ``embedding_`` set.
        """
        d = _check_distance(distance)
        n = d.shape[0]
        self.n_neighbors_: int | None = None
        if n == 0:
            raise ValueError("no points to map")
        if n == 1:
            self.method_ = "single"
            self.embedding_ = np.zeros((1, 2))
        elif n <= max(self.mds_max_points, 2):
            from sklearn.manifold import MDS

            mds = MDS(
                n_components=2,
                metric="precomputed",
                metric_mds=True,
                init="classical_mds",
                random_state=self.random_state,
            )
            self.method_ = "mds"
            # identical tickets (all distances 0) make sklearn's stress ratio 0/0: harmless, silenced
            with np.errstate(invalid="ignore", divide="ignore"):
                self.embedding_ = np.asarray(mds.fit_transform(d), dtype=np.float64)
        else:
            umap = import_umap()
            self.n_neighbors_ = int(min(max(self.n_neighbors, 2), n - 1))
            reducer = umap.UMAP(
                n_neighbors=self.n_neighbors_,
                n_components=2,
                min_dist=self.min_dist,
                metric="precomputed",
                init="random",
                random_state=self.random_state,
            )
            with warnings.catch_warnings():
                # "n_jobs overridden by random_state" and "precomputed: no inverse_transform".
                warnings.simplefilter("ignore", UserWarning)
                self.embedding_ = np.asarray(reducer.fit_transform(d), dtype=np.float64)
            self.method_ = "umap"
        return self

    def fit_transform(self, distance: np.ndarray) -> np.ndarray:
        """:meth:`fit`, then return ``embedding_`` (shape (n, 2))."""
        return self.fit(distance).embedding_


def ticket_map_table(
    run: Run,
    methods: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    *,
    joint: bool = True,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    random_state: int = 0,
) -> pd.DataFrame:
    """2-D map of a run's tickets from their Jaccard distances.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: all methods of the run.
    levels : sequence of int, optional
        Levels to include (those a method has); default: all.
    joint : bool
        One map for all tickets of all chosen methods and levels (positions are
        comparable across levels), or one map per method and level.
    n_neighbors, min_dist, random_state
        Passed to :class:`TicketMap`.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, ticket, density, x, y``.
    """
    from analysis.packed import packed_masks, stacked_jaccard_density

    methods = list(run.methods if methods is None else methods)
    blocks = []  # (method, level, sparsity, tickets, masks)
    for method in methods:
        wanted = run.levels(method) if levels is None else [lv for lv in levels if lv in run.levels(method)]
        for level in wanted:
            blocks.append(
                (
                    method,
                    level,
                    run.sparsity(method, level),
                    run.ticket_names(method),
                    packed_masks(run, method, level),
                )
            )
    if not blocks:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in MAP_COLUMNS})

    groups = [blocks] if joint else [[b] for b in blocks]
    frames = []
    for group in groups:
        layers = list(group[0][4])
        for method, level, *_, masks in group:
            if list(masks) != layers or any(masks.shapes[n][1:] != group[0][4].shapes[n][1:] for n in layers):
                raise ValueError(f"{method} level {level}: layers differ, cannot map tickets jointly")
        # Packed and memory-mapped: counted layer by layer, never unpacked.
        jaccard, density = stacked_jaccard_density([b[4] for b in group])
        xy = TicketMap(n_neighbors, min_dist, random_state=random_state).fit_transform(1.0 - jaccard)
        rows = [(method, level, sp, t) for method, level, sp, tickets, _ in group for t in tickets]
        df = pd.DataFrame(rows, columns=["method", "level", "sparsity", "ticket"])
        df["density"] = density
        df["x"], df["y"] = xy[:, 0], xy[:, 1]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[MAP_COLUMNS]


# ----------------------------------------------------------------------------- semantic alignment


@dataclass(frozen=True)
class MantelResult:
    """Result of :func:`mantel`.

    Attributes
    ----------
    rho : float
        Spearman correlation of the off-diagonal entries (NaN if undefined).
    p_value : float
        Permutation p-value, ``(1 + #{perm at least as extreme}) / (1 + n_perm)``.
    n_perm : int
    n_pairs : int
        Off-diagonal entries compared, ``n (n - 1) / 2``.
    """

    rho: float
    p_value: float
    n_perm: int
    n_pairs: int


def _pearson_rows(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson r of vector ``x`` (P,) with each row of ``ys`` (R, P)."""
    xc = x - x.mean()
    yc = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt((xc**2).sum() * (yc**2).sum(axis=1))
    out = np.full(ys.shape[0], np.nan)
    np.divide(yc @ xc, den, out=out, where=den > 0)
    return out


def mantel(
    a: np.ndarray | pd.DataFrame,
    b: np.ndarray | pd.DataFrame,
    *,
    n_perm: int = 999,
    random_state: int = 0,
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> MantelResult:
    """Mantel test: Spearman correlation of two similarity matrices' off-diagonal entries.

    The null distribution permutes the rows and columns of ``b`` together (a
    relabelling of its items), which keeps each matrix's internal dependence
    between entries that share an item.

    Parameters
    ----------
    a, b : ndarray of float, shape (n, n), or DataFrame
        Symmetric matrices over the same n items in the same order (DataFrames:
        ``b`` is reindexed to ``a``'s labels). Only the upper triangle is read.
    n_perm : int
        Number of permutations (0: no p-value, NaN).
    random_state : int
        Seed of the permutations.
    alternative : {"greater", "less", "two-sided"}
        ``"greater"`` asks whether similar items in ``b`` are similar in ``a``.

    Returns
    -------
    MantelResult
    """
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        b = b.loc[a.index, a.columns]
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need two square matrices of the same shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    n_pairs = iu[0].size
    if n_pairs < 2 or not (np.all(np.isfinite(a[iu])) and np.all(np.isfinite(b[iu]))):
        return MantelResult(np.nan, np.nan, n_perm, n_pairs)
    ra = rankdata(a[iu])
    # A permutation only rearranges b's off-diagonal values, so their ranks can be
    # computed once and permuted with them (average ranks for ties).
    rb = np.zeros((n, n))
    rb[iu] = rankdata(b[iu])
    rb = rb + rb.T
    rho = float(_pearson_rows(ra, rb[iu][None, :])[0])
    if n_perm <= 0 or np.isnan(rho):
        return MantelResult(rho, np.nan, n_perm, n_pairs)
    rng = np.random.default_rng(random_state)
    perms = np.array([rng.permutation(n) for _ in range(n_perm)])  # (n_perm, n)
    null = _pearson_rows(ra, rb[perms[:, iu[0]], perms[:, iu[1]]])  # (n_perm,)
    return MantelResult(rho, _perm_p(null, rho, n_perm, alternative), n_perm, n_pairs)


def _residuals(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares line of ``y`` on ``x`` (both shape (P,))."""
    xc = x - x.mean()
    den = float(xc @ xc)
    slope = float(xc @ (y - y.mean())) / den if den > 0 else 0.0
    return y - y.mean() - slope * xc


def partial_mantel(
    a: np.ndarray | pd.DataFrame,
    b: np.ndarray | pd.DataFrame,
    c: np.ndarray | pd.DataFrame,
    *,
    n_perm: int = 999,
    random_state: int = 0,
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> MantelResult:
    """Partial Mantel test: whether ``a`` follows ``b`` beyond what ``c`` explains.

    The statistic is the partial Spearman correlation of the off-diagonal
    entries, ``r_ab.c = (r_ab - r_ac r_bc) / sqrt((1 - r_ac^2)(1 - r_bc^2))`` on
    ranks, i.e. the correlation of the residuals of ``a`` and of ``b`` after a
    linear fit on ``c``. The null permutes the items of ``b``'s residual matrix
    (rows and columns together; Smouse, Long and Sokal 1986), so a ``b`` that
    tracks ``a`` only through ``c`` is not significant.

    Parameters
    ----------
    a, b, c : ndarray of float, shape (n, n), or DataFrame
        Symmetric matrices over the same n items in the same order (DataFrames:
        ``b`` and ``c`` are reindexed to ``a``'s labels). Only the upper
        triangles are read. Here ``a`` = mask similarity, ``b`` = class
        similarity, ``c`` = input-space similarity (the control).
    n_perm : int
        Number of permutations (0: no p-value, NaN).
    random_state : int
        Seed of the permutations.
    alternative : {"greater", "less", "two-sided"}

    Returns
    -------
    MantelResult
        ``rho`` is the partial correlation (NaN when a matrix is constant or not finite).
    """
    if isinstance(a, pd.DataFrame):
        if isinstance(b, pd.DataFrame):
            b = b.loc[a.index, a.columns]
        if isinstance(c, pd.DataFrame):
            c = c.loc[a.index, a.columns]
    a, b, c = (np.asarray(m, dtype=np.float64) for m in (a, b, c))
    if not (a.shape == b.shape == c.shape) or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need three square matrices of one shape, got {a.shape}, {b.shape}, {c.shape}")
    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    n_pairs = iu[0].size
    if n_pairs < 3 or not all(np.all(np.isfinite(m[iu])) for m in (a, b, c)):
        return MantelResult(np.nan, np.nan, n_perm, n_pairs)
    ra, rb, rc = (rankdata(m[iu]) for m in (a, b, c))
    ea = _residuals(ra, rc)
    eb_mat = np.zeros((n, n))
    eb_mat[iu] = _residuals(rb, rc)
    eb_mat = eb_mat + eb_mat.T
    rho = float(_pearson_rows(ea, eb_mat[iu][None, :])[0])
    if n_perm <= 0 or np.isnan(rho):
        return MantelResult(rho, np.nan, n_perm, n_pairs)
    rng = np.random.default_rng(random_state)
    perms = np.array([rng.permutation(n) for _ in range(n_perm)])  # (n_perm, n)
    null = _pearson_rows(ea, eb_mat[perms[:, iu[0]], perms[:, iu[1]]])  # (n_perm,)
    return MantelResult(rho, _perm_p(null, rho, n_perm, alternative), n_perm, n_pairs)


def _perm_p(null: np.ndarray, stat: float, n_perm: int, alternative: str) -> float:
    eps = 1e-12  # ties with the observed value count as extreme
    if alternative == "greater":
        hits = null >= stat - eps
    elif alternative == "less":
        hits = null <= stat + eps
    elif alternative == "two-sided":
        hits = np.abs(null) >= abs(stat) - eps
    else:
        raise ValueError(f"unknown alternative {alternative!r}")
    return float((1 + np.sum(hits)) / (1 + n_perm))


def centroid_similarity(centroids: np.ndarray, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Input-space similarity of subset centroids: minus their Euclidean distance.

    Only the order of the entries matters to the (rank-based) Mantel tests.

    Parameters
    ----------
    centroids : ndarray of float, shape (K, F)
        One mean input per subset (a run's ``extra/centroids.safetensors``).
    names : sequence of str, optional
        Row / column labels, length K.

    Returns
    -------
    DataFrame of float64, shape (K, K)
        Diagonal 0, off-diagonal ``-||c_i - c_j||``.
    """
    x = np.asarray(centroids, dtype=np.float64).reshape(len(centroids), -1)
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1), 0.0))  # (K, K)
    labels = [str(i) for i in range(len(x))] if names is None else [str(n) for n in names]
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} names for {len(x)} centroids")
    return pd.DataFrame(-d, index=pd.Index(labels, name="ticket"), columns=labels)


def run_centroid_similarity(run: Run, method: str) -> pd.DataFrame | None:
    """:func:`centroid_similarity` of a run's stored subset centroids, labelled by ticket.

    None when the run stores no centroids or they are not one per ticket.
    """
    if not run.has_extra("centroids"):
        return None
    cents = run.extra("centroids").get("centroids")
    names = run.ticket_names(method)
    if cents is None or len(cents) != len(names):
        return None
    return centroid_similarity(cents, names)


def fashion_class_similarity() -> pd.DataFrame:
    """Shipped similarity of the 10 Fashion-MNIST classes.

    From a two-level hierarchy (``FASHION_CLUSTERS``): clothing = tops
    {T-shirt/top, Pullover, Coat, Shirt} and bottoms {Trouser, Dress};
    accessories = footwear {Sandal, Sneaker, Ankle boot} and bags {Bag}.
    Entries: 1.0 within a cluster (and on the diagonal), 0.5 between the two
    clusters of one group, 0.0 otherwise. Stored in
    ``analysis/data/fashion_similarity.csv``.

    Returns
    -------
    DataFrame of float64, shape (10, 10)
        Index = columns = class names in label order 0..9.
    """
    df = pd.read_csv(DATA_DIR / "fashion_similarity.csv", comment="#", index_col=0)
    df.index.name = "class"
    return df.astype(np.float64)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _align_reference(reference: pd.DataFrame, tickets: Sequence[str]) -> pd.DataFrame:
    """``reference`` restricted to ``tickets``, in their order (names matched loosely)."""
    if reference.shape[0] != reference.shape[1]:
        raise ValueError(f"reference must be square, got {reference.shape}")
    lookup = {_norm(n): n for n in reference.index}
    missing = [t for t in tickets if _norm(t) not in lookup]
    if missing:
        raise KeyError(f"tickets {missing} not in the reference matrix ({list(reference.index)})")
    labels = [lookup[_norm(t)] for t in tickets]
    return reference.loc[labels, labels]


def alignment_frame(
    masks: Mapping[str, np.ndarray],
    reference: pd.DataFrame,
    tickets: Sequence[str],
    *,
    value: str = "jaccard",
    groups: bool = True,
    n_perm: int = 999,
    random_state: int = 0,
    control: pd.DataFrame | None = None,
    shared: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Semantic alignment of one set of masks, over all layers and per layer group.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *shape)
        Layers in network order (for the shallow / middle / deep split).
    reference : DataFrame, shape (>= K, >= K)
        Similarity of the items the tickets stand for (e.g.
        :func:`fashion_class_similarity`); its labels must contain the ticket
        names (matched ignoring case and punctuation).
    tickets : sequence of str
        Ticket names, length K.
    value : str
        Ticket similarity: ``"jaccard"``, ``"jaccard_star"``, ``"iomin"`` or ``"phi"``.
    groups : bool
        Add one row per non-empty layer group (:func:`analysis.similarity.layer_groups`).
    n_perm, random_state
        Passed to :func:`mantel` and :func:`partial_mantel`.
    control : DataFrame, shape (K, K), optional
        Input-space similarity of the tickets' subsets (e.g.
        :func:`run_centroid_similarity`), labelled like ``tickets`` or in their
        order; gives ``partial_rho`` / ``partial_p_value`` (NaN without it).
    shared : mapping of str to ndarray of bool, optional
        Rows two tickets can share (:func:`analysis.similarity.shared_rows` of
        the unpruned masks): layers with none are left out, others count only
        those rows. Default: every row of every layer.

    Returns
    -------
    DataFrame
        Columns :data:`ALIGNMENT_COLUMNS` (module docstring).
    """
    ref = _align_reference(reference, tickets).to_numpy(dtype=np.float64)
    ctrl = None
    if control is not None:
        ctrl = (_align_reference(control, tickets) if control.shape[0] != len(tickets) else control).to_numpy(
            dtype=np.float64
        )
        if ctrl.shape != ref.shape:
            raise ValueError(f"control has shape {ctrl.shape}, need {ref.shape}")
    per_layer, comparable = _restricted_counts(masks, shared)
    scopes = {"all": comparable}
    if groups:
        scopes.update({g: names for g, names in layer_groups(comparable).items() if names})
    rows = []
    for group, names in scopes.items():
        if not names:
            continue
        sim = measures_from_counts([per_layer[n] for n in names])[value]
        res = mantel(sim, ref, n_perm=n_perm, random_state=random_state)
        part = (
            partial_mantel(sim, ref, ctrl, n_perm=n_perm, random_state=random_state)
            if ctrl is not None
            else MantelResult(np.nan, np.nan, n_perm, res.n_pairs)
        )
        rows.append(
            (group, len(names), res.n_pairs, res.rho, res.p_value, res.n_perm, part.rho, part.p_value)
        )
    return pd.DataFrame(rows, columns=ALIGNMENT_COLUMNS)


def alignment_table(
    run: Run,
    method: str,
    reference: pd.DataFrame | None = None,
    levels: Sequence[int] | None = None,
    *,
    value: str = "jaccard",
    groups: bool = True,
    n_perm: int = 999,
    random_state: int = 0,
    control: pd.DataFrame | None | Literal["centroids"] = "centroids",
) -> pd.DataFrame:
    """:func:`alignment_frame` at every level of a method (alignment against sparsity).

    Rows disjoint by construction are found once, at the method's first
    (unpruned) level (:func:`analysis.similarity.method_shared_rows`).

    Parameters
    ----------
    run : Run
    method : str
    reference : DataFrame, optional
        Default: :func:`fashion_class_similarity`.
    levels : sequence of int, optional
        Default: all completed levels.
    value, groups, n_perm, random_state
        As in :func:`alignment_frame`.
    control : DataFrame, None or "centroids"
        Input-space similarity to control for; ``"centroids"`` (default) uses
        the run's stored subset centroids (:func:`run_centroid_similarity`),
        None gives no partial statistic.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity`` then those of :func:`alignment_frame`.
    """
    from analysis.packed import packed_masks

    reference = fashion_class_similarity() if reference is None else reference
    tickets = run.ticket_names(method)
    if isinstance(control, str):
        if control != "centroids":
            raise ValueError(f"control must be a DataFrame, None or 'centroids', got {control!r}")
        control = run_centroid_similarity(run, method)
    shared = method_shared_rows(run, method)
    frames = []
    for level in run.levels(method) if levels is None else levels:
        df = alignment_frame(
            packed_masks(run, method, level),
            reference,
            tickets,
            value=value,
            groups=groups,
            n_perm=n_perm,
            random_state=random_state,
            control=control,
            shared=shared,
        )
        df.insert(0, "sparsity", run.sparsity(method, level))
        df.insert(0, "level", level)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def alignment_facts(run: Run, method: str, table: pd.DataFrame, *, alpha: float = 0.05) -> dict:
    """What a reader needs beside an alignment table: the control's own strength and a verdict.

    Parameters
    ----------
    run : Run
    method : str
    table : DataFrame
        :func:`alignment_table` of that method.
    alpha : float
        Significance level of the verdict.

    Returns
    -------
    dict
        ``disjoint`` (list of str, layers left out as disjoint by construction),
        ``inputs_rho`` / ``inputs_p`` (Mantel test of the reference against the
        input-space control; None without centroids), ``verdict`` (one sentence on
        where the partial alignment over all layers is significant).
    """
    from analysis.similarity import disjoint_layers

    control = run_centroid_similarity(run, method)
    out: dict = {
        "disjoint": disjoint_layers(method_shared_rows(run, method)),
        "inputs_rho": None,
        "inputs_p": None,
        "verdict": "",
    }
    if control is None:
        return out
    tickets = run.ticket_names(method)
    ref = _align_reference(fashion_class_similarity(), tickets)
    res = mantel(ref.to_numpy(), control.to_numpy())
    out["inputs_rho"], out["inputs_p"] = res.rho, res.p_value
    rows = table[(table["layer_group"] == "all") & table["partial_p_value"].notna()]
    sig = rows[rows["partial_p_value"] <= alpha]
    if rows.empty:
        out["verdict"] = "No level has a partial statistic."
    elif sig.empty:
        out["verdict"] = (
            f"Over all layers, the partial alignment is significant (p <= {alpha}) at no level: "
            "what alignment there is, the inputs explain."
        )
    else:
        at = ", ".join(f"{sp:.0%}" for sp in sig["sparsity"])
        out["verdict"] = (
            f"Over all layers, the partial alignment is significant (p <= {alpha}) at {len(sig)} of "
            f"{len(rows)} levels (sparsity {at}); at the others the inputs explain what alignment there is."
        )
    return out
