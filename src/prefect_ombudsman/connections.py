"""Turns any connection reference of SPEC §2 into a `ConnectionSpec` and a pooled engine.

A reference is a block name (`name` or `<block-type-slug>/<name>`), a SQLAlchemy URL, inside a
project the alias `source` / `target`, a mapping of block fields, the legacy words
`sqlserver` / `snowflake` (the project's source / target, then the Studio's environment variables),
or a sealed credential `{"secret_ref": ..., ...}` (an inline credential kept out of Prefect's
parameters, see credentials.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from prefect_ombudsman import credentials
from prefect_ombudsman.dialects import connection as dc
from prefect_ombudsman.errors import ConnectionReferenceError
from prefect_ombudsman.projects import Project

BLOCK_SLUGS = ("sql-server-connection", "snowflake-connection", "database-connection")
_LEGACY = {"sqlserver": "source", "snowflake": "target"}


def resolve_connection(
    ref: str | Mapping[str, Any],
    *,
    project: Project | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> dc.ConnectionSpec:
    """Resolve `ref` to a connection; errors name the reference and what was tried."""
    base = base_dir or (project.path if project else None)
    if credentials.is_reference(ref):
        ref = credentials.unseal(ref)  # an inline credential moved out of the flow run's parameters
    if isinstance(ref, Mapping):
        return spec_from_mapping(ref, name="inline", base_dir=base)
    if not isinstance(ref, str) or not ref.strip():
        raise ConnectionReferenceError(
            f"connection reference must be a non-empty string or mapping, got {ref!r}"
        )
    ref = ref.strip()
    if "://" in ref:
        return dc.spec_from_url(ref, base_dir=base)
    if ref in ("source", "target"):
        if project is None:
            raise ConnectionReferenceError(
                f"connection {ref!r} needs a project, and none was given"
            )
        value = getattr(project.config, ref)
        if value is None:
            raise ConnectionReferenceError(
                f"project {project.project_id!r} has no {ref!r} connection in project.yaml"
            )
        return _resolve_project_value(value, ref, project)
    if ref in _LEGACY:
        alias = _LEGACY[ref]
        if project is not None and getattr(project.config, alias) is not None:
            return _resolve_project_value(getattr(project.config, alias), alias, project)
        return dc.spec_from_environment(ref, env)
    return spec_from_block(ref)


def _resolve_project_value(value: Any, alias: str, project: Project) -> dc.ConnectionSpec:
    if isinstance(value, Mapping):
        return spec_from_mapping(value, name=f"{project.project_id}:{alias}", base_dir=project.path)
    if isinstance(value, str) and value in ("source", "target", *_LEGACY):
        raise ConnectionReferenceError(
            f"project {project.project_id!r}: {alias} cannot refer to {value!r}"
        )
    return resolve_connection(value, project=None, base_dir=project.path)


def spec_from_mapping(
    fields: Mapping[str, Any], *, name: str, base_dir: Path | None
) -> dc.ConnectionSpec:
    """Build a connection from a mapping of block fields (`kind` optional, else inferred)."""
    from prefect_ombudsman.blocks.connections import block_from_fields

    block = block_from_fields(dict(fields), name=name)
    return block.to_spec(name=name, base_dir=base_dir)


def spec_from_block(name: str) -> dc.ConnectionSpec:
    """Load one of this plugin's connection blocks by name (`slug/name` or bare `name`)."""
    from prefect.blocks.core import Block

    from prefect_ombudsman.blocks import connections as blocks  # noqa: F401  (registers the types)

    candidates = [name] if "/" in name else [f"{slug}/{name}" for slug in BLOCK_SLUGS]
    errors = []
    for candidate in candidates:
        try:
            block = Block.load(candidate)
        except (ValueError, KeyError) as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        if not hasattr(block, "to_spec"):
            raise ConnectionReferenceError(
                f"block {candidate!r} is not a connection block of this plugin"
            )
        return block.to_spec(name=name)
    raise ConnectionReferenceError(
        f"connection {name!r} is not a URL, a project alias (source/target), a legacy name "
        f"(sqlserver/snowflake) or a saved block; looked for blocks {', '.join(candidates)}"
    )


def get_engine(
    ref: str | Mapping[str, Any] | dc.ConnectionSpec, *, project: Project | None = None
) -> Engine:
    """The pooled SQLAlchemy engine for any connection reference."""
    spec = ref if isinstance(ref, dc.ConnectionSpec) else resolve_connection(ref, project=project)
    return dc.get_engine(spec)
