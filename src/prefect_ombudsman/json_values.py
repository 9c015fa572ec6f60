"""One conversion of database values into JSON for every result, report, sample and manifest.

A number stays a JSON number when its JSON text is the value exactly: integers as integers, a
Decimal as a float when the float's shortest text is that same decimal (`12.50` -> `12.5`,
`0.1` -> `0.1`), otherwise as its exact decimal text (`123456789012345678.12` stays a string,
where a float would silently drop digits). Non-finite floats become null (JSON has no NaN).
Dates and times are ISO 8601 (`2024-01-31T10:00:00`), bytes lowercase hex, UUIDs their text.

    >>> jsonable({"amount": Decimal("12.50"), "big": Decimal("123456789012345678.12")})
    {'amount': 12.5, 'big': '123456789012345678.12'}
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any
from uuid import UUID


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (see the module docstring for the rules)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def _decimal(value: Decimal) -> int | float | str | None:
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


__all__ = ["jsonable"]
