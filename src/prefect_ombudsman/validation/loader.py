"""Pipeline files: find them, expand batch files, parse every Studio format into a `PipelineSpec`.

Formats (reference/studio-today.md §2.2): A `pipeline:`-rooted, B/D flat with top-level `steps`,
`mapping`, `metadata`, C `batch:` files listing other pipeline files. `${VAR}` (and
`${VAR:-default}`) is substituted from the override's `variables`, then the environment; an
undefined variable is an error naming it. Errors name the file, the line where known and the field.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.projects import check_safe_id, pipeline_search_places
from prefect_ombudsman.validation.spec import PipelineSpec, dependency_problem
from prefect_ombudsman.yamlfiles import load_yaml_file, parse_yaml, read_text_file

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STEP_KEYS = {
    "name",
    "validator",
    "config",
    "enabled",
    "depends_on",
    "severity",
    "tolerance",
    "description",
    "id",
}
# Keys the Studio writes on steps that carry no meaning for the run.
_STEP_INFO_KEYS = {"type", "confidence", "metadata", "category", "comment", "notes"}
_OVERRIDE_KEYS = {
    "variables",
    "vars",
    "steps",
    "step_defaults",
    "source",
    "target",
    "mapping",
    "metadata",
    "name",
    "description",
}
# A request may not smuggle SQL text into a run through config_override.
_SQL_TEXT_KEYS = {
    "sql_query",
    "snow_query",
    "sql_server_query",
    "snowflake_query",
    "source_query",
    "target_query",
    "query",
    "custom_queries",
    "sql",
    "snow",
}
# A request's variable may stand for a value or an identifier inside a pipeline's SQL (a name, a
# dotted name, a number, an ISO date or timestamp), never for SQL text of its own.
_SQL_SAFE_VALUE = re.compile(
    r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2}"
    r"|-?\d{1,30}(?:\.\d{1,30})?"
    r"|\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)$"
)


class PipelineError(ConfigurationError):
    """A pipeline file that cannot be used; the message names file, line and field."""


@dataclass(frozen=True)
class PipelineRef:
    """Where one pipeline of a job comes from (a batch file expands to several)."""

    pipeline_id: str
    path: Path | None
    from_batch: str | None = None
    searched: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- search places


def find_pipeline_file(
    pipeline_id: str, project_id: str | None, root: Path | None = None
) -> PipelineRef:
    """The first `<id>.yaml` / `<id>.yml` in the search places; `path` is None when none exists."""
    pipeline_id = _strip_suffix(pipeline_id)
    check_safe_id(pipeline_id, "pipeline_id")
    places = pipeline_search_places(project_id, root)
    for place in places:
        for suffix in (".yaml", ".yml"):
            candidate = place / f"{pipeline_id}{suffix}"
            if candidate.is_file():
                return PipelineRef(pipeline_id, candidate, searched=tuple(str(p) for p in places))
    return PipelineRef(pipeline_id, None, searched=tuple(str(p) for p in places))


def not_found_message(ref: PipelineRef) -> str:
    return f"pipeline {ref.pipeline_id!r} not found; searched {', '.join(ref.searched)}"


def expand_pipeline(
    pipeline_id: str, project_id: str | None, root: Path | None = None
) -> list[PipelineRef]:
    """One ref, or one per enabled entry of a `batch:` file (nested batches expand too)."""
    return _expand(pipeline_id, project_id, root, seen=())


def _expand(
    pipeline_id: str, project_id: str | None, root: Path | None, seen: tuple[str, ...]
) -> list[PipelineRef]:
    ref = find_pipeline_file(pipeline_id, project_id, root)
    if ref.path is None or ref.pipeline_id in seen:
        return [ref]
    try:
        doc = load_yaml_file(ref.path)
    except ConfigurationError:
        return [ref]  # the run reports the problem (parse error with its line, not UTF-8, size)
    batch = batch_body(doc)
    if batch is None:
        return [ref]
    refs: list[PipelineRef] = []
    for entry in batch.get("pipelines") or []:
        if isinstance(entry, dict):
            if entry.get("enabled", True) is False:
                continue
            name = (
                entry.get("file")
                or entry.get("pipeline")
                or entry.get("pipeline_id")
                or entry.get("name")
            )
        else:
            name = entry
        if not isinstance(name, str) or not name.strip():
            raise PipelineError(f"{ref.path}: batch.pipelines: entry {entry!r} names no file")
        child = _strip_suffix(Path(name.strip()).name)
        for nested in _expand(child, project_id, root, (*seen, ref.pipeline_id)):
            refs.append(
                PipelineRef(
                    nested.pipeline_id,
                    nested.path,
                    nested.from_batch or ref.pipeline_id,
                    nested.searched,
                )
            )
    return refs


def batch_body(doc: Any) -> dict[str, Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("batch"), dict):
        pipeline = doc.get("pipeline")
        if not (isinstance(pipeline, dict) and "batch" in pipeline):
            return doc["batch"]
    return None


def _strip_suffix(name: str) -> str:
    for suffix in (".yaml", ".yml"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- parsing


def load_pipeline(
    path: Path,
    *,
    pipeline_id: str | None = None,
    override: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    from_batch: str | None = None,
) -> PipelineSpec:
    """Read and parse one pipeline file."""
    text = read_text_file(path, error=PipelineError)
    spec = parse_pipeline(
        text,
        pipeline_id=pipeline_id or _strip_suffix(path.name),
        file=str(path),
        override=override,
        env=env,
    )
    return spec.model_copy(update={"from_batch": from_batch}) if from_batch else spec


def parse_pipeline(
    text: str,
    *,
    pipeline_id: str,
    file: str | None = None,
    override: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> PipelineSpec:
    """Parse YAML text of format A, B or D into a `PipelineSpec` (batch files are refused)."""
    where = file or f"pipeline {pipeline_id!r}"
    doc, tree = parse_yaml(text, where, error=PipelineError)
    if not isinstance(doc, dict):
        raise PipelineError(
            f"{where}: expected a mapping at the top level (a pipeline), got {type(doc).__name__}"
        )
    if batch_body(doc) is not None:
        raise PipelineError(
            f"{where}: is a batch file (batch:); run it as a pipeline id so it expands"
        )
    locate = _Locator(where, tree)
    if isinstance(doc.get("pipeline"), dict):
        body, prefix = copy.deepcopy(doc["pipeline"]), ["pipeline"]
        root_extra = {k: v for k, v in doc.items() if k != "pipeline"}
    elif "pipeline" in doc and doc["pipeline"] is not None:
        raise locate.error(["pipeline"], "expected a mapping")
    else:
        body, prefix, root_extra = copy.deepcopy(doc), [], {}
    override = dict(override or {})
    variables = _override_variables(override, where)
    if override:
        body = apply_override(body, override, where)
    body = _substitute(body, variables, env if env is not None else os.environ, locate, text)
    return _build(body, root_extra, pipeline_id, file, locate, prefix)


def _build(
    body: dict[str, Any],
    root_extra: dict[str, Any],
    pipeline_id: str,
    file: str | None,
    locate: _Locator,
    prefix: list[Any],
) -> PipelineSpec:
    info: dict[str, Any] = {}
    metadata = body.get("metadata")
    if (
        isinstance(metadata, dict)
        and metadata
        and not all(isinstance(v, dict) or v is None for v in metadata.values())
    ):
        info = metadata  # format B: root metadata describes the pipeline, not tables
        metadata = {}
    elif metadata is None:
        metadata = {}
    raw_steps = body.get("steps") or []
    if not isinstance(raw_steps, list):
        raise locate.error([*prefix, "steps"], "expected a list of steps")
    steps = [
        _normalise_step(raw, i, locate, [*prefix, "steps", i]) for i, raw in enumerate(raw_steps)
    ]
    queries = body.get("custom_queries") or root_extra.get("custom_queries") or []
    if not isinstance(queries, list):
        raise locate.error([*prefix, "custom_queries"], "expected a list")
    for j, query in enumerate(queries):
        if not isinstance(query, dict):
            raise locate.error(
                [*prefix, "custom_queries", j], "expected a mapping with sql_query / snow_query"
            )
        query = dict(query)
        name = str(query.pop("name", f"custom_query_{j + 1}"))
        step_keys = {k: query.pop(k) for k in ("enabled", "depends_on", "severity") if k in query}
        steps.append(
            _normalise_step(
                {"name": name, "validator": "custom_sql", "config": query, **step_keys},
                len(steps),
                locate,
                [*prefix, "custom_queries", j],
            )
        )
    if not steps:
        raise locate.error(
            [*prefix, "steps"] if prefix or "steps" in body else [],
            "the pipeline has no steps (steps: or custom_queries:)",
        )
    _dedupe_ids(steps)
    problem = dependency_problem(
        [(str(s["id"]), str(s["name"]), _dependency_list(s.get("depends_on"))) for s in steps]
    )
    if problem is not None:
        index, message = problem
        raise locate.error([*prefix, "steps", index, "depends_on"], message)
    fields = {
        "pipeline_id": pipeline_id,
        "name": str(body.get("name") or info.get("name") or pipeline_id),
        "description": body.get("description") or info.get("description"),
        "type": body.get("type") or info.get("type"),
        "category": body.get("category") or info.get("category"),
        "source": body.get("source"),
        "target": body.get("target"),
        "mapping": body.get("mapping") or {},
        "metadata": metadata,
        "steps": steps,
        "execution": root_extra.get("execution") or body.get("execution") or {},
        "file": file,
    }
    unknown = set(body) - {
        "name", "description", "type", "category", "source", "target", "mapping", "metadata", "steps",
        "custom_queries", "execution", "version", "tags", "parallel_execution", "max_parallel_workers",
    }  # fmt: skip
    if unknown:
        key = sorted(unknown)[0]
        raise locate.error(
            [*prefix, key],
            f"unknown pipeline key {key!r}; expected name, description, source, target, mapping, metadata, steps, custom_queries, execution",
        )
    try:
        return PipelineSpec.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if loc and loc[0] == "steps" and len(loc) > 1:
            loc = [*prefix, "steps", loc[1], *loc[2:]]
        else:
            loc = [*prefix, *loc]
        raise locate.error(loc, err["msg"]) from None


def _normalise_step(raw: Any, index: int, locate: _Locator, path: list[Any]) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise locate.error(path, "a step must be a mapping with name/validator and config")
    name = raw.get("name") or raw.get("validator")
    if not isinstance(name, str) or not name.strip():
        raise locate.error(path, "a step needs a 'name' (or a 'validator')")
    validator = raw.get("validator") or name
    if not isinstance(validator, str):
        raise locate.error([*path, "validator"], "expected a validator name")
    config = raw.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise locate.error([*path, "config"], "expected a mapping")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise locate.error([*path, "enabled"], f"expected true or false, got {enabled!r}")
    unknown = set(raw) - _STEP_KEYS - _STEP_INFO_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise locate.error(
            [*path, key], f"unknown step key {key!r}; expected {', '.join(sorted(_STEP_KEYS))}"
        )
    step = {k: v for k, v in raw.items() if k in _STEP_KEYS}
    step.update(
        name=name.strip(),
        validator=normalise_validator_name(validator),
        config=config,
        enabled=enabled,
    )
    step.setdefault("id", name.strip())
    if step.get("depends_on") is not None and not isinstance(step["depends_on"], (str, list)):
        raise locate.error([*path, "depends_on"], "expected a step name or a list of step names")
    return step


def _dependency_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def normalise_validator_name(name: str) -> str:
    """`validate_record_counts`, `Record_Counts` and `record_counts` all name the same validator."""
    text = name.strip().lower().replace("-", "_")
    return text[len("validate_") :] if text.startswith("validate_") else text


def _dedupe_ids(steps: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for step in steps:
        base = str(step["id"])
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            step["id"] = f"{base}#{seen[base]}"


# ----------------------------------------------------------------------------- overrides and ${VAR}


def _override_variables(override: dict[str, Any], where: str) -> dict[str, str]:
    variables = override.pop("variables", None) or {}
    variables = {**(override.pop("vars", None) or {}), **variables}
    if not isinstance(variables, dict):
        raise PipelineError(
            f"{where}: config_override.variables: expected a mapping of names to values"
        )
    return {str(k): str(v) for k, v in variables.items()}


def apply_override(body: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge a request's `config_override` into a pipeline body (see docs/validation.md)."""
    unknown = set(override) - _OVERRIDE_KEYS
    if unknown:
        raise PipelineError(
            f"{where}: config_override: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_OVERRIDE_KEYS))}"
        )
    _refuse_sql_text(override, "config_override", where)
    body = copy.deepcopy(body)
    for key in ("source", "target", "mapping", "metadata", "name", "description"):
        if key in override:
            body[key] = _deep_merge(body.get(key), override[key])
    steps = body.get("steps") or []
    defaults = override.get("step_defaults") or {}
    per_step = override.get("steps") or {}
    if not isinstance(defaults, dict) or not isinstance(per_step, dict):
        raise PipelineError(f"{where}: config_override.steps / step_defaults: expected mappings")
    names = {str(s.get("name") or s.get("validator")) for s in steps if isinstance(s, dict)}
    missing = [n for n in per_step if n not in names]
    if missing:
        raise PipelineError(
            f"{where}: config_override.steps: no step named {missing[0]!r}; steps: {', '.join(sorted(names))}"
        )
    merged_steps = []
    for step in steps:
        if isinstance(step, dict):
            step = _deep_merge(step, defaults)
            key = str(step.get("name") or step.get("validator"))
            if key in per_step:
                step = _deep_merge(step, per_step[key])
        merged_steps.append(step)
    if steps:
        body["steps"] = merged_steps
    return body


