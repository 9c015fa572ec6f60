"""Authentication and authorisation of `ombudsman api` (docs/security.md).

Every route but `/health` and the login routes needs `Authorization: Bearer <credential>`: an
API token (`ombudsman api token create`) or a session from `POST /auth/login`. Read-only tokens
and `viewer` users may read, not write (create, cancel, retry, delete: 403, nothing started).
The check is an app-level dependency, so every router the app includes gets it; WebSocket
handshakes pass with an allowed Origin or a valid `?token=`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Response,
    WebSocketException,
    status,
)
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.jobs import accounts
from prefect_ombudsman.jobs.accounts import InvalidCredential, Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL_SECONDS = 8 * 3600
SESSION_COOKIE = "ombudsman_session"
REFRESH_TTL_SECONDS = 7 * 24 * 3600
# Failed logins per username before it is locked for LOCK_SECONDS (in this process).
MAX_FAILED_LOGINS = 5
LOCK_SECONDS = 15 * 60
_CHALLENGE = 'Bearer realm="ombudsman"'
logger = logging.getLogger("prefect_ombudsman.api")
_OPEN = Principal("insecure-no-auth", "anonymous", can_write=True)


def parse_origin(value: str) -> str:
    """`scheme://host[:port]` as browsers send it in `Origin`; `*` is refused (list them)."""
    origin = value.strip().rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "*" in rest:
        raise ConfigurationError(
            f"CORS origin {value!r}: give scheme://host[:port], e.g. http://localhost:3000"
        )
    return origin


@dataclass(frozen=True)
class AuthSettings:
    """Where credentials live and who else may call: the API's security settings."""

    auth_file: Path = field(default_factory=accounts.default_auth_file)
    cors_origins: tuple[str, ...] = ()
    insecure_no_auth: bool = False
    session_ttl_seconds: int = SESSION_TTL_SECONDS

    @classmethod
    def from_env(
        cls,
        *,
        auth_file: Path | None = None,
        cors_origins: list[str] | tuple[str, ...] = (),
        insecure_no_auth: bool = False,
    ) -> AuthSettings:
        """Options given here plus `$OMBUDSMAN_AUTH_FILE` and `$OMBUDSMAN_CORS_ORIGINS` (a,b)."""
        listed = [*cors_origins, *os.environ.get("OMBUDSMAN_CORS_ORIGINS", "").split(",")]
        origins = tuple(dict.fromkeys(parse_origin(o) for o in listed if o.strip()))
        ttl = os.environ.get("OMBUDSMAN_SESSION_TTL_SECONDS", "").strip()
        if ttl and (not ttl.isdigit() or int(ttl) < 60):
            raise ConfigurationError("OMBUDSMAN_SESSION_TTL_SECONDS: whole seconds, at least 60")
        return cls(
            auth_file=auth_file or accounts.default_auth_file(),
            cors_origins=origins,
            insecure_no_auth=insecure_no_auth,
            session_ttl_seconds=int(ttl) if ttl else SESSION_TTL_SECONDS,
        )


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class AuthState:
    """Per-app: the settings, the auth file as of now, and failed-login counts."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._file = accounts.AuthFileCache(settings.auth_file)
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}
        # scrypt takes 16 MiB per check: a flood of logins queues here instead of eating memory
        self.hashing = threading.BoundedSemaphore(4)

    def data(self) -> dict[str, Any]:
        try:
            return self._file.current()
        except ConfigurationError as exc:
            logger.error("credentials cannot be checked: %s", exc)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "Credentials cannot be checked: the server's auth file is unreadable (see its log)",
            ) from None

    def locked(self, username: str) -> bool:
        with self._lock:
            recent = [t for t in self._failures.get(username, []) if t > time.time() - LOCK_SECONDS]
            return len(recent) >= MAX_FAILED_LOGINS

    def failed(self, username: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures.clear()
            now = time.time()
            recent = [t for t in self._failures.get(username, []) if t > now - LOCK_SECONDS]
            self._failures[username] = [*recent[-MAX_FAILED_LOGINS:], now]

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


_PUBLIC = "__ombudsman_public__"


def public(endpoint: Any) -> Any:
    """Mark a route's endpoint as answering without a credential (`/health`, the login)."""
    setattr(endpoint, _PUBLIC, True)
    return endpoint


_READERS = "__ombudsman_readers_may_write__"


