"""The sidebar's "Open a folder on this machine" box: local sessions only, imports by path."""

from __future__ import annotations

from pathlib import Path

from hf_fixtures import tiny_llama
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "app" / "streamlit_app.py"
TIMEOUT = 180
# A small embedded run to start on: the default run's across-seed overview is not what these tests are about.
START = REPO / "artifacts" / "speech-unet-env"


def _app() -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["sidebar.run"] = str(START)
    return at


def _box_labels(at: AppTest) -> list[str]:
    return [e.label for e in at.sidebar.expander]


def test_box_hidden_without_a_local_browser(monkeypatch):
    monkeypatch.delenv("RTL_OPEN_FOLDERS", raising=False)
    at = _app()
    at.run()
    assert not at.exception
    assert "Open a folder on this machine" not in _box_labels(at)  # AppTest has no loopback client
    assert "Open your own checkpoint" in _box_labels(at)  # the upload box stays


def test_open_hf_folders_by_path_and_show_every_page(monkeypatch, tmp_path):
    monkeypatch.setenv("RTL_OPEN_FOLDERS", "1")
    for name, seed in (("code", 1), ("math", 2)):
        tiny_llama(tmp_path / "models" / name, seed)
    at = _app()
    at.run()
    assert "Open a folder on this machine" in _box_labels(at)
    at.sidebar.text_input(key="open_folder.path").input(str(tmp_path / "models"))
    at.sidebar.text_input(key="open_folder.out").input(str(tmp_path / "run"))
    at.run()
    at.sidebar.button(key="open_folder.go").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.sidebar.error]
    assert (tmp_path / "run" / "manifest.json").is_file()
    assert at.session_state["sidebar.run"] == str(tmp_path / "run")
    for page in ("overview", "similarity", "coding"):
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if page == "overview":  # the 2:4 layer is reported per ticket
            assert any(e.label.startswith("N:M structure") for e in at.main.expander)
            nm = at.main.dataframe[0].value
            assert (nm["code"] == "2:4").sum() == 1 and (nm["math"] == "2:4").sum() == 1
    # A bad path is an error in the sidebar, not an exception.
    at.sidebar.text_input(key="open_folder.path").input(str(tmp_path / "nope"))
    at.sidebar.text_input(key="open_folder.out").input("")
    at.run()
    at.sidebar.button(key="open_folder.go").click()
    at.run()
    assert not at.exception
    assert any("No such file" in e.value for e in at.sidebar.error)
