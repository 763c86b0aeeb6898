"""The classification methods, by name: an explicit registry (no registration on import).

``METHODS[name]`` holds the method's manifest entry and its level runner;
:data:`lottery.config.METHOD_NAMES` lists the same names for the run
description's checks (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from lottery import imp, independent, rtl
from lottery.context import Context


class Method(NamedTuple):
    """One method of a classification run.

    Attributes
    ----------
    manifest_entry : callable
        ``manifest_entry(ctx) -> dict``: the method's entry in ``manifest.json``.
    run : callable
        ``run(ctx, show_progress)``: runs or resumes every level of the method.
    """

    manifest_entry: Callable[[Context], dict]
    run: Callable[[Context, bool], None]


METHODS: dict[str, Method] = {
    imp.METHOD: Method(imp.manifest_entry, imp.run_imp),
    imp.DENSE: Method(imp.dense_manifest_entry, imp.run_dense),
    independent.METHOD: Method(independent.manifest_entry, independent.run_independent),
    rtl.METHOD: Method(rtl.manifest_entry, rtl.run_rtl),
}
