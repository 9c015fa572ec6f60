"""One schema mapping for the whole package: comparison jobs, validation steps and the metadata
mapping all map `[database.]schema.table` through `projects.map_schema`."""

from __future__ import annotations

import pytest

from prefect_ombudsman.metadata.catalog import Catalog
from prefect_ombudsman.metadata.mapping import map_catalogs
from prefect_ombudsman.projects import map_schema, mapped_schema

MAPPINGS = {"dbo": "PUBLIC", "Staging": "stg"}


@pytest.mark.parametrize(
    ("qualified", "mapped"),
    [
        ("dbo.fact_sales", "PUBLIC.fact_sales"),
        ("DBO.fact_sales", "PUBLIC.fact_sales"),
        ("warehouse.dbo.fact_sales", "warehouse.PUBLIC.fact_sales"),  # the database part is kept
        ("staging.load", "stg.load"),
        ("sales.fact_sales", "sales.fact_sales"),  # no mapping: unchanged
        ("fact_sales", "fact_sales"),  # no schema: unchanged
    ],
)
def test_a_qualified_name_maps_its_schema_only(qualified: str, mapped: str):
    assert map_schema(qualified, MAPPINGS) == mapped


def test_a_bare_schema_maps_case_insensitively():
    assert mapped_schema("DbO", MAPPINGS) == "PUBLIC"
    assert mapped_schema("other", MAPPINGS) == "other"


def test_the_metadata_mapping_pairs_tables_through_the_same_rule():
    def catalog(schema: str) -> Catalog:
        return Catalog.model_validate(
            {
                "connection": "c",
                "dialect": "sqlite",
                "extracted_at": "2026-01-01T00:00:00+00:00",
                "schemas": [schema],
                "tables": [{"schema": schema, "name": "fact"}, {"schema": schema, "name": "dim"}],
            }
        )

    result = map_catalogs(catalog("dbo"), catalog("public"), MAPPINGS)
    assert [t.matched_by for t in result.tables] == ["schema_mapping", "schema_mapping"]
    unmapped = map_catalogs(catalog("sales"), catalog("public"), MAPPINGS)
    assert {t.matched_by for t in unmapped.tables} == {"name"}  # unique names pair by name alone
