"""One side of a validation (source or target): its engine, its tables, and shared scans.

A table is resolved once per run through the catalog (case-insensitively, exact case
preferred), so a name that does not exist — including one holding quotes or `;` — is an error
before any SQL touches it. Aggregates that steps announce in the planning pass are computed
together: the first step that needs a table's aggregates runs one SELECT for all of them.
"""

from __future__ import annotations

import concurrent.futures as cf
import difflib
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import column, event, select, table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Executable

from prefect_ombudsman.dialects.base import dialect_for, driver_cause
from prefect_ombudsman.errors import ConfigurationError, OperationCancelled, TransientError
from prefect_ombudsman.validation.sql import ColumnInfo, SqlPieces, TableFacts


class TableNotFoundError(ConfigurationError):
    """A configured table does not exist on a side."""


class ColumnNotFoundError(ConfigurationError):
    """A configured column does not exist in its table."""


Recorder = list[str]
_CURSOR_KEY = "ombudsman_validation_cursor"
_TRACKED: weakref.WeakSet[Engine] = weakref.WeakSet()
_TRACKED_LOCK = threading.Lock()


def _track_cursors(engine: Engine) -> None:
    """Remember the cursor a validation connection executes on (pyodbc and Snowflake cancel a cursor)."""
    with _TRACKED_LOCK:
        if engine in _TRACKED:
            return
        _TRACKED.add(engine)

    @event.listens_for(engine, "before_cursor_execute")
    def _remember(conn: Connection, cursor: Any, *_: Any) -> None:
        if _CURSOR_KEY in conn.info:
            conn.info[_CURSOR_KEY] = cursor


@dataclass
class SideStats:
    queries: int = 0
    rows_pulled: int = 0
    scans: Counter[str] = field(default_factory=Counter)
    query_ms: float = 0.0


