"""Values from two databases side by side: numbers within a tolerance, exact integers, dates, JSON-safe output."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.spec import Tolerance

# Two computations in double precision (AVG, STDDEV) never agree to the last bit.
FLOAT_EPSILON = 1e-9
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


def to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def numbers_match(a: Any, b: Any, tolerance: Tolerance, *, scale: int | None = None) -> bool:
    """Equal within tolerance; exact integers/decimals compare exactly when the tolerance is 0.

    `scale` rounds both sides first (a DECIMAL(p, 2) sum kept as a float by SQLite is still a
    2-decimal number); floats compared with a zero tolerance get a 1e-9 relative allowance.
    """
    if a is None or b is None:
        return a is None and b is None
    da, db = to_decimal(a), to_decimal(b)
    if da is None or db is None:
        return str(a) == str(b)
    if scale is not None:
        quantum = Decimal(1).scaleb(-scale)
        da, db = da.quantize(quantum), db.quantize(quantum)
    diff = abs(da - db)
    if diff == 0:
        return True
    bound = max(
        Decimal(repr(tolerance.absolute)), Decimal(repr(tolerance.relative)) * max(abs(da), abs(db))
    )
    if tolerance.is_exact and (isinstance(a, float) or isinstance(b, float)):
        bound = Decimal(repr(FLOAT_EPSILON)) * max(abs(da), abs(db), Decimal(1))
    return diff <= bound


def difference(a: Any, b: Any) -> dict[str, Any]:
    """{source, target, difference, pct_difference} with JSON-safe numbers."""
    da, db = to_decimal(a), to_decimal(b)
    diff = None if da is None or db is None else db - da
    pct = None
    if diff is not None and da not in (None, 0):
        pct = round(float(diff / abs(da) * 100), 6)
    return {
        "source": jsonable(a),
        "target": jsonable(b),
        "difference": jsonable(diff),
        "pct_difference": pct,
    }


def as_date_text(value: Any) -> str | None:
    """A period key from any database (date, datetime, or ISO text) as 'YYYY-MM-DD'."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:10]


def as_date(value: Any) -> dt.date | None:
    text = as_date_text(value)
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def canonical(value: Any) -> Any:
    """A value normalised for cross-database equality (numbers by value, text right-trimmed)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, Decimal)):
        d = to_decimal(value)
        if d is None:
            return str(value)
        return d.normalize() if d != 0 else Decimal(0)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.rstrip()
        if _ISO_DATE.match(text):
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                return text
            return (
                parsed.date().isoformat()
                if len(text) == 10
                else parsed.replace(tzinfo=None).isoformat(sep=" ")
            )
        return text
    return str(value)
