"""The middleware that completes short ``/gradio_api/call/NAME`` requests (ui/api_calls.py), without a server."""

import asyncio
import json

import gradio as gr
import pytest

from empathy_core.app.ui.api_calls import CompleteApiCalls, complete
from empathy_core.app.ui.common import friendly

PARAMS = {"score": [{"parameter_name": "key", "parameter_has_default": True, "parameter_default": "smollm2-135m"},
                    {"parameter_name": "text", "parameter_has_default": False},
                    {"parameter_name": "layer", "parameter_has_default": True, "parameter_default": 10},
                    {"parameter_name": "upload", "parameter_has_default": False}]}


def run(mw: CompleteApiCalls, path: str, body: bytes, method: str = "POST", chunks: int = 1) -> tuple[bytes, dict]:
    """Send one request through the middleware; returns the body and headers the wrapped app saw."""
    seen: dict = {}

    async def app(scope, receive, send):
        parts = []
        while True:
            m = await receive()
            parts.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        seen["body"], seen["headers"] = b"".join(parts), dict(scope["headers"])

    mw.app = app
    step = max(1, len(body) // chunks)
    pieces = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", str(len(body)).encode())]}
    asyncio.run(mw(scope, receive, None))
    return seen["body"], seen["headers"]


def middleware(calls: list | None = None) -> CompleteApiCalls:
    def describe():
        if calls is not None:
            calls.append(1)
        return PARAMS
    return CompleteApiCalls(None, describe)


def test_omitted_inputs_take_their_defaults_or_null():
    assert complete(["qwen"], PARAMS["score"]) == ["qwen", None, 10, None]
    assert complete([], PARAMS["score"]) == ["smollm2-135m", None, 10, None]
    assert complete(["a", "b", 3, None], PARAMS["score"]) == ["a", "b", 3, None]


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_short_call_is_completed_and_its_length_header_follows(chunks):
    calls: list = []
    mw = middleware(calls)
    body, headers = run(mw, "/gradio_api/call/score", json.dumps({"data": ["qwen"], "session_hash": "s"}).encode(), chunks=chunks)
    assert json.loads(body) == {"data": ["qwen", None, 10, None], "session_hash": "s"}
    assert headers[b"content-length"] == str(len(body)).encode()
    run(mw, "/gradio_api/call/score/", json.dumps({"data": []}).encode())
    assert len(calls) == 1  # the endpoints are described once


@pytest.mark.parametrize("path,method,body", [
    ("/gradio_api/call/score", "POST", json.dumps({"data": ["a", "b", 3, None]}).encode()),  # complete already
    ("/gradio_api/call/score", "POST", b"not json"),
    ("/gradio_api/call/score", "POST", json.dumps({"data": "text"}).encode()),
    ("/gradio_api/call/unknown", "POST", json.dumps({"data": []}).encode()),
    ("/gradio_api/call/v2/score", "POST", json.dumps({"text": "x"}).encode()),  # Gradio fills v2 calls itself
    ("/gradio_api/queue/join", "POST", json.dumps({"data": []}).encode()),
])
def test_everything_else_passes_through_byte_for_byte(path, method, body):
    assert run(middleware(), path, body, method)[0] == body


def test_the_handler_then_names_what_is_missing():
    def score(key: str, text: str, layer: object, upload: object) -> str:
        return f"{key}:{text}"

    with pytest.raises(gr.Error) as e:
        friendly(score)(*complete(["qwen"], PARAMS["score"]))
    assert "missing text" in e.value.message and "layer" not in e.value.message.split(":")[0]
    assert friendly(score)("qwen", "hello", None, None) == "qwen:hello"  # None where a default applies is fine
    # logged once, as one line, by errors.report: Gradio does not print a traceback of it as well
    assert e.value.print_exception is False
