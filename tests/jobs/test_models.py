"""Request and job models: bounds, types and enum values are refused with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prefect_ombudsman.jobs.models import (
    BatchComparisonRequest,
    BatchCustomRequest,
    BatchDataGenRequest,
    BatchJob,
    BatchJobStatus,
    BatchJobType,
    BatchMetadataRequest,
    BatchMultiProjectRequest,
    BatchOperation,
    BatchOperationStatus,
    BatchPipelineRequest,
)
from prefect_ombudsman.jobs.progress import ProgressCounter, compute_progress


def _error(model, **fields) -> str:
    with pytest.raises(ValidationError) as info:
        model(**fields)
    return str(info.value)


@pytest.mark.parametrize("value", [0, -1, 65, 1000])
def test_max_parallel_out_of_bounds_is_refused(value: int):
    assert "max_parallel" in _error(BatchPipelineRequest, job_name="j", max_parallel=value)


def test_wrong_types_are_refused_naming_the_field():
    assert "max_parallel" in _error(BatchCustomRequest, max_parallel="many")
    assert "parallel_execution" in _error(BatchCustomRequest, parallel_execution="sometimes")
    assert "items" in _error(BatchCustomRequest, items="not a list")


def test_unknown_schema_type_lists_the_valid_ones():
    message = _error(BatchDataGenRequest, items=[{"schema_type": "Retial", "row_count": 10}])
    assert (
        "items.0.schema_type" in message
        and "Retail" in message
        and "Finance" in message
        and "Healthcare" in message
    )


def test_schema_type_is_case_insensitive():
    request = BatchDataGenRequest(items=[{"schema_type": "finance"}])
    assert request.items[0].schema_type.value == "Finance"


@pytest.mark.parametrize("rows", [0, -5, 1_000_000_001])
def test_row_count_bounds(rows: int):
    assert "row_count" in _error(
        BatchDataGenRequest, items=[{"schema_type": "Retail", "row_count": rows}]
    )


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", ".hidden", "x;drop", ""])
def test_ids_must_be_safe_file_names(bad: str):
    assert "pipeline_id" in _error(BatchPipelineRequest, pipelines=[{"pipeline_id": bad}])
    assert "project_id" in _error(BatchMultiProjectRequest, projects=[{"project_id": bad}])


def test_pipeline_id_yaml_suffix_is_stripped():
    assert (
        BatchPipelineRequest(pipelines=[{"pipeline_id": "dim_customer.yaml"}])
        .pipelines[0]
        .pipeline_id
        == "dim_customer"
    )


def test_unknown_fields_are_refused():
    assert "surprise" in _error(BatchCustomRequest, surprise=True)


def test_metadata_item_needs_a_connection_and_accepts_the_legacy_field():
    assert "connection" in _error(BatchMetadataRequest, items=[{"schema_name": "dbo"}])
    item = BatchMetadataRequest(items=[{"connection_type": "sqlserver"}]).items[0]
    assert item.reference == "sqlserver"


def test_comparison_item_needs_tables():
    assert "table" in _error(BatchComparisonRequest, items=[{"key_columns": ["id"]}])


def test_studio_defaults_are_kept():
    assert BatchDataGenRequest(items=[]).parallel_execution is True
    assert BatchDataGenRequest(items=[]).max_parallel == 3
    assert BatchMetadataRequest(items=[]).max_parallel == 2
    assert BatchPipelineRequest(job_name="x").max_parallel == 5
    assert BatchPipelineRequest(job_name="x").pipelines == []


def test_enums_have_exact_values():
    assert [t.value for t in BatchJobType] == [
        "bulk_pipeline_execution",
        "batch_data_generation",
        "multi_project_validation",
        "bulk_metadata_extraction",
        "batch_comparison",
        "custom",
    ]
    assert [s.value for s in BatchJobStatus] == [
        "pending",
        "queued",
        "running",
        "paused",
        "completed",
        "failed",
        "cancelled",
        "partial_success",
    ]
    assert [s.value for s in BatchOperationStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "skipped",
    ]
    job = BatchJob(job_id="x", job_type="custom", name="n")
    assert set(BatchJob.model_fields) >= {
        "job_id",
        "job_type",
        "status",
        "name",
        "description",
        "operations",
        "progress",
        "parallel_execution",
        "max_parallel",
        "stop_on_error",
        "retry_failed",
        "max_retries",
        "created_at",
        "started_at",
        "completed_at",
        "total_duration_ms",
        "success_count",
        "failure_count",
        "result_summary",
        "created_by",
        "project_id",
        "tags",
        "metadata",
    }
    assert job.status == BatchJobStatus.pending


def _op(i: int, status: str, ms: int | None = None) -> BatchOperation:
    return BatchOperation(
        operation_id=f"custom_{i}_x", operation_type="custom", status=status, duration_ms=ms
    )


def test_progress_and_eta_follow_spec_section_6():
    ops = [
        _op(0, "completed", 1000),
        _op(1, "failed", 3000),
        _op(2, "skipped"),
        _op(3, "running"),
        _op(4, "pending"),
        _op(5, "pending"),
    ]
    progress = compute_progress(ops, parallelism=2)
    assert (
        progress.completed_operations == 1
        and progress.failed_operations == 1
        and progress.skipped_operations == 1
    )
    assert progress.percent_complete == 50.0
    assert progress.current_operation == "custom_3_x"
    assert (
        progress.estimated_time_remaining_ms == 2000 * 3 // 2
    )  # mean 2 s x 3 left / 2 in parallel
    counter = ProgressCounter(6, 2)
    counter.started("custom_3_x")
    for op in ops[:3]:
        counter.finished(op)
    assert counter.snapshot() == progress


def test_eta_is_null_until_an_operation_finished():
    assert (
        compute_progress([_op(0, "running"), _op(1, "pending")]).estimated_time_remaining_ms is None
    )


def test_json_booleans_are_not_counts_and_counts_not_booleans():
    assert "max_parallel" in _error(BatchPipelineRequest, max_parallel=True)
    assert "max_retries" in _error(BatchCustomRequest, max_retries=False)
    assert "parallel_execution" in _error(BatchCustomRequest, parallel_execution=1)
    assert "row_count" in _error(
        BatchDataGenRequest, items=[{"schema_type": "Retail", "row_count": True}]
    )


def test_lists_are_bounded_and_the_message_names_the_field():
    items = [{"operation": "noop"}] * 10_001
    message = _error(BatchCustomRequest, items=items)
    assert "items" in message and "10000" in message
    assert len(BatchCustomRequest(items=items[:10_000]).items) == 10_000


def test_non_finite_numbers_are_refused():
    from pydantic import BaseModel, ConfigDict

    for model in (BatchComparisonRequest, BatchDataGenRequest, BatchCustomRequest):
        assert model.model_config.get("allow_inf_nan") is False

    # an item's float-typed field would refuse NaN the same way
    class Probe(BaseModel):
        model_config = ConfigDict(allow_inf_nan=False)
        x: float = 0.0

    assert "x" in _error(Probe, x=float("nan"))


def test_models_are_exported_from_the_jobs_package_without_fastapi():
    import subprocess
    import sys

    code = (
        "import sys; from prefect_ombudsman.jobs import BatchJob, BatchCustomRequest, CustomItem;"
        "print('fastapi' in sys.modules, 'prefect.server' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_flow_defaults_are_the_request_models_defaults():
    import inspect

    from prefect_ombudsman.flows import available_flows
    from prefect_ombudsman.jobs import JOB_TYPES

    flows = available_flows()
    assert set(flows) == {entry.job_type.value for entry in JOB_TYPES}
    for entry in JOB_TYPES:
        job_type, model = entry.job_type, entry.request
        defaults = model()
        params = inspect.signature(flows[job_type.value].fn).parameters
        assert set(model.model_fields) <= set(params), job_type
        for name in model.model_fields:
            assert params[name].default == getattr(defaults, name), (job_type, name)


def test_every_run_form_field_has_a_description_and_list_items_are_typed():
    from prefect_ombudsman.flows import available_flows

    for job_type, flow in available_flows().items():
        schema = flow.parameters.model_dump()
        assert flow.description and "Args:" not in flow.description
        for name, prop in schema["properties"].items():
            assert prop.get("description"), (job_type, name)
            if prop.get("type") == "array" and name != "tags":
                assert prop["default"] == [], (job_type, name)
                ref = prop["items"]["$ref"].rsplit("/", 1)[-1]
                item = schema["definitions"][ref]
                assert item["title"] and item["description"]
                for field, spec in item["properties"].items():
                    assert spec.get("title") and spec.get("description"), (ref, field)
