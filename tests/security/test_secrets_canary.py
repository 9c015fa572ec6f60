"""A canary password given every way a credential can reach a job, then searched for everywhere.

The canary is a real password of a real PostgreSQL role (password-authenticated: a wrong password
is refused), so every job really connects with it. It is given as a URL in REST requests and CLI
flags, as an inline mapping, in project.yaml, through an environment variable (a pipeline's
`${VAR}` and the Studio's legacy Snowflake variables) and in a saved connection block. After the
jobs end, it is searched for in Prefect's database file, Prefect's API (flow runs, their states,
task runs, logs, artifacts, events, block documents), our API's responses, our log records and
captured output, the files under the projects root and Prefect's home, and the CLI's output.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from support import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")

CANARY = "Cnry" + secrets.token_hex(12)
FINAL = {"completed", "failed", "cancelled", "partial_success"}


@pytest.fixture(scope="module")
def canary_db(postgres_url: str) -> Iterator[dict[str, str]]:
    """Role `canary` (password CANARY, scram-sha-256 enforced for it) owning database `canary_db`."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        hba = Path(conn.execute(sa.text("SHOW hba_file")).scalar_one())
        conn.execute(sa.text("DROP DATABASE IF EXISTS canary_db"))
        conn.execute(sa.text("DROP ROLE IF EXISTS canary"))
        conn.execute(sa.text(f"CREATE ROLE canary LOGIN PASSWORD '{CANARY}'"))
        conn.execute(sa.text("CREATE DATABASE canary_db OWNER canary"))
        original = hba.read_text()
        hba.write_text(
            "host canary_db canary 127.0.0.1/32 scram-sha-256\n"
            "host canary_db canary ::1/128 scram-sha-256\n" + original
        )
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    bare = f"postgresql+psycopg://canary@127.0.0.1:{port}/canary_db"
    url = f"postgresql+psycopg://canary:{CANARY}@127.0.0.1:{port}/canary_db"
    wrong = sa.create_engine(f"postgresql+psycopg://canary:wrong@127.0.0.1:{port}/canary_db")
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        wrong.connect().close()
    wrong.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, shift in (("orders_src", 0), ("orders_tgt", 1)):
            conn.execute(sa.text(f"CREATE TABLE {name} (id int primary key, amount int)"))
            conn.execute(
                sa.text(f"INSERT INTO {name} SELECT g, g * 10 FROM generate_series({shift}, 40) g")
            )
    engine.dispose()
    try:
        yield {"url": url, "bare": bare, "port": port}
    finally:
        hba.write_text(original)
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_reload_conf()"))
        admin.dispose()


def _count(text: str | bytes) -> int:
    needle = CANARY.encode() if isinstance(text, bytes) else CANARY
    return text.count(needle)  # type: ignore[arg-type]


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    assert wait_until(
        lambda: client.get(f"/batch/jobs/{job_id}").json()["job"]["status"] in FINAL,
        timeout=180,
        interval=0.2,
    ), job_id
    return client.get(f"/batch/jobs/{job_id}").json()


def _prefect_api_text(job_ids: list[str]) -> dict[str, str]:
    """Everything Prefect's API holds about the runs, as raw JSON text per channel."""
    from prefect.client.orchestration import get_client

    texts: dict[str, list[str]] = {k: [] for k in ("flow_runs", "states", "task_runs", "logs")}
    texts |= {"artifacts": [], "events": [], "blocks": []}
    with get_client(sync_client=True) as client:
        http = client._client

        def paged(path: str, body: dict[str, Any]) -> list[Any]:
            found: list[Any] = []
            while True:
                page = http.post(path, json={**body, "limit": 200, "offset": len(found)}).json()
                found.extend(page)
                if len(page) < 200:
                    return found

        runs = paged("/flow_runs/filter", {})
        texts["flow_runs"].append(json.dumps(runs))
        for run in runs:
            texts["states"].append(http.get(f"/flow_run_states/?flow_run_id={run['id']}").text)
        task_runs = paged("/task_runs/filter", {})
        texts["task_runs"].append(json.dumps(task_runs))
        for task_run in task_runs:
            texts["states"].append(http.get(f"/task_run_states/?task_run_id={task_run['id']}").text)
        texts["logs"].append(json.dumps(paged("/logs/filter", {})))
        texts["artifacts"].append(json.dumps(paged("/artifacts/filter", {})))
        texts["blocks"].append(json.dumps(paged("/block_documents/filter", {})))
        events = http.post(
            "/events/filter",
            json={
                "filter": {
                    "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
                },
                "limit": 50,
            },
        ).json()
        pages = 0
        while True:
            texts["events"].append(json.dumps(events.get("events", [])))
            following = events.get("next_page")
            pages += 1
            if not following or pages > 500:
                break
            events = http.get(following).json()
        assert job_ids and any(job_id in texts["flow_runs"][0] for job_id in job_ids)
        assert sum(len(json.loads(t)) for t in texts["logs"]) > 0
        assert sum(len(json.loads(t)) for t in texts["events"]) > 0
    return {k: "\n".join(v) for k, v in texts.items()}


