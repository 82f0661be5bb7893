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
    """A ``UserError`` keeps its message; anything else is logged with its traceback and shown as an id."""
    if isinstance(exc, gr.Error):
        return exc
    return gr.Error(report(exc))


def check_complete(fn: Callable, args: tuple, kwargs: dict) -> None:
    """``UserError`` naming the inputs an API call left out.

    Gradio fills an input that a request omits with the component object itself; without this
    check its repr ("<gradio.components.dropdown.Dropdown object at 0x…>") would reach the caller."""
    missing = [name for name, v in zip(inspect.signature(fn).parameters, args) if isinstance(v, gr.blocks.Block)]
    missing += [name for name, v in kwargs.items() if isinstance(v, gr.blocks.Block)]
    if missing:
        names = ", ".join(p for p in inspect.signature(fn).parameters if p != "request")
        raise UserError(f"The request is missing {', '.join(missing)}: send every input ({names}).")


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
