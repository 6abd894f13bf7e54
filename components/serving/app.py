"""What the server adds to KServe's FastAPI app: a body-size limit, per-request metrics, and
4xx answers that name the field.

:class:`Guard` is a plain ASGI middleware (no per-request objects beyond a closure): it
refuses a body over ``max_body_bytes`` with 413 (by its ``Content-Length``, or counted as it
streams in), and times and counts every inference request by status and error kind.
:func:`install` adds it and the exception handlers to ``kserve.model_server.app``; it runs in
every server process (the model calls it when it is created or unpickled in a worker).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from kserve.errors import InferenceError

from . import metrics
from .validation import RequestError

log = logging.getLogger("loopline.serving")

ERROR_HEADER = "x-loopline-error"
# The model's labels, set when it loads (one model per server process).
LABELS = {"model": "", "version": ""}
# Model name -> the model, for the V2 JSON fast lane.
MODELS: dict = {}
# --fault_latency_ms (tests and demos only), seconds added to every inference request.
FAULT_LATENCY_S = 0.0
_installed = False


class _TooLarge(Exception):
    pass


def _protocol(path: str) -> str | None:
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2"
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "v1"
    return None


def _kind(status: int) -> str:
    return {400: "invalid", 404: "not_found", 413: "too_large", 422: "body", 503: "not_ready"}.get(
        status, "internal" if status >= 500 else "client"
    )


class Guard:
    """Body-size limit and request metrics for the inference routes."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        protocol = _protocol(scope["path"]) if scope["type"] == "http" else None
        if protocol is None:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        limit = self.max_body_bytes
        state = {"status": 500, "kind": "", "started": False, "received": 0}
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, int(value), limit)
                _record(protocol, 413, "too_large", began)
                return

        if FAULT_LATENCY_S:  # fault injection: the event loop serves others meanwhile
            await asyncio.sleep(FAULT_LATENCY_S)

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise _TooLarge()
            return message

        async def observed_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                for key, value in message.get("headers", ()):
                    if key == ERROR_HEADER.encode():
                        state["kind"] = value.decode()
            await send(message)

        if protocol == "v2" and scope["method"] == "POST" and _fast_lane(scope):
            model = MODELS.get(scope["path"][len("/v2/models/") : -len("/infer")])
            if model is not None:
                await self._fast(model, scope, limited_receive, send, state)
                _record(protocol, state["status"], state["kind"], began)
                return
        try:
            await self.app(scope, limited_receive, observed_send)
        except _TooLarge:
            if not state["started"]:
                await _refuse(send, state["received"], limit)
            state["status"], state["kind"] = 413, "too_large"
        finally:
            status = state["status"]
            _record(
                protocol, status, state["kind"] or (_kind(status) if status >= 400 else ""), began
            )

    async def _fast(self, model, scope, receive, send, state) -> None:
        """The V2 JSON fast lane: read the body, let the model answer, send JSON."""
        chunks = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except _TooLarge:
            await _refuse(send, state["received"], self.max_body_bytes)
            state["status"], state["kind"] = 413, "too_large"
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        extra = []
        try:
            if not model.ready:
                raise _NotReady(f"Model with name {model.name} is not ready.")
            answer, request_id = await model.infer_v2_json(b"".join(chunks), headers)
            status, body = 200, orjson.dumps(answer)
            extra.append((b"x-request-id", request_id.encode("latin-1", "replace")))
        except RequestError as exc:
            status, body = exc.status, orjson.dumps({"error": str(exc)})
            state["kind"] = exc.kind
        except _NotReady as exc:
            status, body = 503, orjson.dumps({"error": str(exc)})
            state["kind"] = "not_ready"
        except InferenceError as exc:  # the model failed (logged where it failed) or a fault
            status, body = 500, orjson.dumps({"error": str(exc)})
            state["kind"] = "internal"
        except Exception as exc:  # never take the server down: a 500 naming the cause
            log.exception("inference failed")
            status, body = 500, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
            state["kind"] = "internal"
        state["status"] = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _NotReady(Exception):
    pass


def _fast_lane(scope) -> bool:
    """JSON bodies only: the binary tensor extension and other content types go to KServe."""
    for key, value in scope["headers"]:
        if key == b"inference-header-content-length":
            return False
        if key == b"content-type" and not value.startswith(b"application/json"):
            return False
    return True


def _record(protocol: str, status: int, kind: str, began: float) -> None:
    model, version = LABELS["model"], LABELS["version"]
    metrics.REQUESTS.labels(model, version, protocol, str(status)).inc()
    metrics.LATENCY.labels(model, version, protocol).observe(time.perf_counter() - began)
    if status >= 400:
        metrics.ERRORS.labels(model, version, kind).inc()


async def _refuse(send, size: int, limit: int) -> None:
    body = orjson.dumps(
        {
            "error": f"request body is over {limit} bytes (at least {size}); the limit is --max_body_bytes"
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (ERROR_HEADER.encode(), b"too_large"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def request_error_handler(_, exc: RequestError):
    from fastapi.responses import ORJSONResponse

    return ORJSONResponse(
        status_code=exc.status, content={"error": str(exc)}, headers={ERROR_HEADER: exc.kind}
    )


async def body_error_handler(_, exc):
    """FastAPI's validation of the V2 body (bad JSON, a missing or mistyped field): a 400 that
    names the field, in KServe's error shape, instead of FastAPI's 422 detail list."""
    from fastapi.responses import ORJSONResponse

    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        message = (
            f"request body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
        )
    else:
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "InferenceRequest")]
        message = f"request body: field {'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}"
    return ORJSONResponse(
        status_code=400,
        content={"error": message},
        headers={ERROR_HEADER: "body"},
    )


def install(max_body_bytes: int) -> None:
    """Adds the guard and the handlers to KServe's app (once per process)."""
    global _installed
    if _installed:
        return
    from fastapi.exceptions import RequestValidationError
    from kserve.model_server import app

    app.add_middleware(Guard, max_body_bytes=max_body_bytes)
    app.add_exception_handler(RequestError, request_error_handler)
    app.add_exception_handler(RequestValidationError, body_error_handler)
    _installed = True
