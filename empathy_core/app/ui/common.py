"""Shared UI helpers: friendly errors, the one model queue, CSV files, the optional ZeroGPU decorator."""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from ..plots import figure_csv
from ..service import Service, UserError

log = logging.getLogger("empathy_app")

# Every event that touches a model shares this queue slot: one model call at a time.
MODEL_EVENT = {"concurrency_id": "model", "concurrency_limit": 1}
# Replays only read precomputed JSON; they never wait behind a generation.
REPLAY_EVENT = {"concurrency_id": "replay", "concurrency_limit": 4}

try:  # On ZeroGPU Spaces this requests a GPU for the call; elsewhere spaces.GPU does nothing.
    import spaces  # type: ignore

    gpu = spaces.GPU
except ImportError:
    def gpu(fn=None, **_kw):
        return fn if fn is not None else (lambda f: f)


class Slider(gr.Slider):
    """A ``gr.Slider`` whose range is checked by the handler, not by Gradio.

    Gradio's own check knows only the range the page was built with, and its message does not
    say which control is wrong. Every handler here checks its numbers against the model actually
    chosen (a layer of Gemma, of SmolLM2 or of a study model) and names the control it rejects.
    """

    is_template = True  # rendered by the frontend as a plain slider

    def preprocess(self, payload):
        if payload is None or isinstance(payload, bool) or not isinstance(payload, (int, float)):
            raise gr.Error(f"{self.label or 'This slider'} needs a number, not {payload!r}.")
        return payload


def _message(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (UserError, ValueError, TypeError, FileNotFoundError)):
        return gr.Error(str(exc))
    log.exception("unexpected error")
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). The app is still running; try again.")


def friendly(fn):
    """Turn library errors into ``gr.Error`` with the library's message (plain and generator handlers)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _message(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _message(exc) from None
    return plain


def csv_file(svc: Service, fig, stem: str) -> str:
    """The figure's data as a CSV file in the app's own output folder."""
    return svc.output_path(stem, ".csv", figure_csv(fig).encode())


def session_id(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"
