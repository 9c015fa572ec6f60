"""Catalog extraction: the SPEC §9 catalog of one database in one session, one query per kind.

The SQL lives in the dialects (`catalog_sql`: one statement per kind, or a tuple of
alternatives tried in order). Every statement returns rows of one shape per kind, whatever
the database:

- `database`: database_name
- `schemas`: schema_name (user schemas only)
- `tables`: table_schema, table_name, table_type (TABLE|VIEW), row_count (statistics or null),
  optional selectable (false when the user may not read the table)
- `columns`: table_schema, table_name, column_name, ordinal_position, data_type, max_length,
  numeric_precision, numeric_scale, is_nullable, column_default
- `primary_keys`: table_schema, table_name, constraint_name, column_name, key_position
- `foreign_keys`: the same plus referred_schema, referred_table, referred_column, and an
  optional constraint_id where the database names no constraint

A `columns` row may carry `pk_position` (with `primary_keys: None` in `catalog_sql`) when the
database lists primary-key positions with the columns. Statements filter on `:schemas` (an
expanding parameter). A dialect without `catalog_sql`
falls back to SQLAlchemy's `get_multi_*` reflection, one call per kind and schema.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import bindparam, inspect, literal, select, table, text, union_all
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.reflection import ObjectKind
from sqlalchemy.sql.elements import quoted_name

from prefect_ombudsman.dialects.base import Dialect, dialect_for
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.metadata.catalog import (
    Catalog,
    CatalogProblem,
    CatalogTable,
    ProblemKind,
    TableType,
)
from prefect_ombudsman.redaction import scrub

log = logging.getLogger("prefect_ombudsman.metadata")

KINDS = ("database", "schemas", "tables", "columns", "primary_keys", "foreign_keys")
COUNT_CHUNK = 50
_FALLBACK_SYSTEM_SCHEMAS = {"information_schema", "sys", "pg_catalog", "pg_toast"}
_TYPE_WITH_PARAMS = re.compile(r"^\s*(?P<base>[^(]+?)\s*\((?P<params>[^)]*)\)\s*(?P<rest>.*)$")
_CHAR_HINTS = ("CHAR", "TEXT", "STRING", "BINARY", "VARBINARY", "CLOB", "BLOB")

Key = tuple[str, str]
_TABLES = TypeAdapter(list[CatalogTable])


# ----------------------------------------------------------------------------- running the catalog queries


def catalog_statements(dialect: Dialect, kind: str) -> list[Any] | None:
    """The executable statements of one kind (alternatives in order), or None without catalog SQL."""
    sql_by_kind = dialect.catalog_sql
    if not sql_by_kind or kind not in sql_by_kind:
        return None
    entry = sql_by_kind[kind]
    if entry is None:  # served by another kind's query (SQLite: primary keys come with the columns)
        return []
    statements = []
    for sql in entry if isinstance(entry, tuple) else (entry,):
        stmt = text(sql)
        if ":schemas" in sql:
            stmt = stmt.bindparams(bindparam("schemas", expanding=True))
        statements.append(stmt)
    return statements


@dataclass
class CatalogReader:
    """Runs one dialect's catalog queries on one connection and normalises the rows."""

    conn: Connection
    dialect: Dialect
    queries: int = 0
    fallbacks: list[str] = field(default_factory=list)

    def rows(self, kind: str, schemas: list[str] | None = None) -> list[dict[str, Any]]:
        statements = catalog_statements(self.dialect, kind)
        if statements is None:
            return self._reflected(kind, schemas or [])
        if not statements:
            return []
        aliases = self.dialect.catalog_row_aliases.get(kind, {})
        params = {"schemas": list(schemas or [])}
        last_error: Exception | None = None
        for i, stmt in enumerate(statements):
            try:
                self.queries += 1
                result = self.conn.execute(stmt, params)
                keys = [str(k).lower() for k in result.keys()]
                raw = [dict(zip(keys, row, strict=True)) for row in result.fetchall()]
            except Exception as exc:  # an alternative the database lacks: try the next one
                last_error = exc
                self._rollback()
                if i + 1 < len(statements):
                    self.fallbacks.append(
                        f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    )
                    log.debug(
                        "catalog %s: alternative %d failed (%s), trying the next", kind, i + 1, exc
                    )
                continue
            return [_normalise_keys(row, aliases) for row in raw] if aliases else raw
        assert last_error is not None
        raise last_error

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception as exc:  # the session may already be gone; the caller's error says why
            log.debug("rollback after a failed catalog query: %s", exc)

    # --- get_multi_* fallback for databases without catalog SQL (correct there, and one call per schema)

    def _reflected(self, kind: str, schemas: list[str]) -> list[dict[str, Any]]:
        insp = inspect(self.conn)
        self.queries += max(1, len(schemas))
        if kind == "database":
            return [{"database_name": self.conn.engine.url.database}]
        if kind == "schemas":
            names = insp.get_schema_names()
            return [{"schema_name": n} for n in names if n.lower() not in _FALLBACK_SYSTEM_SCHEMAS]
        rows: list[dict[str, Any]] = []
        for schema in schemas:
            if kind == "tables":
                rows += [
                    {"table_schema": schema, "table_name": n, "table_type": "TABLE"}
                    for n in insp.get_table_names(schema)
                ]
                rows += [
                    {"table_schema": schema, "table_name": n, "table_type": "VIEW"}
                    for n in insp.get_view_names(schema)
                ]
            elif kind == "columns":
                for (_, tname), cols in insp.get_multi_columns(
                    schema=schema, kind=ObjectKind.ANY
                ).items():
                    for i, col in enumerate(cols, start=1):
                        rows.append(
                            {
                                "table_schema": schema,
                                "table_name": tname,
                                "column_name": col["name"],
                                "ordinal_position": i,
                                "data_type": _type_text(col["type"], self.conn),
                                "is_nullable": col.get("nullable", True),
                                "column_default": col.get("default"),
                            }
                        )
            elif kind == "primary_keys":
                for (_, tname), pk in insp.get_multi_pk_constraint(schema=schema).items():
                    for i, name in enumerate(pk.get("constrained_columns") or [], start=1):
                        rows.append(
                            {
                                "table_schema": schema,
                                "table_name": tname,
                                "constraint_name": pk.get("name"),
                                "column_name": name,
                                "key_position": i,
                            }
                        )
            elif kind == "foreign_keys":
                for (_, tname), fks in insp.get_multi_foreign_keys(schema=schema).items():
                    for n, fk in enumerate(fks):
                        pairs = zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
                        for i, (fk_col, ref) in enumerate(pairs, start=1):
                            rows.append(
                                {
                                    "table_schema": schema,
                                    "table_name": tname,
                                    "constraint_name": fk.get("name"),
                                    "constraint_id": n,
                                    "column_name": fk_col,
                                    "key_position": i,
                                    "referred_schema": fk.get("referred_schema") or schema,
                                    "referred_table": fk["referred_table"],
                                    "referred_column": ref,
                                }
                            )
        return rows


