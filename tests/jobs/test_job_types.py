"""The job-type registry is the one declaration of a job type: the flows, their parameters and
defaults, the CLI's run commands, the REST routes, the jobs service and `prefect.yaml` agree with it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from prefect_ombudsman.jobs import JOB_TYPES, BatchJobType, BatchRequest
from prefect_ombudsman.jobs.types import DEPLOYMENT_POOL, by_flow_name, entry_for

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "prefect_ombudsman"
SHARED_CLI_OPTIONS = {  # CLI parameter -> request field (`--name` defaults to the model's job name)
    "parallel": "parallel_execution",
    "max_parallel": "max_parallel",
    "stop_on_error": "stop_on_error",
    "max_retries": "max_retries",
}


@pytest.fixture(scope="module")
def run_commands() -> dict[str, Any]:
    """`ombudsman run`'s commands as click builds them (their params carry the defaults)."""
    from prefect_ombudsman.cli import app

    return dict(typer.main.get_command(app).commands["run"].commands)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def prefect_yaml() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_job_type_is_declared_exactly_once():
    assert [e.job_type for e in JOB_TYPES] == list(BatchJobType)
    for attribute in ("flow", "flow_name", "planner", "command", "route"):
        values = [getattr(e, attribute) for e in JOB_TYPES]
        assert len(set(values)) == len(values), attribute
    for entry in JOB_TYPES:
        assert entry_for(entry.job_type.value) is entry
        assert by_flow_name(entry.flow_name) is entry
        assert issubclass(entry.request, BatchRequest)
        assert entry.items_field in entry.request.model_fields
    with pytest.raises(KeyError, match="unknown job type 'nope'"):
        entry_for("nope")


def test_flows_and_planners_are_the_registry_s(tmp_path: Path):
    from prefect_ombudsman.flows import available_flows, flow_for
    from prefect_ombudsman.jobs import service

    flows = available_flows()
    assert service.FLOW_NAMES == {e.flow_name: e.job_type for e in JOB_TYPES}
    for entry in JOB_TYPES:
        flow = flows[entry.job_type.value]
        assert flow is flow_for(entry.job_type) is entry.load_flow()
        assert flow.name == entry.flow_name
        assert flow.fn.__module__ == entry.module
        # the uniform planner interface: an empty request plans no operation
        assert entry.plan(entry.request(), "job", str(tmp_path)) == []


def test_defaults_agree_request_model_flow_cli_and_prefect_yaml(run_commands, prefect_yaml):
    for entry in JOB_TYPES:
        defaults = entry.request()
        flow = entry.load_flow()
        signature = inspect.signature(flow.fn).parameters
        # the flow's parameters are the request's fields (same names) plus projects_dir
        assert set(signature) == {*entry.request.model_fields, "projects_dir"}, entry.job_type
        schema = flow.parameters.model_dump()["properties"]
        for name in entry.request.model_fields:
            assert signature[name].default == getattr(defaults, name), (entry.job_type, name)
            assert schema[name].get("default") == defaults.model_dump(mode="json")[name], (
                entry.job_type,
                name,
            )
        # the CLI's shared run options default to the request model's values
        params = {p.name: p for p in run_commands[entry.command].params}
        for option, field in SHARED_CLI_OPTIONS.items():
            assert params[option].default == getattr(defaults, field), (entry.command, option)
        assert params["name"].default is None and {"projects_dir", "as_json"} <= set(params)
        # prefect.yaml: every parameter it sets is a flow parameter the request model accepts
        for deployment in prefect_yaml:
            if deployment["entrypoint"] == entry.entrypoint and deployment.get("parameters"):
                given = deployment["parameters"]
                assert set(given) <= set(signature), deployment["name"]
                entry.request.model_validate(given)


def test_prefect_yaml_has_one_deployment_per_job_type(prefect_yaml):
    by_name = {d["name"]: d for d in prefect_yaml}
    known = {e.entrypoint for e in JOB_TYPES}
    for entry in JOB_TYPES:
        deployment = by_name[entry.flow_name]
        assert deployment["entrypoint"] == entry.entrypoint
        assert deployment["tags"] == entry.tags
        assert deployment["description"] == entry.summary
        assert deployment["work_pool"]["name"] == DEPLOYMENT_POOL
        path, _, function = entry.entrypoint.partition(":")
        assert f"def {function}(" in (ROOT / path).read_text()
    for deployment in prefect_yaml:  # extra deployments (schedules) run a registered flow
        assert deployment["entrypoint"] in known, deployment["name"]
        assert set(entry_for(by_entrypoint(deployment)).tags) <= set(deployment["tags"])


def by_entrypoint(deployment: dict) -> BatchJobType:
    return next(e.job_type for e in JOB_TYPES if e.entrypoint == deployment["entrypoint"])


def test_rest_routes_come_from_the_registry(tmp_path: Path):
    from prefect_ombudsman.jobs.api import create_app

    paths = create_app(str(tmp_path)).openapi()["paths"]
    for entry in JOB_TYPES:
        body = paths[f"/batch{entry.route}"]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"]["$ref"].endswith(f"/{entry.request.__name__}")


def test_the_jobs_layer_imports_no_flow():
    """jobs/ is below the flows: it names them by import string only (no back-edge)."""
    offenders = []
    for path in sorted((PACKAGE / "jobs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n.startswith("prefect_ombudsman.flows") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
