"""One JSON conversion for results, samples and manifests: numbers exact, or exact text."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.comparison import ComparisonOptions, compare_tables
from prefect_ombudsman.validation.values import difference

BIG = "123456789012345678.12"  # 20 significant digits: a float keeps 17


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), 12.5),
        (Decimal("0.1"), 0.1),
        (Decimal("-7.000"), -7),
        (Decimal(BIG), BIG),
        (Decimal("1E+30"), 10**30),
        (Decimal("NaN"), None),
        (Decimal("-Infinity"), None),
        (float("nan"), None),
        (2.5, 2.5),
        (True, True),
        (dt.datetime(2024, 1, 31, 10, 0, 5), "2024-01-31T10:00:05"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.time(23, 59), "23:59:00"),
        (b"\x00\xff", "00ff"),
        (memoryview(b"\x01"), "01"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ((Decimal("1.5"), None), [1.5, None]),
        ({1: Decimal("2")}, {"1": 2}),
    ],
)
def test_rule(value, expected):
    converted = jsonable(value)
    assert converted == expected and type(converted) is type(expected)
    json.dumps(converted, allow_nan=False)  # valid JSON, never NaN


def test_a_json_number_is_the_decimal_exactly():
    for text in ("0.1", "12.34", "99999999.99", "1234567.891", "0.000001"):
        number = jsonable(Decimal(text))
        assert isinstance(number, float) and Decimal(json.dumps(number)) == Decimal(text)
    assert Decimal(repr(float(Decimal(BIG)))) != Decimal(BIG)  # why BIG stays text


def test_validation_differences_and_comparison_samples_agree(tmp_path: Path):
    """A validation metric and a comparison sample show one value the same way."""
    metric = difference(Decimal(BIG), Decimal("123456789012345678.13"))
    assert metric["source"] == BIG and metric["difference"] == 0.01

    for name, amount in (("s", BIG), ("t", "123456789012345678.13")):
        with duckdb.connect(str(tmp_path / f"{name}.duckdb")) as con:
            con.execute("CREATE TABLE t (name VARCHAR, amount DECIMAL(38,2), price DECIMAL(9,2))")
            con.execute("INSERT INTO t VALUES ('a', ?, 12.50)", [amount])
    engines = [get_engine(spec_from_url(f"duckdb:///{tmp_path / n}.duckdb")) for n in "st"]
    result = compare_tables(*engines, "t", options=ComparisonOptions(sample_size=5)).result
    assert result.samples.missing_in_target == [{"name": "a", "amount": BIG, "price": 12.5}]
