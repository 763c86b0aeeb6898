"""The dashboard in a real browser: a local streamlit server driven by headless Chromium.

Every page is opened in its own session, must show its title and a plotly
chart (or, where the run has nothing to show, its explanation), and must not
raise a JavaScript error. Screenshots go to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from analysis import find_runs

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "docs" / "screenshots"
CHART = '.js-plotly-plot, [data-testid="stPlotlyChart"]'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]


def _embedded() -> set[str]:
    """Embedded runs as ``?run=`` names: ``NAME``, or ``GROUP/seed-k`` for a group's runs."""
    return {
        f"{p.parent.name}/{p.name}" if p.parent.name != "artifacts" else p.name
        for p in find_runs(REPO / "artifacts")
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(synthetic_runs_dir):
    """A streamlit server on a free loopback port, started from the repository root."""
    port = _free_port()
    env = {**os.environ, "RTL_RUNS_DIR": str(synthetic_runs_dir)}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/streamlit_app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy within 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def _plan() -> list[tuple[str, str, str, str]]:
    """(url path, page title, run, screenshot name) per page: embedded runs when present."""
    have = _embedded()
    # a one-seed group (no across-seed views to compute on a cold server); those views are
    # drawn under AppTest on the smoke group and on fashion-mlp-class-sweep
    count = "fashion-mlp-class-sweep-count/seed-0"
    main = count if count in have else "groups"
    fair = "adult-mlp-cluster-sweep/seed-0" if "adult-mlp-cluster-sweep/seed-0" in have else "groups"
    vit_run = "fashion-vit-cluster-sweep/seed-0"
    vit = vit_run if vit_run in have else main
    return [
        ("", "Overview", main, "overview"),
        ("similarity", "Similarity", main, "similarity"),
        ("collapse", "Collapse", main, "collapse"),
        ("fairness", "Fairness", fair, "fairness"),
        ("attention", "Attention", vit, "attention"),
        ("projection", "Projection", main, "projection"),
        ("coding", "Coding cost", main, "coding"),
    ]


def _wait_until_idle(page, timeout_s: float) -> None:
    """Wait until the script has finished (no 'running' status widget nor spinner for 3 s)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = (
            page.locator('[data-testid="stStatusWidget"]').count() > 0
            or page.locator('[data-testid="stSpinner"]').count() > 0
        )
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 3.0:  # a cached function's spinner shows after a delay
            return
        page.wait_for_timeout(250)
    raise AssertionError("the page kept running")


def _pair_title(page) -> str:
    # SVG text has no innerText: read textContent.
    titles = page.locator(".js-plotly-plot .gtitle").evaluate_all("els => els.map(e => e.textContent)")
    return next(t for t in titles if "layer by layer" in t)


def _click_a_heatmap_cell(page) -> None:
    """Clicking a heatmap cell shows that pair's per-layer chart."""
    before = _pair_title(page)
    cells = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point")
    assert cells.count() >= 2, "the heatmap has no clickable cells"
    for i in (cells.count() - 1, 0):  # the last cell, or the first if the last was already shown
        box = cells.nth(i).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(500)
        _wait_until_idle(page, 60)
        if _pair_title(page) != before:
            return
    raise AssertionError(f"clicking heatmap cells did not change the pair ({before!r})")


@pytest.mark.parametrize("path,title,run,shot", _plan(), ids=[p[3] for p in _plan()])
def test_page_in_chromium(server, browser, path, title, run, shot):
    # Tall enough to show a page's main figures: streamlit scrolls inside its own container,
    # so a "full page" screenshot would stop at the viewport.
    page = browser.new_page(viewport={"width": 1440, "height": 1700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server}/{path}?run={run}", wait_until="domcontentloaded")
        page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
        _wait_until_idle(page, 150)
        assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]
        assert title in page.title(), page.title()
        heading = page.locator("h1").first.inner_text()
        assert heading, "no page heading"
        explained = page.locator('[data-testid="stAlertContentInfo"]').count() > 0
        if shot == "attention" and not run.startswith("fashion-vit-cluster"):
            assert explained, "an MLP run must explain why the attention page is empty"
        else:
            page.wait_for_selector(CHART, timeout=30_000)
            assert page.locator(CHART).count() >= 1
        page.wait_for_timeout(500)  # let plotly finish its first draw
        if shot == "similarity":
            _click_a_heatmap_cell(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot}.png"))
        assert not errors, errors
    finally:
        page.close()
