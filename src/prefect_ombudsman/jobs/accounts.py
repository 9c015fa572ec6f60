"""Who may call `ombudsman api`: API tokens, users and signed sessions, kept in one auth file.

The file (`$OMBUDSMAN_AUTH_FILE`, else `~/.ombudsman/auth.json`, mode 0600) holds only hashes:
sha256 of each API token, scrypt with a per-user salt of each password, and the key that signs
session tokens (JWT HS256, made with the standard library). Writers take a lock and replace the
file atomically, so a running API sees a revoked token at its next request.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect_ombudsman.atomic import write_text_atomic
from prefect_ombudsman.errors import ConfigurationError

TOKEN_PREFIX = "omb_"
ROLES = ("admin", "viewer")
WRITE_ROLES = frozenset({"admin"})
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,99}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MIN_PASSWORD = 8
# scrypt cost: ~16 MiB and tens of milliseconds per check, so a stolen file is slow to attack.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class InvalidCredential(Exception):
    """A credential that does not authenticate anyone; the message says why (never echoes it)."""


def default_auth_file() -> Path:
    """`$OMBUDSMAN_AUTH_FILE`, else `~/.ombudsman/auth.json`."""
    configured = os.environ.get("OMBUDSMAN_AUTH_FILE")
    return Path(configured).expanduser() if configured else Path.home() / ".ombudsman" / "auth.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _empty() -> dict[str, Any]:
    return {"version": 1, "secret_key": secrets.token_hex(32), "tokens": [], "users": []}


def read_auth(path: Path) -> dict[str, Any]:
    """The auth file's content; a missing file is an empty one (nobody can sign in)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1, "secret_key": "", "tokens": [], "users": []}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"auth file {path}: cannot be read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens", []), list):
        raise ConfigurationError(f"auth file {path}: not an ombudsman auth file")
    data.setdefault("tokens", [])
    data.setdefault("users", [])
    return data


