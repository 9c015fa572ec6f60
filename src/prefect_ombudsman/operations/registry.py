"""Registered custom operations: entry-point group `prefect_ombudsman.operations`.

A request can only name an operation registered here; nothing else is importable from a request.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from prefect_ombudsman.errors import UnknownOperationError

ENTRY_POINT_GROUP = "prefect_ombudsman.operations"

Operation = Callable[..., Any]

_EXTRA: dict[str, Operation] = {}
_LOADED: dict[str, Operation] = {}
_LOCK = threading.Lock()


def register_operation(name: str, function: Operation) -> None:
    """Register an operation from Python (plugins, tests); requests still only name it."""
    with _LOCK:
        _EXTRA[name] = function


def unregister_operation(name: str) -> None:
    with _LOCK:
        _EXTRA.pop(name, None)
        _LOADED.pop(name, None)


def available_operations() -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    with _LOCK:
        names.update(_EXTRA)
    return sorted(names)


def operation_sources() -> dict[str, str]:
    """Each registered operation and the distribution that registers it (`python`: in-process)."""
    sources = {
        ep.name: (ep.dist.name if ep.dist is not None else "?")
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    }
    with _LOCK:
        sources.update({name: "python" for name in _EXTRA})
    return dict(sorted(sources.items()))


def get_operation(name: str) -> Operation:
    """The operation registered as `name`; the error lists close matches."""
    with _LOCK:
        if name in _EXTRA:
            return _EXTRA[name]
        if name in _LOADED:
            return _LOADED[name]
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        names = available_operations()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownOperationError(
            f"unknown operation {name!r}{hint}; registered: {', '.join(names)}"
        )
    function = matches[0].load()
    with _LOCK:
        _LOADED[name] = function
    return function


def check_arguments(name: str, arguments: Mapping[str, Any], field: str) -> None:
    """Run the operation's own request-time check (its `check_arguments(arguments, field)`), if it
    declares one. An unknown name passes here: it fails only its own operation at run time."""
    try:
        function = get_operation(name)
    except UnknownOperationError:
        return
    check = getattr(function, "check_arguments", None)
    if callable(check):
        check(arguments, field)
