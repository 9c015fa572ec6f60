"""The validator registry: a name, a function and a typed config model per validator.

Register one with a plain call (another module may do this, e.g. `row_checksum`):

    from prefect_ombudsman.validation.registry import register_validator
    register_validator("row_checksum", run_row_checksum, RowChecksumConfig, category="comparison")

`fn(ctx: StepContext, config: ConfigModel) -> Outcome`. A validator that can share a table scan
with others also gives `plan(ctx, config)`, which only registers aggregates (`ctx.side(...).want`).
Names are stored without the `validate_` prefix; lookups accept either form.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.loader import normalise_validator_name
from prefect_ombudsman.validation.spec import Severity


class UnknownValidatorError(ConfigurationError):
    """A step names a validator that is not registered; the message lists close matches."""


@dataclass(frozen=True)
class Validator:
    name: str
    fn: Callable[[Any, Any], Any]
    config_model: type[BaseModel]
    plan: Callable[[Any, Any], None] | None = None
    category: str = "general"
    fail_severity: Severity = Severity.HIGH
    description: str = ""
    #: what a failure of this validator is in the job report (`row_count_mismatch`, ...)
    failure_kind: str = "other"


_REGISTRY: dict[str, Validator] = {}
_LOCK = threading.Lock()
_LOADED = False


def register_validator(
    name: str,
    fn: Callable[[Any, Any], Any],
    config_model: type[BaseModel],
    *,
    plan: Callable[[Any, Any], None] | None = None,
    category: str = "general",
    fail_severity: Severity | str = Severity.HIGH,
    description: str = "",
    failure_kind: str = "other",
) -> Validator:
    """Add (or replace) a validator; `name` may carry the `validate_` prefix."""
    key = normalise_validator_name(name)
    validator = Validator(
        name=key,
        fn=fn,
        config_model=config_model,
        plan=plan,
        category=category,
        fail_severity=Severity.parse(fail_severity)
        if isinstance(fail_severity, str)
        else fail_severity,
        description=description or ((fn.__doc__ or "").strip().splitlines() or [""])[0],
        failure_kind=failure_kind,
    )
    with _LOCK:
        _REGISTRY[key] = validator
    return validator


def validator(
    name: str, config_model: type[BaseModel], **options: Any
) -> Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]:
    """Decorator form of `register_validator`."""

    def wrap(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        register_validator(name, fn, config_model, **options)
        return fn

    return wrap


_LOAD_LOCK = threading.Lock()
#: Modules whose import registers the built-in validators, loaded by name on the first lookup
#: as a plugin's would be (the validators import this registry; the registry names them only).
BUILTIN_MODULES = ("prefect_ombudsman.validation.validators",)
#: Validators that live outside `validators/` and register themselves on import, when present.
OPTIONAL_MODULES = ("prefect_ombudsman.validation.row_checksum",)


def _ensure_builtins() -> None:
    """Import the built-in validators once (threads wait until every one is registered)."""
    global _LOADED
    if _LOADED:
        return
    with _LOAD_LOCK:
        if not _LOADED:
            for module in BUILTIN_MODULES:
                importlib.import_module(module)
            for module in OPTIONAL_MODULES:
                try:
                    importlib.import_module(module)
                except ImportError:
                    pass
            _LOADED = True


def get_validator(name: str) -> Validator:
    """The validator for `name` (with or without `validate_`), else an error listing close matches."""
    _ensure_builtins()
    key = normalise_validator_name(name)
    with _LOCK:
        found = _REGISTRY.get(key)
        names = sorted(_REGISTRY)
    if found is not None:
        return found
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownValidatorError(
        f"unknown validator {name!r}{hint} (registered: {len(names)}; see `available_validators()`)"
    )


def available_validators() -> list[str]:
    _ensure_builtins()
    with _LOCK:
        return sorted(_REGISTRY)


def validator_catalog() -> list[dict[str, Any]]:
    """Name, category, description and config schema of every validator (for docs and UIs)."""
    _ensure_builtins()
    with _LOCK:
        items = sorted(_REGISTRY.values(), key=lambda v: v.name)
    return [
        {
            "name": v.name,
            "category": v.category,
            "description": v.description,
            "fail_severity": v.fail_severity.value,
            "config": v.config_model.model_json_schema(),
        }
        for v in items
    ]