def check_override(override: Mapping[str, Any], field: str) -> None:
    """Request-time check: a config_override carries no SQL text (custom SQL comes only from
    project files); the error names the field, e.g. `pipelines[0].config_override.steps.q.config.sql`."""
    _refuse_sql_text(dict(override), field, "request")


def _refuse_sql_text(value: Any, path: str, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key) in _SQL_TEXT_KEYS:
                raise PipelineError(
                    f"{where}: {path}.{key}: SQL text cannot be set through config_override"
                )
            _refuse_sql_text(item, f"{path}.{key}", where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_sql_text(item, f"{path}[{i}]", where)


def _deep_merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(extra)


def _substitute(
    value: Any,
    variables: Mapping[str, str],
    env: Mapping[str, str],
    locate: _Locator,
    text: str,
    path: tuple[Any, ...] = (),
) -> Any:
    """`${VAR}` replaced: request variables first, then the environment, then the default.

    Inside SQL text (custom_sql queries) a request variable must be a plain value or identifier
    (`_SQL_SAFE_VALUE`): it can never add SQL. The environment and the file are the operator's."""
    in_sql = any(str(part) in _SQL_TEXT_KEYS for part in path)
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in variables:
                if in_sql and not _SQL_SAFE_VALUE.match(variables[name]):
                    field = ".".join(str(p) for p in path)
                    raise PipelineError(
                        f"{locate.where}: config_override.variables.{name}: {variables[name][:80]!r} "
                        f"would become SQL text in {field}; a variable used in SQL may only be an "
                        "identifier, a number or a date"
                    )
                return variables[name]
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise PipelineError(
                f"{locate.where}{_line_of_text(text, match.group(0))}: variable ${{{name}}} is not defined (set it in the environment or in config_override.variables)"
            )

        return _VAR.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _substitute(v, variables, env, locate, text, (*path, k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, variables, env, locate, text, (*path, i)) for i, v in enumerate(value)
        ]
    return value


def _line_of_text(text: str, needle: str) -> str:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f", line {number}"
    return ""


class _Locator:
    """Finds the line of a field path in the composed YAML tree."""

    def __init__(self, where: str, tree: yaml.Node | None) -> None:
        self.where = where
        self.tree = tree

    def line(self, path: list[Any]) -> int | None:
        node = self.tree
        best = node.start_mark.line + 1 if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:
                    if str(key_node.value) == str(part):
                        found = value_node
                        best = key_node.start_mark.line + 1
                        break
                node = found
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and part < len(node.value)
            ):
                node = node.value[part]
                best = node.start_mark.line + 1
            else:
                break
            if node is None:
                break
        return best

    def error(self, path: list[Any], message: str) -> PipelineError:
        line = self.line(path)
        field = ".".join(str(p) for p in path) or "(top level)"
        return PipelineError(f"{self.where}{f', line {line}' if line else ''}: {field}: {message}")
