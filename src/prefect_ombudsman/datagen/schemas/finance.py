"""Finance: accounts, transaction types and merchants; transactions and daily balances.

Tables and columns follow the Studio's Finance workload (reference/studio-today.md §4.4:
DIM_ACCOUNT.AccountID/AccountNumber/AccountType/AccountStatus, ...) in snake_case.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefect_ombudsman.datagen import pools as P
from prefect_ombudsman.datagen.calendar import DIM_DATE
from prefect_ombudsman.datagen.catalog import (
    BIGINT,
    DATE,
    DECIMAL,
    INT,
    TIMESTAMP,
    VARCHAR,
    Column,
    StarSchema,
    TableSpec,
)
from prefect_ombudsman.datagen.chunks import ChunkContext, WithNulls, stream_rng

# account type: (weight, median balance, sigma, annual interest rate as a fraction in 1/10000)
ACCOUNT_TYPES: dict[str, tuple[float, float, float, int]] = {
    "Checking": (0.46, 2400.0, 1.0, 10),
    "Savings": (0.26, 9500.0, 1.2, 420),
    "Investment": (0.10, 48000.0, 1.3, 0),
    "Credit Card": (0.13, 1800.0, 0.9, 2299),
    "Money Market": (0.05, 22000.0, 1.1, 475),
}
_TYPE_NAMES = pa.array(list(ACCOUNT_TYPES), pa.string())
_TYPE_WEIGHTS = np.array([t[0] for t in ACCOUNT_TYPES.values()])
_TYPE_MEDIAN = np.array([t[1] for t in ACCOUNT_TYPES.values()])
_TYPE_SIGMA = np.array([t[2] for t in ACCOUNT_TYPES.values()])
_TYPE_RATE = np.array([t[3] for t in ACCOUNT_TYPES.values()])  # unscaled DECIMAL(6,4): 420 = 0.0420
_CREDIT = list(ACCOUNT_TYPES).index("Credit Card")

# transaction type: (direction, category, weight, median amount, sigma)
TRANSACTION_TYPES: tuple[tuple[str, str, str, float, float, float], ...] = (
    ("Card Purchase", "DEBIT", "Card", 0.36, 38.0, 0.9),
    ("Online Purchase", "DEBIT", "Card", 0.20, 52.0, 0.9),
    ("ATM Withdrawal", "DEBIT", "Cash", 0.06, 100.0, 0.6),
    ("Cash Deposit", "CREDIT", "Cash", 0.03, 400.0, 0.8),
    ("Direct Deposit", "CREDIT", "Payroll", 0.06, 2300.0, 0.4),
    ("Transfer In", "CREDIT", "Transfer", 0.04, 500.0, 1.0),
    ("Transfer Out", "DEBIT", "Transfer", 0.05, 450.0, 1.0),
    ("Bill Payment", "DEBIT", "Payment", 0.08, 140.0, 0.7),
    ("Refund", "CREDIT", "Card", 0.03, 45.0, 0.8),
    ("Monthly Fee", "DEBIT", "Fee", 0.02, 12.0, 0.3),
    ("Interest Credit", "CREDIT", "Interest", 0.05, 4.5, 1.0),
    ("Wire Transfer", "DEBIT", "Transfer", 0.02, 2600.0, 0.9),
)
_CARD_TYPES = np.array([t[2] == "Card" for t in TRANSACTION_TYPES])

# merchant category: (MCC, weight)
MERCHANT_CATEGORIES: dict[str, tuple[str, float]] = {
    "Grocery Stores": ("5411", 0.18),
    "Restaurants": ("5812", 0.16),
    "Fast Food": ("5814", 0.10),
    "Gas Stations": ("5541", 0.09),
    "Online Retail": ("5942", 0.09),
    "Department Stores": ("5311", 0.06),
    "Pharmacies": ("5912", 0.05),
    "Electronics": ("5732", 0.04),
    "Clothing": ("5651", 0.05),
    "Home Improvement": ("5200", 0.04),
    "Airlines": ("4511", 0.02),
    "Hotels": ("7011", 0.02),
    "Utilities": ("4900", 0.04),
    "Entertainment": ("7832", 0.03),
    "Insurance": ("6300", 0.03),
}
_MCC_NAMES = pa.array(list(MERCHANT_CATEGORIES), pa.string())
_MCC_CODES = pa.array([m[0] for m in MERCHANT_CATEGORIES.values()], pa.string())
_MCC_WEIGHTS = np.array([m[1] for m in MERCHANT_CATEGORIES.values()])


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@lru_cache(maxsize=8)
def account_attributes(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(account type index, typical balance in cents) per account; balances build on them."""
    rng = stream_rng(seed, "finance.dim_account")
    kind = P.weighted(rng, _TYPE_WEIGHTS / _TYPE_WEIGHTS.sum(), count)
    typical = np.round(
        np.exp(np.log(_TYPE_MEDIAN[kind]) + _TYPE_SIGMA[kind] * rng.standard_normal(count)) * 100
    )
    typical = np.clip(typical, 0, 5e10).astype(np.int64)
    for array in (kind, typical):
        array.flags.writeable = False
    return kind, typical


