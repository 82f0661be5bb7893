"""Content care and classroom mode, the app's error messages for incomplete API calls, and the
per-run output folder's removal at exit (no model needed, except the launched-app test)."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import pytest

from empathy_core.app import inputs
from empathy_core.app.ui.common import friendly

ROOT = Path(__file__).resolve().parent.parent


def test_content_note_names_the_themes_and_bakes_in_no_phone_number():
    for text in (inputs.CONTENT_NOTE, inputs.scenario_note("listener"), inputs.scenario_note("protector")):
        assert "helpline" in text and "someone you trust" in text
        assert not re.search(r"\d{3}", text), "no country-specific number"
    assert "self-harm" in inputs.CONTENT_NOTE and "bullying" in inputs.CONTENT_NOTE
    assert inputs.scenario_note("food_delivery") == "" and inputs.scenario_note("maze") == ""
    about = (ROOT / "assets" / "about.md").read_text()
    assert "Content note" in about and "helpline" in about and "--classroom" in about


def test_classroom_mode_starts_on_the_gentler_scenarios(monkeypatch):
    monkeypatch.delenv("EMPATHY_CLASSROOM", raising=False)
    assert not inputs.classroom_mode() and inputs.classroom_mode(True)
    monkeypatch.setenv("EMPATHY_CLASSROOM", "1")
    assert inputs.classroom_mode()
    ids = [i for _, i in inputs.scenario_choices(classroom=True)]
    assert ids[:2] == list(inputs.GENTLE_SCENARIOS) and inputs.first_scenario(True) in inputs.GENTLE_SCENARIOS
    labels = dict((i, label) for label, i in inputs.scenario_choices(classroom=True))
    assert all("content note" in labels[s] for s in inputs.SENSITIVE_SCENARIOS)
    assert [i for _, i in inputs.scenario_choices()][:2] == ["food_delivery", "listener"]  # unchanged otherwise


def _component(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


@pytest.mark.parametrize("classroom", [False, True])
def test_steer_tab_has_the_note_and_opens_where_the_mode_says(classroom):
    sys.path.insert(0, str(ROOT))
    import app
    from empathy_core.app.service import Service

    demo = app.build_app(Service("smollm2-135m", judge=False), classroom=classroom)
    assert "self-harm" in _component(demo, "steer-content-note").value
    scenario = _component(demo, "scenario-select").value
    assert scenario == ("food_delivery" if classroom else "listener")
    note = _component(demo, "scenario-note")
    assert bool(note.visible) == (not classroom) and ("self-harm" in note.value) == (not classroom)
    assert bool(_component(demo, "show-sensitive").visible) == classroom


def test_a_call_missing_inputs_says_which_without_internal_reprs():
    def score(key: str, text: str) -> str:
        return key + text

    with pytest.raises(gr.Error) as e:
        friendly(score)("smollm2-135m", gr.Textbox())
    assert "missing text" in e.value.message and "object at" not in e.value.message
    assert friendly(score)("a", "b") == "ab"


def test_the_output_folder_is_removed_when_the_process_exits(tmp_path):
    code = "from empathy_core.app.service import Service; s = Service(judge=False); print(s.out_dir, flush=True)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("empathy-app-") and not folder.exists()


@pytest.mark.real
def test_the_app_removes_its_output_folder_on_sigterm(tmp_path):
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-warmup"], cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the app did not start"
                time.sleep(0.5)
        assert list(tmp_path.glob("empathy-app-*")), "the app made no output folder"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp_path.glob("empathy-app-*"))
