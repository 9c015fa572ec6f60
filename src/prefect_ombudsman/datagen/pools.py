"""Value pools and vectorised samplers: realistic values at numpy speed.

Pools are built once per process from Faker's en_US word lists sampled with a fixed seed (names
weighted by their US frequency, street and company names in Faker's formats) plus curated lists (US cities with their
states and ZIP ranges, ICD-10 codes, medications, merchant categories). Rows then sample pools
with numpy, never one Faker call per field (reference/db-infra.md §4). Faker's word lists
change between releases, so Faker is pinned in pyproject.toml to keep the data identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

POOL_SEED = 20240229

# (city, state) — real US cities, roughly by population.
CITIES: tuple[tuple[str, str], ...] = (
    ("New York", "NY"),
    ("Los Angeles", "CA"),
    ("Chicago", "IL"),
    ("Houston", "TX"),
    ("Phoenix", "AZ"),
    ("Philadelphia", "PA"),
    ("San Antonio", "TX"),
    ("San Diego", "CA"),
    ("Dallas", "TX"),
    ("Austin", "TX"),
    ("Jacksonville", "FL"),
    ("San Jose", "CA"),
    ("Fort Worth", "TX"),
    ("Columbus", "OH"),
    ("Charlotte", "NC"),
    ("Indianapolis", "IN"),
    ("San Francisco", "CA"),
    ("Seattle", "WA"),
    ("Denver", "CO"),
    ("Nashville", "TN"),
    ("Oklahoma City", "OK"),
    ("Washington", "DC"),
    ("El Paso", "TX"),
    ("Las Vegas", "NV"),
    ("Boston", "MA"),
    ("Detroit", "MI"),
    ("Portland", "OR"),
    ("Louisville", "KY"),
    ("Memphis", "TN"),
    ("Baltimore", "MD"),
    ("Milwaukee", "WI"),
    ("Albuquerque", "NM"),
    ("Tucson", "AZ"),
    ("Fresno", "CA"),
    ("Sacramento", "CA"),
    ("Mesa", "AZ"),
    ("Kansas City", "MO"),
    ("Atlanta", "GA"),
    ("Omaha", "NE"),
    ("Colorado Springs", "CO"),
    ("Raleigh", "NC"),
    ("Long Beach", "CA"),
    ("Virginia Beach", "VA"),
    ("Miami", "FL"),
    ("Oakland", "CA"),
    ("Minneapolis", "MN"),
    ("Tulsa", "OK"),
    ("Bakersfield", "CA"),
    ("Wichita", "KS"),
    ("Arlington", "TX"),
    ("Aurora", "CO"),
    ("Tampa", "FL"),
    ("New Orleans", "LA"),
    ("Cleveland", "OH"),
    ("Honolulu", "HI"),
    ("Anaheim", "CA"),
    ("Lexington", "KY"),
    ("Stockton", "CA"),
    ("Henderson", "NV"),
    ("Saint Paul", "MN"),
    ("Cincinnati", "OH"),
    ("Pittsburgh", "PA"),
    ("Greensboro", "NC"),
    ("Anchorage", "AK"),
    ("Plano", "TX"),
    ("Lincoln", "NE"),
    ("Orlando", "FL"),
    ("Irvine", "CA"),
    ("Newark", "NJ"),
    ("Durham", "NC"),
    ("Chula Vista", "CA"),
    ("Toledo", "OH"),
    ("Fort Wayne", "IN"),
    ("St. Petersburg", "FL"),
    ("Laredo", "TX"),
    ("Jersey City", "NJ"),
    ("Chandler", "AZ"),
    ("Madison", "WI"),
    ("Lubbock", "TX"),
    ("Scottsdale", "AZ"),
    ("Reno", "NV"),
    ("Buffalo", "NY"),
    ("Gilbert", "AZ"),
    ("Glendale", "AZ"),
    ("North Las Vegas", "NV"),
    ("Winston-Salem", "NC"),
    ("Chesapeake", "VA"),
    ("Norfolk", "VA"),
    ("Fremont", "CA"),
    ("Garland", "TX"),
    ("Irving", "TX"),
    ("Hialeah", "FL"),
    ("Richmond", "VA"),
    ("Boise", "ID"),
    ("Spokane", "WA"),
    ("Baton Rouge", "LA"),
    ("Des Moines", "IA"),
    ("Salt Lake City", "UT"),
    ("Birmingham", "AL"),
    ("Rochester", "NY"),
)
# City weights: bigger cities first, a gentle power law.
_CITY_WEIGHTS = 1.0 / np.arange(1, len(CITIES) + 1) ** 0.6

EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "example.com",
)
_EMAIL_WEIGHTS = np.array([0.38, 0.14, 0.12, 0.10, 0.10, 0.04, 0.12])


@dataclass(frozen=True)
class Pools:
    """Arrow string pools plus the numpy weights to sample them."""

    first_names: pa.Array
    first_name_weights: np.ndarray
    first_name_female: np.ndarray  # bool per first name
    last_names: pa.Array
    last_name_weights: np.ndarray
    streets: pa.Array
    cities: pa.Array
    city_states: pa.Array
    city_weights: np.ndarray
    city_zip_low: np.ndarray
    city_zip_high: np.ndarray
    companies: pa.Array
    email_domains: pa.Array
    email_domain_weights: np.ndarray


def _normalised(weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    return weights / weights.sum()


@lru_cache(maxsize=1)
def pools() -> Pools:
    """The process-wide pools (built in ~0.3 s from a fixed Faker seed)."""
    from faker.providers.address.en_US import Provider as AddressProvider
    from faker.providers.company.en_US import Provider as CompanyProvider
    from faker.providers.person.en_US import Provider as PersonProvider

    female = dict(PersonProvider.first_names_female)
    male = dict(PersonProvider.first_names_male)
    names = sorted(set(female) | set(male))
    first_weights = np.array([female.get(n, 0.0) + male.get(n, 0.0) for n in names])
    is_female = np.array([female.get(n, 0.0) >= male.get(n, 0.0) for n in names])
    last = list(PersonProvider.last_names.items())

    # Street and company names in Faker's own formats, drawn from its word lists with a fixed seed
    # (thousands of Faker calls would cost seconds; these take milliseconds).
    rng = np.random.default_rng(POOL_SEED)
    last_names = np.array([n for n, _ in last])
    first_pool = np.array(names)
    suffixes = np.array(AddressProvider.street_suffixes)
    street_words = np.concatenate(
        [
            last_names[rng.integers(0, len(last_names), 2400)],
            first_pool[rng.integers(0, len(first_pool), 1200)],
        ]
    )
    streets = sorted(
        {
            f"{w} {sfx}"
            for w, sfx in zip(
                street_words,
                suffixes[rng.integers(0, len(suffixes), len(street_words))],
                strict=True,
            )
        }
    )
    pick = last_names[rng.integers(0, len(last_names), (2500, 3))]
    company_suffixes = np.array(CompanyProvider.company_suffixes)[
        rng.integers(0, len(CompanyProvider.company_suffixes), 2500)
    ]
    form = rng.integers(0, 3, 2500)
    companies = sorted(
        {
            f"{a} {sfx}" if f == 0 else (f"{a}-{b}" if f == 1 else f"{a}, {b} and {c}")
            for (a, b, c), sfx, f in zip(pick, company_suffixes, form, strict=True)
        }
    )

    zip_ranges = dict(AddressProvider.states_postcode)
    zip_ranges.setdefault("DC", (20001, 20039))
    lows = np.array([zip_ranges[state][0] for _, state in CITIES])
    highs = np.array([zip_ranges[state][1] for _, state in CITIES])
    return Pools(
        first_names=pa.array(names, pa.string()),
        first_name_weights=_normalised(first_weights),
        first_name_female=is_female,
        last_names=pa.array([n for n, _ in last], pa.string()),
        last_name_weights=_normalised(np.array([w for _, w in last])),
        streets=pa.array(streets, pa.string()),
        cities=pa.array([c for c, _ in CITIES], pa.string()),
        city_states=pa.array([s for _, s in CITIES], pa.string()),
        city_weights=_normalised(_CITY_WEIGHTS),
        city_zip_low=lows,
        city_zip_high=highs,
        companies=pa.array(companies, pa.string()),
        email_domains=pa.array(EMAIL_DOMAINS, pa.string()),
        email_domain_weights=_normalised(_EMAIL_WEIGHTS),
    )


# ----------------------------------------------------------------------------- samplers


def weighted(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """`n` indices drawn with the given (normalised) weights, via one searchsorted."""
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)


def choice(
    rng: np.random.Generator, values: pa.Array | list[str] | tuple[str, ...], n: int, weights=None
) -> pa.Array:
    """`n` values drawn from a pool (uniform, or with weights)."""
    pool = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    if weights is None:
        idx = rng.integers(0, len(pool), n)
    else:
        idx = weighted(rng, _normalised(np.asarray(weights)), n)
    return pool.take(pa.array(idx))


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate string arrays and literals element-wise."""
    return pc.binary_join_element_wise(*parts, "")


