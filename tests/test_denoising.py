"""SI-SNRi tables, the paper comparison, listening examples, the figure, the CLI and the Denoising page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import denoising as den
from analysis.figures.denoising import sisnri_figure
from artifacts import run_format as rf

REPO = Path(__file__).resolve().parents[1]
ENVS = ["indoor", "outdoor", "transportation"]
SPARSITY = [0.0, 0.2, 0.488, 0.738]
N = 48  # mixtures: 16 per environment


def write_speech_run(run_dir: Path, seed: int = 0) -> Path:
    """A small speech run: rtl, imp, independent over 4 levels; rtl and imp store enhanced clips."""
    rng = np.random.default_rng(seed)
    shapes = {"down.0.weight": (4, 2, 3, 3), "up.0.weight": (4, 2, 3, 3)}
    rf.write_manifest(
        run_dir,
        {
            "name": run_dir.name,
            "task": "speech",
            "dataset": {"name": "synthetic-speech", "classes": ENVS, "sample_rate": 16000, "n_test": N},
            "model": {"name": "unet"},
            "partition": {"kind": "environment", "k": 3, "names": ENVS},
            "prunable": {n: list(s) for n, s in shapes.items()},
            "groups": ["environment", "speaker"],
            "methods": {
                m: {
                    "tickets": ENVS if m != "imp" else ["all"],
                    "ticket_kind": "environment" if m != "imp" else "single",
                }
                for m in ("rtl", "imp", "independent")
            },
        },
    )
    env_id = np.repeat(np.arange(3), N // 3)
    base = pd.DataFrame(
        {
            "sample": np.arange(N),
            "subset": env_id,
            "label": env_id,
            "environment": np.asarray(ENVS, dtype=object)[env_id],
            "speaker": np.where(np.arange(N) % 2, "a", "b").astype(object),
            "snr_db": np.tile([0.0, 5.0], N // 2),
            "si_snr_in": rng.normal(2.0, 3.0, N),
        }
    )
    (run_dir / rf.EXTRA_DIR).mkdir(parents=True)
    rf.save_tensors(
        run_dir / rf.EXTRA_DIR / "examples.safetensors",
        {
            "noisy": rng.integers(-32767, 32767, (3, 800)).astype(np.int16),
            "clean": rng.integers(-32767, 32767, (3, 800)).astype(np.int16),
        },
    )
    for mi, method in enumerate(("rtl", "imp", "independent")):
        k = 1 if method == "imp" else 3
        for level, sp in enumerate(SPARSITY):
            frame = base.copy()
            frame["si_snr_out"] = frame["si_snr_in"] + rng.normal(5.0 - mi - level * 0.3, 1.0, N)
            frame["si_snri"] = frame["si_snr_out"] - frame["si_snr_in"]
            frame["ticket"] = env_id if k == 3 else 0
            arrays = None
            if method != "independent":
                arrays = {"enhanced": np.full((3, 800), 1000 * (mi + 1) + level, dtype=np.int16)}
            rf.write_level(
                run_dir,
                method,
                level,
                masks={n: np.ones((k, *s), dtype=bool) for n, s in shapes.items()},
                predictions=frame,
                info={"sparsity": sp, "params_union": 1, "params_total": 1, "params_per_ticket": [1] * k},
                arrays=arrays,
            )
    return run_dir


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory) -> rf.Run:
    root = tmp_path_factory.mktemp("speech-runs")
    return rf.load_run(write_speech_run(root / "speech-synthetic"))


def test_frame_means_match_a_pandas_groupby(speech_run):
    preds = speech_run.predictions("rtl", 2)
    frame = den.denoising_frame(preds, n_boot=200)
    expected = preds.groupby("environment")[list(den.METRICS)].mean()
    for env in ENVS:
        for metric in den.METRICS:
            row = frame[(frame["environment"] == env) & (frame["metric"] == metric)].iloc[0]
            assert row["value"] == pytest.approx(expected.loc[env, metric])
            assert row["n"] == N // 3
            assert row["ci_low"] <= row["value"] <= row["ci_high"]
    overall = frame[(frame["environment"] == "all") & (frame["metric"] == "si_snri")].iloc[0]
    assert overall["value"] == pytest.approx(preds["si_snri"].mean()) and overall["n"] == N
    by_snr = den.denoising_frame(preds, group="snr_db", n_boot=0)
    assert set(by_snr["snr_db"]) == {"0.0", "5.0", "all"} and by_snr["ci_low"].isna().all()
    with pytest.raises(KeyError, match="speech"):
        den.denoising_frame(preds.drop(columns="si_snri"))


def test_bootstrap_interval_covers_the_normal_theory_interval():
    values = np.random.default_rng(3).normal(4.0, 2.0, 400)
    frame = den.denoising_frame(
        pd.DataFrame({"environment": "x", "si_snri": values, "si_snr_in": values, "si_snr_out": values}),
        n_boot=4000,
    )
    row = frame[(frame["environment"] == "x") & (frame["metric"] == "si_snri")].iloc[0]
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert row["ci_low"] == pytest.approx(values.mean() - half, abs=0.05)
    assert row["ci_high"] == pytest.approx(values.mean() + half, abs=0.05)


def test_table_covers_every_method_level_and_environment(speech_run):
    table = den.denoising_table(speech_run, n_boot=50)
    assert list(table.columns) == den.DENOISING_COLUMNS
    assert len(table) == 3 * len(SPARSITY) * (len(ENVS) + 1) * len(den.METRICS)
    got = table.drop_duplicates(["method", "level"]).set_index(["method", "level"])["sparsity"]
    assert got[("imp", 3)] == pytest.approx(0.738)


def test_paper_comparison_takes_the_nearest_levels_and_the_papers_numbers(speech_run):
    comp = den.paper_comparison(den.denoising_table(speech_run, n_boot=0))
    rtl = comp[comp["method"] == "rtl"].set_index("target")
    assert rtl["level"].tolist() == [1, 2, 3]
    assert rtl["paper"].tolist() == list(den.PAPER_SISNRI["rtl"])
    indep = comp[comp["method"] == "independent"].set_index("target")
    assert indep.loc[0.5, "paper"] == 5.78
    table = den.denoising_table(speech_run, n_boot=0)
    row = table[(table["method"] == "imp") & (table["level"] == 2)]
    value = row[(row["environment"] == "all") & (row["metric"] == "si_snri")]["value"].iloc[0]
    assert comp.set_index(["method", "target"]).loc[("imp", 0.5), "si_snri"] == pytest.approx(value)
    odd = den.paper_comparison(table, targets=(0.9,))
    assert odd["paper"].isna().all() and (odd["level"] == 3).all()


def test_listening_examples_are_float_clips_of_the_chosen_levels(speech_run):
    clips = den.listening_examples(
        speech_run, ["rtl", "imp", "independent"], {"rtl": 2, "imp": 1, "independent": 2}
    )
    assert set(clips["kind"]) == {"noisy", "clean", "rtl", "imp"}  # independent stores none
    assert len(clips) == 3 * 4
    rtl = clips[(clips["kind"] == "rtl") & (clips["environment"] == "outdoor")].iloc[0]
    assert rtl["level"] == 2 and rtl["sample_rate"] == 16000
    np.testing.assert_allclose(rtl["audio"], (1000 + 2) / 32767.0, rtol=1e-6)
    noisy = clips[clips["kind"] == "noisy"].iloc[0]["audio"]
    assert noisy.dtype == np.float32 and np.abs(noisy).max() <= 1.0


def test_figure_has_a_panel_per_environment_and_the_paper_markers(speech_run):
    fig = sisnri_figure(den.denoising_table(speech_run, n_boot=0), "si_snri", paper=den.PAPER_SISNRI)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["all", *ENVS]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 3 * 4
    paper = [t for t in fig.data if t.name.endswith("(paper)")]
    assert {t.name.split()[0]: list(t.y) for t in paper} == {m: list(v) for m, v in den.PAPER_SISNRI.items()}


def test_analysis_module_does_not_load_streamlit():
    code = "import sys, analysis.denoising, analysis.figures.denoising; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_command_prints_the_table_and_refuses_other_runs(speech_run, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "analysis.denoising", str(speech_run.path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "paper" in out.stdout and "transportation" in out.stdout and "7.25" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "analysis.denoising", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def _app(monkeypatch, runs_dir: Path, run: Path) -> AppTest:
    monkeypatch.setenv("RTL_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=120)
    at.session_state["sidebar.run"] = str(run)
    return at.run()


def test_denoising_page_shows_curves_table_and_players(monkeypatch, speech_run):
    at = _app(monkeypatch, speech_run.path.parent, speech_run.path)
    at.switch_page("views/denoising.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Denoising"
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("audio")) == 3 * 4  # noisy, clean, rtl, imp per environment
    paper = [d.value for d in at.dataframe if "paper" in d.value.columns][0]
    assert set(paper["method"]) == {"rtl", "imp", "independent"}


def test_denoising_page_explains_itself_on_other_runs(monkeypatch, synthetic_runs_dir):
    run = sorted(p for p in synthetic_runs_dir.iterdir() if (p / "manifest.json").is_file())[0]
    at = _app(monkeypatch, synthetic_runs_dir, run)
    at.switch_page("views/denoising.py").run()
    assert not at.exception
    assert any("not a speech-enhancement run" in i.value for i in at.info)
