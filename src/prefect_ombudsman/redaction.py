"""Keeps secrets out of logs, results, artifacts and API responses.

Every secret value that a connection resolves is registered here; `scrub` replaces any of
them (and `password=...`-style fragments) in text that leaves the process.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_LOCK = threading.Lock()
_SECRETS: set[str] = set()
_SHORT: dict[str, re.Pattern[str]] = {}
MASK = "********"
# A secret shorter than this is masked only as a whole token, so a test password like "snow"
# never mangles "snowflake" in a message, while ":snow@" in a DSN is still masked.
WHOLE_TOKEN_BELOW = 8

# Secrets inside connection strings or URLs that were never registered (typed by a user).
_INLINE_PATTERNS = (
    re.compile(r"(?i)\b(PWD|PASSWORD|TOKEN|SECRET)\s*=\s*(\{[^}]*\}|[^;&\s]+)"),
    re.compile(r"(?i)(://[^:/@\s]+:)([^@/\s]+)(@)"),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so `scrub` removes it wherever it shows up later."""
    if value and len(value) >= 3:
        with _LOCK:
            if len(value) < WHOLE_TOKEN_BELOW:
                _SHORT[value] = re.compile(
                    r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])"
                )
            else:
                _SECRETS.add(value)


def scrub(text: str) -> str:
    """Return `text` with every known secret and inline password masked."""
    if not text:
        return text
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
        short = list(_SHORT.items())
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for secret, pattern in short:
        if secret in text:
            text = pattern.sub(MASK, text)
    text = _INLINE_PATTERNS[0].sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _INLINE_PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return text


def scrub_data(value: Any) -> Any:
    """Scrub every string inside a JSON-like structure."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v) for v in value]
    return value


class SecretScrubbingFilter(logging.Filter):
    """Logging filter that masks secrets in the rendered message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            if scrub(text) != text:
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} ({type(exc).__name__}: {scrub(text)})"
        return True


_FILTER = SecretScrubbingFilter()


def install_log_filter(*logger_names: str) -> None:
    """Attach the scrubbing filter to loggers and to every handler they and their children have.

    Handler filters are what count: a logger's own filters do not see records propagated from its
    children (`prefect.task_runs` logs through its own API handler).
    """
    prefixes = logger_names or ("prefect", "prefect_ombudsman", "sqlalchemy", "snowflake")
    names = [""] + [
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]
    for name in {*names, *prefixes}:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
        for handler in target.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
