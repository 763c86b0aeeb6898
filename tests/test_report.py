from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis import load_run
from analysis.cli import main
from analysis.report import build_report, write_report


class _Tags(HTMLParser):
    """Counts tags and checks that every opened block element is closed."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.count: dict[str, int] = {}
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1
        self.ids += [v for k, v in attrs if k == "id" and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (
            f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        )
        self.stack.pop()


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """Runs with K = 3 (4 tickets in all: the map uses MDS, no numba compile in this test)."""
    from conftest import write_synthetic_run

    root = tmp_path_factory.mktemp("report_runs")
    return (
        write_synthetic_run(root / "plain", k=3, n_levels=4, groups=False, seed=2),
        write_synthetic_run(root / "audited", k=3, n_levels=4, groups=True, seed=3),
    )


def _parse(text: str) -> _Tags:
    tags = _Tags()
    tags.feed(text)
    tags.close()
    assert tags.stack == [], f"unclosed tags: {tags.stack}"
    return tags


def test_report_holds_every_section_table_and_figure(small_runs):
    run = load_run(small_runs[1])
    text = build_report(run, level=2)
    tags = _parse(text)
    for section in (
        "overview",
        "similarity",
        "collapse",
        "fairness",
        "projection",
        "coding-cost",
        "attention",
    ):
        assert section in tags.ids
    # plotly.js is inlined once; every figure is a plotly div drawn by a Plotly.newPlot call.
    assert text.count("Plotly.newPlot(") >= 12
    assert len(re.findall(r"/\*\*\s*\n\s*\* plotly\.js v", text)) <= 1
    assert not re.search(r"<script[^>]*\bsrc=", text)  # nothing to fetch: opens offline
    assert tags.count.get("table", 0) >= 8
    assert "views at level 2" in text
    assert "no attention layers" in text  # the MLP run says why attention is empty
    for group in ("Groups: class", "Groups: sex"):
        assert group in text


def test_report_explains_what_does_not_apply_and_defaults_to_half_sparsity(small_runs):
    run = load_run(small_runs[0])
    text = build_report(run)
    _parse(text)
    assert "records no group column" in text
    assert "no class-similarity reference" in text
    sp = {lv: run.sparsity("rtl", lv) for lv in run.levels("rtl")}
    nearest = min(sp, key=lambda lv: (abs(sp[lv] - 0.5), lv))
    assert f"views at level {nearest} " in text


def test_report_command(small_runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(small_runs[0]), "--out", str(out), "--level", "1"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>") and "views at level 1" in out.read_text()
    assert main(["report", str(small_runs[0]), "--level", "42"]) == 2
    assert "no level 42" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_write_report_defaults_outside_the_run(small_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_report(small_runs[0], level=0)
    assert path == Path("plain-report.html") and (tmp_path / "plain-report.html").is_file()
    assert not (small_runs[0] / "report.html").exists()
