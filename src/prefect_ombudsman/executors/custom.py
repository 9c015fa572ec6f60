"""Executor of `custom` operations: call the registered operation with the item's arguments."""

from __future__ import annotations

import inspect
from typing import Any

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.operations.registry import get_operation


def run_custom_operation(ctx: OperationContext, arguments: dict[str, Any]) -> Any:
    """Look the operation up in the registry and call it; bad arguments are a clear error."""
    function = get_operation(arguments["operation"])
    kwargs = dict(arguments.get("arguments") or {})
    try:
        inspect.signature(function).bind(ctx, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"operation {arguments['operation']!r}: {exc}") from None
    return function(ctx, **kwargs)
