"""Pipeline files: the Studio's formats, ${VAR}, overrides, batch files, errors with file/line/field."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_ombudsman.validation.loader import (
    PipelineError,
    expand_pipeline,
    find_pipeline_file,
    load_pipeline,
    parse_pipeline,
)

FORMAT_A = """
pipeline:
  name: Nested
  source: {connection: "${SRC_CONN}", schema: dbo, table: fact_sales}
  target: {schema: PUBLIC, table: FACT_SALES}
  steps:
    - name: validate_record_counts
    - name: fact_dim_conformance
      config: {fact: sales, dim: customer}
    - name: fact_dim_conformance
      config: {fact: sales, dim: product}
      depends_on: validate_record_counts
  custom_queries:
    - {name: totals, sql_server_query: "select 1", snowflake_query: "select 1", comparison_type: aggregation}
execution: {fail_on_error: false}
"""

FORMAT_B = """
metadata: {name: From workload, generated_from: workload_wl_1, active: true}
source: {type: sqlserver, schema: dbo, table: t}
target: {type: snowflake, schema: PUBLIC, table: T}
steps:
  - name: validation_1_workload_query
    type: comparative
    confidence: 95.0
    enabled: false
    validator: custom_sql
    config: {sql_server_query: "select 1", snowflake_query: "select 1"}
"""

FORMAT_D = """
steps:
  - name: Record_Counts
    config: {table: fact_sales}
mapping:
  fact_sales: {sql: dbo.fact_sales, snow: analytics.fact_sales}
metadata:
  fact_sales: {columns: {id: INT, amount: DECIMAL}, numeric_columns: [amount]}
