"""What the API refuses at its edge (issue 10 item 5, REST side): numbers and text JSON does not
allow, oversized bodies, and every 5xx answered and logged with a request id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api_clients import bearer_client
from prefect_ombudsman.jobs import service
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings

pytestmark = pytest.mark.usefixtures("prefect_api")


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


@pytest.mark.parametrize(
    ("raw", "field", "what"),
    [
        (b'{"job_name": NaN}', "job_name", "NaN"),
        (b'{"job_name": "x", "max_parallel": Infinity}', "max_parallel", "Infinity"),
        (b'{"job_name": "x", "max_parallel": -Infinity}', "max_parallel", "-Infinity"),
        (b'{"job_name": "x", "max_retries": 1e999}', "max_retries", "overflows"),
        (b'{"job_name": "\\ud800"}', "job_name", "lone surrogate"),
        (
            b'{"job_name": "x", "items": [{"operation": "noop", "arguments": {"a": ["\\udfff"]}}]}',
            "items.0.arguments.a.0",
            "lone surrogate",
        ),
        (b'{"job_name": "x", "tags": {"\\ud83d": 1}}', "tags", "key"),
    ],
)
def test_json_that_json_forbids_is_422_naming_the_field(
    client: TestClient, raw: bytes, field: str, what: str
):
    before = _flow_runs()
    answer = client.post(
        "/batch/custom/execute", content=raw, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert ".".join(str(p) for p in error["loc"][1:]) == field
    assert what in error["msg"] and error["msg"].startswith(field)
    assert _flow_runs() == before


def test_a_valid_escaped_surrogate_pair_is_accepted(client: TestClient):
    answer = client.post(
        "/batch/custom/execute",
        content=b'{"job_name": "smile \\ud83d\\ude00", "items": []}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def test_login_refuses_forbidden_json_too(api_app: FastAPI):
    answer = TestClient(api_app).post(
        "/auth/login",
        content=b'{"username": "\\ud800", "password": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "username"]


def test_oversized_bodies_are_413_naming_the_limit(
    tmp_projects: Path, auth_settings: AuthSettings, full_token: str
):
    app = create_app(str(tmp_projects), auth=auth_settings, max_body_bytes=4096)
    client = bearer_client(app, full_token)
    before = _flow_runs()
    items = [{"operation": "noop"}] * 400
    declared = client.post("/batch/custom/execute", json={"job_name": "big", "items": items})
    assert declared.status_code == 413
    assert "4096 bytes" in declared.json()["detail"] and declared.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"job_name": "big", "items": ['
        for _ in range(400):
            yield b'{"operation": "noop"},'
        yield b'{"operation": "noop"}]}'

    streamed = client.post(
        "/batch/custom/execute", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and "4096 bytes" in streamed.json()["detail"]
    assert _flow_runs() == before
    small = client.post("/batch/custom/execute", json={"job_name": "small", "items": []})
    assert small.status_code == 200


def test_default_limit_is_one_mebibyte(client: TestClient):
    answer = client.post(
        "/batch/custom/execute",
        content=b" " * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413 and "1048576 bytes" in answer.json()["detail"]


def test_an_unexpected_error_is_500_with_a_request_id_in_answer_and_log(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    async def broken(**_: object) -> None:
        raise RuntimeError("statistics store exploded")

    monkeypatch.setattr(service, "job_statistics_async", broken)
    with caplog.at_level(logging.ERROR, logger="prefect_ombudsman.api"):
        answer = client.get("/batch/statistics")
    assert answer.status_code == 500
    body = answer.json()
    assert set(body) == {"detail", "request_id"} and "exploded" not in body["detail"]
    assert body["request_id"] == answer.headers["x-request-id"]
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info and "exploded" in str(logged[0].exc_info[1])


def test_an_unreadable_auth_file_is_503_with_a_request_id_and_no_path(
    client: TestClient, auth_settings: AuthSettings, caplog: pytest.LogCaptureFixture
):
    auth_settings.auth_file.write_text("{ not json")
    with caplog.at_level(logging.ERROR, logger="prefect_ombudsman.api"):
        answer = client.get("/batch/jobs")
    assert answer.status_code == 503
    assert answer.json()["request_id"] == answer.headers["x-request-id"]
    assert str(auth_settings.auth_file) not in answer.text
    assert any(str(auth_settings.auth_file) in r.getMessage() for r in caplog.records)
    assert any(answer.json()["request_id"] in r.getMessage() for r in caplog.records)


def test_every_answer_carries_a_request_id(client: TestClient, anon_client: TestClient):
    ids = {
        client.get("/health").headers["x-request-id"],
        anon_client.get("/batch/jobs").headers["x-request-id"],
        client.get("/batch/jobs/not-a-job").headers["x-request-id"],
    }
    assert len(ids) == 3


@pytest.mark.parametrize(
    "url",
    [
        "/batch/jobs/%ED%A0%80",
        "/batch/jobs/%ED%A0%80/progress",
        "/batch/jobs?project_id=%ED%A0%80",
        "/batch/jobs?project_id=%FF%FE",
        "/batch/jobs?status=%00",
        "/batch/jobs/%00/report",
    ],
)
def test_undecodable_paths_and_queries_never_give_a_500(client: TestClient, url: str):
    answer = client.get(url)  # invalid UTF-8 is read with replacement characters
    assert answer.status_code in (200, 404, 422), (url, answer.status_code, answer.text)
    assert answer.json() is not None
