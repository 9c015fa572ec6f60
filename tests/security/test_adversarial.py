"""Hostile requests and files against confinement (SPEC §11): every case is refused with the
field named, no file outside the projects root changes, and table `canary` keeps its rows.

Channels: `rest` (the REST API: 422 before any work), `cli` (the `ombudsman` CLI: exit 2),
`flow` (a batch flow called directly with hostile parameters, as a deployment run would be: the
operation fails naming the field), `guard` (a dialect's read-only transaction given a write
directly, bypassing the statement check: the database refuses it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from prefect_ombudsman.cli import app

pytestmark = pytest.mark.usefixtures("prefect_api")

CANARY_ROWS = [(1, "a"), (2, "b"), (3, "c")]


@dataclass
class Arena:
    root: Path  # the projects root
    project: Path  # project `p`: source SQLite, target DuckDB, both with table canary
    outside: Path  # a folder outside the root that no case may change
    postgres_url: str | None = None

    @property
    def source_url(self) -> str:
        return f"sqlite:///{self.project / 'warehouse' / 'src.db'}"

    @property
    def target_url(self) -> str:
        return f"duckdb:///{self.project / 'warehouse' / 'tgt.duckdb'}"

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every file under the outside folder: (mtime_ns, sha256)."""
        return {
            str(p.relative_to(self.outside)): (
                p.stat().st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
            for p in sorted(self.outside.rglob("*"))
            if p.is_file()
        }

    def canary_urls(self) -> list[str]:
        urls = [self.source_url, self.target_url, f"sqlite:///{self.outside / 'outside.db'}"]
        return urls + ([self.postgres_url] if self.postgres_url else [])

    def canaries_intact(self) -> bool:
        """Table canary still exists with its three rows in every database of the arena."""
        from prefect_ombudsman.dialects.engines import get_engine, spec_from_url

        for url in self.canary_urls():
            engine = get_engine(spec_from_url(url))
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT id, v FROM canary ORDER BY id").fetchall()
            if [tuple(r) for r in rows] != CANARY_ROWS:
                return False
        return True


def _seed(url: str) -> None:
    from prefect_ombudsman.dialects.engines import get_engine, spec_from_url

    with get_engine(spec_from_url(url)).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS canary")
        conn.exec_driver_sql("CREATE TABLE canary (id INTEGER, v VARCHAR(10))")
        conn.exec_driver_sql("INSERT INTO canary VALUES (1, 'a'), (2, 'b'), (3, 'c')")


PIPELINES = {
    "canary_sql": """
steps:
  - name: q
    validator: custom_sql
    config:
      sql_query: SELECT count(*) FROM ${T}
      compare_mode: count
""",
    "canary_counts": """
steps:
  - name: counts
    validator: record_counts
    config:
      table: ${T}
""",
}


@pytest.fixture
def arena(tmp_path: Path, tmp_projects: Path) -> Arena:
    project = tmp_projects / "p"
    (project / "warehouse").mkdir(parents=True)
    (project / "pipelines").mkdir()
    (project / "project.yaml").write_text(
        "name: p\nsource: sqlite:///warehouse/src.db\ntarget: duckdb:///warehouse/tgt.duckdb\n"
    )
    for name, text in PIPELINES.items():
        (project / "pipelines" / f"{name}.yaml").write_text(text)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the projects root\n")
    found = Arena(root=tmp_projects, project=project, outside=outside)
    for url in found.canary_urls():
        _seed(url)
    return found


@dataclass(frozen=True)
class Case:
    id: str
    channel: str  # rest | cli | flow | guard
    build: Callable[[Arena], Any]  # the hostile payload, from the arena's paths
    field: str  # what the refusal must name
    postgres: bool = False
    #: "refused", or "neutralised": a hostile identifier may run as a quoted name that harms nothing
    expect: str = "refused"


def _sql(connection: Callable[[Arena], str], query: str) -> Callable[[Arena], Any]:
    return lambda a: (
        "/batch/custom/execute",
        {
            "items": [
                {
                    "operation": "sql_query",
                    "arguments": {"connection": connection(a), "query": query},
                }
            ]
        },
    )


def _gen(targets: Callable[[Arena], list[Any]], **extra: Any) -> Callable[[Arena], Any]:
    return lambda a: (
        "/batch/data/bulk-generate",
        {
            "project_id": "p",
            "items": [{"schema_type": "Retail", "row_count": 10, "targets": targets(a), **extra}],
        },
    )


def _custom(operation: str, arguments: Callable[[Arena], dict[str, Any]]) -> Callable[[Arena], Any]:
    return lambda a: (
        "/batch/custom/execute",
        {"project_id": "p", "items": [{"operation": operation, "arguments": arguments(a)}]},
    )


def _evil(name: str) -> Callable[[Arena], str]:
    return lambda a: str(a.outside / name)


def _link(name: str, to: str) -> Callable[[Arena], str]:
    """A symlink inside project p pointing out of the root; returns its name."""

    def make(a: Arena) -> str:
        link = a.project / name
        if not link.is_symlink():
            link.symlink_to(a.outside / to if to else a.outside)
        return name

    return make


SQLITE = lambda a: a.source_url  # noqa: E731
DUCKDB = lambda a: a.target_url  # noqa: E731
POSTGRES = lambda a: a.postgres_url  # noqa: E731

REST_PATHS = [
    Case("gen-abs-sqlite", "rest", _gen(lambda a: [a.source_url, f"sqlite:///{a.outside}/evil.db"]), "items[0].targets[1]"),
    Case("gen-dotdot-sqlite", "rest", _gen(lambda a: ["sqlite:///../../outside/evil.db"]), "items[0].targets[0]"),
    Case("gen-abs-duckdb", "rest", _gen(lambda a: [f"duckdb:///{a.outside}/evil.duckdb"]), "items[0].targets[0]"),
    Case("gen-dotdot-duckdb", "rest", _gen(lambda a: ["duckdb:///../../outside/evil.duckdb"]), "items[0].targets[0]"),
    Case("gen-mapping-url", "rest", _gen(lambda a: [{"url": f"sqlite:///{a.outside}/evil.db"}]), "items[0].targets[0].url"),
    Case("gen-symlink-file", "rest", _gen(lambda a: [f"sqlite:///{_link('link.db', 'evil.db')(a)}"]), "items[0].targets[0]"),
    Case("gen-symlink-dir", "rest", _gen(lambda a: [f"duckdb:///{_link('out', '')(a)}/x.duckdb"]), "items[0].targets[0]"),
    Case("gen-home-tilde", "rest", _gen(lambda a: ["sqlite:///~/evil.db"]), "items[0].targets[0]"),
    Case("gen-sqlite-uri", "rest", _gen(lambda a: [f"sqlite:///file:{a.outside}/evil.db?uri=true&mode=rwc"]), "items[0].targets[0]"),
    Case("gen-drift-manifest-dotdot", "rest", _gen(lambda a: [a.source_url], drift={"manifest": "../../outside/m.json", "tables": {"dim_store": {"missing_rows": 1}}}), "items[0].drift.manifest"),
    Case("gen-drift-manifest-abs", "rest", lambda a: _gen(lambda a: [a.source_url], drift={"manifest": str(a.outside / "m.json"), "tables": {"dim_store": {"missing_rows": 1}}})(a), "items[0].drift.manifest"),
    Case("metadata-connection", "rest", lambda a: ("/batch/metadata/bulk-extract", {"items": [{"connection": f"sqlite:///{a.outside}/outside.db"}]}), "items[0].connection"),
    Case("metadata-mapping", "rest", lambda a: ("/batch/metadata/bulk-extract", {"items": [{"connection": {"url": f"duckdb:///{a.outside}/x.duckdb"}}]}), "items[0].connection.url"),
    Case("compare-source", "rest", lambda a: ("/batch/comparison/bulk-compare", {"items": [{"table": "canary", "source": f"sqlite:///{a.outside}/outside.db", "target": a.target_url}]}), "items[0].source"),
    Case("compare-target", "rest", lambda a: ("/batch/comparison/bulk-compare", {"items": [{"table": "canary", "source": a.source_url, "target": "duckdb:///../../outside/t.duckdb"}]}), "items[0].target"),
    Case("sql-query-connection", "rest", _sql(lambda a: f"sqlite:///{a.outside}/outside.db", "SELECT * FROM canary"), "items[0].arguments.connection"),
    Case("flaky-marker-abs", "rest", _custom("flaky", lambda a: {"marker": str(a.outside / "marker")}), "items[0].arguments.marker"),
    Case("flaky-marker-dotdot", "rest", _custom("flaky", lambda a: {"marker": "../../outside/marker"}), "items[0].arguments.marker"),
    Case("argument-report-path", "rest", _custom("noop", lambda a: {"report_path": str(a.outside / "r.json")}), "items[0].arguments.report_path"),
    Case("override-source", "rest", lambda a: ("/batch/pipelines/bulk-execute", {"project_id": "p", "pipelines": [{"pipeline_id": "canary_counts", "config_override": {"variables": {"T": "canary"}, "source": {"connection": f"sqlite:///{a.outside}/outside.db"}}}]}), "pipelines[0].config_override.source.connection"),
    Case("project-id-dotdot", "rest", lambda a: ("/batch/pipelines/bulk-execute", {"project_id": "../outside", "pipelines": []}), "project_id"),
    Case("pipeline-id-traversal", "rest", lambda a: ("/batch/pipelines/bulk-execute", {"project_id": "p", "pipelines": [{"pipeline_id": "../../outside/secret"}]}), "pipeline_id"),
    Case("multi-project-slash", "rest", lambda a: ("/batch/projects/multi-validate", {"projects": [{"project_id": "p/../../outside"}]}), "project_id"),
    Case("custom-name-dotdot", "rest", lambda a: ("/batch/custom/execute", {"items": [{"operation": "noop", "name": "../x"}]}), "name"),
    Case("override-sql-text", "rest", lambda a: ("/batch/pipelines/bulk-execute", {"project_id": "p", "pipelines": [{"pipeline_id": "canary_sql", "config_override": {"steps": {"q": {"config": {"sql": "DROP TABLE canary"}}}}}]}), "pipelines[0].config_override.steps.q.config.sql"),
    Case("override-sql-query", "rest", lambda a: ("/batch/pipelines/bulk-execute", {"project_id": "p", "pipelines": [{"pipeline_id": "canary_sql", "config_override": {"step_defaults": {"config": {"sql_query": "DELETE FROM canary"}}}}]}), "pipelines[0].config_override.step_defaults.config.sql_query"),
]  # fmt: skip

REST_SQL = [
    Case("sqlite-drop", "rest", _sql(SQLITE, "DROP TABLE canary"), "items[0].arguments.query"),
    Case("sqlite-multi", "rest", _sql(SQLITE, "SELECT 1; DROP TABLE canary"), "items[0].arguments.query"),
    Case("sqlite-delete", "rest", _sql(SQLITE, "DELETE FROM canary"), "items[0].arguments.query"),
    Case("sqlite-pragma", "rest", _sql(SQLITE, "PRAGMA query_only=0"), "items[0].arguments.query"),
    Case("sqlite-attach", "rest", lambda a: _sql(SQLITE, f"ATTACH '{a.outside}/att.db' AS z")(a), "items[0].arguments.query"),
    Case("sqlite-vacuum-into", "rest", lambda a: _sql(SQLITE, f"VACUUM INTO '{a.outside}/copy.db'")(a), "items[0].arguments.query"),
    Case("sqlite-cte-insert", "rest", _sql(SQLITE, "WITH x AS (SELECT 1) INSERT INTO canary SELECT 9, 'z' FROM x"), "items[0].arguments.query"),
    Case("duckdb-drop", "rest", _sql(DUCKDB, "DROP TABLE canary"), "items[0].arguments.query"),
    Case("duckdb-update", "rest", _sql(DUCKDB, "UPDATE canary SET v = 'x'"), "items[0].arguments.query"),
    Case("duckdb-copy-to", "rest", lambda a: _sql(DUCKDB, f"COPY canary TO '{a.outside}/dump.csv'")(a), "items[0].arguments.query"),
    Case("duckdb-read-text", "rest", _sql(DUCKDB, "SELECT * FROM read_text('/etc/passwd')"), "items[0].arguments.query"),
    Case("duckdb-read-csv", "rest", lambda a: _sql(DUCKDB, f"SELECT * FROM read_csv_auto('{a.outside}/secret.txt')")(a), "items[0].arguments.query"),
    Case("duckdb-glob", "rest", _sql(DUCKDB, "SELECT * FROM glob('/etc/*')"), "items[0].arguments.query"),
    Case("duckdb-file-as-table", "rest", _sql(DUCKDB, "SELECT * FROM '/etc/passwd'"), "items[0].arguments.query"),
    Case("duckdb-attach", "rest", lambda a: _sql(DUCKDB, f"ATTACH '{a.outside}/att.duckdb' AS z")(a), "items[0].arguments.query"),
    Case("duckdb-install", "rest", _sql(DUCKDB, "INSTALL httpfs"), "items[0].arguments.query"),
    Case("duckdb-load", "rest", _sql(DUCKDB, "LOAD httpfs"), "items[0].arguments.query"),
    Case("duckdb-set", "rest", _sql(DUCKDB, "SET enable_external_access = true"), "items[0].arguments.query"),
    Case("duckdb-call", "rest", _sql(DUCKDB, "CALL pragma_version()"), "items[0].arguments.query"),
    Case("duckdb-query-function", "rest", _sql(DUCKDB, "SELECT * FROM query('DROP TABLE canary')"), "items[0].arguments.query"),
    Case("duckdb-max-rows", "rest", lambda a: ("/batch/custom/execute", {"items": [{"operation": "sql_query", "arguments": {"connection": a.target_url, "query": "SELECT 1", "max_rows": 10**9}}]}), "items[0].arguments.max_rows"),
    Case("postgres-drop", "rest", _sql(POSTGRES, "DROP TABLE canary"), "items[0].arguments.query", postgres=True),
    Case("postgres-commit-drop", "rest", _sql(POSTGRES, "COMMIT; DROP TABLE canary"), "items[0].arguments.query", postgres=True),
    Case("postgres-cte-delete", "rest", _sql(POSTGRES, "WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d"), "items[0].arguments.query", postgres=True),
    Case("postgres-select-into", "rest", _sql(POSTGRES, "SELECT * INTO canary_copy FROM canary"), "items[0].arguments.query", postgres=True),
    Case("postgres-read-file", "rest", _sql(POSTGRES, "SELECT pg_read_file('/etc/passwd')"), "items[0].arguments.query", postgres=True),
    Case("postgres-copy-program", "rest", _sql(POSTGRES, "COPY canary TO PROGRAM 'touch /tmp/pwned'"), "items[0].arguments.query", postgres=True),
    Case("postgres-set-config", "rest", _sql(POSTGRES, "SELECT set_config('transaction_read_only', 'off', false)"), "items[0].arguments.query", postgres=True),
    Case("postgres-sleep", "rest", _sql(POSTGRES, "SELECT pg_sleep(3600)"), "items[0].arguments.query", postgres=True),
    Case("postgres-for-update", "rest", _sql(POSTGRES, "SELECT * FROM canary FOR UPDATE"), "items[0].arguments.query", postgres=True),
]  # fmt: skip

CLI = [
    Case("cli-generate-abs", "cli", lambda a: ["run", "generate", "-s", "Retail", "-n", "10", "-t", f"sqlite:///{a.outside}/evil.db", "--projects-dir", str(a.root)], "items[0].targets[0]"),
    Case("cli-generate-dotdot", "cli", lambda a: ["run", "generate", "-s", "Retail", "-n", "10", "-t", "duckdb:///../outside/evil.duckdb", "--projects-dir", str(a.root)], "items[0].targets[0]"),
    Case("cli-sql-drop", "cli", lambda a: ["run", "custom", "sql_query", "--args", json.dumps({"connection": a.source_url, "query": "DROP TABLE canary"}), "--projects-dir", str(a.root)], "items[0].arguments.query"),
    Case("cli-sql-copy", "cli", lambda a: ["run", "custom", "sql_query", "--args", json.dumps({"connection": a.target_url, "query": f"COPY canary TO '{a.outside}/d.csv'"}), "--projects-dir", str(a.root)], "items[0].arguments.query"),
    Case("cli-flaky-marker", "cli", lambda a: ["run", "custom", "flaky", "--args", json.dumps({"marker": str(a.outside / "m")}), "--projects-dir", str(a.root)], "items[0].arguments.marker"),
    Case("cli-metadata-source", "cli", lambda a: ["run", "metadata", "-s", f"sqlite:///{a.outside}/outside.db", "--projects-dir", str(a.root)], "items[0].connection"),
    Case("cli-compare-source", "cli", lambda a: ["run", "compare", "--table", "canary", "--source-url", f"sqlite:///{a.outside}/outside.db", "--target-url", a.target_url, "--projects-dir", str(a.root)], "items[0].source"),
    Case("cli-project-dotdot", "cli", lambda a: ["run", "pipelines", "--project", "../outside", "--projects-dir", str(a.root)], "project"),
]  # fmt: skip


def _flow(name: str, **parameters: Any) -> Callable[[Arena], Any]:
    return lambda a: (name, parameters)


def _pipeline(pipeline_id: str, variables: dict[str, str]) -> Callable[[Arena], Any]:
    return lambda a: (
        "bulk_pipeline_execution",
        {
            "project_id": "p",
            "pipelines": [
                {"pipeline_id": pipeline_id, "config_override": {"variables": variables}}
            ],
        },
    )


FLOWS = [
    Case("flow-sql-alias-drop", "flow", _flow("custom_batch", project_id="p", items=[{"operation": "sql_query", "arguments": {"connection": "source", "query": "DROP TABLE canary"}}]), "query"),
    Case("flow-sql-alias-copy", "flow", lambda a: ("custom_batch", {"project_id": "p", "items": [{"operation": "sql_query", "arguments": {"connection": "target", "query": f"COPY canary TO '{a.outside}/d.csv'"}}]}), "query"),
    Case("flow-sql-url-outside", "flow", lambda a: ("custom_batch", {"items": [{"operation": "sql_query", "arguments": {"connection": f"sqlite:///{a.outside}/outside.db", "query": "SELECT * FROM canary"}}]}), "outside the projects root"),
    Case("flow-generate-outside", "flow", lambda a: ("batch_data_generation", {"project_id": "p", "items": [{"schema_type": "Retail", "row_count": 10, "targets": [f"sqlite:///{a.outside}/evil.db"]}]}), "outside the projects root"),
    Case("flow-flaky-marker", "flow", lambda a: ("custom_batch", {"items": [{"operation": "flaky", "arguments": {"marker": str(a.outside / "m")}}]}), "outside the projects root"),
    Case("flow-project-yaml-source", "flow", lambda a: _project_yaml(a, f"sqlite:///{a.outside}/outside.db"), "project.yaml: source"),
    Case("flow-project-yaml-dotdot", "flow", lambda a: _project_yaml(a, "sqlite:///../../outside/outside.db"), "project.yaml: source"),
    Case("flow-project-yaml-symlink", "flow", lambda a: _project_yaml(a, f"sqlite:///{_link('src-link.db', 'outside.db')(a)}"), "project.yaml: source"),
    Case("variable-union", "flow", _pipeline("canary_sql", {"T": "x UNION ALL SELECT x FROM canary"}), "config_override.variables.T"),
    Case("variable-drop", "flow", _pipeline("canary_sql", {"T": "canary; DROP TABLE canary"}), "config_override.variables.T"),
    Case("variable-quote", "flow", _pipeline("canary_sql", {"T": "canary WHERE '1'='1'"}), "config_override.variables.T"),
    Case("variable-comment", "flow", _pipeline("canary_sql", {"T": "canary --"}), "config_override.variables.T"),
    Case("identifier-quote-semicolon", "flow", _pipeline("canary_counts", {"T": 'canary"; DROP TABLE canary; --'}), "counts"),
    Case("identifier-unicode", "flow", _pipeline("canary_counts", {"T": "canary\u037e DROP TABLE canary"}), "counts"),
    Case("identifier-backtick", "flow", _pipeline("canary_counts", {"T": "canary`; DROP TABLE canary; --"}), "counts"),
    Case("compare-hostile-table", "flow", lambda a: ("batch_comparison", {"project_id": "p", "items": [{"table": "canary\"; DROP TABLE canary; --", "key_columns": ["id"]}]}), "canary"),
    Case("compare-hostile-key", "flow", lambda a: ("batch_comparison", {"project_id": "p", "items": [{"table": "canary", "key_columns": ["id\"); DROP TABLE canary; --"]}]}), "id"),
    Case("metadata-hostile-schema", "flow", lambda a: ("bulk_metadata_extraction", {"project_id": "p", "items": [{"connection": "source", "schema_name": "main'; DROP TABLE canary; --"}]}), None, expect="neutralised"),
]  # fmt: skip

GUARDS = [
    Case(f"guard-{kind}-{label}", "guard", (lambda u, q: lambda a: (u(a), q))(url, sql), "")
    for kind, url in (("sqlite", SQLITE), ("duckdb", DUCKDB))
    for label, sql in (
        ("drop", "DROP TABLE canary"),
        ("delete", "DELETE FROM canary"),
        ("attach", "ATTACH '{outside}/guard.db' AS g"),
    )
] + [
    Case(f"guard-postgres-{label}", "guard", (lambda q: lambda a: (a.postgres_url, q))(sql), "", postgres=True)
    for label, sql in (("drop", "DROP TABLE canary"), ("delete", "DELETE FROM canary"))
]  # fmt: skip

REPORTS = [
    Case("report-abs", "report", lambda a: str(a.outside / "report.json"), "report_path"),
    Case("report-dotdot", "report", lambda a: str(a.root / ".." / "outside" / "report.json"), "report_path"),
    Case("report-symlink", "report", lambda a: str(a.project / _link("report.json", "report.json")(a)), "report_path"),
]  # fmt: skip

CASES = REST_PATHS + REST_SQL + CLI + FLOWS + GUARDS + REPORTS


def _project_yaml(a: Arena, source: str) -> tuple[str, dict[str, Any]]:
    (a.project / "project.yaml").write_text(f"name: p\nsource: {source}\ntarget: {a.target_url}\n")
    return "bulk_pipeline_execution", {
        "project_id": "p",
        "pipelines": [{"pipeline_id": "canary_counts", "config_override": {"variables": {"T": "canary"}}}],
    }  # fmt: skip


# ----------------------------------------------------------------------------- channels


def _rest(case: Case, arena: Arena, client: TestClient) -> tuple[bool, int, str]:
    path, body = case.build(arena)
    response = client.post(path, json={"job_name": case.id, **body})
    text = json.dumps(response.json())
    return response.status_code == 422, response.status_code, text


def _cli(case: Case, arena: Arena, client: TestClient) -> tuple[bool, int, str]:
    result = CliRunner().invoke(app, case.build(arena))
    return result.exit_code == 2, result.exit_code, " ".join(result.output.split())


def _flow_run(case: Case, arena: Arena, client: TestClient) -> tuple[bool, int, str]:
    from prefect_ombudsman import flows

    name, parameters = case.build(arena)
    state = getattr(flows, name)(**parameters, projects_dir=str(arena.root), return_state=True)
    summary = state.result(raise_on_failure=False)
    operations = summary["operations"]
    refused = all(op["status"] == "failed" for op in operations)
    if name == "bulk_pipeline_execution":  # a step that failed counts for the pipeline's run
        refused = all(op["status"] == "failed" or _failed_steps(op) for op in operations)
    texts = [op.get("error") or "" for op in operations] + [
        json.dumps(op.get("result"), default=str) for op in operations
    ]
    return refused, 1, " ".join(texts)


def _failed_steps(op: dict[str, Any]) -> bool:
    steps = (op.get("result") or {}).get("steps") or []
    return bool(steps) and all(s["status"] in ("FAIL", "ERROR") for s in steps)


def _guard(case: Case, arena: Arena, client: TestClient) -> tuple[bool, int, str]:
    from prefect_ombudsman.dialects import dialect_for
    from prefect_ombudsman.dialects.engines import get_engine, spec_from_url

    url, sql = case.build(arena)
    engine = get_engine(spec_from_url(url))
    dialect = dialect_for(engine)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        try:
            with dialect.read_only(raw):
                raw.cursor().execute(sql.format(outside=arena.outside))
        except Exception as exc:  # the database refused the write: what the guard is for
            return True, 1, f"{type(exc).__name__}: {exc}"
    return False, 0, "executed"


def _report(case: Case, arena: Arena, client: TestClient) -> tuple[bool, int, str]:
    """A job whose stored report_path points out of the root: neither the REST API nor the jobs
    service reads it (the path comes from Prefect, which anyone with its API could write)."""
    from prefect_ombudsman.confinement import confine_path
    from prefect_ombudsman.jobs import api, service

    path = case.build(arena)
    read = [
        api._report_file(path, arena.root, "report_path"),
        service._read_report(path, str(arena.root)),
    ]
    try:
        confine_path(path, root=arena.root, field="report_path")
        message = "allowed"
    except Exception as exc:
        message = str(exc)
    return all(r is None for r in read), 0, message


CHANNELS = {"rest": _rest, "cli": _cli, "flow": _flow_run, "guard": _guard, "report": _report}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused(
    case: Case, arena: Arena, client: TestClient, tally: Any, request: pytest.FixtureRequest
):
    if case.postgres:
        arena.postgres_url = request.getfixturevalue("postgres_url")
        _seed(arena.postgres_url)
    if case.channel == "report":  # the planted report is part of the outside folder
        (arena.outside / "report.json").write_text(json.dumps({"job_id": "x"}))
    before = arena.snapshot()
    refused, code, text = CHANNELS[case.channel](case, arena, client)
    after = arena.snapshot()
    intact = before == after and arena.canaries_intact()
    tally.cases += 1
    if case.expect == "neutralised":
        tally.neutralised += intact
    else:
        tally.refused += refused
    tally.server_errors += case.channel == "rest" and code >= 500
    tally.canary_intact += intact
    assert refused or case.expect == "neutralised", f"{case.id}: not refused ({code}): {text[:600]}"
    assert case.field is None or case.field in text, (
        f"{case.id}: {case.field!r} not named in {text[:600]}"
    )
    assert before == after, f"{case.id}: files outside the root changed: {set(before) ^ set(after)}"
    assert arena.canaries_intact(), f"{case.id}: table canary lost rows"


def test_case_count_and_summary(tally: Any):
    """The suite's own size (40+ cases for this branch's areas) and its one-line count."""
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    print(tally.line())


def test_production_install_registers_only_real_operations():
    """The package's own entry points hold only sql_query; noop/sleep/fail/flaky/gate come from the test plugin."""
    from importlib.metadata import distribution

    ours = {
        ep.name
        for ep in distribution("prefect-ombudsman").entry_points
        if ep.group == "prefect_ombudsman.operations"
    }
    plugin = {
        ep.name
        for ep in distribution("ombudsman-testops").entry_points
        if ep.group == "prefect_ombudsman.operations"
    }
    assert ours == {"sql_query"}
    assert plugin == {"noop", "sleep", "fail", "flaky", "gate"}
    assert os.path.isfile(
        Path(__file__).parents[1] / "plugins" / "ombudsman_testops" / "pyproject.toml"
    )
