"""Retail: the Studio's star schema (same table and column names) plus `fact_inventory`."""

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
from prefect_ombudsman.datagen.chunks import ChunkContext, stream_rng

# Census regions folded into the Studio's four regions.
_REGION_OF_STATE = {
    **dict.fromkeys(
        ["CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA", "DE", "MD", "DC", "VA"], "East"
    ),
    **dict.fromkeys(
        ["IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"], "North"
    ),
    **dict.fromkeys(
        ["FL", "GA", "NC", "SC", "WV", "AL", "KY", "MS", "TN", "AR", "LA", "OK", "TX"], "South"
    ),
    **dict.fromkeys(
        ["AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"], "West"
    ),
}


def region_of(states: pa.Array) -> pa.Array:
    keys = pa.array(list(_REGION_OF_STATE), pa.string())
    values = pa.array(list(_REGION_OF_STATE.values()), pa.string())
    return values.take(pc.index_in(states, value_set=keys))


# category: (weight, median price, sigma, subcategories, nouns)
CATEGORIES: dict[str, tuple[float, float, float, tuple[str, ...], tuple[str, ...]]] = {
    "Electronics": (
        0.16,
        120.0,
        0.9,
        ("Audio", "Computers", "Phones", "TV & Video", "Cameras"),
        (
            "Headphones",
            "Speaker",
            "Laptop",
            "Tablet",
            "Monitor",
            "Smartphone",
            "Camera",
            "Charger",
            "Keyboard",
            "Mouse",
        ),
    ),
    "Clothing": (
        0.22,
        35.0,
        0.6,
        ("Men", "Women", "Kids", "Shoes", "Accessories"),
        (
            "T-Shirt",
            "Jeans",
            "Jacket",
            "Sneakers",
            "Dress",
            "Hoodie",
            "Scarf",
            "Boots",
            "Socks",
            "Cap",
        ),
    ),
    "Food": (
        0.24,
        6.5,
        0.5,
        ("Snacks", "Beverages", "Pantry", "Frozen", "Dairy"),
        (
            "Coffee",
            "Green Tea",
            "Granola",
            "Pasta",
            "Olive Oil",
            "Dark Chocolate",
            "Orange Juice",
            "Cereal",
            "Almonds",
            "Yogurt",
        ),
    ),
    "Books": (
        0.12,
        17.0,
        0.45,
        ("Fiction", "Non-Fiction", "Children", "Comics", "Textbooks"),
        (
            "Novel",
            "Cookbook",
            "Biography",
            "Atlas",
            "Field Guide",
            "Anthology",
            "Workbook",
            "Picture Book",
        ),
    ),
    "Home": (
        0.14,
        42.0,
        0.8,
        ("Kitchen", "Furniture", "Decor", "Bedding", "Storage"),
        (
            "Blender",
            "Table Lamp",
            "Desk Chair",
            "Pillow",
            "Area Rug",
            "Cookware Set",
            "Vase",
            "Shelf",
            "Towel Set",
        ),
    ),
    "Sports": (
        0.12,
        38.0,
        0.75,
        ("Fitness", "Outdoor", "Cycling", "Team Sports", "Water Sports"),
        (
            "Yoga Mat",
            "Dumbbells",
            "Tent",
            "Backpack",
            "Helmet",
            "Soccer Ball",
            "Water Bottle",
            "Running Shoes",
        ),
    ),
}
_CAT_NAMES = pa.array(list(CATEGORIES), pa.string())
_CAT_WEIGHTS = np.array([c[0] for c in CATEGORIES.values()])
_CAT_MEDIAN = np.array([c[1] for c in CATEGORIES.values()])
_CAT_SIGMA = np.array([c[2] for c in CATEGORIES.values()])
_SUBCATS = pa.array([s for c in CATEGORIES.values() for s in c[3]], pa.string())
_NOUNS = pa.array([s for c in CATEGORIES.values() for s in c[4]], pa.string())
_NOUN_START = np.cumsum([0] + [len(c[4]) for c in CATEGORIES.values()])[:-1]
_NOUN_COUNT = np.array([len(c[4]) for c in CATEGORIES.values()])
_ADJECTIVES = (
    "Pro",
    "Ultra",
    "Plus",
    "Max",
    "Classic",
    "Essential",
    "Premium",
    "Lite",
    "Eco",
    "Smart",
    "Original",
    "Select",
)
_BRANDS = (
    "Acme",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
    "Proseware",
    "Adventure Works",
    "Wide World",
    "Blue Yonder",
    "Lucerne",
    "Coho",
    "Alpine Ski House",
    "Margie's",
    "Wingtip",
    "Fourth Coffee",
    "Trey Research",
    "Woodgrove",
    "Humongous",
    "Graphic Design Institute",
)


