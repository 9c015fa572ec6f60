"""The validated model of a pipeline (SPEC §2) and of its results.

Every YAML format the Studio writes (reference/studio-today.md §2.2 A, B, D) is parsed by
`loader.py` into one `PipelineSpec`; a step result and a pipeline result are plain dicts with
the exact keys of SPEC §2 (built by `step_result` / the runner).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


class Severity(StrEnum):
    NONE = "NONE"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @classmethod
    def parse(cls, value: Any) -> Severity:
        """Accept any case and the Studio's custom_sql words (INFO, WARNING, ERROR)."""
        text = str(value).strip().upper()
        text = {"INFO": "NONE", "WARNING": "MEDIUM", "WARN": "MEDIUM", "ERROR": "HIGH"}.get(
            text, text
        )
        try:
            return cls(text)
        except ValueError:
            raise ValueError(
                f"severity {value!r} is not one of {', '.join(m.value for m in cls)}"
            ) from None


# Beyond 1e15 a float no longer holds every integer (2^53), and a tolerance that large only
# hides differences: refused like infinity and NaN.
MAX_ABSOLUTE_TOLERANCE = 1e15
_PERCENT = re.compile(r"^\s*([0-9.]+)\s*%\s*$")


class Tolerance(BaseModel):
    """|a - b| <= max(absolute, relative * max(|a|, |b|)). Exact integers compare exactly when both are 0."""

    model_config = ConfigDict(extra="forbid")

    absolute: float = Field(
        default=0.0,
        ge=0,
        le=MAX_ABSOLUTE_TOLERANCE,
        allow_inf_nan=False,
        description="Largest absolute difference allowed (0 to 1e15, finite).",
    )
    relative: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="A fraction: 0.01 is 1 % (0 to 1, i.e. at most 100 %).",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(
                "tolerance must be a number, a percentage like '1%', or {absolute, relative}"
            )
        if isinstance(value, (int, float)):
            return {"absolute": float(value)}
        if isinstance(value, str):
            match = _PERCENT.match(value)
            if match:
                return {"relative": float(match.group(1)) / 100}
            try:
                return {"absolute": float(value)}
            except ValueError:
                raise ValueError(
                    f"tolerance {value!r}: expected a number or a percentage like '1%'"
                ) from None
        if isinstance(value, dict):
            value = dict(value)
            for short, full in (("abs", "absolute"), ("pct", "relative"), ("rel", "relative")):
                if short in value:
                    value[full] = value.pop(short)
            if "percent" in value:
                value["relative"] = float(value.pop("percent")) / 100
        return value

    @property
    def is_exact(self) -> bool:
        return self.absolute == 0 and self.relative == 0


class PipelineTable(BaseModel):
    """`source:` / `target:` of a pipeline: a connection and a table."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    connection: str | dict[str, Any] | None = None
    type: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    table: str | None = None

    def qualified(self) -> str | None:
        if not self.table:
            return None
        return (
            f"{self.schema_}.{self.table}" if self.schema_ and "." not in self.table else self.table
        )


class MappingEntry(BaseModel):
    """One logical table: `sql` is the source table, `snow` the target table (names may carry a schema)."""

    model_config = ConfigDict(extra="allow")

    sql: str | None = None
    snow: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"sql": value, "snow": value}
        if isinstance(value, dict):
            value = dict(value)
            for alias, key in (
                ("source", "sql"),
                ("target", "snow"),
                ("sqlserver", "sql"),
                ("snowflake", "snow"),
            ):
                if alias in value and key not in value:
                    value[key] = value.pop(alias)
        return value


class StepSpec(BaseModel):
    """One step: a validator and its config, plus the keys the runner honours."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Unique within the pipeline; duplicate names get '#2', '#3' ...")
    name: str
    validator: str
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    depends_on: list[str] = Field(default_factory=list)
    severity: Severity | None = None
    tolerance: Tolerance | None = None
    description: str | None = None

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        return None if value is None else Severity.parse(value)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _depends(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value


class PipelineSpec(BaseModel):
    """A pipeline after loading: one shape whatever the YAML format was."""

    model_config = ConfigDict(extra="forbid")

    pipeline_id: str
    name: str
    description: str | None = None
    type: str | None = None
    category: str | None = None

    source: PipelineTable | None = None
    target: PipelineTable | None = None
    mapping: dict[str, MappingEntry] = Field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    execution: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None
    from_batch: str | None = None

    @model_validator(mode="after")
    def _no_dependency_cycle(self) -> PipelineSpec:
        problem = dependency_problem([(step.id, step.name, step.depends_on) for step in self.steps])
        if problem is not None:
            raise ValueError(problem[1])
        return self

    def table_metadata(self, logical: str | None) -> dict[str, Any]:
        """The `metadata:` entry of a logical table (case-insensitive), or {}."""
        if not logical:
            return {}
        if logical in self.metadata:
            return self.metadata[logical] or {}
        lowered = logical.lower()
        for key, value in self.metadata.items():
            if (
                key.lower() == lowered
                or key.lower().rsplit(".", 1)[-1] == lowered.rsplit(".", 1)[-1]
            ):
                return value or {}
        return {}


def dependency_problem(steps: list[tuple[str, str, list[str]]]) -> tuple[int, str] | None:
    """(index, message) of the first step that depends on itself or closes a cycle, else None.

    `steps` are (id, name, depends_on); a dependency names a step by name or id (unknown names
    are the runner's to report)."""
    ids: dict[str, list[str]] = {}
    index: dict[str, int] = {}
    for i, (step_id, name, _deps) in enumerate(steps):
        index[step_id] = i
        ids.setdefault(name, []).append(step_id)
        if step_id != name:
            ids.setdefault(step_id, []).append(step_id)
    graph: dict[str, list[str]] = {}
    for step_id, name, deps in steps:
        resolved = [d for dep in deps for d in ids.get(dep, [])]
        if step_id in resolved or name in deps:
            return index[step_id], f"step {name!r}: depends_on names the step itself"
        graph[step_id] = resolved
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> tuple[int, str] | None:
        state[node] = 1
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                cycle = " -> ".join([*path[path.index(dep) :], dep])
                return index[node], f"step {node!r}: depends_on forms a cycle: {cycle}"
            if state.get(dep) is None:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[node] = 2
        return None

    for step_id, _name, _deps in steps:
        if state.get(step_id) is None:
            found = visit(step_id, [step_id])
            if found:
                return found
    return None


def step_result(
    *,
    name: str,
    validator: str,
    status: Status,
    severity: Severity,
    table: str | None,
    details: dict[str, Any],
    sql: dict[str, str | None],
    duration_ms: int,
    step_id: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A step result with the exact keys of SPEC §2 (plus `step_id` and `message`)."""
    return {
        "name": name,
        "validator": validator,
        "status": status.value,
        "severity": severity.value,
        "table": table,
        "details": details,
        "sql": {"source": sql.get("source"), "target": sql.get("target")},
        "duration_ms": duration_ms,
        "step_id": step_id,
        "message": message,
    }
