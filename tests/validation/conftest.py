"""Projects with an embedded source (SQLite) and target (DuckDB) holding the small warehouse."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import warehouse

from prefect_ombudsman.dialects.connection import get_engine, spec_from_url

SALES_PIPELINE = """
pipeline:
  name: Sales checks
  source: {table: fact_sales}
  target: {table: fact_sales}
  steps:
    - name: validate_record_counts
    - name: nulls
    - name: metric_sums
      config: {metric_cols: [amount, quantity]}
    - name: foreign_keys
      config: {fk_column: customer_key, ref_table: dim_customer, ref_column: customer_key}
"""

CUSTOMER_PIPELINE = """
steps:
  - name: record_counts
    config: {table: dim_customer}
  - name: uniqueness
    config: {table: dim_customer, columns: [customer_id]}
"""


def make_project(
    root: Path,
    project_id: str,
    *,
    drift: dict[str, Any] | None = None,
    pipelines: dict[str, str] | None = None,
) -> Path:
    """A project folder whose source and target hold the warehouse (target with `drift`)."""
    folder = root / project_id
    (folder / "pipelines").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        f"name: {project_id}\nsource: sqlite:///data/source.db\ntarget: duckdb:///data/target.duckdb\n"
    )
    (folder / "data").mkdir()
    warehouse.build(get_engine(spec_from_url(f"sqlite:///{folder / 'data' / 'source.db'}")))
    warehouse.build(
        get_engine(spec_from_url(f"duckdb:///{folder / 'data' / 'target.duckdb'}")), drift=drift
    )
    for name, text in (
        pipelines
        if pipelines is not None
        else {"sales": SALES_PIPELINE, "customers": CUSTOMER_PIPELINE}
    ).items():
        (folder / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def project_factory(tmp_projects: Path):
    def factory(project_id: str = "retail", **kwargs: Any) -> Path:
        return make_project(tmp_projects, project_id, **kwargs)

    return factory
