"""Inline credentials out of flow-run parameters: sealed into a store, referenced by name.

A password typed into a request or a CLI flag (a URL `postgresql://u:PW@h/db`, an ODBC string
with `PWD=`, a mapping with `password` / `token` / `odbc_connect` / `private_key`) must never be
stored in Prefect's flow-run parameters. `seal` walks the parameters before the flow run is
created, puts every such value into a credential store under a generated, non-guessable name and
leaves only a reference with the secret masked:

    "postgresql://u:PW@h/db"            -> {"secret_ref": "ombudsman-credential-<hex>",
                                            "url": "postgresql://u:********@h/db"}
    {"kind": "sqlserver", "password": "PW", ...}
                                        -> {"kind": "sqlserver", "password": "********", ...,
                                            "secret_ref": "ombudsman-credential-<hex>"}

The stores: Prefect `Secret` blocks for jobs started through the jobs service (the worker that
runs the job may be another process on another host; see blocks/credential_store.py), an in-memory
registry (`memory:<hex>`) for runs the CLI executes in its own process. `unseal` puts the
original values back where the engine needs them (operation arguments, connection resolution).
This module imports nothing of Prefect; the Prefect store is loaded lazily by name.
"""

from __future__ import annotations

import importlib
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

from prefect_ombudsman.errors import ConnectionReferenceError
from prefect_ombudsman.redaction import MASK, register_secret

SECRET_REF = "secret_ref"
BLOCK_PREFIX = "ombudsman-credential-"
#: the module that stores and loads `BLOCK_PREFIX` credentials as Prefect Secret blocks
BLOCK_BACKEND = "prefect_ombudsman.blocks.credential_store"
MEMORY_PREFIX = "memory:"

# Mapping keys whose value is a secret (any key containing one of these words, case-insensitive).
_SECRET_KEY_WORDS = ("password", "passwd", "pwd", "token", "secret", "private_key", "passphrase")
_SECRET_KEYS_EXACT = {"odbc_connect", "api_key", "apikey", "credentials"}
# Keys whose value is a connection reference: sealed as a whole so the engine can resolve it.
CONNECTION_KEYS = {"source", "target", "targets", "connection"}
# Keys whose whole value is handed to code we do not know (custom operations): seal in place.
OPAQUE_KEYS = {"arguments"}

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@/\s]+)(@)")
_KEYWORD_SECRET = re.compile(
    r"(?i)\b(PWD|PASSWORD|TOKEN|SECRET|ODBC_CONNECT|PRIVATE_KEY)\s*=\s*(\{[^}]*\}|[^;&\s]+)"
)

Store = Callable[[str], str]  # saves a secret value, returns the name it is stored under

_MEMORY: dict[str, str] = {}
_MEMORY_LOCK = threading.Lock()


def is_secret_key(key: Any) -> bool:
    name = str(key).lower()
    return name in _SECRET_KEYS_EXACT or any(word in name for word in _SECRET_KEY_WORDS)


def _masked_value(value: Any) -> bool:
    return value is None or value == "" or value == MASK


def text_has_secret(text: str) -> bool:
    """A URL with a password, or `PWD=` / `token=`-style fragments with a value."""
    for match in _URL_PASSWORD.finditer(text):
        if match.group(2) != MASK:
            return True
    return any(m.group(2) != MASK for m in _KEYWORD_SECRET.finditer(text))


def mask_text(text: str) -> str:
    """`text` with every inline secret replaced by the mask (deterministic: same input, same output)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return _KEYWORD_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)


def has_secret(value: Any) -> bool:
    """Whether a JSON-like value holds an unsealed secret anywhere."""
    if isinstance(value, str):
        return text_has_secret(value)
    if isinstance(value, Mapping):
        if SECRET_REF in value:
            return False
        return any(
            (is_secret_key(k) and not _masked_value(v) and not isinstance(v, (Mapping, list)))
            or has_secret(v)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return any(has_secret(v) for v in value)
    return False


def _mask_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = {}
    for key, item in value.items():
        if is_secret_key(key) and not isinstance(item, (Mapping, list)):
            masked[key] = None if item is None else MASK
        else:
            masked[key] = mask_all(item)
    return masked


def mask_all(value: Any) -> Any:
    """Every secret in a JSON-like value masked (for labels and messages; not reversible)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return _mask_mapping(value)
    if isinstance(value, (list, tuple)):
        return [mask_all(v) for v in value]
    return value


