"""One error hierarchy with messages a user can act on."""

from __future__ import annotations

import socket
from typing import Any

from prefect_ombudsman.redaction import scrub


class OmbudsmanError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))


class ConfigurationError(OmbudsmanError):
    """Bad input: a request, a file or a reference that cannot be used as given."""


class ConnectionReferenceError(ConfigurationError):
    """A connection reference that resolves to nothing usable."""


class UnknownOperationError(ConfigurationError):
    """A custom operation name that is not registered."""


class TransientError(OmbudsmanError):
    """Raised by an operation to ask for a retry with backoff."""


class OperationFailed(OmbudsmanError):
    """The operation ran and its outcome is a failure (never retried).

    `result` carries what the operation found, for example a pipeline result with FAIL steps.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class OperationCancelled(OmbudsmanError):
    """The job was cancelled while the operation ran; raised at a safe point."""


# SQLSTATE classes and driver phrases that mean "try again later", not "this is wrong".
_TRANSIENT_SQLSTATES = (
    "08001",
    "08S01",
    "08004",
    "08006",
    "08000",
    "HYT00",
    "HYT01",
    "40001",
    "40P01",
    "57P03",
)
_TRANSIENT_PHRASES = (
    "connection refused",
    "could not connect",
    "connection reset",
    "connection timed out",
    "timed out",
    "timeout expired",
    "deadlock",
    "throttl",
    "too many connections",
    "server closed the connection",
    "adaptive server is unavailable",
    "unable to connect",
    "temporarily unavailable",
    "database is locked",
    "service unavailable",
    "try again",
)


def is_transient(exc: BaseException) -> bool:
    """True when retrying `exc` later may succeed (network, timeouts, deadlocks, throttling)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransientError):
            return True
        if isinstance(current, (OperationFailed, ConfigurationError, OperationCancelled)):
            return False
        if isinstance(current, (ConnectionError, TimeoutError, socket.timeout)):
            return True
        text = str(current).lower()
        if any(state.lower() in text for state in _TRANSIENT_SQLSTATES) and (
            "[" in text or "sqlstate" in text or "(" in text
        ):
            return True
        if any(phrase in text for phrase in _TRANSIENT_PHRASES):
            return True
        current = current.__cause__ or current.__context__
    return False