@lru_cache(maxsize=8)
def product_attributes(seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(category index, list price cents, unit cost cents) of every product; facts look these up."""
    rng = stream_rng(seed, "retail.dim_product")
    category = P.weighted(rng, _CAT_WEIGHTS / _CAT_WEIGHTS.sum(), count)
    price = np.exp(
        np.log(_CAT_MEDIAN[category]) + _CAT_SIGMA[category] * rng.standard_normal(count)
    )
    price_cents = (
        np.floor(np.clip(price, 1.0, 4999.0)).astype(np.int64) * 100 + 99
    )  # x.99 price points
    cost_cents = np.round(price_cents * rng.uniform(0.42, 0.72, count)).astype(np.int64)
    for array in (category, price_cents, cost_cents):
        array.flags.writeable = False
    return category, price_cents, cost_cents


def build_customer(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    first, last, _female = P.person_names(rng, n)
    address = P.addresses(rng, n)
    start = np.datetime64(ctx.calendar.start, "s")
    span = int((np.datetime64(ctx.calendar.end, "s") - start).astype(np.int64)) + 86400
    created = (
        start
        - np.int64(3 * 365 * 86400)
        + (rng.random(n) * (span + 3 * 365 * 86400)).astype(np.int64)
    )
    birth = np.datetime64(ctx.calendar.start, "D") - (rng.uniform(18, 85, n) * 365.25).astype(
        np.int64
    )
    return {
        "customer_key": keys,
        "customer_id": P.join("CUST", P.digits(keys, 8)),
        "customer_name": P.join(first, " ", last),
        "first_name": first,
        "last_name": last,
        "email": P.emails(rng, first, last, keys),
        "phone": P.phones(rng, n),
        **address,
        "segment": P.choice(rng, ("Gold", "Silver", "Bronze"), n, [0.15, 0.35, 0.50]),
        "region": region_of(address["state"]),
        "birth_date": birth,
        "created_at": created,
    }


def build_product(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    category, price, cost = (
        a[ctx.start : ctx.start + n] for a in product_attributes(ctx.seed, ctx.size("dim_product"))
    )
    noun = _NOUN_START[category] + (rng.random(n) * _NOUN_COUNT[category]).astype(np.int64)
    subcat = category * 5 + rng.integers(0, 5, n)
    brand = P.choice(rng, _BRANDS, n)
    name = P.join(brand, " ", P.choice(rng, _ADJECTIVES, n), " ", _NOUNS.take(pa.array(noun)))
    launch = np.datetime64(ctx.calendar.start, "D") - rng.integers(0, 5 * 365, n)
    return {
        "product_key": keys,
        "product_id": P.join("PROD", P.digits(keys, 6)),
        "product_name": name,
        "category": _CAT_NAMES.take(pa.array(category)),
        "subcategory": _SUBCATS.take(pa.array(subcat)),
        "brand": brand,
        "unit_price": price,
        "unit_cost": cost,
        "launch_date": launch,
    }


_STORE_TYPES = pa.array(["Flagship", "Standard", "Outlet", "Express"], pa.string())
_STORE_TYPE_WEIGHTS = np.array([0.08, 0.62, 0.15, 0.15])
_STORE_TYPE_SQFT = np.array([60000, 25000, 25000, 6000])
_STORE_SUFFIX = ("Downtown", "Mall", "Plaza", "Market", "Crossing", "Commons", "Village", "Center")


def build_store(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    address = P.addresses(rng, n)
    kind = P.weighted(rng, _STORE_TYPE_WEIGHTS, n)
    store_type = _STORE_TYPES.take(pa.array(kind))
    base_sqft = _STORE_TYPE_SQFT[kind]
    return {
        "store_key": keys,
        "store_id": P.join("STR", P.digits(keys, 4)),
        "store_name": P.join(
            address["city"], " ", P.choice(rng, _STORE_SUFFIX, n), " #", P.text(keys)
        ),
        "address": address["address"],
        "city": address["city"],
        "state": address["state"],
        "postal_code": address["postal_code"],
        "region": region_of(address["state"]),
        "store_type": store_type,
        "square_feet": np.round(base_sqft * rng.uniform(0.6, 1.5, n), -2).astype(np.int64),
        "opened_date": np.datetime64(ctx.calendar.start, "D") - rng.integers(30, 25 * 365, n),
    }


def build_sales(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    products = P.skewed_keys(rng, ctx.size("dim_product"), n, 1.4)
    _, list_price, unit_cost = product_attributes(ctx.seed, ctx.size("dim_product"))
    price = list_price[products - 1]
    quantity = np.minimum(rng.geometric(0.42, n), 10)
    gross = price * quantity
    days = ctx.fact_dates()
    promo = rng.random(n) < 0.22
    discount = np.where(
        promo, np.round(gross * rng.choice([0.05, 0.10, 0.15, 0.20, 0.25, 0.30], n)), 0
    ).astype(np.int64)
    return {
        "sales_key": ctx.keys,
        "dim_customer_key": P.skewed_keys(rng, ctx.size("dim_customer"), n),
        "dim_product_key": products,
        "dim_store_key": P.skewed_keys(rng, ctx.size("dim_store"), n, 1.2),
        "dim_date_key": ctx.calendar.keys[days],
        "sales_date": ctx.calendar.dates[days],
        "quantity": quantity,
        "unit_price": price,
        "discount_amount": discount,
        "sales_amount": gross - discount,
        "cost_amount": unit_cost[products - 1] * quantity,
    }


def build_inventory(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    products = P.uniform_keys(rng, ctx.size("dim_product"), n)
    _, _, unit_cost = product_attributes(ctx.seed, ctx.size("dim_product"))
    days = rng.integers(0, ctx.calendar.days, n)
    reorder = rng.integers(10, 31, n)
    on_hand = rng.poisson(45, n)
    on_order = np.where(on_hand < reorder, rng.integers(2, 11, n) * 12, 0)
    cost = unit_cost[products - 1]
    return {
        "inventory_key": ctx.keys,
        "dim_product_key": products,
        "dim_store_key": P.uniform_keys(rng, ctx.size("dim_store"), n),
        "dim_date_key": ctx.calendar.keys[days],
        "snapshot_date": ctx.calendar.dates[days],
        "quantity_on_hand": on_hand,
        "quantity_on_order": on_order,
        "reorder_point": reorder,
        "unit_cost": cost,
        "inventory_value": cost * on_hand,
    }


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


DIM_CUSTOMER = TableSpec(
    name="dim_customer",
    schema="dim",
    description="Customers: names with US frequencies, unique emails, real cities with matching states and ZIPs.",
    columns=(
        Column("customer_key", INT, nullable=False, primary_key=True),
        Column("customer_id", VARCHAR(50), nullable=False),
        Column("customer_name", VARCHAR(100)),
        Column("first_name", VARCHAR(50)),
        Column("last_name", VARCHAR(50)),
        Column("email", VARCHAR(100)),
        Column("phone", VARCHAR(20)),
        Column("address", VARCHAR(200)),
        Column("city", VARCHAR(50)),
        Column("state", VARCHAR(2)),
        Column("postal_code", VARCHAR(10)),
        Column("segment", VARCHAR(20)),
        Column("region", VARCHAR(50)),
        Column("birth_date", DATE),
        Column("created_at", TIMESTAMP),
    ),
    size=lambda rows: _clamp(rows // 20, 100, 50_000_000),
    build=build_customer,
    business_key="customer_id",
)

DIM_PRODUCT = TableSpec(
    name="dim_product",
    schema="dim",
    description="Products in six categories with x.99 list prices (log-normal per category) and unit costs.",
    columns=(
        Column("product_key", INT, nullable=False, primary_key=True),
        Column("product_id", VARCHAR(50), nullable=False),
        Column("product_name", VARCHAR(200)),
        Column("category", VARCHAR(50)),
        Column("subcategory", VARCHAR(50)),
        Column("brand", VARCHAR(100)),
        Column("unit_price", DECIMAL(10, 2)),
        Column("unit_cost", DECIMAL(10, 2)),
        Column("launch_date", DATE),
    ),
    size=lambda rows: _clamp(rows // 200, 50, 1_000_000),
    build=build_product,
    business_key="product_id",
)

DIM_STORE = TableSpec(
    name="dim_store",
    schema="dim",
    description="Stores in real US cities; type drives floor area.",
    columns=(
        Column("store_key", INT, nullable=False, primary_key=True),
        Column("store_id", VARCHAR(20), nullable=False),
        Column("store_name", VARCHAR(100)),
        Column("address", VARCHAR(200)),
        Column("city", VARCHAR(50)),
        Column("state", VARCHAR(2)),
        Column("postal_code", VARCHAR(10)),
        Column("region", VARCHAR(50)),
        Column("store_type", VARCHAR(20)),
        Column("square_feet", INT),
        Column("opened_date", DATE),
    ),
    size=lambda rows: _clamp(rows // 2000, 10, 100_000),
    build=build_store,
    business_key="store_id",
)

FACT_SALES = TableSpec(
    name="fact_sales",
    schema="fact",
    description="Sales lines: skewed customers and products, weekend and November/December peaks, promotions.",
    columns=(
        Column("sales_key", BIGINT, nullable=False, primary_key=True),
        Column("dim_customer_key", INT, nullable=False, references="dim_customer.customer_key"),
        Column("dim_product_key", INT, nullable=False, references="dim_product.product_key"),
        Column("dim_store_key", INT, nullable=False, references="dim_store.store_key"),
        Column("dim_date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("sales_date", DATE),
        Column("quantity", INT),
        Column("unit_price", DECIMAL(10, 2)),
        Column("discount_amount", DECIMAL(10, 2)),
        Column("sales_amount", DECIMAL(12, 2)),
        Column("cost_amount", DECIMAL(12, 2)),
    ),
    size=lambda rows: rows,
    build=build_sales,
    date_column="sales_date",
)

FACT_INVENTORY = TableSpec(
    name="fact_inventory",
    schema="fact",
    description="Inventory snapshots per product, store and day; reorders below the reorder point.",
    columns=(
        Column("inventory_key", BIGINT, nullable=False, primary_key=True),
        Column("dim_product_key", INT, nullable=False, references="dim_product.product_key"),
        Column("dim_store_key", INT, nullable=False, references="dim_store.store_key"),
        Column("dim_date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("snapshot_date", DATE),
        Column("quantity_on_hand", INT),
        Column("quantity_on_order", INT),
        Column("reorder_point", INT),
        Column("unit_cost", DECIMAL(10, 2)),
        Column("inventory_value", DECIMAL(14, 2)),
    ),
    size=lambda rows: rows,
    build=build_inventory,
    date_column="snapshot_date",
)

RETAIL = StarSchema(
    name="Retail",
    description="Retail sales and inventory (the Studio's Retail schema plus fact_inventory).",
    tables=(DIM_DATE, DIM_CUSTOMER, DIM_PRODUCT, DIM_STORE, FACT_SALES, FACT_INVENTORY),
    date_profile="retail",
)
