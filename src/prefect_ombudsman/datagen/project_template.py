"""The project template each schema ships: `project.yaml` plus validation pipelines covering its tables.

The files live in `datagen/templates/<Schema>/` (package data). They are rendered from the
catalog by `render_pipelines` (so a table or column declared once is validated everywhere),
and a test keeps the shipped files equal to the rendered ones. Table names are written
`dim.<table>` / `fact.<table>` on both sides; on a database without schemas (SQLite) the
validation engine drops the schema part, so the same files serve SQLite→DuckDB and
PostgreSQL→Snowflake projects.

    ombudsman run generate --project retail --schema Retail --rows 100000 --seed 42
    ombudsman run pipelines --project retail
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from prefect_ombudsman.datagen.catalog import StarSchema, TableSpec
from prefect_ombudsman.datagen.schemas import get_schema, schema_types


def _logical(table: TableSpec) -> dict[str, str]:
    qualified = f"{table.schema}.{table.name}"
    return {"sql": qualified, "snow": qualified}


def _metadata(table: TableSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "columns": table.column_names,
        "unique_keys": [table.key.name],
        "numeric_columns": [c.name for c in table.columns if c.is_measure],
        "date_columns": [c.name for c in table.columns if c.type.kind in ("date", "timestamp")],
    }
    if table.schema == "dim":
        meta["surrogate_key"] = table.key.name
        meta["business_key"] = table.business_key or table.key.name
    if table.foreign_keys:
        meta["foreign_keys"] = {
            c.references.partition(".")[0]: {"column": c.name, "references": c.references}
            for c in table.foreign_keys
            if c.references
        }
    return {k: v for k, v in meta.items() if v}


def _decimal_measures(table: TableSpec) -> list[str]:
    return [c.name for c in table.columns if c.is_measure and c.type.kind == "decimal"]


def _scd1_attributes(table: TableSpec) -> list[str]:
    skip = {table.key.name, table.business_key}
    return [c.name for c in table.columns if c.name not in skip and c.type.kind == "string"]


def render_pipelines(schema: StarSchema) -> dict[str, dict[str, Any]]:
    """The schema's pipelines (Studio flat format: top-level mapping, metadata and steps)."""
    prefix = schema.name.lower()
    dims = [t for t in schema.tables if t.schema == "dim"]
    facts = [t for t in schema.tables if t.schema == "fact"]

    def document(
        description: str, tables: list[TableSpec], steps: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "name": f"{schema.name} {description.split(':')[0]}",
            "description": description,
            "tags": ["generated", prefix],
            "mapping": {t.name: _logical(t) for t in tables},
            "metadata": {t.name: _metadata(t) for t in tables},
            "steps": steps,
        }

    quality: list[dict[str, Any]] = []
    for t in schema.tables:
        quality += [
            {
                "name": f"{t.name}_row_count",
                "validator": "record_counts",
                "severity": "HIGH",
                "config": {"table": t.name},
            },
            {
                "name": f"{t.name}_columns",
                "validator": "schema_columns",
                "config": {"table": t.name},
            },
            {
                "name": f"{t.name}_key_unique",
                "validator": "uniqueness",
                "config": {"table": t.name, "keys": [t.key.name]},
            },
            {
                "name": f"{t.name}_nulls",
                "validator": "nulls",
                "config": {"table": t.name, "columns": t.column_names},
            },
        ]

    dimensions: list[dict[str, Any]] = []
    for t in dims:
        bk = t.business_key or t.key.name
        dimensions += [
            {
                "name": f"{t.name}_business_keys",
                "validator": "dim_business_keys",
                "config": {"dim": t.name, "business_key": bk},
            },
            {
                "name": f"{t.name}_surrogate_keys",
                "validator": "dim_surrogate_keys",
                "config": {"dim": t.name, "business_key": bk, "surrogate_key": t.key.name},
            },
        ]
        if _scd1_attributes(t) and bk != t.key.name:
            dimensions.append(
                {
                    "name": f"{t.name}_scd1",
                    "validator": "scd1",
                    "severity": "MEDIUM",
                    "config": {
                        "dim": t.name,
                        "business_key": bk,
                        "scd1_attributes": _scd1_attributes(t),
                    },
                }
            )
        dimensions.append(
            {
                "name": f"{t.name}_rows",
                "validator": "row_checksum",
                "config": {"table": t.name, "key_columns": [t.key.name]},
            }
        )

    fact_steps: list[dict[str, Any]] = []
    for t in facts:
        measures = _decimal_measures(t)
        fact_steps += [
            {
                "name": f"{t.name}_totals",
                "validator": "metric_sums",
                "config": {"table": t.name, "metric_cols": measures},
            },
            {
                "name": f"{t.name}_monthly_totals",
                "validator": "metric_sums",
                "config": {
                    "table": t.name,
                    "metric_cols": measures,
                    "date_col": t.date_column,
                    "group_by": "month",
                },
            },
            {
                "name": f"{t.name}_averages",
                "validator": "metric_averages",
                "config": {"table": t.name, "metric_cols": measures},
            },
            {
                "name": f"{t.name}_statistics",
                "validator": "statistics",
                "config": {"table": t.name, "columns": [c.name for c in t.columns if c.is_measure]},
            },
            {
                "name": f"{t.name}_foreign_keys",
                "validator": "foreign_keys",
                "severity": "HIGH",
                "config": {
                    "table": t.name,
                    "foreign_keys": [
                        {
                            "column": c.name,
                            "ref_table": c.references.partition(".")[0],
                            "ref_column": c.references.partition(".")[2],
                        }
                        for c in t.foreign_keys
                        if c.references
                    ],
                },
            },
            {
                "name": f"{t.name}_rows",
                "validator": "row_checksum",
                "config": {"table": t.name, "key_columns": [t.key.name]},
            },
        ]

    return {
        f"{prefix}_quality": document(
            "quality: row counts, columns, key uniqueness and null counts of every table",
            list(schema.tables),
            quality,
        ),
        f"{prefix}_dimensions": document(
            "dimensions: business and surrogate keys, type-1 attributes, every row",
            dims,
            dimensions,
        ),
        f"{prefix}_facts": document(
            "facts: totals (overall and per month), averages, statistics, foreign keys, every row",
            list(schema.tables),
            fact_steps,
        ),
    }


