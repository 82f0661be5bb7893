"""API calls that leave inputs out get the handler's clear message, not Gradio's internal one.

A ``POST /gradio_api/call/NAME`` whose ``data`` list is shorter than the endpoint's inputs never
reaches our handler: Gradio's own input-count check answers first, and its message lists the
components' reprs ("<gradio.components.dropdown.Dropdown object at 0x…>"). This ASGI middleware
(passed to ``launch`` through the documented ``app_kwargs``, which go to the FastAPI app) completes
such a request the way ``gradio_client`` does before sending one: every omitted input takes its
component's default value from the endpoint's API description (``Blocks.get_api_info``), and an
input without a default is sent as null. The handler (``common.friendly``) then names the inputs
that are still missing, and the app keeps serving.

Only short ``data`` lists are touched; full requests, other routes and anything that is not a JSON
object with a ``data`` list pass through byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CALL_PATH = re.compile(r"/gradio_api/call/(?!v2/)([^/]+)/?$")
MAX_BODY = 32 * 1024 * 1024  # larger bodies pass through untouched (Gradio applies its own limits)


def complete(data: list, parameters: list[dict]) -> list:
    """``data`` with each omitted trailing input set to its default (or None where it has none)."""
    return list(data) + [p.get("parameter_default") if p.get("parameter_has_default") else None
                         for p in parameters[len(data):]]


class CompleteApiCalls:
    """ASGI middleware: fill the inputs a ``/gradio_api/call/NAME`` request left out (see the module docstring).

    ``describe`` returns ``{api_name: [parameter descriptions]}``; it is called once, at the first
    short request, when the app's endpoints are final."""

    def __init__(self, app: ASGIApp, describe: Callable[[], dict[str, list[dict]]]) -> None:
        self.app = app
        self.describe = describe
        self._endpoints: dict[str, list[dict]] | None = None

    def parameters(self, name: str) -> list[dict]:
        if self._endpoints is None:
            self._endpoints = self.describe()
        return self._endpoints.get(name, [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = CALL_PATH.search(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to call
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        new = self.rewrite(match.group(1), body)
        if new is not body:
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(new)).encode())]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": new, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def rewrite(self, name: str, body: bytes) -> bytes:
        """The request body with omitted inputs filled in; ``body`` itself when there is nothing to fill."""
        if len(body) > MAX_BODY:
            return body
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return body
        params = self.parameters(name)
        if len(payload["data"]) >= len(params):
            return body
        return json.dumps({**payload, "data": complete(payload["data"], params)}).encode()


def endpoint_parameters(demo: Any) -> Callable[[], dict[str, list[dict]]]:
    """``describe`` for ``CompleteApiCalls``: each named endpoint's parameters, from the app's API description."""
    def describe() -> dict[str, list[dict]]:
        info = demo.get_api_info(all_endpoints=True)
        return {name.lstrip("/"): list(e.get("parameters", [])) for name, e in info["named_endpoints"].items()}
    return describe