@contextmanager
def _editing(path: Path) -> Iterator[dict[str, Any]]:
    """Read, let the caller change, then write the auth file whole (0600), under a lock."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = read_auth(path) if path.exists() else _empty()
        if not data.get("secret_key"):
            data["secret_key"] = secrets.token_hex(32)
        yield data
        write_text_atomic(path, json.dumps(data, indent=2), mode=0o600)
    finally:
        os.close(fd)


def has_credentials(data: dict[str, Any]) -> bool:
    return bool(data.get("tokens") or data.get("users"))


# --- API tokens ---------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(path: Path, name: str, *, read_only: bool = False) -> str:
    """A new API token (returned once; only its sha256 is stored)."""
    if not _TOKEN_NAME.match(name):
        raise ConfigurationError(f"token name {name!r}: use 1-100 letters, digits, '.', '_' or '-'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with _editing(path) as data:
        if any(t["name"] == name for t in data["tokens"]):
            raise ConfigurationError(f"token {name!r} exists; revoke it first")
        data["tokens"].append(
            {
                "name": name,
                "sha256": token_digest(token),
                "read_only": read_only,
                "created_at": _now(),
            }
        )
    return token


def list_tokens(path: Path) -> list[dict[str, Any]]:
    return [
        {k: t[k] for k in ("name", "read_only", "created_at")} for t in read_auth(path)["tokens"]
    ]


def revoke_token(path: Path, name: str) -> None:
    with _editing(path) as data:
        kept = [t for t in data["tokens"] if t["name"] != name]
        if len(kept) == len(data["tokens"]):
            raise ConfigurationError(f"no token named {name!r} in {path}")
        data["tokens"] = kept


# --- users --------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"), salt=salt, maxmem=64 * 2**20, **_SCRYPT
    )
    return {"salt": salt.hex(), "scrypt": digest.hex(), **_SCRYPT}


def verify_password(password: str, record: dict[str, Any]) -> bool:
    digest = hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=bytes.fromhex(record["salt"]),
        n=record["n"],
        r=record["r"],
        p=record["p"],
        maxmem=64 * 2**20,
    )
    return hmac.compare_digest(digest.hex(), record["scrypt"])


# Checked when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = hash_password("not a password", salt=b"0" * 16)


def add_user(
    path: Path,
    username: str,
    password: str,
    *,
    role: str = "viewer",
    email: str | None = None,
    full_name: str | None = None,
) -> dict[str, Any]:
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise ConfigurationError(
            f"username {username!r}: use 3-100 lowercase letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise ConfigurationError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"password: at least {MIN_PASSWORD} characters")
    user = {
        "user_id": str(uuid.uuid4()),
        "username": username,
        "email": email,
        "full_name": full_name,
        "role": role,
        "created_at": _now(),
        "password": hash_password(password),
    }
    with _editing(path) as data:
        if any(u["username"] == username for u in data["users"]):
            raise ConfigurationError(f"user {username!r} exists; remove it first")
        data["users"].append(user)
    return public_user(user)


def list_users(path: Path) -> list[dict[str, Any]]:
    return [public_user(u) for u in read_auth(path)["users"]]


def remove_user(path: Path, username: str) -> None:
    with _editing(path) as data:
        kept = [u for u in data["users"] if u["username"] != username.lower()]
        if len(kept) == len(data["users"]):
            raise ConfigurationError(f"no user named {username!r} in {path}")
        data["users"] = kept


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if k != "password"}


def check_login(data: dict[str, Any], username: str, password: str) -> dict[str, Any]:
    """The user whose name (or email) and password match, else InvalidCredential."""
    wanted = username.strip().lower()
    user = next(
        (u for u in data["users"] if wanted in (u["username"], (u.get("email") or "").lower())),
        None,
    )
    if not verify_password(password, user["password"] if user else _DUMMY) or user is None:
        raise InvalidCredential("Incorrect username or password")
    return user


# --- signed sessions (JWT HS256) ------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def issue_jwt(secret_key: str, claims: dict[str, Any], ttl_seconds: int) -> str:
    now = int(time.time())
    payload = {**claims, "iat": now, "exp": now + ttl_seconds, "jti": secrets.token_hex(8)}
    body = f"{_HEADER}.{_b64(json.dumps(payload, separators=(',', ':')).encode())}"
    signature = hmac.new(bytes.fromhex(secret_key), body.encode("ascii"), hashlib.sha256)
    return f"{body}.{_b64(signature.digest())}"


def decode_jwt(secret_key: str, token: str, *, token_type: str = "access") -> dict[str, Any]:
    """The claims of a token this service signed, unexpired and of `token_type`."""
    try:
        header, payload, signature = token.split(".")
        head = json.loads(_unb64(header))
        expected = hmac.new(
            bytes.fromhex(secret_key), f"{header}.{payload}".encode("ascii"), hashlib.sha256
        ).digest()
        signed = hmac.compare_digest(_unb64(signature), expected)
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError, UnicodeError):
        raise InvalidCredential("malformed token") from None
    if not isinstance(head, dict) or head.get("alg") != "HS256" or not signed:
        raise InvalidCredential("token signature does not verify")
    if not isinstance(claims, dict) or claims.get("type") != token_type:
        raise InvalidCredential(f"not an {token_type} token")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= time.time():
        raise InvalidCredential("token expired")
    return claims


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API token or a signed-in user; `can_write` starts/stops jobs."""

    name: str
    kind: str  # "token" | "user" | "anonymous"
    can_write: bool
    user: dict[str, Any] | None = None


def principal_for(data: dict[str, Any], credential: str) -> Principal:
    """Resolve a bearer credential (API token or session JWT) against the auth file."""
    if credential.startswith(TOKEN_PREFIX):
        digest = token_digest(credential)
        for token in data["tokens"]:
            if hmac.compare_digest(token["sha256"], digest):
                as_user = {
                    "user_id": f"token:{token['name']}",
                    "username": token["name"],
                    "email": None,
                    "full_name": f"API token {token['name']}",
                    "role": "viewer" if token["read_only"] else "admin",
                    "created_at": token["created_at"],
                }
                return Principal(token["name"], "token", not token["read_only"], as_user)
        raise InvalidCredential("unknown or revoked token")
    if not data.get("secret_key") or credential.count(".") != 2:
        raise InvalidCredential("unknown or revoked token")
    return principal_of_claims(data, decode_jwt(data["secret_key"], credential))


def principal_of_claims(data: dict[str, Any], claims: dict[str, Any]) -> Principal:
    """The user a session names, as the auth file has it now (removed users are signed out)."""
    user = next((u for u in data["users"] if u["user_id"] == claims.get("sub")), None)
    if user is None:
        raise InvalidCredential("user no longer exists")
    return Principal(user["username"], "user", user["role"] in WRITE_ROLES, public_user(user))


class AuthFileCache:
    """The auth file read again only when it changed (size or mtime), so revocation is live."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, ...] | None = (-1,)
        self._data: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            stamp: tuple[int, ...] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._data, self._stamp = read_auth(self.path), stamp
        return self._data
