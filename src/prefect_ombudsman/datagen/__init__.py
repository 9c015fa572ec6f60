"""Batch data generation: seeded star schemas (Retail, Finance, Healthcare) loaded fast into any target.

- `catalog`: tables declared once (columns, keys, FKs, sizes, builders), rendered per dialect.
- `generator`: plans and deterministic Arrow chunks (per-table, per-chunk RNGs).
- `load` / `warehouse`: staging-table loads through each dialect's bulk path, one swap per table.
- `drift`: planted differences in one target and the manifest of exactly what was planted.
- `project_template`: the shipped `project.yaml` and validation pipelines of each schema.
"""

from prefect_ombudsman.datagen.catalog import StarSchema, TableSpec, sa_table
from prefect_ombudsman.datagen.drift import DriftSpec, load_drift_file, parse_drift
from prefect_ombudsman.datagen.generator import (
    CHUNK_ROWS,
    GenerationPlan,
    build_plan,
    content_digest,
    iter_chunks,
)
from prefect_ombudsman.datagen.load import TableLoad, Target
from prefect_ombudsman.datagen.schemas import get_schema, schema_types
from prefect_ombudsman.datagen.warehouse import generate_warehouse

__all__ = [
    "CHUNK_ROWS",
    "DriftSpec",
    "GenerationPlan",
    "StarSchema",
    "TableLoad",
    "TableSpec",
    "Target",
    "build_plan",
    "content_digest",
    "generate_warehouse",
    "get_schema",
    "iter_chunks",
    "load_drift_file",
    "parse_drift",
    "sa_table",
    "schema_types",
]
