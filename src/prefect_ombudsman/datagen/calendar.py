"""The date dimension and the weekday / seasonal patterns facts draw their dates from.

`dim_date` is the same table in every schema (its content depends only on the date range, not
on the seed), keyed `YYYYMMDD`, with US federal holidays and a July-June fiscal year.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefect_ombudsman.datagen.catalog import DATE, INT, VARCHAR, Column, TableSpec

if TYPE_CHECKING:
    from prefect_ombudsman.datagen.chunks import ChunkContext

# Relative activity by ISO weekday (Mon..Sun) and by month (Jan..Dec), per schema profile.
PROFILES: dict[str, dict[str, Any]] = {
    "retail": {
        "weekday": [0.85, 0.82, 0.88, 0.95, 1.12, 1.38, 1.22],
        "month": [0.78, 0.80, 0.93, 0.95, 1.00, 1.00, 1.02, 1.08, 0.92, 0.96, 1.28, 1.62],
        "growth": 0.08,
        "paydays": 1.0,
    },
    "finance": {
        "weekday": [1.15, 1.08, 1.06, 1.08, 1.24, 0.72, 0.55],
        "month": [0.95, 0.92, 1.00, 1.00, 1.00, 1.00, 1.02, 1.02, 0.98, 1.00, 1.05, 1.18],
        "growth": 0.05,
        "paydays": 1.6,  # the 1st and the 15th
    },
    "healthcare": {
        "weekday": [1.22, 1.15, 1.12, 1.10, 1.00, 0.32, 0.14],
        "month": [1.18, 1.12, 1.04, 0.98, 0.96, 0.92, 0.88, 0.90, 0.98, 1.00, 1.02, 1.04],
        "growth": 0.04,
        "paydays": 1.0,
    },
}


@dataclass(frozen=True)
class Calendar:
    """`days` consecutive dates from `start`."""

    start: date
    days: int
    _cache: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @cached_property
    def dates(self) -> np.ndarray:
        return np.datetime64(self.start, "D") + np.arange(self.days)

    @cached_property
    def keys(self) -> np.ndarray:
        return date_keys(self.dates)

    def cdf(self, profile: str) -> np.ndarray:
        if profile not in self._cache:
            self._cache[profile] = _profile_cdf(self.dates, PROFILES[profile])
        return self._cache[profile]

    def sample(self, rng: np.random.Generator, n: int, profile: str) -> np.ndarray:
        """`n` indexes into `dates`, weighted by the profile's weekday, month, payday and growth factors."""
        return np.searchsorted(self.cdf(profile), rng.random(n), side="right").astype(np.int64)


def date_keys(dates: np.ndarray) -> np.ndarray:
    """`YYYYMMDD` integer keys."""
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    return (years * 10000 + months * 100 + days).astype(np.int64)


def _profile_cdf(dates: np.ndarray, profile: dict[str, Any]) -> np.ndarray:
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    month = dates.astype("datetime64[M]").astype(np.int64) % 12
    day = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    years = (dates - dates[0]).astype(np.int64) / 365.25
    weights = np.asarray(profile["weekday"])[weekday] * np.asarray(profile["month"])[month]
    weights = weights * (1 + profile["growth"]) ** years
    weights = weights * np.where((day == 1) | (day == 15), profile["paydays"], 1.0)
    weights = weights * np.where(_holiday_mask(dates) == 1, 0.6, 1.0)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _holiday_mask(dates: np.ndarray) -> np.ndarray:
    """US federal holidays (observed on the day itself)."""
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (dates.astype(np.int64) + 3) % 7
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    nth = (day - 1) // 7 + 1
    month_end = (dates.astype("datetime64[M]") + 1).astype("datetime64[D]")
    last_week = (month_end - dates).astype(np.int64) <= 7
    fixed = (
        ((month == 1) & (day == 1))
        | ((month == 6) & (day == 19) & (years >= 2021))
        | ((month == 7) & (day == 4))
        | ((month == 11) & (day == 11))
        | ((month == 12) & (day == 25))
    )
    monday = weekday == 0
    floating = (
        ((month == 1) & monday & (nth == 3))  # Martin Luther King Jr. Day
        | ((month == 2) & monday & (nth == 3))  # Washington's Birthday
        | ((month == 5) & monday & last_week)  # Memorial Day
        | ((month == 9) & monday & (nth == 1))  # Labor Day
        | ((month == 10) & monday & (nth == 2))  # Columbus Day
        | ((month == 11) & (weekday == 3) & (nth == 4))  # Thanksgiving
    )
    return (fixed | floating).astype(np.int64)


def build_dim_date(ctx: ChunkContext) -> dict[str, Any]:
    dates = np.datetime64(ctx.calendar.start, "D") + np.arange(ctx.start, ctx.start + ctx.count)
    arrow_dates = pa.array(dates, pa.date32())
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    iso_weekday = (dates.astype(np.int64) + 3) % 7 + 1
    return {
        "date_key": date_keys(dates),
        "date": dates,
        "year": years,
        "quarter": (months - 1) // 3 + 1,
        "month": months,
        "month_name": pc.strftime(arrow_dates, format="%B"),
        "week": pc.iso_week(arrow_dates),
        "day_of_month": (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1,
        "day_of_week": iso_weekday,
        "day_name": pc.strftime(arrow_dates, format="%A"),
        "is_weekend": (iso_weekday >= 6).astype(np.int64),
        "is_holiday": _holiday_mask(dates),
        "fiscal_year": np.where(months >= 7, years, years - 1),  # the Studio's convention
        "fiscal_quarter": (months + 5) % 12 // 3 + 1,
    }


DIM_DATE = TableSpec(
    name="dim_date",
    schema="dim",
    description="One row per calendar day (YYYYMMDD keys), US federal holidays, July-June fiscal year.",
    columns=(
        Column("date_key", INT, nullable=False, primary_key=True),
        Column("date", DATE, nullable=False),
        Column("year", INT, nullable=False),
        Column("quarter", INT, nullable=False),
        Column("month", INT, nullable=False),
        Column("month_name", VARCHAR(20), nullable=False),
        Column("week", INT, nullable=False),
        Column("day_of_month", INT, nullable=False),
        Column("day_of_week", INT, nullable=False),
        Column("day_name", VARCHAR(20), nullable=False),
        Column("is_weekend", INT, nullable=False),
        Column("is_holiday", INT, nullable=False),
        Column("fiscal_year", INT, nullable=False),
        Column("fiscal_quarter", INT, nullable=False),
    ),
    size=lambda row_count: 1827,  # replaced by the plan's date range
    build=build_dim_date,
    business_key="date",
)
