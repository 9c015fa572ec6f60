"""The canonical arithmetic row hash: integers and modular arithmetic every engine computes alike.

The cross-engine row hash without building the whole row's canonical text (docs/comparison.md,
"The arithmetic row hash"). Each non-text column value becomes one integer `x`, the same on
every engine:

| kind | x |
|---|---|
| integer | the integer |
| boolean | 0 / 1 |
| DECIMAL / NUMERIC / FLOAT | the value at the column's canonical scale `s` (the larger declared scale of the two sides; `float_scale` for floats), times 10^s: an exact integer |
| DATE | days since 1970-01-01 (microseconds when the other side is a timestamp) |
| TIMESTAMP(TZ) | microseconds since 1970-01-01 (of the UTC instant) |
| TIME | microseconds since midnight |

The text-like columns (text, CHAR, UUID, binary, other) together give one integer `x_T`: the low
60 bits of MD5 of their canonical text (the MD5 recipe's encoding: `<length>:<text>` per value,
`~` for NULL, in column order), so a row costs at most one MD5, of its text values only.

Then two lanes `k` with the primes `p0 = 2^31 - 1` and `p1 = 2^31 - 19`, and per column `i`
(its position among all compared columns; `x_T` takes position `n`, the column count) a
coefficient `a[k][i]` in [1, p_k) and a NULL constant `c[k][i]` in [0, p_k) (fixed,
pseudo-random: `lane_constants`):

    t[k][i] = c[k][i]                           if the value is NULL
            = ((x mod p_k) * a[k][i]) mod p_k   otherwise
    lane[k] = (sum_i t[k][i] + t[k][n]) mod p_k (non-negative; t[k][n] from x_T, never NULL)
    h       = lane[0] * 2^31 + lane[1]          (0 <= h < 2^62)

Every intermediate stays below 2^62 in BIGINT (a product of two values below 2^31), so no
engine overflows; `mod` is written `((v % p) + p) % p` where `v` may be negative (SQL's `%`
truncates toward zero on every engine). Strength: a change of one non-text value always changes
`h` unless its integer changes by a multiple of p0 * p1 (about 4.6e18, e.g. a BIGINT jumping by
exactly that much); a change of text values changes `h` unless the two MD5 suffixes agree modulo
p0 * p1 (about 2^-62); changes in several columns of a row cancel with probability about
1 / (p0 * p1) = 2^-62 for data not built against the fixed coefficients. The client sums h per
bucket (exact) and compares the sums mod 2^64: one changed row changes its bucket's sum
whenever h changes (|delta h| < 2^62).

`arithmetic_row_hash_of` (dialects/sqlite.py) is the Python form the SQLite dialect registers
(SQLite has no MD5); the SQL of the other engines is built by `Dialect.row_hash_arithmetic` from
each dialect's `canonical_integer`, `canonical_residue` and `canonical_text_hash`.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

PRIMES = (2147483647, 2147483629)  # 2^31 - 1 and 2^31 - 19
LANE_SHIFT = 1 << 31
TEXT_BITS = 60
TEXT_MASK = (1 << TEXT_BITS) - 1
#: kinds hashed through the MD5 of their canonical text (one value, not the row)
TEXT_KINDS = frozenset({"text", "char", "uuid", "binary", "other"})


@lru_cache(maxsize=4096)
def lane_constants(lane: int, column: int) -> tuple[int, int]:
    """(coefficient in [1, p), NULL constant in [0, p)) of column `column` in lane `lane`."""
    prime = PRIMES[lane]
    seed = hashlib.sha256(f"prefect-ombudsman row hash {lane} {column}".encode()).digest()
    coefficient = int.from_bytes(seed[:8], "big") % (prime - 1) + 1
    null = int.from_bytes(seed[8:16], "big") % prime
    return coefficient, null


def text_number(text: str) -> int:
    """The low 60 bits of MD5(UTF-8 text), non-negative."""
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") & TEXT_MASK


def combine(numbers: dict[int, int | None], count: int, text_part: str | None) -> int:
    """h of a row of `count` columns: `numbers` the integer `x` of each non-text column by its
    position (None = NULL), `text_part` the canonical text of its text-like columns (None: it
    has none)."""
    lanes = []
    for lane, prime in enumerate(PRIMES):
        total = 0
        for column, x in numbers.items():
            coefficient, null = lane_constants(lane, column)
            total += null if x is None else (x % prime) * coefficient % prime
        if text_part is not None:
            coefficient, _ = lane_constants(lane, count)
            total += text_number(text_part) % prime * coefficient % prime
        lanes.append(total % prime)
    return lanes[0] * LANE_SHIFT + lanes[1]


def value_integer(kind: str, scale: int, canonical: str | None) -> int | None:
    """x of one non-text value from its canonical text (the SQLite path)."""
    if canonical is None:
        return None
    if kind in ("decimal", "float"):
        whole, _, fraction = canonical.partition(".")
        return int(whole + fraction.ljust(scale, "0")) if scale else int(whole)
    return int(canonical)
