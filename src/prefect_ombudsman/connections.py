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
from prefect_ombudsman.confinement import confine_url
from prefect_ombudsman.dialects import engines as dc
from prefect_ombudsman.errors import ConnectionReferenceError
from prefect_ombudsman.projects import Project, projects_root

BLOCK_SLUGS = ("sql-server-connection", "snowflake-connection", "database-connection")
_LEGACY = {"sqlserver": "source", "snowflake": "target"}


def resolve_connection(
    ref: str | Mapping[str, Any],
    *,
    project: Project | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
    field: str = "connection",
) -> dc.ConnectionSpec:
    """Resolve `ref` to a connection; errors name the reference and what was tried.

    A URL or mapping naming an SQLite / DuckDB file must stay inside the projects `root`
    (default: the project's root, else `projects_root()`) or the allow-list: see confinement.py.
    Relative files resolve against `base_dir`, else the project folder, else the root.
    """
    root = root or (project.path.parent if project else projects_root())
    base = base_dir or (project.path if project else root)
    if credentials.is_reference(ref):
        ref = credentials.unseal(ref)  # an inline credential moved out of the flow run's parameters
    if isinstance(ref, Mapping):
        spec = spec_from_mapping(ref, name="inline", base_dir=base)
        confine_url(spec.url, root=root, field=field, base=base)
        return spec
    if not isinstance(ref, str) or not ref.strip():
        raise ConnectionReferenceError(
            f"connection reference must be a non-empty string or mapping, got {ref!r}"
        )
    ref = ref.strip()
    if "://" in ref:
        spec = dc.spec_from_url(ref, base_dir=base)
        confine_url(spec.url, root=root, field=field, base=base)
        return spec
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
        return _resolve_project_value(value, ref, project, root)
    if ref in _LEGACY:
        alias = _LEGACY[ref]
        if project is not None and getattr(project.config, alias) is not None:
            return _resolve_project_value(getattr(project.config, alias), alias, project, root)
        return dc.spec_from_environment(ref, env)
    return spec_from_block(ref)


def _resolve_project_value(
    value: Any, alias: str, project: Project, root: Path
) -> dc.ConnectionSpec:
    field = f"{project.path / 'project.yaml'}: {alias}"
    if isinstance(value, Mapping):
        spec = spec_from_mapping(value, name=f"{project.project_id}:{alias}", base_dir=project.path)
        confine_url(spec.url, root=root, field=field, base=project.path)
        return spec
    if isinstance(value, str) and value in ("source", "target", *_LEGACY):
        raise ConnectionReferenceError(
            f"project {project.project_id!r}: {alias} cannot refer to {value!r}"
        )
    return resolve_connection(value, project=None, base_dir=project.path, root=root, field=field)


def spec_from_mapping(
    fields: Mapping[str, Any], *, name: str, base_dir: Path | None
) -> dc.ConnectionSpec:
    """Build a connection from a mapping of block fields (`kind` optional, else inferred)."""
    from prefect_ombudsman.blocks.connection_blocks import block_from_fields

    block = block_from_fields(dict(fields), name=name)
    return block.to_spec(name=name, base_dir=base_dir)


def spec_from_block(name: str) -> dc.ConnectionSpec:
    """Load one of this plugin's connection blocks by name (`slug/name` or bare `name`)."""
    from prefect.blocks.core import Block

    from prefect_ombudsman.blocks import connection_blocks as blocks  # noqa: F401  (registers the types)

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


def engine_for(
    ref: str | Mapping[str, Any] | dc.ConnectionSpec,
    *,
    project: Project | None = None,
    root: Path | None = None,
) -> Engine:
    """The pooled SQLAlchemy engine for any connection reference (file databases confined to `root`)."""
    spec = (
        ref
        if isinstance(ref, dc.ConnectionSpec)
        else resolve_connection(ref, project=project, root=root)
    )
    return dc.get_engine(spec)
