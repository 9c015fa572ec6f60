"""One error hierarchy with messages a user can act on."""

from __future__ import annotations

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