@lru_cache(maxsize=8)
def merchant_names(seed: int, count: int) -> pa.Array:
    """Every merchant's name (transaction descriptions name the merchant)."""
    rng = stream_rng(seed, "finance.dim_merchant")
    companies = P.pools().companies
    return companies.take(pa.array(rng.integers(0, len(companies), count)))


def transaction_type_rows(count: int) -> dict[str, Any]:
    """The fixed list, repeated with a numbered suffix when more types are asked for."""
    base = len(TRANSACTION_TYPES)
    idx = np.arange(count) % base
    rounds = np.arange(count) // base
    names = pa.array([TRANSACTION_TYPES[i][0] for i in idx], pa.string())
    suffix = pa.array([f" {r + 1}" if r else "" for r in rounds], pa.string())
    return {
        "type_name": P.join(names, suffix),
        "direction": pa.array([TRANSACTION_TYPES[i][1] for i in idx], pa.string()),
        "category": pa.array([TRANSACTION_TYPES[i][2] for i in idx], pa.string()),
    }


def build_account(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    kind, _ = (
        a[ctx.start : ctx.start + n] for a in account_attributes(ctx.seed, ctx.size("dim_account"))
    )
    first, last, _ = P.person_names(rng, n)
    address = P.addresses(rng, n)
    credit = kind == _CREDIT
    limit = np.round(
        rng.choice([500, 1000, 2500, 5000, 7500, 10000, 15000, 25000], n) * 100
    ).astype(np.int64)
    return {
        "account_id": keys,
        "account_number": P.join(P.digits(rng.integers(100, 1000, n), 3), "-", P.digits(keys, 9)),
        "account_type": _TYPE_NAMES.take(pa.array(kind)),
        "account_status": P.choice(
            rng, ("Active", "Dormant", "Closed", "Frozen"), n, [0.86, 0.06, 0.05, 0.03]
        ),
        "customer_name": P.join(first, " ", last),
        "email": P.emails(rng, first, last, keys),
        "branch_city": address["city"],
        "branch_state": address["state"],
        "opened_date": np.datetime64(ctx.calendar.start, "D") - rng.integers(0, 20 * 365, n),
        "credit_limit": WithNulls(limit, ~credit),
        "interest_rate": _TYPE_RATE[kind]
        + np.where(_TYPE_RATE[kind] > 0, rng.integers(-25, 26, n), 0),
    }


def build_transaction_type(ctx: ChunkContext) -> dict[str, Any]:
    rows = transaction_type_rows(ctx.start + ctx.count)
    return {"type_id": ctx.keys, **{k: v.slice(ctx.start, ctx.count) for k, v in rows.items()}}


def build_merchant(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    category = P.weighted(rng, _MCC_WEIGHTS / _MCC_WEIGHTS.sum(), n)
    address = P.addresses(rng, n)
    return {
        "merchant_id": keys,
        "merchant_name": merchant_names(ctx.seed, ctx.size("dim_merchant")).slice(ctx.start, n),
        "category": _MCC_NAMES.take(pa.array(category)),
        "mcc_code": _MCC_CODES.take(pa.array(category)),
        "city": address["city"],
        "state": address["state"],
        "country": "US",
    }


def build_transactions(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    type_count = ctx.size("dim_transaction_type")
    base = len(TRANSACTION_TYPES)
    weights = np.array([TRANSACTION_TYPES[i % base][3] for i in range(type_count)])
    weights = weights / (1 + np.arange(type_count) // base)
    type_idx = P.weighted(rng, weights / weights.sum(), n)
    base_idx = type_idx % base
    median = np.array([t[4] for t in TRANSACTION_TYPES])[base_idx]
    sigma = np.array([t[5] for t in TRANSACTION_TYPES])[base_idx]
    amount = np.round(np.exp(np.log(median) + sigma * rng.standard_normal(n)) * 100).astype(
        np.int64
    )
    atm = base_idx == 2
    amount = np.where(
        atm, np.clip(np.round(amount / 2000), 1, 40).astype(np.int64) * 2000, np.maximum(amount, 1)
    )
    merchants = P.skewed_keys(rng, ctx.size("dim_merchant"), n, 1.5)
    days = ctx.fact_dates()
    seconds = np.clip(rng.normal(13.5 * 3600, 4 * 3600, n), 0, 86399).astype(np.int64)
    when = ctx.calendar.dates[days].astype("datetime64[s]") + seconds
    names = pa.array([t[0] for t in TRANSACTION_TYPES], pa.string()).take(pa.array(base_idx))
    merchant = merchant_names(ctx.seed, ctx.size("dim_merchant")).take(pa.array(merchants - 1))
    card = pa.array(_CARD_TYPES[base_idx])
    description = pc.if_else(card, P.join(names, " - ", merchant), names)
    return {
        "transaction_id": ctx.keys,
        "account_id": P.skewed_keys(rng, ctx.size("dim_account"), n, 1.3),
        "type_id": type_idx + 1,
        "merchant_id": merchants,
        "date_key": ctx.calendar.keys[days],
        "transaction_date": when,
        "amount": amount,
        "currency": P.choice(
            rng, ("USD", "EUR", "GBP", "CAD", "MXN"), n, [0.955, 0.015, 0.01, 0.012, 0.008]
        ),
        "status": P.choice(rng, ("Posted", "Pending", "Reversed"), n, [0.955, 0.035, 0.01]),
        "description": description,
    }


def build_balances(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    accounts = P.uniform_keys(rng, ctx.size("dim_account"), n)
    kind, typical = account_attributes(ctx.seed, ctx.size("dim_account"))
    days = rng.integers(0, ctx.calendar.days, n)
    current = np.round(typical[accounts - 1] * np.exp(rng.normal(0, 0.18, n))).astype(np.int64)
    pending = np.where(
        rng.random(n) < 0.3, np.round(current * rng.uniform(0.0, 0.08, n)), 0
    ).astype(np.int64)
    return {
        "balance_id": ctx.keys,
        "account_id": accounts,
        "date_key": ctx.calendar.keys[days],
        "balance_date": ctx.calendar.dates[days],
        "current_balance": current,
        "available_balance": current - pending,
        "pending_amount": pending,
        "account_type": _TYPE_NAMES.take(pa.array(kind[accounts - 1])),
    }


DIM_ACCOUNT = TableSpec(
    name="dim_account",
    schema="dim",
    description="Bank accounts: type drives balances and rates; only credit cards have a credit limit.",
    columns=(
        Column("account_id", INT, nullable=False, primary_key=True),
        Column("account_number", VARCHAR(20), nullable=False),
        Column("account_type", VARCHAR(20)),
        Column("account_status", VARCHAR(20)),
        Column("customer_name", VARCHAR(100)),
        Column("email", VARCHAR(100)),
        Column("branch_city", VARCHAR(50)),
        Column("branch_state", VARCHAR(2)),
        Column("opened_date", DATE),
        Column("credit_limit", DECIMAL(12, 2)),
        Column("interest_rate", DECIMAL(6, 4)),
    ),
    size=lambda rows: _clamp(rows // 50, 100, 20_000_000),
    build=build_account,
    business_key="account_number",
)

DIM_TRANSACTION_TYPE = TableSpec(
    name="dim_transaction_type",
    schema="dim",
    description="Transaction types with their direction (DEBIT/CREDIT) and category.",
    columns=(
        Column("type_id", INT, nullable=False, primary_key=True),
        Column("type_name", VARCHAR(50), nullable=False),
        Column("direction", VARCHAR(10)),
        Column("category", VARCHAR(20)),
    ),
    size=lambda rows: len(TRANSACTION_TYPES),
    build=build_transaction_type,
    business_key="type_name",
)

DIM_MERCHANT = TableSpec(
    name="dim_merchant",
    schema="dim",
    description="Merchants with ISO 18245 merchant category codes.",
    columns=(
        Column("merchant_id", INT, nullable=False, primary_key=True),
        Column("merchant_name", VARCHAR(100), nullable=False),
        Column("category", VARCHAR(50)),
        Column("mcc_code", VARCHAR(4)),
        Column("city", VARCHAR(50)),
        Column("state", VARCHAR(2)),
        Column("country", VARCHAR(2)),
    ),
    size=lambda rows: _clamp(rows // 100, 50, 5_000_000),
    build=build_merchant,
)

FACT_TRANSACTIONS = TableSpec(
    name="fact_transactions",
    schema="fact",
    description="Account transactions: amounts per type, weekday and payday peaks, daytime timestamps.",
    columns=(
        Column("transaction_id", BIGINT, nullable=False, primary_key=True),
        Column("account_id", INT, nullable=False, references="dim_account.account_id"),
        Column("type_id", INT, nullable=False, references="dim_transaction_type.type_id"),
        Column("merchant_id", INT, nullable=False, references="dim_merchant.merchant_id"),
        Column("date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("transaction_date", TIMESTAMP),
        Column("amount", DECIMAL(12, 2)),
        Column("currency", VARCHAR(3)),
        Column("status", VARCHAR(10)),
        Column("description", VARCHAR(200)),
    ),
    size=lambda rows: rows,
    build=build_transactions,
    date_column="transaction_date",
)

FACT_BALANCES = TableSpec(
    name="fact_balances",
    schema="fact",
    description="Daily balance snapshots per account; available = current - pending.",
    columns=(
        Column("balance_id", BIGINT, nullable=False, primary_key=True),
        Column("account_id", INT, nullable=False, references="dim_account.account_id"),
        Column("date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("balance_date", DATE),
        Column("current_balance", DECIMAL(14, 2)),
        Column("available_balance", DECIMAL(14, 2)),
        Column("pending_amount", DECIMAL(12, 2)),
        Column("account_type", VARCHAR(20)),
    ),
    size=lambda rows: rows,
    build=build_balances,
    date_column="balance_date",
)

FINANCE = StarSchema(
    name="Finance",
    description="Retail banking: accounts, transaction types, merchants; transactions and balances.",
    tables=(
        DIM_DATE,
        DIM_ACCOUNT,
        DIM_TRANSACTION_TYPE,
        DIM_MERCHANT,
        FACT_TRANSACTIONS,
        FACT_BALANCES,
    ),
    date_profile="finance",
)