"""


def test_format_a_nested_with_custom_queries_and_duplicate_names(monkeypatch):
    monkeypatch.setenv("SRC_CONN", "sqlite:///x.db")
    spec = parse_pipeline(FORMAT_A, pipeline_id="a")
    assert (
        spec.name == "Nested"
        and spec.source.connection == "sqlite:///x.db"
        and spec.source.schema_ == "dbo"
    )
    assert [s.validator for s in spec.steps] == [
        "record_counts",
        "fact_dim_conformance",
        "fact_dim_conformance",
        "custom_sql",
    ]
    assert [s.id for s in spec.steps] == [
        "validate_record_counts",
        "fact_dim_conformance",
        "fact_dim_conformance#2",
        "totals",
    ]
    assert spec.steps[2].depends_on == ["validate_record_counts"]
    assert spec.steps[3].config["sql_server_query"] == "select 1"
    assert spec.execution == {"fail_on_error": False}


def test_format_b_root_metadata_is_pipeline_info_and_enabled_is_kept():
    spec = parse_pipeline(FORMAT_B, pipeline_id="b")
    assert spec.name == "From workload" and spec.metadata == {}
    assert spec.steps[0].enabled is False and spec.steps[0].validator == "custom_sql"


def test_format_d_flat_with_mapping_and_table_metadata():
    spec = parse_pipeline(FORMAT_D, pipeline_id="d")
    assert spec.steps[0].validator == "record_counts"
    assert spec.mapping["fact_sales"].snow == "analytics.fact_sales"
    assert spec.table_metadata("FACT_SALES")["numeric_columns"] == ["amount"]


def test_undefined_variable_is_named_with_its_line(monkeypatch):
    monkeypatch.delenv("SRC_CONN", raising=False)
    with pytest.raises(PipelineError, match=r"line 4: variable \$\{SRC_CONN\} is not defined"):
        parse_pipeline(FORMAT_A, pipeline_id="a", file="p.yaml")


def test_variable_default_and_override_variables(monkeypatch):
    monkeypatch.delenv("SCHEMA_X", raising=False)
    text = "steps:\n  - name: record_counts\n    config: {table: '${SCHEMA_X:-dbo}.t'}\n"
    assert parse_pipeline(text, pipeline_id="v").steps[0].config["table"] == "dbo.t"
    spec = parse_pipeline(text, pipeline_id="v", override={"variables": {"SCHEMA_X": "fact"}})
    assert spec.steps[0].config["table"] == "fact.t"


def test_malformed_yaml_names_file_and_line():
    with pytest.raises(PipelineError, match=r"bad.yaml, line 3: not valid YAML"):
        parse_pipeline("steps:\n  - name: a\nfoo: bar: baz\n", pipeline_id="x", file="bad.yaml")


def test_bad_field_names_file_line_and_field():
    text = "steps:\n  - name: nulls\n  - name: record_counts\n    enabld: false\n"
    with pytest.raises(
        PipelineError, match=r"p.yaml, line 4: steps.1.enabld: unknown step key 'enabld'"
    ):
        parse_pipeline(text, pipeline_id="x", file="p.yaml")
    with pytest.raises(PipelineError, match=r"line 3: steps.0.severity: .*not one of NONE"):
        parse_pipeline(
            "steps:\n  - name: nulls\n    severity: huge\n", pipeline_id="x", file="p.yaml"
        )
    with pytest.raises(PipelineError, match="no steps"):
        parse_pipeline("name: empty\n", pipeline_id="x")


def test_tolerance_and_severity_forms():
    text = "steps:\n  - {name: a, validator: metric_sums, tolerance: '1%', severity: warning}\n  - {name: b, validator: nulls, tolerance: {abs: 0.5}}\n"
    spec = parse_pipeline(text, pipeline_id="t")
    assert (
        spec.steps[0].tolerance.relative == pytest.approx(0.01)
        and spec.steps[0].severity.value == "MEDIUM"
    )
    assert spec.steps[1].tolerance.absolute == 0.5


def test_config_override_merges_steps_and_refuses_sql_text():
    text = "steps:\n  - {name: sums, validator: metric_sums, config: {table: t, metric_cols: [a]}}\n  - {name: nulls}\n"
    spec = parse_pipeline(
        text,
        pipeline_id="o",
        override={
            "steps": {"sums": {"config": {"metric_cols": ["a", "b"]}}, "nulls": {"enabled": False}},
            "step_defaults": {"severity": "LOW"},
        },
    )
    assert spec.steps[0].config == {"table": "t", "metric_cols": ["a", "b"]}
    assert spec.steps[1].enabled is False and spec.steps[0].severity.value == "LOW"
    with pytest.raises(PipelineError, match="SQL text cannot be set"):
        parse_pipeline(
            text,
            pipeline_id="o",
            override={"steps": {"sums": {"config": {"sql_query": "drop table x"}}}},
        )
    with pytest.raises(PipelineError, match="no step named 'nope'"):
        parse_pipeline(text, pipeline_id="o", override={"steps": {"nope": {"enabled": False}}})
    with pytest.raises(PipelineError, match="unknown key 'bogus'"):
        parse_pipeline(text, pipeline_id="o", override={"bogus": 1})


def test_search_places_prefer_the_jobs_project_and_batch_files_expand(tmp_projects: Path):
    for project in ("alpha", "beta"):
        (tmp_projects / project / "pipelines").mkdir(parents=True)
        (tmp_projects / project / "pipelines" / "shared.yaml").write_text(
            f"name: {project}\nsteps: [record_counts]\n"
        )
    assert find_pipeline_file("shared", "beta", tmp_projects).path.parent.parent.name == "beta"
    assert (
        find_pipeline_file("shared.yaml", "alpha", tmp_projects).path.parent.parent.name == "alpha"
    )
    missing = find_pipeline_file("ghost", "alpha", tmp_projects)
    assert missing.path is None and str(tmp_projects / "alpha" / "pipelines") in missing.searched
    # the Studio's automation wrote batch files with plain strings, in the project root
    (tmp_projects / "alpha" / "nightly.yaml").write_text(
        "batch:\n  name: n\n  pipelines: [shared.yaml, {file: other.yml, enabled: false}, {file: ghost.yaml}]\n"
    )
    refs = expand_pipeline("nightly", "alpha", tmp_projects)
    assert [(r.pipeline_id, r.from_batch, r.path is not None) for r in refs] == [
        ("shared", "nightly", True),
        ("ghost", "nightly", False),
    ]
    spec = load_pipeline(refs[0].path, from_batch="nightly")
    assert spec.name == "alpha" and spec.from_batch == "nightly" and spec.pipeline_id == "shared"
    with pytest.raises(PipelineError, match="batch file"):
        load_pipeline(tmp_projects / "alpha" / "nightly.yaml")
