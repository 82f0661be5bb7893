"""Loud errors: user errors say what to fix in one log line; anything else is logged with its
traceback under an id, and people see only that id."""

import logging

import gradio as gr
import pytest

from empathy_core.app.service import Service
from empathy_core.app.ui.common import friendly
from empathy_core.errors import UserError, report


def test_a_user_error_is_shown_and_logged_as_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="empathy_core"):
        msg = report(UserError("Layer must be a whole number from 0 to 3."))
    assert msg == "Layer must be a whole number from 0 to 3."
    [rec] = caplog.records
    assert rec.exc_info is None and "\n" not in rec.getMessage()


@pytest.mark.parametrize("exc", [KeyError("best_layer"), TypeError("unsupported operand"), ValueError("shape mismatch")])
def test_anything_else_is_an_internal_error_with_a_logged_traceback(caplog, exc):
    try:
        raise exc
    except Exception as caught:
        with caplog.at_level(logging.INFO, logger="empathy_core"):
            msg = report(caught)
    ref = msg.split("logged as ")[1].split(".")[0]
    assert msg.startswith("Internal error, logged as ") and str(exc).strip("'") not in msg
    [rec] = caplog.records
    assert rec.levelno == logging.ERROR and ref in rec.getMessage() and rec.exc_info is not None
    assert "Traceback" in caplog.text


def test_ui_handlers_show_user_errors_and_hide_bugs():
    @friendly
    def bad_input():
        raise UserError("The text is empty: type or pick a reply to score.")

    @friendly
    def bug():
        return {}["missing"]

    @friendly
    def streaming_bug():
        yield 1
        raise TypeError("None is not iterable")

    with pytest.raises(gr.Error, match="The text is empty"):
        bad_input()
    for call in (bug, lambda: list(streaming_bug())):
        with pytest.raises(gr.Error) as err:
            call()
        assert "Internal error, logged as" in err.value.message and "missing" not in err.value.message


def test_a_startup_failure_leaves_a_traceback_in_the_log(tmp_path, caplog, monkeypatch):
    svc = Service("smollm2-135m", root=tmp_path, judge=False)

    def broken(key):
        raise RuntimeError("weights could not be mapped")

    monkeypatch.setattr(svc, "_load", broken)
    with caplog.at_level(logging.INFO):
        svc.start(warm=False)
        st = svc.wait_ready(timeout=60)
    assert st.state == "error" and "RuntimeError" in st.message and "log" in st.message
    assert any(r.exc_info is not None and "start-up failed" in r.getMessage() for r in caplog.records)
    assert "weights could not be mapped" in caplog.text
