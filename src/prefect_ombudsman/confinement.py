"""Files confined (SPEC §11): every path a request, a pipeline or a project names stays inside the
projects root, or inside a folder the operator allows with `OMBUDSMAN_ALLOWED_PATHS`.

Paths are compared after `Path.resolve()` (symlinks followed), so a link out of the root is
refused like `../`. Saved connection blocks are the operator's own configuration and are not
confined; URLs and mappings given in a request or a project file are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect_ombudsman.errors import ConfigurationError

ALLOWED_PATHS_ENV = "OMBUDSMAN_ALLOWED_PATHS"


class PathNotAllowed(ConfigurationError):
    """A path outside the projects root and the operator's allow-list."""


def allowed_roots(root: str | os.PathLike[str]) -> list[Path]:
    """The projects root and the folders of `$OMBUDSMAN_ALLOWED_PATHS` (os.pathsep-separated)."""
    roots = [Path(root).expanduser().resolve()]
    for part in os.environ.get(ALLOWED_PATHS_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    return roots


def confine_path(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    field: str,
    base: str | os.PathLike[str] | None = None,
) -> Path:
    """`path` resolved (relative to `base`, else the root), or `PathNotAllowed` naming `field`."""
    roots = allowed_roots(root)
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = Path(base or roots[0]) / candidate
    resolved = candidate.resolve()
    if any(resolved.is_relative_to(allowed) for allowed in roots):
        return resolved
    extra = f" or {ALLOWED_PATHS_ENV}" if len(roots) > 1 else ""
    raise PathNotAllowed(f"{field}: path {resolved} is outside the projects root {roots[0]}{extra}")


def _url(url: str) -> Any:
    # SQLAlchemy loaded here, not at import: reading jobs confines report paths and needs no URL
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def file_database(url: str) -> str | None:
    """The file an embedded database's URL names as written (None: a server database, memory,
    or not a URL); each dialect says which file its URL opens (`Dialect.database_file`)."""
    from prefect_ombudsman.dialects import dialect_for

    parsed = _url(url)
    if parsed is None:
        return None
    return dialect_for(parsed.get_backend_name()).database_file(parsed)


def confine_url(
    url: str, *, root: str | os.PathLike[str], field: str, base: str | os.PathLike[str] | None
) -> None:
    """Refuse an SQLite / DuckDB URL whose file lies outside the root (other URLs pass), and
    SQLite URI filenames (`?uri=true`, `file:`), whose file SQLite itself would pick."""
    from prefect_ombudsman.dialects import dialect_for

    parsed = _url(url)
    if parsed is None:
        return
    refused = dialect_for(parsed.get_backend_name()).unconfinable(parsed)
    if refused:
        raise PathNotAllowed(f"{field}: {refused}")
    database = dialect_for(parsed.get_backend_name()).database_file(parsed)
    if database is not None:
        confine_path(database, root=root, field=field, base=base)


def confine_reference(
    ref: Any, *, root: str | os.PathLike[str], field: str, base: str | os.PathLike[str] | None
) -> None:
    """A connection reference of a request or project: URL or mapping of block fields."""
    if isinstance(ref, str) and "://" in ref:
        confine_url(ref.strip(), root=root, field=field, base=base)
    elif isinstance(ref, Mapping) and isinstance(ref.get("url"), str):
        confine_url(ref["url"], root=root, field=f"{field}.url", base=base)