class Side:
    """The source or the target database of one pipeline run."""

    def __init__(
        self,
        label: str,
        engine: Engine,
        *,
        default_schema: str | None = None,
        name: str | None = None,
    ) -> None:
        self.label = label
        self.engine = engine
        self.dialect = dialect_for(engine)
        self.pieces = SqlPieces(self.dialect)
        self.name = name or label
        self._default_schema = default_schema
        self._tables: dict[tuple[str | None, str], ResolvedTable] = {}
        self._lock = threading.Lock()
        self.stats = SideStats()
        self._stats_lock = threading.Lock()
        self._active: dict[int, Connection] = {}
        self.cancelled = False
        _track_cursors(engine)

    @property
    def has_schemas(self) -> bool:
        return self.dialect.has_schemas

    @property
    def default_schema(self) -> str | None:
        if not self.has_schemas:
            return None
        if self._default_schema:
            return self._default_schema
        name = getattr(self.engine.dialect, "default_schema_name", None)
        return name or self.dialect.default_schema

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection, registered so `interrupt()` can stop what it runs."""
        if self.cancelled:
            raise OperationCancelled(f"{self.label}: validation cancelled")
        try:
            with self.engine.connect() as conn:
                dbapi = conn.connection.dbapi_connection
                conn.info[_CURSOR_KEY] = None
                with self._lock:
                    self._active[id(conn)] = conn
                try:
                    self.pieces.prepare_connection(conn)
                    yield conn
                except Exception as exc:
                    if not self.cancelled and self.dialect.is_transient(exc):
                        self._discard(conn, exc)
                    raise
                finally:
                    with self._lock:
                        self._active.pop(id(conn), None)
                    conn.info.pop(_CURSOR_KEY, None)
                    if self.cancelled and dbapi is not None:
                        conn.invalidate()  # an interrupted connection is not handed to the next user
        except (TransientError, OperationCancelled):
            raise
        except Exception as exc:
            if self.cancelled or not self.dialect.is_transient(exc):
                raise
            raise self.transient_error(exc) from exc

    def _discard(self, conn: Connection, exc: BaseException) -> None:
        """A transient failure: this connection is not reused; a lost server empties the pool."""
        lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
        try:
            if not conn.invalidated:
                conn.invalidate(exc)
        except Exception:  # already gone with the server
            pass
        if lost:
            self.engine.dispose()  # every pooled connection went with the server

    def transient_error(self, exc: BaseException) -> TransientError:
        """What the batch runner retries: the database (kind, host, database) and the driver's cause."""
        return TransientError(f"{self.label} database {self.name}: {driver_cause(exc)}")

    def interrupt(self) -> None:
        """Stop every statement this side runs now and refuse new ones (a cancelled job; any thread)."""
        self.cancelled = True
        with self._lock:
            active = list(self._active.values())
        for conn in active:
            try:
                self.pieces.interrupt(conn.connection.dbapi_connection, conn.info.get(_CURSOR_KEY))
            except Exception:  # a failed interrupt must not hide the cancel
                pass

    def tables(self) -> list[ResolvedTable]:
        """The tables resolved so far in this run."""
        with self._lock:
            return list(self._tables.values())

    def split(self, qualified: str) -> tuple[str | None, str]:
        """'db.schema.table' / 'schema.table' / 'table' -> (schema, table) for this side."""
        parts = [p.strip() for p in qualified.strip().split(".")]
        if any(not p for p in parts) or len(parts) > 3:
            raise TableNotFoundError(
                f"{self.label}: {qualified!r} is not a table name (expected [schema.]table)"
            )
        name = parts[-1]
        schema = parts[-2] if len(parts) >= 2 else None
        if not self.has_schemas:
            return None, name
        return schema or self.default_schema, name

    def resolve(self, qualified: str) -> ResolvedTable:
        """The table behind a configured name, with its columns; an error names near matches."""
        schema, name = self.split(qualified)
        key = (schema.lower() if schema else None, name.lower())
        with self._lock:
            found = self._tables.get(key)
        if found is not None:
            return found
        with self.connect() as conn:
            described = self.pieces.columns(conn, schema, name)
            if described is None:
                try:
                    names = self.pieces.table_names(conn, schema)
                except Exception as exc:
                    if self.dialect.is_transient(exc):
                        raise
                    names = []
        if described is None:
            close = difflib.get_close_matches(
                name.lower(), [n.lower() for n in names], n=3, cutoff=0.6
            )
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            where = f"schema {schema!r} of " if schema else ""
            raise TableNotFoundError(
                f"table {qualified!r} not found in {where}the {self.label} database ({self.name}){hint}"
            )
        real_schema, real_name, columns = described
        resolved = ResolvedTable(
            self, real_schema if self.has_schemas else None, real_name, columns, qualified
        )
        with self._lock:
            return self._tables.setdefault(key, resolved)

    def run(
        self,
        stmt: Executable,
        recorder: Recorder | None,
        *,
        tables: tuple[ResolvedTable, ...] = (),
        pull: bool = False,
        max_rows: int | None = None,
    ) -> list[Any]:
        """Execute one statement, record its SQL, count scans and pulled rows."""
        sql = self.render(stmt)
        if recorder is not None:
            recorder.append(sql)
        started = time.perf_counter()
        with self.connect() as conn:
            result = conn.execute(stmt)
            rows = result.fetchmany(max_rows) if max_rows is not None else result.fetchall()
        with self._stats_lock:
            self.stats.queries += 1
            self.stats.query_ms += (time.perf_counter() - started) * 1000
            for t in tables:
                self.stats.scans[t.display] += 1
            if pull:
                self.stats.rows_pulled += len(rows)
        return list(rows)

    def stream(
        self,
        stmt: Executable,
        recorder: Recorder | None,
        *,
        tables: tuple[ResolvedTable, ...] = (),
        chunk: int = 10_000,
    ) -> Iterator[list[Any]]:
        """Rows in chunks (bounded memory) for the validators that must compare values."""
        sql = self.render(stmt)
        if recorder is not None:
            recorder.append(sql)
        with self._stats_lock:
            self.stats.queries += 1
            for t in tables:
                self.stats.scans[t.display] += 1
        with self.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
            while True:
                rows = result.fetchmany(chunk)
                if not rows:
                    break
                with self._stats_lock:
                    self.stats.rows_pulled += len(rows)
                yield list(rows)

    def render(self, stmt: Any) -> str:
        try:
            return str(stmt.compile(dialect=self.engine.dialect))
        except Exception as exc:  # rendering is for the record only
            return f"<could not render SQL: {exc}>"


