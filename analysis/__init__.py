"""Measurements of lottery tickets: pure functions, arrays in, tidy pandas out.

Never imports streamlit; torch only inside the attention probe.
"""

from artifacts.run_format import Run, RunFormatError, find_runs, load_run

__all__ = [
    "Run",
    "RunFormatError",
    "find_runs",
    "load_run",
]
