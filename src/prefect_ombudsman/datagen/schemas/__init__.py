"""The three star schemas of SPEC §8, by `schema_type`."""

from prefect_ombudsman.datagen.catalog import StarSchema
from prefect_ombudsman.datagen.schemas.finance import FINANCE
from prefect_ombudsman.datagen.schemas.healthcare import HEALTHCARE
from prefect_ombudsman.datagen.schemas.retail import RETAIL
from prefect_ombudsman.errors import ConfigurationError

SCHEMAS: dict[str, StarSchema] = {s.name: s for s in (RETAIL, FINANCE, HEALTHCARE)}


def get_schema(schema_type: str) -> StarSchema:
    """The catalog entry of a `schema_type` (case-insensitive); the error lists the valid ones."""
    key = str(getattr(schema_type, "value", schema_type)).strip().lower()
    for name, schema in SCHEMAS.items():
        if name.lower() == key:
            return schema
    raise ConfigurationError(
        f"unknown schema_type {schema_type!r}; valid schema types: {', '.join(SCHEMAS)}"
    )


def schema_types() -> list[str]:
    return list(SCHEMAS)


__all__ = ["SCHEMAS", "get_schema", "schema_types"]