class Agg:
    """One aggregate of a table scan.

    `build()` returns its SQL expression; with `needs` (aggregates of a first, cheap probe, e.g.
    a key's MIN/MAX) it is `build(values)` and gets their values. `alone` runs it in a SELECT of
    its own: a COUNT(DISTINCT) would make PostgreSQL's whole shared scan single-threaded.
    """

    def __init__(
        self,
        build: Callable[..., ColumnElement[Any]] | None = None,
        *,
        needs: dict[str, Agg] | None = None,
        alone: bool | Callable[[dict[str, Any]], bool] = False,
        parts: dict[str, Agg] | None = None,
        derive: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if (build is None) == (derive is None):
            raise ValueError(
                "an aggregate has either SQL (build) or is derived from parts (derive)"
            )
        self.build = build
        self.needs = needs or {}
        self._alone = alone
        self.parts = parts or {}
        self.derive = derive

    def expression(self, values: dict[str, Any]) -> ColumnElement[Any]:
        assert self.build is not None
        return self.build({k: values[k] for k in self.needs}) if self.needs else self.build()

    def alone(self, values: dict[str, Any]) -> bool:
        if callable(self._alone):
            return self._alone({k: values[k] for k in self.needs})
        return self._alone


class ResolvedTable:
    """A table found on one side: real schema/name, its columns, and its shared aggregate scan."""

    def __init__(
        self, side: Side, schema: str | None, name: str, columns: list[ColumnInfo], requested: str
    ) -> None:
        self.side = side
        self.schema = schema
        self.name = name
        self.columns = columns
        self.requested = requested
        self.sa = table(name, *[column(c.name) for c in columns], schema=schema)
        self._by_lower = {c.name.lower(): c for c in columns}
        self._wanted: dict[str, Agg] = {}
        self._values: dict[str, Any] = {}
        self._fused_sql: str | None = None
        self._lock = threading.Lock()
        self._facts: TableFacts | None = None
        self._facts_lock = threading.Lock()

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def info(self, name: str) -> ColumnInfo:
        """A column by name (case-insensitive); the error lists near matches."""
        found = self._by_lower.get(str(name).lower())
        if found is None:
            close = difflib.get_close_matches(
                str(name).lower(), list(self._by_lower), n=3, cutoff=0.6
            )
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ColumnNotFoundError(
                f"column {name!r} not found in {self.side.label} table {self.display}{hint}"
            )
        return found

    def col(self, name: str) -> ColumnElement[Any]:
        return self.sa.c[self.info(name).name]

    def has(self, name: str) -> bool:
        return str(name).lower() in self._by_lower

    @property
    def facts(self) -> TableFacts:
        """The constraints the database enforces on this table (read once from its catalog; a
        failed catalog read proves nothing, so every aggregate is then computed)."""
        with self._facts_lock:
            if self._facts is None and not self.side.pieces.reads_facts:
                self._facts = TableFacts()
            if self._facts is None:
                try:
                    with self.side.connect() as conn:
                        self._facts = self.side.pieces.enforced_facts(conn, self.schema, self.name)
                except (OperationCancelled, TransientError):
                    raise
                except Exception:
                    self._facts = TableFacts()
            return self._facts

    # --- shared aggregate scan
    def prefetch(self) -> None:
        """Run the shared scan for everything announced so far (the runner starts these in parallel)."""
        with self._lock:
            wanted = {k: v for k, v in self._wanted.items() if k not in self._values}
            if not wanted:
                return
            try:
                values, sql = self._scan(wanted)
            except Exception:  # the steps compute their own aggregates and report the error
                return
            self._values.update(values)
            self._fused_sql = sql
            self._wanted = {k: v for k, v in self._wanted.items() if k not in values}

    def want(self, requests: dict[str, Agg]) -> None:
        """Announce aggregates in the planning pass (they join this table's shared scan)."""
        with self._lock:
            for key, agg in requests.items():
                if key not in self._values:
                    self._wanted.setdefault(key, agg)

    def aggregates(self, requests: dict[str, Agg], recorder: Recorder | None) -> dict[str, Any]:
        """Values of the requested aggregates; computes every announced one in the same SELECT."""
        with self._lock:
            missing = [k for k in requests if k not in self._values]
            if missing:
                batch = dict(self._wanted)
                for key in missing:
                    batch.setdefault(key, requests[key])
                batch = {k: b for k, b in batch.items() if k not in self._values}
                try:
                    values, sql = self._scan(batch)
                except Exception:
                    if len(batch) == len(missing):
                        raise
                    # an announced aggregate broke the shared scan: compute only what this step needs
                    values, sql = self._scan({k: requests[k] for k in missing})
                else:
                    self._fused_sql = sql
                    self._wanted = {k: v for k, v in self._wanted.items() if k not in values}
                self._values.update(values)
                if recorder is not None and sql:
                    recorder.append(sql)
            elif recorder is not None and self._fused_sql:
                recorder.append(self._fused_sql)
            return {k: self._values[k] for k in requests}

    def _scan(self, aggs: dict[str, Agg]) -> tuple[dict[str, Any], str]:
        """Probe (what `needs` asks for), then one SELECT for every shared aggregate, then one per
        `alone` aggregate. Called with the lock held; returns the values and the SQL that ran."""
        values: dict[str, Any] = {}
        statements: list[str] = []
        derived: dict[str, Agg] = {}  # parts before the aggregates derived from them
        plain: dict[str, Agg] = {}

        def expand(key: str, agg: Agg) -> None:
            if key in self._values or key in derived or key in plain:
                return
            if agg.derive is None:
                plain[key] = agg
                return
            for part_key, part in agg.parts.items():
                expand(part_key, part)
            derived[key] = agg

        for key, agg in aggs.items():
            expand(key, agg)
        aggs = plain
        probe: dict[str, Agg] = {}
        for agg in aggs.values():
            for key, need in agg.needs.items():
                if key not in self._values:
                    probe[key] = need
        if probe:
            statements.append(self._select(probe, values))
        known = {**self._values, **values}
        rest = {k: a for k, a in aggs.items() if k not in values}
        shared = {k: a for k, a in rest.items() if not a.alone(known)}
        groups = [shared] if shared else []
        groups += [{k: a} for k, a in rest.items() if k not in shared]
        if len(groups) == 1:
            statements.append(self._select(groups[0], values, known))
        elif groups:
            # the separate SELECTs run at the same time as the shared one, on their own connections
            with cf.ThreadPoolExecutor(len(groups), thread_name_prefix="ombudsman-scan") as pool:
                outs: list[dict[str, Any]] = [{} for _ in groups]
                futures = [
                    pool.submit(self._select, g, out, known)
                    for g, out in zip(groups, outs, strict=True)
                ]
                statements += [f.result() for f in futures]
            for out in outs:
                values.update(out)
        known = {**self._values, **values}
        for key, agg in derived.items():
            assert agg.derive is not None
            values[key] = known[key] = agg.derive({k: known[k] for k in agg.parts})
        return values, ";\n".join(statements)

    def _select(
        self, aggs: dict[str, Agg], into: dict[str, Any], known: dict[str, Any] | None = None
    ) -> str:
        """One SELECT of `aggs` over this table; values go into `into`, returns its SQL."""
        keys = list(aggs)
        known = {**(known or {}), **into}
        stmt = select(
            *[aggs[k].expression(known).label(f"a{i}") for i, k in enumerate(keys)]
        ).select_from(self.sa)
        sql = self.side.render(stmt)
        rows = self.side.run(stmt, None, tables=(self,))
        row = rows[0] if rows else [None] * len(keys)
        into.update({k: row[i] for i, k in enumerate(keys)})
        return sql
