"""Executor of `metadata_extraction` operations: one source's catalog, within the server's limits.

Two limits guard a database server: the process-wide session slots of `metadata/sessions.py`
(always), and a Prefect global concurrency limit named `ombudsman-metadata-<server>` when one
exists on the Prefect server (created by an operator with `prefect gcl create`; looked up, never
created, and skipped quietly when missing or when no Prefect API answers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect_ombudsman.connections import resolve_connection
from prefect_ombudsman.deployments.limits import limit_exists, limit_name
from prefect_ombudsman.dialects.engines import ConnectionSpec, get_engine
from prefect_ombudsman.errors import ConnectionReferenceError, OperationFailed
from prefect_ombudsman.metadata.extract import extract_catalog
from prefect_ombudsman.metadata.sessions import server_identity, server_slot, sessions_per_server
from prefect_ombudsman.metadata.store import save_catalog
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.projects import Project, find_project, projects_root

log = logging.getLogger("prefect_ombudsman.metadata")

GCL_PREFIX = "ombudsman-metadata-"


def gcl_name(server: str) -> str:
    """The Prefect global concurrency limit that guards `server` (`postgresql://db1:5432` ->
    `ombudsman-metadata-postgresql-db1-5432`)."""
    return limit_name(GCL_PREFIX, server)


@contextmanager
def global_limit(server: str) -> Iterator[str | None]:
    """Hold one slot of the server's Prefect global concurrency limit, when it exists."""
    name = gcl_name(server)
    if not limit_exists(name):
        yield None
        return
    from prefect.concurrency.sync import concurrency

    try:
        manager = concurrency(name, occupy=1, strict=False)
        manager.__enter__()
    except Exception as exc:  # the API went away between the check and the acquire
        log.warning(
            "global concurrency limit %s not acquired, continuing with in-process limits: %s",
            name,
            exc,
        )
        yield None
        return
    try:
        yield name
    finally:
        manager.__exit__(None, None, None)


def connection_role(spec: ConnectionSpec, project: Project | None) -> str | None:
    """`source` / `target` when `spec` is that connection of the project, else None."""
    if project is None:
        return None
    key = spec.cache_key()
    for role in ("source", "target"):
        if getattr(project.config, role) is None:
            continue
        try:
            if resolve_connection(role, project=project).cache_key() == key:
                return role
        except ConnectionReferenceError:
            continue
    return None


def metadata_folder(project: Project | None, projects_dir: Path) -> Path:
    """The project's `metadata/`, or `<projects root>/.ombudsman/metadata` without a project."""
    return (
        project.metadata_dir
        if project
        else projects_root(str(projects_dir)) / ".ombudsman" / "metadata"
    )


def run_metadata_extraction(ctx: OperationContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Extract one source's catalog, write it to the project's `metadata/`, return it."""
    project = find_project(ctx.project_id, ctx.projects_dir)
    spec = resolve_connection(arguments["connection"], project=project, root=ctx.projects_dir)
    server = server_identity(spec)
    limit = sessions_per_server(arguments.get("sessions_per_server"))
    with (
        global_limit(server) as gcl,
        server_slot(server, limit, should_stop=lambda: ctx.cancelled) as held,
    ):
        ctx.check_cancelled()
        catalog = extract_catalog(
            get_engine(spec),
            connection=arguments["label"],
            schema=arguments.get("schema_name"),
            table_names=arguments.get("table_names"),
            exact_counts=bool(arguments.get("exact_counts")),
            check_cancelled=ctx.check_cancelled,
            server=server,
        )
    path = save_catalog(catalog, metadata_folder(project, ctx.projects_dir), arguments["label"])
    result = catalog.to_json() | {
        "file": str(path),
        "role": connection_role(spec, project),
        "session_limit": {
            "server": server,
            "limit": limit,
            "in_use_at_start": held,
            "global_limit": gcl,
        },
    }
    if catalog.table_names is not None and not catalog.tables:
        raise OperationFailed(
            f"none of the tables {', '.join(catalog.table_names)} exist in {', '.join(catalog.schemas) or 'any schema'} "
            f"of {spec.display()}",
            result=result,
        )
    return result
