"""Helpers shared by the replay tabs (results replayed from ``precomputed/``, no model needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ...errors import UserError

ALL = "all"


def quietly(fn: Callable, cleared: Callable[[str], Any]) -> Callable:
    """For a model switch: where ``fn`` refuses (say, no results for that model), clear its outputs
    and put the reason in a note, instead of an error pop-up over the old model's charts."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            return cleared(f"*{exc.message}*")
    return wrapped


def need(obj: Any, what: str, key: str) -> Any:
    """``obj``, or a ``UserError`` saying which command makes the missing results."""
    if obj is None:
        raise UserError(f"There are no precomputed {what} for {key}. Make them with "
                        f"`python -m empathy_core precompute --model {key}`.")
    return obj


def choices(values: list, fmt: str = "{}") -> list[tuple[str, str]]:
    """A filter's choices: "All", then each value."""
    return [("All", ALL)] + [(fmt.format(v), str(v)) for v in values]
