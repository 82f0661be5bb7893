"""Shared UI helpers: error reporting, the one model queue, CSV files, uploads, the optional ZeroGPU decorator."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from ...errors import UserError, report
from ..plots import figure_csv
from ..service import Service

# Every event that touches a model shares this queue slot: one model call at a time.
MODEL_EVENT: dict[str, Any] = {"concurrency_id": "model", "concurrency_limit": 1}
# Scores have their own queue slot: one forward pass each, run between a generation's decode steps
# (core/compute.py's short-job lane), so a score never waits for a whole generation.
SCORE_EVENT: dict[str, Any] = {"concurrency_id": "score", "concurrency_limit": 1}
# Replays only read precomputed JSON; they never wait behind a generation.
REPLAY_EVENT: dict[str, Any] = {"concurrency_id": "replay", "concurrency_limit": 4}
# Handlers of these events get the raw values and check them themselves: Gradio's own slider
# check knows only the range the page was built with, and its message does not name the control.
# Every handler checks its numbers against the model actually chosen and names the control it rejects.
RAW_INPUTS: dict[str, Any] = {"preprocess": False}

try:  # On ZeroGPU Spaces this requests a GPU for the call; elsewhere spaces.GPU does nothing.
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn: Any = None, **_kw: Any) -> Any:
        return fn if fn is not None else (lambda f: f)


def _error(exc: Exception) -> gr.Error:
    """A ``UserError`` keeps its message; anything else is logged with its traceback and shown as an id.

    ``report`` has already logged it (one line for a user error, the traceback under an id for a bug),
    so Gradio is told not to print its own traceback of the ``gr.Error`` (``print_exception=False``)."""
    if isinstance(exc, gr.Error):
        return exc
    return gr.Error(report(exc), print_exception=False)


def check_complete(fn: Callable, args: tuple, kwargs: dict) -> None:
    """``UserError`` naming the inputs an API call left out.

    An input counts as missing when it is a component object (what a handler would see for an input
    that never arrived) or None where the handler's parameter is annotated ``str`` (a model key, a
    text, a scenario: nothing a page ever sends as null). ``api_calls.CompleteApiCalls`` sends null
    for an omitted input without a default, so a short ``/gradio_api/call/NAME`` request ends here
    with this message instead of Gradio's own, which lists the components' reprs."""
    params = inspect.signature(fn).parameters
    given = {**dict(zip(params, args)), **kwargs}
    missing = [name for name, v in given.items()
               if isinstance(v, gr.components.Component) or (v is None and _annotation(params.get(name)) == "str")]
    if missing:
        names = ", ".join(p for p in params if p != "request")
        raise UserError(f"The request is missing {', '.join(missing)}: send every input ({names}).")


def _annotation(param: inspect.Parameter | None) -> str:
    """A parameter's annotation as written (a string under ``from __future__ import annotations``)."""
    if param is None or param.annotation is inspect.Parameter.empty:
        return ""
    a = param.annotation
    return a if isinstance(a, str) else getattr(a, "__name__", str(a))


def friendly(fn: Callable) -> Callable:
    """Turn a handler's exceptions into ``gr.Error``: user errors say what to fix, bugs say "internal error, logged as ID"."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                check_complete(fn, args, kwargs)
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _error(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            check_complete(fn, args, kwargs)
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _error(exc) from None
    return plain


def file_path(payload: Any) -> str | None:
    """The server-side path of an uploaded file, given a raw (unpreprocessed) ``gr.File`` value."""
    if payload is None or payload == "":
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return str(payload)


def csv_file(svc: Service, fig: Any, stem: str) -> str:
    """The figure's data as a CSV file in the app's own output folder."""
    return svc.output_path(stem, ".csv", figure_csv(fig).encode())


def session_id(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"