def digits(values: np.ndarray, width: int) -> pa.Array:
    """Integers as zero-padded strings (`42` → `0042`)."""
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def text(values: np.ndarray) -> pa.Array:
    """Integers as strings."""
    return pc.cast(pa.array(values), pa.string())


def person_names(rng: np.random.Generator, n: int) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(first names, last names, is_female) with US frequencies."""
    p = pools()
    first_idx = weighted(rng, p.first_name_weights, n)
    last_idx = weighted(rng, p.last_name_weights, n)
    return (
        p.first_names.take(pa.array(first_idx)),
        p.last_names.take(pa.array(last_idx)),
        p.first_name_female[first_idx],
    )


def emails(rng: np.random.Generator, first: pa.Array, last: pa.Array, keys: np.ndarray) -> pa.Array:
    """`first.last<key>@domain`, lower case; unique because the key is part of it."""
    p = pools()
    domains = p.email_domains.take(pa.array(weighted(rng, p.email_domain_weights, len(keys))))
    local = pc.utf8_lower(join(first, ".", pc.replace_substring(last, " ", ""), text(keys)))
    return join(pc.replace_substring(local, "'", ""), "@", domains)


def addresses(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    """Street address, city, state and a ZIP code in the state's range."""
    p = pools()
    numbers = rng.integers(1, 9900, n)
    streets = p.streets.take(pa.array(rng.integers(0, len(p.streets), n)))
    city_idx = weighted(rng, p.city_weights, n)
    low, high = p.city_zip_low[city_idx], p.city_zip_high[city_idx]
    zips = low + (rng.random(n) * (high - low + 1)).astype(np.int64)
    return {
        "address": join(text(numbers), " ", streets),
        "city": p.cities.take(pa.array(city_idx)),
        "state": p.city_states.take(pa.array(city_idx)),
        "postal_code": digits(zips, 5),
    }


def phones(rng: np.random.Generator, n: int) -> pa.Array:
    """`(AAA) EEE-NNNN` with valid-looking area and exchange codes."""
    area = rng.integers(201, 990, n)
    exchange = rng.integers(200, 1000, n)
    line = rng.integers(0, 10000, n)
    return join("(", text(area), ") ", text(exchange), "-", digits(line, 4))


def skewed_keys(rng: np.random.Generator, size: int, n: int, skew: float = 1.6) -> np.ndarray:
    """Keys 1..size where low keys are more frequent (a few customers buy a lot)."""
    u = rng.random(n) ** skew
    return np.minimum((u * size).astype(np.int64), size - 1) + 1


def uniform_keys(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    return rng.integers(1, size + 1, n, dtype=np.int64)
