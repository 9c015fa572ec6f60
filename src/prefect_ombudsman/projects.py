"""Projects: a folder `<projects root>/<project_id>/` with `project.yaml`, pipelines and outputs."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.yamlfiles import load_yaml_file, read_text_file

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
DEFAULT_PROJECT = "demo"


def mapped_schema(schema: str, schema_mappings: Mapping[str, str]) -> str:
    """A source schema's target name through a project's `schema_mappings` (`{dbo: PUBLIC}`;
    matched case-insensitively); a schema without a mapping keeps its name."""
    for key, value in schema_mappings.items():
        if key.casefold() == schema.casefold():
            return value
    return schema


def map_schema(qualified: str, schema_mappings: Mapping[str, str]) -> str:
    """`[database.]schema.table` with its schema mapped (`dbo.fact` -> `PUBLIC.fact`,
    `db.dbo.fact` -> `db.PUBLIC.fact`); a bare table name is returned as is."""
    parts = qualified.split(".")
    if len(parts) < 2:
        return qualified
    return ".".join([*parts[:-2], mapped_schema(parts[-2], schema_mappings), parts[-1]])


def projects_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--projects-dir`, else `OMBUDSMAN_PROJECTS_DIR`, else `./projects`."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("OMBUDSMAN_PROJECTS_DIR")
    return Path(env).expanduser().resolve() if env else (Path.cwd() / "projects").resolve()


def default_project_id() -> str:
    return os.environ.get("OMBUDSMAN_DEFAULT_PROJECT") or DEFAULT_PROJECT


def check_safe_id(value: str, field: str) -> str:
    """Refuse ids that could escape a folder or make awkward file names."""
    if not SAFE_ID.match(value) or ".." in value:
        raise ConfigurationError(
            f"{field}: {value!r} is not a safe id (letters, digits, '_', '-', '.', at most 128 characters, not starting with '.' or containing '..')"
        )
    return value


ConnectionRef = str | dict[str, Any]


class ProjectConfig(BaseModel):
    """The validated contents of `project.yaml`."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    source: ConnectionRef | None = None
    target: ConnectionRef | None = None
    schema_mappings: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)


class Project(BaseModel):
    """A project on disk: its id, folder and configuration."""

    project_id: str
    path: Path
    config: ProjectConfig

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def metadata_dir(self) -> Path:
        return self.path / "metadata"

    @property
    def pipelines_dir(self) -> Path:
        return self.path / "pipelines"


def load_project(project_id: str, root: Path | None = None) -> Project:
    """Read and validate `<root>/<project_id>/project.yaml` (else the Studio's `project.json`)."""
    check_safe_id(project_id, "project_id")
    root = root or projects_root()
    folder = root / project_id
    config_file = folder / "project.yaml"
    studio_file = folder / "project.json"
    studio = _read_studio_json(studio_file) if studio_file.is_file() else None
    if not config_file.is_file():
        if studio is None:
            raise ConfigurationError(
                f"project {project_id!r} not found: no {config_file} (nor {studio_file})"
            )
        raw: Any = {}
        config_file = studio_file
    else:
        raw = load_yaml_file(config_file) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{config_file}: expected a mapping at the top level")
    if studio is not None:
        raw = {**studio, **raw}
    raw.setdefault("name", project_id)
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"{config_file}: {problems}") from None
    return Project(project_id=project_id, path=folder, config=config)


# The Studio's project.json (reference/studio-today.md §6.1) holds names only, never credentials.
_STUDIO_FIELDS = (
    "name",
    "description",
    "schema_mappings",
    "sql_database",
    "sql_schemas",
    "snowflake_database",
    "snowflake_schemas",
)


def _read_studio_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text_file(path))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected a JSON object")
    studio = {k: data[k] for k in _STUDIO_FIELDS if data.get(k) is not None}
    if not isinstance(studio.get("schema_mappings", {}), dict):
        raise ConfigurationError(
            f"{path}: schema_mappings must be an object of source schema -> target schema"
        )
    return studio


def studio_environment(project: Project) -> dict[str, str]:
    """Database names a Studio project.json adds to the legacy `MSSQL_*` / `SNOWFLAKE_*` variables."""
    extra = project.config.model_extra or {}
    env: dict[str, str] = {}
    if extra.get("sql_database"):
        env["MSSQL_DATABASE"] = str(extra["sql_database"])
    if extra.get("snowflake_database"):
        env["SNOWFLAKE_DATABASE"] = str(extra["snowflake_database"])
    schemas = extra.get("snowflake_schemas")
    if isinstance(schemas, list) and schemas:
        env["SNOWFLAKE_SCHEMA"] = str(schemas[0])
    return env


def pipeline_search_places(project_id: str | None, root: Path | None = None) -> list[Path]:
    """Folders searched for `<pipeline_id>.yaml`, in order (studio-today §1.5, the job's project first).

    `<root>/<project>/pipelines`, `<root>/<project>` (where the Studio's automation wrote batch
    files), the Studio data folder's `pipelines/` and `batch_jobs/` (siblings of the projects
    root), `<root>/pipelines`, then every other project's `pipelines/`.
    """
    root = projects_root(root)
    places: list[Path] = []
    if project_id:
        places += [root / project_id / "pipelines", root / project_id]
    places += [root.parent / "pipelines", root.parent / "batch_jobs", root / "pipelines"]
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            candidate = folder / "pipelines"
            if folder.name != project_id and candidate.is_dir():
                places.append(candidate)
    return places


def find_project(project_id: str | None, root: Path | None = None) -> Project | None:
    """The project if it exists, else None (a request may run without one)."""
    try:
        return load_project(project_id or default_project_id(), root)
    except ConfigurationError:
        return None
