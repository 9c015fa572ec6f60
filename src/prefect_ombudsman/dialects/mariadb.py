"""MariaDB and MySQL (PyMySQL): a schema is a database; DDL commits on its own.

Written against the dialect contract only (dialects/base.py, dialects/validation.py). Every
session runs in UTC with utf8mb4; every value the canonical row text holds passes through
`CAST(... AS CHAR)`, so all its parts share the connection's collation (CONCAT of two columns of
different collations would fail) and MD5 hashes the same UTF-8 bytes as the other databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import (
    Date,
    Integer,
    Numeric,
    String,
    cast,
    event,
    func,
    literal,
    literal_column,
    text,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects import mysql

from prefect_ombudsman.dialects.base import Dialect, python_columns
from prefect_ombudsman.dialects.registry import register
from prefect_ombudsman.dialects.types import ColumnInfo, TableFacts

#: the databases of the server itself, never a user's
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
_EPOCH_DAY: Any = literal_column("DATE '1970-01-01'")
_EPOCH: Any = literal_column("TIMESTAMP '1970-01-01 00:00:00'")
_KILL_PARAMS = "ombudsman_connect_params"


def _remember_params(_dialect: Any, record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    record.info[_KILL_PARAMS] = dict(cparams)


def _attach_params(dbapi_connection: Any, record: Any) -> None:
    setattr(dbapi_connection, _KILL_PARAMS, record.info.pop(_KILL_PARAMS, None))


@register
class MariaDBDialect(Dialect):
    name = "mariadb"
    backends = ("mysql", "mariadb")
    driver_aliases = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}
    default_port = 3306
    sqlglot_dialect = "mysql"
    has_schemas = True  # CREATE SCHEMA makes a database; `dim.t` is table t of database dim
    default_schema = None  # the URL's database

    # --- engines: UTC sessions in utf8mb4, a dead pooled connection replaced before use
    def create_engine(self, spec: Any) -> Any:
        args = spec.connect_args
        args.setdefault("connect_timeout", spec.login_timeout)
        args.setdefault("charset", "utf8mb4")
        args.setdefault("init_command", "SET time_zone = '+00:00'")
        engine = sa_create_engine(
            self.engine_url(spec),
            connect_args=args,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
        )
        # `interrupt` opens a second session the way this one was opened (TLS included)
        event.listen(engine, "do_connect", _remember_params)
        event.listen(engine, "connect", _attach_params)
        return engine

    def quote(self, identifier: str) -> str:
        if self.sa_dialect is None:
            return "`" + identifier.replace("`", "``") + "`"
        return super().quote(identifier)

    @contextmanager
    def read_only(self, dbapi_connection: Any) -> Iterator[None]:
        """`START TRANSACTION READ ONLY`: any write fails (error 1792), rolled back at the end."""
        dbapi_connection.rollback()
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("START TRANSACTION READ ONLY")
            yield
        finally:
            cursor.close()
            dbapi_connection.rollback()

    # --- interrupt: the protocol has no cancel; KILL QUERY from a second session stops it
    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        import pymysql

        raw = self.driver_connection(dbapi_connection)
        params = getattr(raw, _KILL_PARAMS, None) or {
            "host": raw.host, "port": raw.port, "user": raw.user, "password": raw.password,
            "unix_socket": raw.unix_socket,
        }  # fmt: skip
        killer = pymysql.connect(**{**params, "connect_timeout": 10, "init_command": None})
        try:
            with killer.cursor() as kill:
                kill.execute(f"KILL QUERY {int(raw.thread_id())}")
        finally:
            killer.close()

    # --- datagen: DDL commits implicitly, so load a committed staging table and RENAME it in
    transactional_ddl = False

    def datagen_type(
        self,
        kind: str,
        *,
        length: int | None = None,
        precision: int | None = None,
        scale: int | None = None,
    ) -> Any:
        # binary collation: text compares as on the other databases (case matters)
        if kind == "string":
            if length is None:
                return mysql.TEXT(collation="utf8mb4_bin")
            return mysql.VARCHAR(length, collation="utf8mb4_bin")
        if kind == "timestamp":
            return mysql.DATETIME(fsp=6)  # plain DATETIME would drop the microseconds
        return super().datagen_type(kind, length=length, precision=precision, scale=scale)

    def ensure_schema(self, connection: Any, schema: str) -> None:
        connection.exec_driver_sql(
            f"CREATE SCHEMA IF NOT EXISTS {self.column_ref(schema)} CHARACTER SET utf8mb4"
        )

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """PyMySQL's executemany: one multi-row INSERT per packet, values escaped by the driver."""
        columns = python_columns(batch)
        names = ", ".join(self.column_ref(name) for name in batch.column_names)
        marks = ", ".join("%s" for _ in columns)
        sql = f"INSERT INTO {self.table_ref(table)} ({names}) VALUES ({marks})"
        with connection.connection.driver_connection.cursor() as cursor:
            cursor.executemany(sql, list(zip(*columns, strict=True)))

    def swap_table(self, connection: Any, staging: Any, final: Any, *, exists: bool) -> None:
        """One RENAME TABLE moves both names at once (atomic); the old rows are dropped after."""
        if not exists:
            connection.exec_driver_sql(
                f"RENAME TABLE {self.table_ref(staging)} TO {self.table_ref(final)}"
            )
            return
        old = self.qualified(final.schema, staging.name + "_old")
        connection.exec_driver_sql(
            f"RENAME TABLE {self.table_ref(final)} TO {old}, "
            f"{self.table_ref(staging)} TO {self.table_ref(final)}"
        )
        connection.exec_driver_sql(f"DROP TABLE {old}")

    # --- metadata: catalog queries (information_schema; a schema is a database)
    catalog_sql: ClassVar[dict[str, Any] | None] = {
        "database": "SELECT DATABASE() AS database_name",
        "schemas": (
            "SELECT schema_name AS schema_name FROM information_schema.schemata "
            f"WHERE schema_name NOT IN {SYSTEM_SCHEMAS!r}"
        ),
        "tables": """
            SELECT table_schema AS table_schema, table_name AS table_name,
                   CASE WHEN table_type = 'VIEW' THEN 'VIEW' ELSE 'TABLE' END AS table_type,
                   table_rows AS row_count
            FROM information_schema.tables
            WHERE table_schema IN :schemas""",
        "columns": """
            SELECT table_schema AS table_schema, table_name AS table_name,
                   column_name AS column_name, ordinal_position AS ordinal_position,
                   data_type AS data_type, character_maximum_length AS max_length,
                   CASE WHEN data_type IN ('decimal', 'numeric') THEN numeric_precision END
                       AS numeric_precision,
                   CASE WHEN data_type IN ('decimal', 'numeric') THEN numeric_scale END
                       AS numeric_scale,
                   is_nullable = 'YES' AS is_nullable, column_default AS column_default
            FROM information_schema.columns
            WHERE table_schema IN :schemas""",
        "primary_keys": """
            SELECT table_schema AS table_schema, table_name AS table_name,
                   constraint_name AS constraint_name, column_name AS column_name,
                   ordinal_position AS key_position
            FROM information_schema.key_column_usage
            WHERE constraint_name = 'PRIMARY' AND table_schema IN :schemas""",
        "foreign_keys": """
            SELECT table_schema AS table_schema, table_name AS table_name,
                   constraint_name AS constraint_name, column_name AS column_name,
                   ordinal_position AS key_position, referenced_table_schema AS referred_schema,
                   referenced_table_name AS referred_table,
                   referenced_column_name AS referred_column
            FROM information_schema.key_column_usage
            WHERE referenced_table_name IS NOT NULL AND table_schema IN :schemas""",
    }

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """InnoDB's row estimate from information_schema (no scan)."""
        row = connection.execute(
            text(
                "SELECT table_rows FROM information_schema.tables "
                "WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
            ),
            {"schema": schema, "name": name},
        ).first()
        return None if row is None or row[0] is None else int(row[0])

    # --- comparison: canonical row hash
    # Canonical text per value (the recipes of reference/peers-validation.md §8), MD5, its last 16
    # hex digits as an unsigned BIGINT; SUM of BIGINT UNSIGNED is an exact DECIMAL.

    def canonical_text(self, expr: Any, field: Any) -> Any:
        kind, own = field.kind, field.own
        if own == "bool":
            return cast(cast(expr, Integer), String)
        if kind in ("decimal", "float"):
            return cast(cast(expr, Numeric(38, field.scale)), String)
        if kind in ("date", "timestamp", "time"):
            return cast(self.canonical_integer(expr, field), String)
        if kind == "binary":
            return func.lower(func.hex(expr))
        if kind == "uuid":
            return func.lower(cast(expr, String))
        if kind == "char":
            return func.rtrim(cast(expr, String))
        return cast(expr, String)

    arithmetic_hash = True
    # Row by row evaluation, no shared subexpressions: the two lanes' chains of %, * and CAST
    # cost more than one MD5 of the row text (1M rows: 1.47x reladiff against 1.17x with MD5)
    arithmetic_hash_preferred = False

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        kind, own = field.kind, field.own
        if own == "bool" or kind in ("int", "decimal", "float"):
            return self.canonical_scaled(expr, field)
        if kind == "date":
            return func.datediff(expr, _EPOCH_DAY)
        if kind == "timestamp":
            if own == "date":
                return func.datediff(expr, _EPOCH_DAY) * 86400000000
            return func.timestampdiff(literal_column("MICROSECOND"), _EPOCH, expr)
        if kind == "time":
            return (
                func.hour(expr) * 3600000000
                + func.minute(expr) * 60000000
                + func.second(expr) * 1000000
                + func.microsecond(expr)
            )
        return None

    def canonical_text_hash(self, text: Any) -> Any:
        """The last 15 hex digits of MD5() through CONV (the low 60 bits)."""
        return cast(func.conv(func.right(func.md5(text), 15), 16, 10), mysql.BIGINT(unsigned=True))

    def text_length(self, expr: Any) -> Any:
        """Characters, not bytes (LENGTH counts bytes here)."""
        return func.char_length(expr)

    def concat_text(self, parts: list[Any]) -> Any:
        """CONCAT() (`||` is OR here unless PIPES_AS_CONCAT is set)."""
        return func.concat(*parts, type_=String)

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        digest = func.right(func.md5(build_text()), 16)
        return [cast(func.conv(digest, 16, 10), mysql.BIGINT(unsigned=True))]

    def fence(self, query: Any) -> Any:
        """A LIMIT keeps the optimizer from merging the derived table (and hashing rows twice)."""
        return query.limit(1 << 62)

    # --- validation: aggregates and expressions
    # No date_trunc: periods from DATE() / WEEKDAY() / MAKEDATE(); REGEXP (PCRE) on the value in
    # a binary collation, so case matters as on the other databases; the table of an unqualified
    # name is looked for in the connection's database only.

    def validation_columns(
        self, conn: Any, schema: str | None, name: str
    ) -> tuple[str | None, str, list[ColumnInfo]] | None:
        if schema is None:
            schema = conn.execute(text("SELECT DATABASE()")).scalar()
        return super().validation_columns(conn, schema, name)

    def validation_table_names(self, conn: Any, schema: str | None) -> list[str]:
        if schema is None:
            schema = conn.execute(text("SELECT DATABASE()")).scalar()
        return super().validation_table_names(conn, schema)

    reads_enforced_facts = True
    # NOT NULL is enforced on every base table; uniqueness through UNIQUE / PRIMARY KEY indexes
    # over whole columns (a prefix index, SUB_PART set, proves nothing about the full value)
    _FACTS_SQL = """
        SELECT '' AS index_name, column_name AS column_name
        FROM information_schema.columns
        WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name
          AND is_nullable = 'NO'
        UNION ALL
        SELECT s.index_name, s.column_name
        FROM information_schema.statistics s
        WHERE s.table_schema = COALESCE(:schema, DATABASE()) AND s.table_name = :name
          AND s.non_unique = 0
          AND NOT EXISTS (
            SELECT 1 FROM information_schema.statistics p
            WHERE p.table_schema = s.table_schema AND p.table_name = s.table_name
              AND p.index_name = s.index_name AND p.sub_part IS NOT NULL)"""

    def validation_enforced_facts(self, conn: Any, schema: str | None, name: str) -> TableFacts:
        kind = conn.execute(
            text(
                "SELECT table_type FROM information_schema.tables "
                "WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
            ),
            {"schema": schema, "name": name},
        ).scalar()
        if kind != "BASE TABLE":
            return TableFacts()  # a view enforces nothing
        rows = conn.execute(text(self._FACTS_SQL), {"schema": schema, "name": name}).all()
        not_null = frozenset(str(col).lower() for index, col in rows if index == "")
        keys: dict[str, set[str]] = {}
        for index, col in rows:
            if index != "":
                keys.setdefault(str(index), set()).add(str(col).lower())
        return TableFacts(not_null, tuple(dict.fromkeys(frozenset(k) for k in keys.values())))

    # STDDEV_SAMP / AVG of exact types reach the client rounded to 4 decimals (the result's
    # display scale, div_precision_increment): both are folded in Python from exact sums instead.
    def validation_avg_from_sum(self, info: ColumnInfo) -> bool:
        return bool(info.family in ("integer", "decimal"))

    def validation_stddev_from_moments(self, info: ColumnInfo) -> bool:
        return bool(info.family in ("integer", "decimal"))

    def validation_square_sum(self, expr: Any, info: ColumnInfo) -> Any:
        if info.family == "integer":  # BIGINT * BIGINT would overflow; DECIMAL(65) does not
            wide = cast(expr, Numeric(65, 0))
            return func.sum(wide * wide)
        return func.sum(expr * expr)

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        value = cast(expr, String).collate("utf8mb4_bin")
        return value.op("REGEXP")(literal(f"^(?:{pattern})$"))

    def validation_period_start(self, expr: Any, grain: str) -> Any:
        day = func.date(expr)
        if grain == "day":
            return day
        if grain == "week":  # WEEKDAY: Monday is 0
            return func.subdate(day, func.weekday(expr))
        if grain == "month":
            return func.subdate(day, func.dayofmonth(expr) - 1)
        if grain == "quarter":
            month = (func.quarter(expr) - 1) * 3 + 1
            first = func.concat(func.year(expr), literal("-"), month, literal("-01"))
            return func.str_to_date(first, literal("%Y-%m-%d"), type_=Date)
        return func.makedate(func.year(expr), 1, type_=Date)

    # --- transient faults (PyMySQL): MySQL / MariaDB error numbers

    #: too many connections, server shutdown, lock wait timeout, deadlock, connection killed
    #: (MariaDB), network read / write errors, cannot connect, server gone away, lost connection
    TRANSIENT_CODES: ClassVar[frozenset[int]] = frozenset(
        {1040, 1053, 1205, 1213, 1927, 1158, 1159, 1160, 1161, 2002, 2003, 2006, 2013, 2055}
    )

    def transient_driver_error(self, err: BaseException) -> bool:
        if not type(err).__module__.startswith("pymysql"):
            return False
        code = next(iter(getattr(err, "args", ())), None)
        return isinstance(code, int) and code in self.TRANSIENT_CODES