def readers_may_call(endpoint: Any) -> Any:
    """Mark a POST/PUT/DELETE endpoint that changes only the caller's own view (e.g. the active
    project, alerts seen), so read-only tokens and viewers may call it."""
    setattr(endpoint, _READERS, True)
    return endpoint


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]  # empty for a WebSocket route
    websocket: bool
    public: bool
    path_regex: Any = None


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every API and WebSocket route of the app, routers included (any FastAPI version)."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    table = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        pairs = [(c, c.original_route) for c in contexts()] if contexts else []
        for effective, original in pairs or [(route, route)]:
            if isinstance(original, APIRoute | APIWebSocketRoute):
                # a WebSocket route's context has an empty path: its original route holds it
                holder = effective if effective.path else original
                table.append(
                    RouteInfo(
                        holder.path,
                        frozenset(getattr(original, "methods", None) or ()),
                        isinstance(original, APIWebSocketRoute),
                        getattr(original.endpoint, _PUBLIC, False),
                        holder.path_regex,
                    )
                )
    return table


def _state(conn: HTTPConnection) -> AuthState:
    return conn.app.state.auth


# What a browser app sends when its token key is unset (the Studio's alerts drawer reads
# `localStorage.token` while its login stores `auth_token`): no credential, not a wrong one,
# so the same-origin session cookie still signs the call in.
_UNSET_BEARERS = frozenset({"null", "undefined"})


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or value.lower() in _UNSET_BEARERS:
        return None
    return value or None


def _session_cookie(conn: HTTPConnection) -> str | None:
    """The session from /auth/login's cookie (a JWT; API tokens never travel in cookies)."""
    value = conn.cookies.get(SESSION_COOKIE, "")
    return value if value.count(".") == 2 else None


def _same_origin(conn: HTTPConnection) -> bool:
    """No Origin (not a cross-origin browser request), or one naming this very host."""
    origin = conn.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == conn.headers.get("host")


def unauthorized(detail: str, *, error: str | None = None) -> HTTPException:
    challenge = f'{_CHALLENGE}, error="{error}"' if error else _CHALLENGE
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge}
    )


def authorize_websocket(websocket: HTTPConnection) -> bool:
    """A WebSocket handshake may proceed: its Origin is allowed, or it carries a valid token.

    Browsers cannot set headers on a WebSocket, so the Studio's hook sends none: its Origin
    (which a browser cannot forge) is checked against the CORS origins. Other clients pass
    `?token=<credential>` or an Authorization header."""
    state = _state(websocket)
    if state.settings.insecure_no_auth:
        return True
    origin = websocket.headers.get("origin", "").rstrip("/")
    if origin and origin in state.settings.cors_origins:
        return True
    credential = websocket.query_params.get("token") or _bearer(websocket)
    if not credential and _same_origin(websocket):
        credential = _session_cookie(websocket)
    if not credential:
        return False
    try:
        accounts.principal_for(state.data(), credential)
    except (InvalidCredential, HTTPException):
        return False
    return True


def authenticate(conn: HTTPConnection) -> Principal | None:
    """App-level dependency: who is calling, refused with 401 (who?) or 403 (not allowed)."""
    if getattr(getattr(conn.scope.get("route"), "endpoint", None), _PUBLIC, False):
        return None  # /health and the login routes
    state = _state(conn)
    if conn.scope["type"] == "websocket":
        if not authorize_websocket(conn):
            raise WebSocketException(
                status.WS_1008_POLICY_VIOLATION, "origin not allowed and no valid ?token="
            )
        return None
    if state.settings.insecure_no_auth:
        principal = _OPEN
    else:
        credential = _bearer(conn)
        cookie = _session_cookie(conn) if credential is None else None
        if credential is None and cookie is None:
            raise unauthorized("Not authenticated: send Authorization: Bearer <token>")
        try:
            principal = accounts.principal_for(state.data(), credential or cookie or "")
        except InvalidCredential as exc:
            raise unauthorized(f"Invalid credential: {exc}", error="invalid_token") from None
        if cookie and conn.scope.get("method") not in SAFE_METHODS and not _same_origin(conn):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "A session cookie works for same-origin writes only; send Authorization: Bearer",
            )
    endpoint = getattr(conn.scope.get("route"), "endpoint", None)
    writes = conn.scope.get("method") not in SAFE_METHODS and not getattr(endpoint, _READERS, False)
    if writes and not principal.can_write:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{principal.kind} {principal.name!r} is read-only: "
            f"{conn.scope.get('method')} {conn.url.path} needs a full token or an admin user",
        )
    conn.state.principal = principal
    return principal


# --- the Studio's login routes (shapes of its backend's auth router) ----------------------


class LoginRequest(BaseModel):
    username: str = Field(..., min_length=1, max_length=254, description="Username or email")
    password: str = Field(..., min_length=1, max_length=1024)


class RefreshTokenRequest(BaseModel):
    refresh_token: str = Field(..., max_length=4096)


class UserPublic(BaseModel):
    user_id: str
    username: str
    email: str | None = None
    full_name: str | None = None
    role: str
    is_active: bool = True
    is_verified: bool = True
    created_at: datetime
    last_login: datetime | None = None


