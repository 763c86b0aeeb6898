"""The run format (a versioned on-disk contract) and the embedded default runs.

The run folders under ``artifacts/`` are the runs shipped with the dashboard;
:mod:`artifacts.run_format` is the one module that knows their file names.
"""

from artifacts.run_format import (
    SCHEMA_VERSION,
    Run,
    RunFormatError,
    find_runs,
    load_run,
)

__all__ = ["SCHEMA_VERSION", "Run", "RunFormatError", "find_runs", "load_run"]