def _prefect_db_bytes() -> tuple[Path, bytes]:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    assert url.startswith("sqlite"), url
    path = Path(url.split("///", 1)[1])
    data = b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )
    assert len(data) > 10_000
    return path, data


def _files_bytes(roots: list[Path], skip: set[Path]) -> tuple[int, int]:
    """(files read, canary hits) under the roots, every file but those in `skip`."""
    files = hits = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.resolve() not in skip:
                files += 1
                hits += _count(path.read_bytes())
    return files, hits


def test_canary_password_given_every_way_is_found_nowhere(
    client: TestClient,
    tmp_projects: Path,
    canary_db: dict[str, str],
    fakesnow_server: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    import logging

    from prefect.client.orchestration import get_client

    from prefect_ombudsman.blocks.connection_blocks import DatabaseConnection
    from prefect_ombudsman.cli import app

    caplog.set_level(logging.DEBUG)
    url, bare = canary_db["url"], canary_db["bare"]
    inline = {"kind": "database", "url": bare, "password": CANARY}
    # project.yaml holds the URL with the password (the operator's own file on the worker's disk)
    project = tmp_projects / "canary"
    (project / "pipelines").mkdir(parents=True)
    project_yaml = project / "project.yaml"
    project_yaml.write_text(f"name: Canary\nsource: {url}\ntarget: {url}\n")
    (project / "pipelines" / "counts.yaml").write_text(
        "mapping: {orders: {sql: orders_src, snow: orders_tgt}}\n"
        "steps:\n  - {name: counts, validator: record_counts, config: {table: orders}}\n"
    )
    # an environment variable: a pipeline's ${VAR}, and the Studio's legacy Snowflake variables
    monkeypatch.setenv("CANARY_SOURCE_URL", url)
    (project / "pipelines" / "from_env.yaml").write_text(
        "source: {connection: '${CANARY_SOURCE_URL}'}\n"
        "mapping: {orders: {sql: orders_src, snow: orders_tgt}}\n"
        "steps:\n  - {name: counts, validator: record_counts, config: {table: orders}}\n"
    )
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "canary")
    monkeypatch.setenv("SNOWFLAKE_USER", "canary")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", CANARY)
    monkeypatch.setenv("SNOWFLAKE_HOST", str(fakesnow_server["host"]))
    monkeypatch.setenv("SNOWFLAKE_PORT", str(fakesnow_server["port"]))
    monkeypatch.setenv("SNOWFLAKE_PROTOCOL", str(fakesnow_server["protocol"]))
    # a saved connection block
    DatabaseConnection(url=bare, password=CANARY).save("canary-pg", overwrite=True)

    with get_client(sync_client=True) as prefect:
        blocks_before = {
            b.name
            for b in prefect.read_block_documents()
            if (b.name or "").startswith("ombudsman-credential-")
        }

    responses: list[str] = []

    def post(path: str, body: dict[str, Any]) -> str:
        reply = client.post(path, json={"job_name": "canary job", **body})
        responses.append(reply.text)
        assert reply.status_code == 200, reply.text
        return reply.json()["job_id"]

    # a refused request: FastAPI's 422 echoes the item it refused, with the password masked
    refused = client.post(
        "/batch/comparison/bulk-compare", json={"job_name": "refused", "items": [{"source": url}]}
    )
    responses.append(refused.text)
    assert refused.status_code == 422 and "canary:********@" in refused.text, refused.text

    compare_item = {"source_table": "orders_src", "target_table": "orders_tgt"}
    jobs = {
        "compare_url_and_inline": post(
            "/batch/comparison/bulk-compare",
            {"items": [{**compare_item, "source": url, "target": inline}]},
        ),
        "metadata_url": post(
            "/batch/metadata/bulk-extract",
            {"items": [{"connection": url, "schema_name": "public"}]},
        ),
        "custom_sql_url_inline_block_env": post(
            "/batch/custom/execute",
            {
                "items": [
                    {
                        "operation": "sql_query",
                        "arguments": {"connection": url, "query": "select 1"},
                    },
                    {
                        "operation": "sql_query",
                        "arguments": {
                            "connection": inline,
                            "query": "select count(*) from orders_src",
                        },
                    },
                    {
                        "operation": "sql_query",
                        "arguments": {"connection": "canary-pg", "query": "select 2"},
                    },
                    {
                        "operation": "sql_query",
                        "arguments": {"connection": "snowflake", "query": "select 3"},
                    },
                    {  # fails: its error message must not carry the URL's password either
                        "operation": "sql_query",
                        "arguments": {"connection": url, "query": "select * from no_such_table"},
                    },
                ]
            },
        ),
        "pipelines_project_yaml_and_env": post(
            "/batch/pipelines/bulk-execute",
            {
                "project_id": "canary",
                "pipelines": [{"pipeline_id": "counts"}, {"pipeline_id": "from_env"}],
            },
        ),
        "pipelines_override_url": post(
            "/batch/pipelines/bulk-execute",
            {
                "project_id": "canary",
                "pipelines": [
                    {"pipeline_id": "counts", "config_override": {"target": {"connection": url}}}
                ],
            },
        ),
        "datagen_url": post(
            "/batch/data/bulk-generate",
            {
                "items": [
                    {
                        "schema_type": "Retail",
                        "table_name": "dim_store",
                        "row_count": 20,
                        "targets": [url],
                    }
                ]
            },
        ),
    }
    finals = {name: _wait(client, job_id) for name, job_id in jobs.items()}
    statuses = {name: final["job"]["status"] for name, final in finals.items()}
    assert statuses == {
        "compare_url_and_inline": "failed",  # orders differ: a real comparison ran
        "metadata_url": "completed",
        "custom_sql_url_inline_block_env": "partial_success",
        "pipelines_project_yaml_and_env": "failed",
        "pipelines_override_url": "failed",
        "datagen_url": "completed",
    }, statuses
    custom_ops = finals["custom_sql_url_inline_block_env"]["job"]["operations"]
    assert [op["status"] for op in custom_ops] == ["completed"] * 4 + ["failed"]
    for name, final in finals.items():
        responses.append(json.dumps(final))
        for route in ("operations", "progress"):
            responses.append(client.get(f"/batch/jobs/{jobs[name]}/{route}").text)
    responses.append(client.get("/batch/jobs", params={"limit": 100}).text)
    responses.append(client.get("/batch/statistics").text)

    # the CLI, in process: URL flags (in-memory references)
    runner = CliRunner()
    cli_runs = [
        runner.invoke(
            app,
            [
                "run", "compare", "--source-url", url, "--target-url", url,
                "--table", "orders_src=orders_tgt", "--projects-dir", str(tmp_projects),
            ],
        ),
        runner.invoke(
            app,
            ["run", "metadata", "--source", f"{url}:public", "--projects-dir", str(tmp_projects), "--json"],
        ),
        runner.invoke(
            app,
            ["run", "custom", "sql_query", "--args", json.dumps({"connection": url, "query": "select 1"}),
             "--projects-dir", str(tmp_projects)],
        ),
    ]  # fmt: skip
    assert [r.exit_code for r in cli_runs] == [1, 0, 0], [r.output for r in cli_runs]
    cli_output = "\n".join(r.output for r in cli_runs)  # stdout and stderr, interleaved

    api = _prefect_api_text(list(jobs.values()))
    db_path, db_bytes = _prefect_db_bytes()
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home)
    files, file_hits = _files_bytes(
        [tmp_projects, home]
        + ([Path(os.environ["PREFECT_HOME"])] if "PREFECT_HOME" in os.environ else []),
        skip={project_yaml.resolve(), db_path.resolve()},
    )
    captured = capsys.readouterr()
    counts = {
        "prefect_db_file": _count(db_bytes),
        **{f"prefect_api_{k}": _count(v) for k, v in api.items()},
        "our_api_responses": _count("\n".join(responses)),
        "our_log_records": _count("\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)),
        "captured_output": _count(captured.out + captured.err),
        "files_on_disk": file_hits,
        "cli_output": _count(cli_output),
    }  # fmt: skip
    print(
        f"\ncanary: {len(jobs)} REST jobs + {len(cli_runs)} CLI runs, {files} files and "
        f"{len(db_bytes):,} database bytes searched; hits: {json.dumps(counts)}"
    )
    assert _count(project_yaml.read_text()) == 2  # the needle is findable where it really is
    assert counts == dict.fromkeys(counts, 0)

    # the parameters Prefect stored keep references only
    with get_client(sync_client=True) as prefect:
        stored = prefect.read_flow_run(jobs["compare_url_and_inline"]).parameters
        new_blocks = {
            b.name
            for b in prefect.read_block_documents()
            if (b.name or "").startswith("ombudsman-credential-")
        } - blocks_before
    refs = [stored["items"][0]["source"], stored["items"][0]["target"]]
    assert all(ref["secret_ref"] in new_blocks for ref in refs)
    assert refs[0]["url"] == bare.replace("canary@", "canary:********@")
    assert refs[1]["password"] == "********"

    # deleting the jobs deletes their Secret blocks
    for job_id in jobs.values():
        assert client.delete(f"/batch/jobs/{job_id}").status_code == 200
    with get_client(sync_client=True) as prefect:
        left = {
            b.name
            for b in prefect.read_block_documents()
            if (b.name or "").startswith("ombudsman-credential-")
        }
    assert new_blocks and not (new_blocks & left)


def test_seal_keeps_references_only_and_unseal_restores_every_value():
    from prefect_ombudsman import credentials
    from prefect_ombudsman.metadata.store import connection_label

    url = f"postgresql://u:{CANARY}@db.example:5432/sales"
    parameters = {
        "job_name": f"load {url}",
        "items": [
            {"source": url, "target": {"kind": "sqlserver", "host": "h", "password": CANARY}},
            {"source": url, "targets": [url, "target"]},
            {"arguments": {"connection": f"mssql://sa@h/db?odbc_connect=PWD%3D{CANARY}"}},
        ],
        "pipelines": [{"config_override": {"variables": {"DB_PASSWORD": CANARY, "T": "x"}}}],
    }
    sealed, names = credentials.seal(parameters, credentials.memory_store)
    try:
        assert _count(json.dumps(sealed)) == 0
        assert len(names) == 4  # the URL repeated three times is stored once
        assert sealed["job_name"] == "load postgresql://u:********@db.example:5432/sales"
        assert sealed["items"][0]["source"] == sealed["items"][1]["targets"][0]
        assert sealed["pipelines"][0]["config_override"]["variables"]["T"] == "x"
        assert credentials.references(sealed) and set(credentials.references(sealed)) == set(names)
        restored = credentials.unseal(sealed)
        assert restored["items"] == parameters["items"]
        assert restored["pipelines"] == parameters["pipelines"]
        # labels of a sealed URL are those of the URL itself (catalog file names stay stable)
        assert connection_label(sealed["items"][0]["source"]) == connection_label(url)
        assert credentials.label_of(sealed["items"][0]["source"], "x") == credentials.mask_text(url)
    finally:
        credentials.forget(names)
    with pytest.raises(Exception, match="is gone"):
        credentials.unseal(sealed)