class Token(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class LoginResponse(Token):
    user: UserPublic


auth_router = APIRouter(prefix="/auth", tags=["auth"])


def _tokens(state: AuthState, user: dict[str, Any]) -> dict[str, Any]:
    secret = state.data().get("secret_key")
    if not secret:
        logger.error("auth file has no secret_key: run any `ombudsman api token|user` command")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Sessions cannot be signed now")
    claims = {"sub": user["user_id"], "username": user["username"], "role": user["role"]}
    ttl = state.settings.session_ttl_seconds
    return {
        "access_token": accounts.issue_jwt(secret, {**claims, "type": "access"}, ttl),
        "refresh_token": accounts.issue_jwt(
            secret, {"sub": user["user_id"], "type": "refresh"}, REFRESH_TTL_SECONDS
        ),
        "token_type": "bearer",
        "expires_in": ttl,
    }


@auth_router.post("/login", response_model=LoginResponse)
@public
def login(body: LoginRequest, conn: HTTPConnection, response: Response) -> dict[str, Any]:
    """Sign in with a user's name (or email) and password: a session token (JWT) and the user.

    The session is also set as an HttpOnly, SameSite=Strict cookie, so a Studio served from the
    same origin (behind one reverse proxy) is signed in on calls that send no header."""
    state = _state(conn)
    name = body.username.strip().lower()
    if state.locked(name):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "Account locked due to too many failed login attempts"
        )
    try:
        with state.hashing:
            user = accounts.check_login(state.data(), body.username, body.password)
    except InvalidCredential as exc:
        state.failed(name)
        raise unauthorized(str(exc)) from None
    state.succeeded(name)
    public = {**accounts.public_user(user), "last_login": datetime.now(UTC)}
    tokens = _tokens(state, user)
    response.set_cookie(
        SESSION_COOKIE,
        tokens["access_token"],
        max_age=tokens["expires_in"],
        path="/",
        httponly=True,
        samesite="strict",
        secure=conn.url.scheme == "https"
        or conn.headers.get("x-forwarded-proto", "").lower() == "https",
    )
    return {**tokens, "user": public}


@auth_router.post("/logout")
@public
def logout(response: Response) -> dict[str, Any]:
    """Forget the session cookie (bearer sessions simply expire)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"success": True, "message": "Logged out", "data": None}


@auth_router.post("/refresh", response_model=Token)
@public
def refresh(body: RefreshTokenRequest, conn: HTTPConnection) -> dict[str, Any]:
    """A new session token for a refresh token from `/auth/login` (while the user exists)."""
    state = _state(conn)
    data = state.data()
    try:
        claims = accounts.decode_jwt(
            data.get("secret_key") or "00", body.refresh_token, token_type="refresh"
        )
        principal = accounts.principal_of_claims(data, claims)
    except InvalidCredential as exc:
        raise unauthorized(f"Invalid refresh token: {exc}", error="invalid_token") from None
    assert principal.user is not None
    return _tokens(state, principal.user)


@auth_router.get("/me", response_model=UserPublic)
def me(principal: Principal | None = Depends(authenticate)) -> dict[str, Any]:
    """The signed-in user (an API token shows as a user named after it)."""
    if principal is None or principal.user is None:
        return {
            "user_id": principal.name if principal else "anonymous",
            "username": principal.name if principal else "anonymous",
            "role": "admin",
            "created_at": datetime.now(UTC),
        }
    return principal.user


# --- wiring -------------------------------------------------------------------------------

_ERRORS = {
    "400": "Refused: the request cannot be carried out as given (detail says why).",
    "401": "No credential, or one that is unknown, revoked or expired.",
    "403": "The credential is read-only (a read-only token or a viewer).",
    "404": "No such job.",
    "409": "The job is in a state that does not allow this.",
    "413": "Request body larger than the configured limit.",
    "422": "Invalid request: the field is named in `detail`.",
}


def _document_errors(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Declare the bearer scheme and the error answers each operation can give."""
    open_paths = {r.path for r in route_table(app) if r.public}
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`ombudsman api token create`) or a /auth/login session.",
    }
    error = {"content": {"application/json": {"schema": {"type": "object"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = ["422", "413", "400"] if "requestBody" in operation else ["422"]
            if path not in open_paths:
                operation.setdefault("security", [{"bearerAuth": []}])
                codes += ["401", "400"] + (["403", "409"] if method.upper() != "GET" else [])
                codes += ["404"] if "{" in path else []
            else:
                codes += ["401", "403"] if path.startswith("/auth/") else []
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": _ERRORS[code], **error})
    return schema


def install_auth(app: FastAPI, settings: AuthSettings) -> None:
    """Attach the settings, the login routes, CORS for the configured origins, documented errors.

    The `authenticate` dependency itself is given to `FastAPI(dependencies=...)` by create_app."""
    app.state.auth = AuthState(settings)
    app.include_router(auth_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Request-ID"],
            max_age=600,
        )
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(build(), app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
