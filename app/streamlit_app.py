"""Entry point of the dashboard: ``python -m streamlit run app/streamlit_app.py`` from the repository root.

Optional: ``-- --runs-dir DIR`` (or ``$RTL_RUNS_DIR``) adds a folder of your own runs
to the embedded ones under ``artifacts/``.
"""

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; the sibling packages (analysis,
# artifacts) live one level up. `python -m` from the root adds the cwd, but a
# start from anywhere else would not find them.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from analysis import RunFormatError  # noqa: E402
from analysis.pair_limits import PairLimitError  # noqa: E402
from app import data, sidebar  # noqa: E402
from ingest.errors import CheckpointError  # noqa: E402

# No page_title: the browser tab then shows the current page's title.
st.set_page_config(page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/similarity.py", title="Similarity", icon=":material/grid_on:"),
    st.Page("views/collapse.py", title="Collapse", icon=":material/trending_down:"),
    st.Page("views/fairness.py", title="Fairness", icon=":material/balance:"),
    st.Page("views/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("views/projection.py", title="Projection", icon=":material/scatter_plot:"),
    st.Page("views/coding.py", title="Coding cost", icon=":material/data_object:"),
    st.Page("views/reconstruction.py", title="Reconstruction", icon=":material/image:"),
    st.Page("views/denoising.py", title="Denoising", icon=":material/graphic_eq:"),
]

# The one error boundary of the app: a broken or hostile run folder (RunFormatError,
# the importers' CheckpointError, a pairwise computation past its ticket limit, a file that
# vanished or cannot be read) becomes one message on the page; the navigation, the sidebar
# and every other run stay usable.
RUN_ERRORS = (RunFormatError, CheckpointError, PairLimitError, OSError)


def show_run_error(e: Exception, where: str) -> None:
    """One clear message for a run that cannot be shown (no traceback)."""
    st.error(
        f"**{where}**: {e}\n\nChoose another run in the sidebar; other runs and pages are unaffected.",
        icon=":material/error:",
    )


page = st.navigation(PAGES)
try:
    selection = sidebar.render()
except RUN_ERRORS as e:
    selection = None
    st.session_state.pop(sidebar._SELECTION, None)  # no page may draw a stale run
    show_run_error(e, "This run cannot be opened")
else:
    try:
        page.run()
    except RUN_ERRORS as e:
        show_run_error(e, "This page cannot be shown for this run")
if selection is not None:
    # After the page is drawn, so that it does not compete with the first page for the CPU.
    data.warm_up_projection(selection.path)