def render_project(schema: StarSchema) -> dict[str, Any]:
    return {
        "name": f"{schema.name} migration",
        "description": f"{schema.description} SQLite stands in for SQL Server, DuckDB for Snowflake; "
        "point source/target at real databases to validate a real migration.",
        "source": "sqlite:///warehouse/source.db",
        "target": "duckdb:///warehouse/target.duckdb",
        "defaults": {"datagen": {"schema_type": schema.name, "row_count": 100_000, "seed": 42}},
    }


def dump(document: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(document, sort_keys=False, width=120, default_flow_style=None)


HEADER = "# Generated from the prefect-ombudsman schema catalog (datagen/project_template.py); edit freely.\n"


def template_files(schema_type: str) -> dict[str, str]:
    """`relative path -> text` of a schema's template, rendered from the catalog."""
    schema = get_schema(schema_type)
    files = {"project.yaml": dump(render_project(schema), HEADER)}
    for name, document in render_pipelines(schema).items():
        files[f"pipelines/{name}.yaml"] = dump(document, HEADER)
    return files


def template_dir(schema_type: str) -> Any:
    """The shipped template folder (package data) of a schema."""
    schema = get_schema(schema_type)
    return resources.files("prefect_ombudsman.datagen") / "templates" / schema.name


def install_template(schema_type: str, project_dir: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy a schema's `project.yaml` (kept when present, unless `overwrite`) and pipelines into a project folder."""
    source = template_dir(schema_type)
    project_dir = Path(project_dir)
    (project_dir / "pipelines").mkdir(parents=True, exist_ok=True)
    (project_dir / "warehouse").mkdir(exist_ok=True)
    written = []
    config = project_dir / "project.yaml"
    if overwrite or not config.exists():
        with resources.as_file(source / "project.yaml") as path:
            shutil.copyfile(path, config)
        written.append(config)
    for entry in (source / "pipelines").iterdir():
        if entry.name.endswith(".yaml"):
            destination = project_dir / "pipelines" / entry.name
            destination.write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
            written.append(destination)
    return written


def write_templates(root: Path) -> None:
    """Regenerate the shipped files (`python -m prefect_ombudsman.datagen.project_template`)."""

    for schema_type in schema_types():
        folder = root / schema_type
        if folder.exists():
            shutil.rmtree(folder)
        for relative, text in template_files(schema_type).items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    write_templates(Path(__file__).parent / "templates")
