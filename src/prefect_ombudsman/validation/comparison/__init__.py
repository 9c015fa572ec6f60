"""Row-level comparison of two tables on any two engines (SPEC §7.3).

One scan per side computes, grouped by bucket, the row count and the sum of the rows' 64-bit
hashes (`level 1`): the whole-table fingerprint is the sum of the buckets, so the bucket
checksums come out of the same single scan. Only when a bucket differs does a second query pull
`(key, hash)` for the rows of the differing buckets (`level 2`), and only for the sampled changed
keys are full canonical rows fetched (`level 3`) to name the differing columns. A row's hash is
computed in each database (`dialects/*`): the engine's native hash when both sides are the same
engine with the same column types, else the canonical hash every engine computes alike — the
arithmetic row hash (one integer per value, modular arithmetic in BIGINT, no row text:
`dialects/arithmetic.py`), or MD5 of the row's canonical text where a dialect has no arithmetic
hash (or `hash_mode: md5`) — so aggregates, not rows, cross the wire.

The bucket is a function of the key computed alike on both sides, so level 2 filters on the
key before hashing and re-hashes only the failing buckets' rows: integer keys by arithmetic
(`key_bucket_sql`), same-engine native runs by the engine's hash of the key, every other key
(text, composite, mixed types) by the canonical hash of the key columns (the row hash recipe
applied to the key alone), and a table without a key by its integer columns (or the canonical
hash of its other non-text, non-float columns). Only a keyless table of text and floats is
bucketed by the low bits of the row hash itself, and then level 2 hashes every row again.

    result = compare_tables(src_engine, tgt_engine, "dbo.fact_sales", "PUBLIC.FACT_SALES").result

Split into `models` (options, result, statistics), `plan` (the sides, the compared columns and
their kinds, hash mode, bucketing), `queries` (the SQL of one side) and `algorithm` (the levels
and threads); everything is importable from here.
"""

from prefect_ombudsman.validation.comparison.algorithm import (
    compare_tables,
    table_fingerprint,
)
from prefect_ombudsman.validation.comparison.models import (
    BucketBy,
    ChangedSample,
    ComparisonOptions,
    ComparisonOutcome,
    ComparisonResult,
    ComparisonSamples,
    ComparisonStats,
    HashMode,
    Recipe,
)
from prefect_ombudsman.validation.comparison.plan import (
    LENGTH_PREFIXED,
    CanonicalField,
    Plan,
    TableSide,
    integer_key,
    plan_columns,
    reflect_side,
    split_table_name,
)
from prefect_ombudsman.validation.comparison.queries import (
    KEY_MULTIPLIER,
    KEY_PRIME,
    MOD64,
    SideQueries,
    canonical_key_bucket,
    canonical_text_of,
    compile_sql,
    fold,
    key_bucket,
    key_bucket_sql,
)

__all__ = [
    "KEY_MULTIPLIER",
    "KEY_PRIME",
    "LENGTH_PREFIXED",
    "MOD64",
    "BucketBy",
    "CanonicalField",
    "ChangedSample",
    "ComparisonOptions",
    "ComparisonOutcome",
    "ComparisonResult",
    "ComparisonSamples",
    "ComparisonStats",
    "HashMode",
    "Plan",
    "Recipe",
    "TableSide",
    "SideQueries",
    "canonical_key_bucket",
    "canonical_text_of",
    "compare_tables",
    "compile_sql",
    "fold",
    "integer_key",
    "key_bucket",
    "key_bucket_sql",
    "plan_columns",
    "reflect_side",
    "split_table_name",
    "table_fingerprint",
]