def _type_text(sa_type: Any, conn: Connection) -> str | None:
    try:
        return sa_type.compile(dialect=conn.dialect)
    except Exception:
        return str(sa_type) or None


def _normalise_keys(row: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    out = dict(row)
    for alias, canonical in aliases.items():
        if canonical not in out and alias in out:
            out[canonical] = out[alias]
    return out


# ----------------------------------------------------------------------------- value normalisation


def split_type(data_type: Any) -> tuple[str | None, int | None, int | None, int | None]:
    """`'varchar(20)'` -> `('VARCHAR', 20, None, None)`; `'numeric(12,2)'` -> `('NUMERIC', None, 12, 2)`."""
    if data_type is None:
        return None, None, None, None
    return _split_type(str(data_type))


@lru_cache(maxsize=4096)
def _split_type(text_type: str) -> tuple[str | None, int | None, int | None, int | None]:
    text_type = text_type.strip()
    if not text_type:
        return None, None, None, None
    match = _TYPE_WITH_PARAMS.match(text_type)
    if not match:
        return text_type.upper(), None, None, None
    base = " ".join(p for p in (match["base"], match["rest"]) if p).upper()
    params = [p.strip() for p in match["params"].split(",") if p.strip()]
    if not params:
        return base, None, None, None
    if any(hint in base for hint in _CHAR_HINTS):
        first = params[0].upper()
        return base, -1 if first == "MAX" else _int(first), None, None
    precision = _int(params[0])
    scale = _int(params[1]) if len(params) > 1 else (0 if precision is not None else None)
    if any(word in base for word in ("DEC", "NUMERIC", "NUMBER")):
        return base, None, precision, scale
    return base, None, None, None  # TIMESTAMP(3), FLOAT(53) ...: the base type is what compares


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def _bool(value: Any, default: bool = True) -> bool:
    if value is True or value is False:
        return value
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().upper() in ("YES", "Y", "TRUE", "T", "1")
    return bool(value)


def _column(row: dict[str, Any], ordinal: int, primary_key: bool) -> dict[str, Any]:
    """The fields of a `CatalogColumn` from a normalised catalog row (validated with its table)."""
    base, length, precision, scale = split_type(row.get("data_type"))
    default = row.get("column_default")
    max_length = row.get("max_length")
    numeric_precision = row.get("numeric_precision")
    numeric_scale = row.get("numeric_scale")
    return {
        "name": str(row["column_name"]),
        "ordinal": ordinal,
        "primary_key": primary_key,
        "data_type": base,
        "max_length": length if max_length is None else _int(max_length),
        "precision": precision if numeric_precision is None else _int(numeric_precision),
        "scale": scale if numeric_scale is None else _int(numeric_scale),
        "nullable": _bool(row.get("is_nullable")),
        "default": None if default is None else str(default),
    }


# ----------------------------------------------------------------------------- scope


def resolve_schema(requested: str, available: list[str], where: str) -> str:
    """The schema as the database spells it: exact match, then case-insensitive (unique)."""
    if requested in available:
        return requested
    folded = [s for s in available if s.casefold() == requested.casefold()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(sorted(available)[:20]) or "none"
    raise ConfigurationError(f"schema {requested!r} not found in {where}; its schemas: {shown}")


def _resolve_tables(
    requested: Iterable[str], tables: Mapping[Key, Any]
) -> tuple[list[Key], list[str]]:
    """Match requested names (`table` or `schema.table`) to catalog keys; also return the missing ones."""
    by_name: dict[str, list[Key]] = defaultdict(list)
    by_folded: dict[str, list[Key]] = defaultdict(list)
    for key in tables:
        by_name[key[1]].append(key)
        by_folded[key[1].casefold()].append(key)
    found: list[Key] = []
    missing: list[str] = []
    for name in requested:
        candidates = by_name.get(name) or by_folded.get(name.casefold()) or []
        if not candidates and "." in name:
            schema, _, bare = name.rpartition(".")
            candidates = [
                k
                for k in by_name.get(bare) or by_folded.get(bare.casefold()) or []
                if k[0].casefold() == schema.casefold()
            ]
            exact = [k for k in candidates if k[0] == schema]
            candidates = exact or candidates
        if not candidates:
            missing.append(name)
        for key in candidates:
            if key not in found:
                found.append(key)
    return found, missing


# ----------------------------------------------------------------------------- the extraction


def extract_catalog(
    engine: Engine,
    *,
    connection: str,
    schema: str | None = None,
    table_names: list[str] | None = None,
    exact_counts: bool = False,
    check_cancelled: Callable[[], None] | None = None,
    server: str | None = None,
    dialect: Dialect | None = None,
    close_session: bool | None = None,
) -> Catalog:
    """Extract the catalog of `schema` (or of all user schemas), optionally only `table_names`.

    Runs in one session: one query per catalog kind, plus `COUNT(*)` batches when `exact_counts`.
    Network sessions are closed afterwards (not returned to the pool), so a per-server slot
    around this call bounds the sessions really open on that server.
    """
    started = time.perf_counter()
    check = check_cancelled or (lambda: None)
    dialect = dialect or dialect_for(engine)
    if close_session is None:
        close_session = not dialect.embedded
    with engine.connect() as conn:
        try:
            reader = CatalogReader(conn, dialect)
            catalog = _extract(reader, connection, schema, table_names, exact_counts, check)
            conn.rollback()
        finally:
            if close_session:
                conn.invalidate()  # close the session for real instead of pooling it
    catalog.server = server
    catalog.duration_ms = int((time.perf_counter() - started) * 1000)
    return catalog


def _extract(
    reader: CatalogReader,
    connection: str,
    schema: str | None,
    table_names: list[str] | None,
    exact_counts: bool,
    check: Callable[[], None],
) -> Catalog:
    database_rows = reader.rows("database")
    database = database_rows[0].get("database_name") if database_rows else None
    available = sorted(
        {str(r["schema_name"]) for r in reader.rows("schemas") if r.get("schema_name") is not None}
    )
    where = f"connection {connection!r}" + (f" (database {database})" if database else "")
    schemas = [resolve_schema(schema, available, where)] if schema else available
    catalog = Catalog(
        connection=connection,
        dialect=reader.dialect.name,
        database=None if database is None else str(database),
        extracted_at=datetime.now(UTC),
        scope="tables" if table_names is not None else ("schema" if schema else "all"),
        schemas=schemas,
        table_names=list(table_names) if table_names is not None else None,
        exact_counts=exact_counts,
    )
    if not schemas:
        return catalog
    wanted = set(schemas)
    check()

    # tables are assembled as plain dicts and validated in one pass at the end: one pydantic
    # call for the whole catalog instead of one per column (10,000 columns: ~25 ms saved)
    tables: dict[Key, dict[str, Any]] = {}
    selectable: dict[Key, bool] = {}
    for row in reader.rows("tables", schemas):
        key = (str(row["table_schema"]), str(row["table_name"]))
        if key[0] not in wanted:
            continue
        kind: TableType = "VIEW" if "VIEW" in str(row.get("table_type") or "").upper() else "TABLE"
        count = _int(row.get("row_count")) if kind == "TABLE" else None
        tables[key] = {"schema": key[0], "name": key[1], "type": kind, "row_count": count}
        if row.get("selectable") is not None:
            selectable[key] = _bool(row["selectable"])
    if table_names is not None:
        keys, missing = _resolve_tables(table_names, tables)
        for name in missing:
            catalog.problems.append(
                CatalogProblem(
                    kind="missing_table",
                    table=name,
                    message=f"table {name!r} not found in {', '.join(schemas)} of {where}",
                )
            )
        selected = {k: tables[k] for k in keys}
    else:
        selected = tables
    check()

    column_rows: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    key_rows: list[dict[str, Any]] = []
    for row in reader.rows("columns", schemas):
        key = (str(row["table_schema"]), str(row["table_name"]))
        if key in selected:
            column_rows[key].append(row)
        if row.get("pk_position"):  # a dialect whose columns query carries the primary key
            key_rows.append({**row, "key_position": row["pk_position"]})
    check()
    primary_keys = _group_keys(key_rows + reader.rows("primary_keys", schemas), wanted)
    check()
    foreign_keys = _group_keys(reader.rows("foreign_keys", schemas), wanted)
    check()

    pk_columns: dict[Key, list[str]] = {}
    for (tkey, _), rows in primary_keys.items():
        pk_columns.setdefault(tkey, [str(r["column_name"]) for r in rows])
    for key, tbl in selected.items():
        rows = sorted(column_rows.get(key, []), key=lambda r: _int(r.get("ordinal_position")) or 0)
        pk = pk_columns.get(key, [])
        in_pk = set(pk)
        # ordinals dense 1..n: dropped columns leave gaps in some catalogs
        tbl["columns"] = [
            _column(r, i, str(r["column_name"]) in in_pk) for i, r in enumerate(rows, start=1)
        ]
        tbl["primary_key"] = list(pk)
        tbl["foreign_keys"] = []
    for (tkey, _constraint), rows in foreign_keys.items():
        owner = selected.get(tkey)
        if owner is None:
            continue
        first = rows[0]
        referred_schema = str(first.get("referred_schema") or tkey[0])
        referred_table = str(first["referred_table"])
        referred: list[Any] = [r.get("referred_column") for r in rows]
        if any(c is None for c in referred):  # SQLite: the referred table's primary key
            referred = list(pk_columns.get((referred_schema, referred_table), []))
        fk_name = first.get("constraint_name")
        owner["foreign_keys"].append(
            {
                "name": None if fk_name is None else str(fk_name),
                "columns": [str(r["column_name"]) for r in rows],
                "referred_schema": referred_schema,
                "referred_table": referred_table,
                "referred_columns": [str(c) for c in referred],
            }
        )
    for tbl in selected.values():
        tbl["foreign_keys"].sort(key=lambda fk: (fk["referred_table"], fk["columns"]))
    built = dict(
        zip(
            sorted(selected),
            _TABLES.validate_python([selected[k] for k in sorted(selected)]),
            strict=True,
        )
    )

    for key in selected:
        if selectable.get(key) is False:
            catalog.problems.append(
                CatalogProblem(
                    kind="insufficient_privileges",
                    schema=key[0],
                    table=key[1],
                    message=f"no SELECT privilege on {key[0]}.{key[1]}: its structure is listed, its data cannot be read",
                )
            )
    if exact_counts:
        countable = [
            t for k, t in built.items() if t.type == "TABLE" and selectable.get(k) is not False
        ]
        _count_rows(reader, countable, catalog.problems, check)
    catalog.tables = list(built.values())
    for note in reader.fallbacks:
        log.debug("%s: catalog alternative used after %s", connection, note)
    return catalog


def _group_keys(
    rows: list[dict[str, Any]], wanted: set[str]
) -> dict[tuple[Key, Any], list[dict[str, Any]]]:
    """Rows of key constraints grouped per (table, constraint), columns in key order."""
    groups: dict[tuple[Key, Any], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        tkey = (str(row["table_schema"]), str(row["table_name"]))
        if tkey[0] not in wanted:
            continue
        constraint = row.get("constraint_id")
        if constraint is None:
            constraint = row.get("constraint_name")
        groups[(tkey, constraint)].append(row)
    for group in groups.values():
        group.sort(key=lambda r: _int(r.get("key_position")) or 0)
    return groups


def _count_rows(
    reader: CatalogReader,
    tables: list[CatalogTable],
    problems: list[CatalogProblem],
    check: Callable[[], None],
) -> None:
    """Exact `COUNT(*)` per table, batched with UNION ALL; a failing batch is retried per table."""
    for start in range(0, len(tables), COUNT_CHUNK):
        check()
        chunk = tables[start : start + COUNT_CHUNK]
        selects = [
            select(literal(i).label("i"), reader.dialect.catalog_count().label("n")).select_from(
                table(
                    quoted_name(t.name, True),
                    schema=quoted_name(t.schema_name, True) if t.schema_name else None,
                )
            )
            for i, t in enumerate(chunk)
        ]
        try:
            reader.queries += 1
            stmt = selects[0] if len(selects) == 1 else union_all(*selects)
            for i, n in reader.conn.execute(stmt).all():
                chunk[int(i)].row_count, chunk[int(i)].row_count_exact = int(n), True
            continue
        except Exception:
            reader._rollback()
        for i, tbl in enumerate(chunk):  # find the tables that fail (privileges), count the rest
            check()
            try:
                reader.queries += 1
                n = reader.conn.execute(selects[i]).all()[0][1]
                tbl.row_count, tbl.row_count_exact = int(n), True
            except Exception as exc:
                reader._rollback()
                tbl.row_count, tbl.row_count_exact = None, False
                first_line = (
                    scrub(str(getattr(exc, "orig", exc))).splitlines()[0][:300]
                    if str(exc)
                    else type(exc).__name__
                )
                kind: ProblemKind = (
                    "insufficient_privileges"
                    if "permission" in first_line.lower() or "privilege" in first_line.lower()
                    else "row_count_failed"
                )
                problems.append(
                    CatalogProblem(
                        kind=kind,
                        schema=tbl.schema_name,
                        table=tbl.name,
                        message=f"COUNT(*) on {tbl.qualified_name} failed: {first_line}",
                    )
                )
