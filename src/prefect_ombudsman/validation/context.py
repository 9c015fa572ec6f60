"""What a validator sees: its step, both sides, table resolution, and how to report an outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.projects import map_schema
from prefect_ombudsman.validation.spec import PipelineSpec, Severity, Status, StepSpec, Tolerance
from prefect_ombudsman.validation.tables import ResolvedTable, Side
from prefect_ombudsman.validation.values import numbers_match

SAMPLE_LIMIT = 5


@dataclass
class Outcome:
    """A validator's answer; the runner adds name, timing, SQL and severity rules."""

    status: Status
    details: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    severity: Severity | None = None
    table: str | None = None


def passed(
    details: dict[str, Any], message: str | None = None, table: str | None = None
) -> Outcome:
    return Outcome(Status.PASS, details, message, table=table)


def failed(
    details: dict[str, Any],
    message: str,
    severity: Severity | None = None,
    table: str | None = None,
) -> Outcome:
    return Outcome(Status.FAIL, details, message, severity, table=table)


def skipped(reason: str, table: str | None = None) -> Outcome:
    return Outcome(Status.SKIPPED, {"reason": reason}, reason, table=table)


def verdict(
    ok: bool,
    details: dict[str, Any],
    fail_message: str,
    pass_message: str | None = None,
    table: str | None = None,
) -> Outcome:
    return (
        passed(details, pass_message, table) if ok else failed(details, fail_message, table=table)
    )


@dataclass
class TablePair:
    """A logical table and its physical tables on both sides."""

    logical: str
    source: ResolvedTable
    target: ResolvedTable

    def side(self, label: str) -> ResolvedTable:
        return self.source if label == "source" else self.target

    def both(self) -> tuple[ResolvedTable, ResolvedTable]:
        return self.source, self.target

    @property
    def names(self) -> dict[str, str]:
        return {"source_table": self.source.display, "target_table": self.target.display}


@dataclass
class RunContext:
    """Shared by every step of one pipeline run."""

    pipeline: PipelineSpec
    source: Side
    target: Side
    schema_mappings: Mapping[str, str] = field(default_factory=dict)
    check_cancelled: Callable[[], None] = lambda: None

    def side(self, label: str) -> Side:
        return self.source if label == "source" else self.target

    def table_names(
        self, logical: str | None, source: str | None = None, target: str | None = None
    ) -> tuple[str, str, str]:
        """(logical, source name, target name): mapping entry, else the name on both sides, else the pipeline's tables."""
        src = tgt = None
        if logical:
            entry = self.pipeline.mapping.get(logical)
            if entry is None:
                for key, value in self.pipeline.mapping.items():
                    if key.lower() == logical.lower():
                        entry = value
                        break
            if entry is not None:
                src, tgt = entry.sql, entry.snow
                if src and not tgt:
                    tgt = self.map_schema(src)
                elif tgt and not src:
                    src = tgt
            else:
                src, tgt = logical, self.map_schema(logical)
        else:
            src = self.pipeline.source.qualified() if self.pipeline.source else None
            tgt = self.pipeline.target.qualified() if self.pipeline.target else None
            if src and not tgt:
                tgt = self.map_schema(src)
            elif tgt and not src:
                src = tgt
        src, tgt = source or src, target or tgt
        if not src or not tgt:
            raise ConfigurationError(
                "the step names no table: give config.table (a mapping key or [schema.]table) or source/target tables in the pipeline"
            )
        return logical or src, src, tgt

    def map_schema(self, qualified: str) -> str:
        """The target name of a source name through the project's schema_mappings."""
        return map_schema(qualified, self.schema_mappings)


@dataclass
class StepContext:
    """Handed to a validator with its typed config."""

    run: RunContext
    step: StepSpec
    tolerance: Tolerance
    tolerance_given: bool = False
    sql: dict[str, list[str]] = field(default_factory=lambda: {"source": [], "target": []})
    tables_used: list[str] = field(default_factory=list)

    @property
    def pipeline(self) -> PipelineSpec:
        return self.run.pipeline

    def side(self, label: str) -> Side:
        return self.run.side(label)

    def recorder(self, label: str) -> list[str]:
        return self.sql[label]

    def pair(
        self, logical: str | None = None, *, source: str | None = None, target: str | None = None
    ) -> TablePair:
        """Resolve a logical table (or the pipeline's tables) on both sides."""
        name, src, tgt = self.run.table_names(logical, source, target)
        pair = TablePair(name, self.run.source.resolve(src), self.run.target.resolve(tgt))
        if name not in self.tables_used:
            self.tables_used.append(name)
        return pair

    def meta(self, logical: str | None) -> dict[str, Any]:
        return self.pipeline.table_metadata(logical)

    def match(
        self, a: Any, b: Any, *, scale: int | None = None, tolerance: Tolerance | None = None
    ) -> bool:
        return numbers_match(a, b, tolerance or self.tolerance, scale=scale)

    def aggregates(self, table: ResolvedTable, requests: dict[str, Any]) -> dict[str, Any]:
        return table.aggregates(requests, self.recorder(table.side.label))

    def run_sql(
        self,
        label: str,
        stmt: Any,
        *,
        tables: tuple[ResolvedTable, ...] = (),
        pull: bool = False,
        max_rows: int | None = None,
    ) -> list[Any]:
        self.run.check_cancelled()
        return self.side(label).run(
            stmt, self.recorder(label), tables=tables, pull=pull, max_rows=max_rows
        )


def sample_rows(
    ctx: StepContext, label: str, table: ResolvedTable, condition: Any, limit: int = SAMPLE_LIMIT
) -> list[dict[str, Any]]:
    """A few full rows of `table` matching `condition` (failure evidence only)."""
    stmt = select(table.sa).where(condition).limit(limit)
    rows = ctx.run_sql(label, stmt, tables=(table,), pull=True, max_rows=limit)
    return [jsonable(dict(row._mapping)) for row in rows]