def _reference(value: str | Mapping[str, Any], store: Store) -> dict[str, Any]:
    import json

    name = store(json.dumps(value, sort_keys=True))
    if isinstance(value, str):
        # a bare secret (the value of a `password` key) is masked whole
        return {SECRET_REF: name, "url": mask_text(value) if text_has_secret(value) else MASK}
    return {**_mask_mapping(value), SECRET_REF: name}


def seal(parameters: Any, store: Store) -> tuple[Any, list[str]]:
    """Parameters with every inline credential moved into `store`; returns (sealed, names).

    A connection value (under `source`, `target`, `targets`, `connection`, or anywhere in a custom
    operation's `arguments`) becomes a reference, and so does the value of any secret-named key
    (`password`, `token`, ...); any other string keeps its text with the secret masked (a password
    in a job name or description serves no purpose and is dropped).
    """
    names: list[str] = []
    saved: dict[str, str] = {}  # one stored credential per distinct value in a job

    def once(raw: str) -> str:
        if raw not in saved:
            saved[raw] = store(raw)
            names.append(saved[raw])
        return saved[raw]

    def keep(value: Any) -> dict[str, Any]:
        return _reference(value, once)

    def walk(value: Any, sealable: bool) -> Any:
        if isinstance(value, Mapping):
            if SECRET_REF in value:
                return dict(value)
            if sealable and has_secret(value):
                return keep(value)
            out: dict[str, Any] = {}
            for k, v in value.items():
                if is_secret_key(k) and isinstance(v, str) and not _masked_value(v):
                    out[k] = keep(v)  # e.g. a variable's value: unsealed before the operation
                else:
                    out[k] = walk(v, sealable or k in CONNECTION_KEYS or k in OPAQUE_KEYS)
            return out
        if isinstance(value, list):
            return [walk(v, sealable) for v in value]
        if isinstance(value, str) and text_has_secret(value):
            return keep(value) if sealable else mask_text(value)
        return value

    return walk(parameters, False), names


def references(value: Any) -> list[str]:
    """Every credential name referenced inside a JSON-like value."""
    found: list[str] = []
    if isinstance(value, Mapping):
        if isinstance(value.get(SECRET_REF), str):
            found.append(value[SECRET_REF])
        for item in value.values():
            found.extend(references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(references(item))
    return found


def is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get(SECRET_REF), str)


# ----------------------------------------------------------------------------- the stores


def memory_store(value: str) -> str:
    """The in-process store (CLI runs): gone when the process ends."""
    name = MEMORY_PREFIX + secrets.token_hex(16)
    with _MEMORY_LOCK:
        _MEMORY[name] = value
    return name


def forget(names: list[str]) -> None:
    """Drop in-memory credentials (the CLI calls this when its job has ended)."""
    with _MEMORY_LOCK:
        for name in names:
            _MEMORY.pop(name, None)


def _load(name: str) -> Any:
    import json

    if name.startswith(MEMORY_PREFIX):
        with _MEMORY_LOCK:
            raw = _MEMORY.get(name)
        if raw is None:
            raise ConnectionReferenceError(
                f"credential {name!r} is gone: it lived in the process that started the job "
                "(`ombudsman run ...`); run the job again with the connection"
            )
    elif name.startswith(BLOCK_PREFIX):
        # the Prefect block backend, loaded by name when a stored credential is read (it imports
        # Prefect, and this module's prefix; nothing here needs Prefect otherwise)
        raw = importlib.import_module(BLOCK_BACKEND).load_credential(name)
    else:
        raise ConnectionReferenceError(
            f"credential reference {name!r} is not one of ours ({BLOCK_PREFIX}* or {MEMORY_PREFIX}*)"
        )
    value = json.loads(raw)
    _register_all(value)
    return value


def _register_all(value: Any) -> None:
    """Tell the scrubber every secret inside `value`, so no message or result shows it."""
    if isinstance(value, str):
        for match in _URL_PASSWORD.finditer(value):
            register_secret(match.group(2))
        for match in _KEYWORD_SECRET.finditer(value):
            register_secret(match.group(2).strip("{}"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, str):
                register_secret(item)
            else:
                _register_all(item)
    elif isinstance(value, list):
        for item in value:
            _register_all(item)


def unseal(value: Any) -> Any:
    """`value` with every credential reference replaced by the original (worker side only)."""
    if isinstance(value, Mapping):
        if is_reference(value):
            return _load(value[SECRET_REF])
        return {k: unseal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unseal(v) for v in value]
    return value


def label_of(ref: Any, default: str) -> str:
    """A display label for a (possibly sealed) connection reference, never holding a secret."""
    if isinstance(ref, str):
        return mask_text(ref)
    if is_reference(ref) and isinstance(ref.get("url"), str):
        return ref["url"]
    return default
