"""The REST API's edge: what every request passes before a route sees it.

- a request id on every answer (`X-Request-ID`), and in the body and the log of every 5xx;
- bodies bounded (`$OMBUDSMAN_API_MAX_BODY_BYTES`, default 1 MiB): 413 naming the limit;
- JSON that Python reads but JSON forbids (NaN, Infinity, numbers that overflow to infinity,
  lone surrogates) refused with 422 naming the field, before a model or Prefect sees it;
- when served (`serve`), the access and error logs put back whenever Prefect's logging setup
  (run again by the first in-process job) has reset uvicorn's loggers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.exceptions import PrefectHTTPStatusError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_ombudsman.credentials import mask_all
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.jobs.auth import route_table

MAX_BODY_BYTES = 1024 * 1024
logger = logging.getLogger("prefect_ombudsman.api")


def max_body_bytes_from_env() -> int:
    raw = os.environ.get("OMBUDSMAN_API_MAX_BODY_BYTES", "").strip()
    if not raw:
        return MAX_BODY_BYTES
    if not raw.isdigit() or int(raw) < 1024:
        raise ConfigurationError("OMBUDSMAN_API_MAX_BODY_BYTES: whole bytes, at least 1024")
    return int(raw)


class _TooLarge(Exception):
    pass


class _Bad:
    """A value JSON does not allow, kept where it was found so its field can be named."""

    def __init__(self, what: str) -> None:
        self.what = what


def _constant(name: str) -> _Bad:
    return _Bad(f"{name} is not a JSON number")


def _number(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text} overflows to infinity")


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find_bad(value: Any, path: list[Any]) -> tuple[list[Any], str] | None:
    if isinstance(value, _Bad):
        return path, value.what
    if isinstance(value, str) and _lone_surrogate(value):
        return path, "text holds a lone surrogate (not valid Unicode)"
    if isinstance(value, dict):
        for key, item in value.items():
            if _lone_surrogate(key):
                return path, "a key holds a lone surrogate (not valid Unicode)"
            found = _find_bad(item, [*path, key])
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_bad(item, [*path, index])
            if found:
                return found
    return None


def json_problem(body: bytes) -> dict[str, Any] | None:
    """A validation error (FastAPI's shape) for the first value JSON forbids, else None."""
    try:
        parsed = json.loads(body, parse_constant=_constant, parse_float=_number)
    except ValueError:
        return None  # not JSON at all: the route's own parsing answers that
    found = _find_bad(parsed, ["body"])
    if found is None:
        return None
    loc, what = found
    field = ".".join(str(p) for p in loc[1:]) or "body"
    return {"type": "value_error", "loc": loc, "msg": f"{field}: {what}", "input": None}


class ApiLogs:
    """uvicorn's access and error logs, and ours, on stderr/stdout as uvicorn sets them up.

    Prefect's `setup_logging` (a dictConfig) resets every `uvicorn.*` logger; `ensure` checks in
    O(1) and puts our handlers back, and the middleware calls it on every request."""

    def __init__(self) -> None:
        from uvicorn.logging import AccessFormatter, DefaultFormatter

        self.default = logging.StreamHandler(sys.stderr)
        self.default.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        self.access = logging.StreamHandler(sys.stdout)
        self.access.setFormatter(
            AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s')
        )
        self._lock = threading.Lock()

    def ensure(self) -> None:
        access, server = logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn")
        if self.access in access.handlers and self.default in server.handlers:
            return
        with self._lock:
            for name, handler, propagate in (
                ("uvicorn", self.default, False),
                ("uvicorn.error", None, True),
                ("uvicorn.access", self.access, False),
                (logger.name, self.default, False),
            ):
                log = logging.getLogger(name)
                log.handlers = [handler] if handler else []
                log.setLevel(logging.INFO)
                log.propagate = propagate
                log.disabled = False


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the app with uvicorn, its logs kept alive across Prefect's logging setup."""
    import prefect.main  # noqa: F401  (Prefect's logging setup now, not under the first job)
    import uvicorn

    app.state.api_logs = ApiLogs()
    app.state.api_logs.ensure()
    uvicorn.run(app, host=host, port=port, log_config=None)


class RequestBoundary:
    """Pure ASGI middleware: request id, body limit, forbidden JSON, 5xx with request id."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        logs = getattr(getattr(scope.get("app"), "state", None), "api_logs", None)
        if logs:
            logs.ensure()

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if logs:
                    logs.ensure()
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            detail = (
                f"request body larger than {self.max_body_bytes} bytes, the limit "
                "(OMBUDSMAN_API_MAX_BODY_BYTES)"
            )
            await _answer(send_with_id, 413, {"detail": detail})
            return
        problem = json_problem(body) if body and _is_json(scope) else None
        if problem:
            await _answer(send_with_id, 422, {"detail": [problem]})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:
            logger.exception(
                "%s %s failed (request_id=%s)", scope["method"], scope["path"], request_id
            )
            if not started:
                await _answer(
                    send_with_id,
                    500,
                    {"detail": "Internal server error", "request_id": request_id},
                )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _is_json(scope: Scope) -> bool:
    kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


async def _answer(send: Send, status: int, content: Any) -> None:
    body = json.dumps(content).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _printable(value: Any) -> Any:
    """JSON-safe: non-finite numbers as text, lone surrogates escaped."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str) and _lone_surrogate(value):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def install_boundary(app: FastAPI, max_body_bytes: int | None = None) -> None:
    """Add the middleware and the handlers that keep every refusal a well-formed answer."""
    app.add_middleware(
        RequestBoundary,
        max_body_bytes=max_body_bytes if max_body_bytes is not None else max_body_bytes_from_env(),
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # the echoed `input` may be an item carrying a URL with a password: masked
        detail = _printable(jsonable_encoder(mask_all(list(exc.errors()))))
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(PrefectHTTPStatusError)
    async def prefect_refused(request: Request, exc: PrefectHTTPStatusError) -> Any:
        if exc.response.status_code not in (401, 403):
            raise exc  # the middleware answers 500 with the request id and logs it
        detail = (
            "The Prefect API refused this service's credentials: set PREFECT_API_AUTH_STRING "
            "(or PREFECT_API_KEY) to what the Prefect server expects"
        )
        return await http_error(request, StarletteHTTPException(503, detail))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 405:  # Allow: every method of the path, not the first route's
            allowed = {
                method
                for route in route_table(app)
                if route.path_regex is not None and route.path_regex.match(request.url.path)
                for method in route.methods
            }
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        if exc.status_code < 500:
            return await http_exception_handler(request, exc)
        request_id = getattr(request.state, "request_id", None)
        logger.error(
            "%s %s answered %s: %s (request_id=%s)",
            request.method,
            request.url.path,
            exc.status_code,
            exc.detail,
            request_id,
        )
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": exc.detail, "request_id": request_id},
            headers=getattr(exc, "headers", None),
        )
