"""What a request must pass before any work starts (SPEC §11), shared by the REST API and the CLI.

Every file it names stays inside the projects root (confinement.py), each custom operation's own
argument check passes (`sql_query`: a single read query), and no config_override carries SQL.
Errors are `ConfigurationError`s naming the field: REST 422, CLI exit 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prefect_ombudsman.confinement import confine_path, confine_reference
from prefect_ombudsman.operations.registry import check_arguments
from prefect_ombudsman.validation.loader import check_override

#: argument names of custom operations that hold a connection reference or a file path
_CONNECTION_ARGUMENTS = ("connection", "source", "target")
_PATH_SUFFIXES = ("path", "file", "marker", "dir", "directory", "folder")


def _request_references(request: Any) -> Iterator[tuple[str, Any, str]]:
    """(field, value, what) of every connection or path a request carries; what: connection | path."""
    for i, item in enumerate(getattr(request, "items", None) or []):
        for j, target in enumerate(getattr(item, "targets", None) or []):
            yield f"items[{i}].targets[{j}]", target, "connection"
        for name in ("connection", "source", "target"):
            value = getattr(item, name, None)
            if isinstance(value, str | Mapping):
                yield f"items[{i}].{name}", value, "connection"
        drift = getattr(item, "drift", None)
        if isinstance(drift, Mapping) and isinstance(drift.get("manifest"), str):
            yield f"items[{i}].drift.manifest", drift["manifest"], "path"
        arguments = getattr(item, "arguments", None)
        if isinstance(arguments, Mapping):
            for key, value in arguments.items():
                where = f"items[{i}].arguments.{key}"
                if key in _CONNECTION_ARGUMENTS:
                    yield where, value, "connection"
                elif str(key).lower().endswith(_PATH_SUFFIXES) and isinstance(value, str):
                    yield where, value, "path"
    for i, item in enumerate(getattr(request, "pipelines", None) or []):
        override = getattr(item, "config_override", None) or {}
        for name in ("source", "target"):
            value = override.get(name)
            if isinstance(value, Mapping) and "connection" in value:
                yield (
                    f"pipelines[{i}].config_override.{name}.connection",
                    value["connection"],
                    "connection",
                )


def check_request(request: Any, *, root: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a request naming a file outside the root, or whose custom
    operations refuse their arguments (`sql_query`: a single read query); the field is named.

    Relative paths resolve against the request's project folder, else the root, as the run does.
    """
    project_id = getattr(request, "project_id", None)
    base = Path(root) / project_id if project_id else Path(root)
    for field, value, what in _request_references(request):
        if what == "path":
            confine_path(value, root=root, field=field, base=base)
        else:
            confine_reference(value, root=root, field=field, base=base)
    for i, item in enumerate(getattr(request, "items", None) or []):
        arguments = getattr(item, "arguments", None)
        if isinstance(getattr(item, "operation", None), str) and isinstance(arguments, Mapping):
            check_arguments(item.operation, arguments, f"items[{i}].arguments")
    for i, item in enumerate(getattr(request, "pipelines", None) or []):
        if isinstance(getattr(item, "config_override", None), Mapping):
            check_override(item.config_override, f"pipelines[{i}].config_override")
