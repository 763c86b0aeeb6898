"""Bounds on pairwise ticket computations: K tickets make K x K matrices.

Ten thousand tickets (a few MB of masks) would need 800 MB per K x K float64
matrix and 50 million rows per level in a pair table. Past
:func:`max_pair_tickets` tickets (default 256, environment variable
``RTL_MAX_PAIR_TICKETS``), whole-method summaries are computed on a fixed,
seeded sample of that many tickets (:func:`pair_sample`), a heatmap of more
chosen tickets is refused, and no K x K matrix of more than
:func:`max_matrix_tickets` rows (16 times that: 4096, 128 MB) is ever allocated
(the joint ticket map stacks tickets of every level). Refusals raise
:class:`PairLimitError`, whose message says how to narrow the ticket filter.
"""

from __future__ import annotations

import os

import numpy as np

DEFAULT_MAX_PAIR_TICKETS = 256
PAIR_ENV = "RTL_MAX_PAIR_TICKETS"


class PairLimitError(ValueError):
    """More tickets were asked to be compared pairwise than memory allows."""


def max_pair_tickets() -> int:
    """Most tickets compared pairwise at once: ``$RTL_MAX_PAIR_TICKETS``, else 256."""
    raw = os.environ.get(PAIR_ENV, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_MAX_PAIR_TICKETS
    except ValueError:
        value = DEFAULT_MAX_PAIR_TICKETS
    return max(2, value)


def max_matrix_tickets() -> int:
    """Most rows of any K x K matrix computed: 16 x :func:`max_pair_tickets` (4096 by default)."""
    return 16 * max_pair_tickets()


def pair_sample(k: int, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices of the tickets a whole-method pairwise summary uses.

    Parameters
    ----------
    k : int
        Number of tickets.
    limit : int, optional
        Default :func:`max_pair_tickets`.
    seed : int
        The sample is a function of ``(k, limit, seed)`` only, so every level
        and every page compares the same tickets.

    Returns
    -------
    ndarray of int64, shape (min(k, limit),)
        Sorted; ``arange(k)`` when ``k <= limit``.
    """
    limit = max_pair_tickets() if limit is None else int(limit)
    if k <= limit:
        return np.arange(k, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(k, size=limit, replace=False)).astype(np.int64)


def check_pair_count(k: int, what: str = "tickets", limit: int | None = None) -> None:
    """Refuse to compare more than ``limit`` tickets pairwise.

    Parameters
    ----------
    k : int
        Tickets to compare.
    what : str
        How to name them in the message.
    limit : int, optional
        Default :func:`max_matrix_tickets` (the backstop of every K x K computation);
        pages that draw a matrix pass :func:`max_pair_tickets`.

    Raises
    ------
    PairLimitError
        With the memory the K x K matrices would take and how to narrow the choice.
    """
    limit = max_matrix_tickets() if limit is None else int(limit)
    if k > limit:
        mb = k * k * 8 / 2**20
        raise PairLimitError(
            f"{k} {what} are too many to compare pairwise ({mb:,.0f} MB per {k} x {k} matrix); "
            f"at most {limit} are compared at once. Narrow the sidebar's ticket filter to at most "
            f"{limit} tickets (or raise the limit with {PAIR_ENV})."
        )
