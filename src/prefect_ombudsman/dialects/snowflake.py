"""Snowflake (real accounts; fakesnow in tests)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import types as sa_types
from sqlalchemy.ext.compiler import compiles

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.dialects.registry import register

#: SQL Server type -> the Snowflake type a migration should produce (documentation in results)
FROM_SQLSERVER = {
    "bigint": "NUMBER(19,0)", "int": "NUMBER(10,0)", "smallint": "NUMBER(5,0)", "tinyint": "NUMBER(3,0)",
    "bit": "BOOLEAN", "decimal": "NUMBER(p,s)", "numeric": "NUMBER(p,s)", "money": "NUMBER(19,4)",
    "smallmoney": "NUMBER(10,4)", "float": "FLOAT", "real": "FLOAT", "date": "DATE", "time": "TIME",
    "datetime": "TIMESTAMP_NTZ(3)", "datetime2": "TIMESTAMP_NTZ", "smalldatetime": "TIMESTAMP_NTZ(0)",
    "datetimeoffset": "TIMESTAMP_TZ", "char": "VARCHAR(n)", "varchar": "VARCHAR(n)", "nchar": "VARCHAR(n)",
    "nvarchar": "VARCHAR(n)", "text": "VARCHAR", "ntext": "VARCHAR", "uniqueidentifier": "VARCHAR(36)",
    "binary": "BINARY", "varbinary": "BINARY", "image": "BINARY", "xml": "VARIANT",
}  # fmt: skip


@register
class SnowflakeDialect(Dialect):
    name = "snowflake"
    backends = ("snowflake",)
    default_port = 443

    def migration_type(self, source_type: str, source: Dialect) -> str | None:
        """The Snowflake type for a SQL Server column (the migration this product serves)."""
        if source.name != "sqlserver":
            return None
        return FROM_SQLSERVER.get(source_type.split("(")[0].strip().lower())

    def create_engine(self, spec: Any) -> Any:
        args = spec.connect_args
        if spec.token is not None:
            args.update(token=spec.token.get_secret_value(), authenticator="oauth")
        return sa_create_engine(
            self.engine_url(spec),
            connect_args=args,
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=8,
        )

    def server_identity(self, url: Any, connect_args: dict[str, Any]) -> str:
        identity = super().server_identity(url, connect_args)
        if connect_args.get("host"):
            return identity
        host, _, port = identity.removeprefix("snowflake://").rpartition(":")
        return (
            f"snowflake://{host}.snowflakecomputing.com:{port}"  # the account locator is the server
        )

    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        """`abort_query` of the cursor's running query (the connector has no connection cancel)."""
        if cursor is not None and getattr(cursor, "sfqid", None) and hasattr(cursor, "abort_query"):
            cursor.abort_query(cursor.sfqid)
        else:
            super().interrupt(dbapi_connection, cursor)

    # no read-only session: `sql_query` relies on statement classification and a read-only role
    sqlglot_dialect = "snowflake"
    has_schemas = True
    default_schema = "PUBLIC"

    # --- datagen: bulk load and types
    # DDL commits implicitly on Snowflake: load a staging table, then SWAP it in (atomic).
    transactional_ddl = False
    datagen_stage = "OMBUDSMAN_DATAGEN_STAGE"

    def datagen_type(
        self,
        kind: str,
        *,
        length: int | None = None,
        precision: int | None = None,
        scale: int | None = None,
    ) -> Any:
        import sqlalchemy as sa

        if kind == "decimal":
            return SnowflakeNumber(precision, scale)
        if kind == "string":
            return sa.VARCHAR(length)
        if kind == "timestamp":
            from snowflake.sqlalchemy import TIMESTAMP_NTZ

            return TIMESTAMP_NTZ()
        return super().datagen_type(kind, length=length, precision=precision, scale=scale)

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """PUT a Parquet file to a temporary stage, then COPY INTO (write_pandas's own path).

        write_pandas itself fails against fakesnow's server (reference/db-infra.md §1)."""
        import shutil
        import tempfile
        from pathlib import Path
        from uuid import uuid4

        import pyarrow.parquet as pq

        token = uuid4().hex
        folder = Path(tempfile.mkdtemp(prefix="ombudsman-put-"))
        path = folder / f"{token}.parquet"
        cursor = connection.connection.driver_connection.cursor()
        try:
            pq.write_table(batch, path)
            cursor.execute(f"CREATE TEMPORARY STAGE IF NOT EXISTS {self.datagen_stage}")
            cursor.execute(
                f"PUT 'file://{path.as_posix()}' @{self.datagen_stage}/{token} AUTO_COMPRESS=FALSE"
            )
            cursor.execute(
                f"COPY INTO {self.table_ref(table)} FROM @{self.datagen_stage}/{token} "
                "FILE_FORMAT=(TYPE=PARQUET) MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE PURGE=TRUE"
            )
        finally:
            cursor.close()
            shutil.rmtree(folder, ignore_errors=True)

    def swap_table(self, connection: Any, staging: Any, final: Any, *, exists: bool) -> None:
        from sqlalchemy.exc import DBAPIError

        if exists:
            try:
                connection.exec_driver_sql(
                    f"ALTER TABLE {self.table_ref(staging)} SWAP WITH {self.table_ref(final)}"
                )
            except DBAPIError as exc:
                if "syntax error" not in str(exc).lower():
                    raise
                # fakesnow has no SWAP WITH: drop and rename (transactional there, as DuckDB is)
                connection.exec_driver_sql(f"DROP TABLE {self.table_ref(final)}")
            else:
                connection.exec_driver_sql(
                    f"DROP TABLE {self.table_ref(staging)}"
                )  # now the old rows
                return
        # the new name must be qualified: a bare one moves the table into the session's schema
        connection.exec_driver_sql(
            f"ALTER TABLE {self.table_ref(staging)} RENAME TO {self.table_ref(final)}"
        )

    # --- metadata: catalog queries
    # INFORMATION_SCHEMA of the current database plus SHOW ... IN DATABASE for keys (Snowflake
    # has no KEY_COLUMN_USAGE view). A tuple lists alternatives tried in order: fakesnow lacks
    # SHOW ... IN DATABASE but has KEY_COLUMN_USAGE, and lists views only in VIEWS.
    catalog_sql: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "database": "SELECT current_database() AS database_name",
        "schemas": (
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name <> 'INFORMATION_SCHEMA'"
        ),
        "tables": """
            SELECT table_schema, table_name, 'TABLE' AS table_type, row_count
            FROM information_schema.tables
            WHERE table_type NOT LIKE '%VIEW' AND table_schema IN :schemas
            UNION ALL
            SELECT table_schema, table_name, 'VIEW' AS table_type, NULL AS row_count
            FROM information_schema.views
            WHERE table_schema IN :schemas""",
        "columns": """
            SELECT table_schema, table_name, column_name, ordinal_position, data_type,
                   character_maximum_length AS max_length,
                   CASE WHEN data_type IN ('NUMBER', 'DECIMAL', 'NUMERIC') THEN numeric_precision END
                       AS numeric_precision,
                   CASE WHEN data_type IN ('NUMBER', 'DECIMAL', 'NUMERIC') THEN numeric_scale END
                       AS numeric_scale,
                   is_nullable, column_default
            FROM information_schema.columns
            WHERE table_schema IN :schemas""",
        "primary_keys": (
            "SHOW PRIMARY KEYS IN DATABASE",
            """
            SELECT tc.table_schema, tc.table_name, tc.constraint_name, kcu.column_name,
                   kcu.ordinal_position AS key_position
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_schema = tc.constraint_schema
             AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name
            WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema IN :schemas""",
        ),
        "foreign_keys": (
            "SHOW IMPORTED KEYS IN DATABASE",
            """
            SELECT fk.table_schema, fk.table_name, rc.constraint_name, fk.column_name,
                   fk.ordinal_position AS key_position, pk.table_schema AS referred_schema,
                   pk.table_name AS referred_table, pk.column_name AS referred_column
            FROM information_schema.referential_constraints rc
            JOIN information_schema.key_column_usage fk
              ON fk.constraint_schema = rc.constraint_schema AND fk.constraint_name = rc.constraint_name
            JOIN information_schema.key_column_usage pk
              ON pk.constraint_schema = rc.unique_constraint_schema
             AND pk.constraint_name = rc.unique_constraint_name
             AND pk.ordinal_position = fk.position_in_unique_constraint
            WHERE fk.table_schema IN :schemas""",
        ),
    }
    #: SHOW output column names -> the row shape of metadata/extract.py, per kind
    catalog_row_aliases: ClassVar[dict[str, dict[str, str]]] = {
        "primary_keys": {"schema_name": "table_schema", "key_sequence": "key_position"},
        "foreign_keys": {
            "fk_schema_name": "table_schema",
            "fk_table_name": "table_name",
            "fk_column_name": "column_name",
            "fk_name": "constraint_name",
            "key_sequence": "key_position",
            "pk_schema_name": "referred_schema",
            "pk_table_name": "referred_table",
            "pk_column_name": "referred_column",
        },
    }

    # --- comparison: canonical row hash
    # Real Snowflake: MD5_NUMBER_LOWER64(canonical text) is the last 8 bytes of the MD5 as an
    # unsigned NUMBER; SUM lands in NUMBER(38,0) and cannot overflow. fakesnow lacks that function
    # (reference/db-infra.md §1), so there the MD5 hex is split into two 32-bit halves parsed from
    # hex and summed separately (the client recombines them mod 2^64): the same fingerprint.
    _md5_number: bool | None = None
    _bucket_offset: int = 0

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """COUNT(*): answered from metadata by Snowflake (and cheap on fakesnow's DuckDB)."""
        from sqlalchemy import func, select, table

        return int(
            connection.execute(
                select(func.count()).select_from(table(name, schema=schema))
            ).scalar()
        )

    def prepare_comparison(self, connection: Any, *, memory_limit_mb: int | None = None) -> None:
        if self._md5_number is None:
            with connection.engine.connect() as probe:
                try:
                    probe.exec_driver_sql("SELECT MD5_NUMBER_LOWER64('a')").scalar()
                    self._md5_number = True
                except Exception:
                    self._md5_number = False

    def canonical_text(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import Integer, Numeric, cast, func

        kind, own = field.kind, field.own
        if own == "bool":
            return func.to_varchar(cast(expr, Integer))  # IFF(NULL, ...) would give '0', not NULL
        if kind in ("decimal", "float"):
            return func.to_varchar(cast(expr, Numeric(38, field.scale)))
        if kind in ("int", "date", "timestamp", "time"):
            return func.to_varchar(self.canonical_integer(expr, field))
        if kind == "binary":
            return func.hex_encode(expr, 0)
        if kind == "uuid":
            return func.lower(func.to_varchar(expr))
        if kind == "char":
            return func.rtrim(func.to_varchar(expr), " ")
        return func.to_varchar(expr)

    arithmetic_hash = True

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import func, literal_column

        kind, own = field.kind, field.own
        if own == "bool" or kind in ("int", "decimal", "float"):
            return self.canonical_scaled(expr, field)
        epoch_day = func.datediff(literal_column("day"), literal_column("'1970-01-01'::DATE"), expr)
        if kind == "date":
            return epoch_day
        if kind == "timestamp":
            if own == "date":
                return epoch_day * 86400000000
            return func.date_part(literal_column("EPOCH_MICROSECOND"), expr)
        if kind == "time":
            return func.datediff(
                literal_column("microsecond"), literal_column("'00:00:00'::TIME"), expr
            )
        return None

    def canonical_text_hash(self, text: Any) -> Any:
        """MD5_NUMBER_LOWER64 mod 2^60; on fakesnow the last 15 hex digits of MD5 parsed."""
        from sqlalchemy import Numeric, cast, func, literal

        from prefect_ombudsman.dialects.arithmetic import TEXT_MASK

        if self._md5_number:
            return func.mod(func.md5_number_lower64(text), TEXT_MASK + 1)
        return cast(literal("0x") + func.right(func.md5(text), 15), Numeric(38, 0))

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        from sqlalchemy import func

        if self._md5_number:
            return [func.md5_number_lower64(build_text())]
        return [func.md5(build_text())]

    def native_row_hash(self, exprs: list[Any]) -> list[Any] | None:
        """HASH(...) (signed 64-bit); only on real Snowflake: fakesnow's HASH is DuckDB's."""
        from sqlalchemy import func

        if not self._md5_number:
            return None
        self._bucket_offset = 2**63
        return [func.hash(*exprs)]

    def hash_parts(self, columns: list[Any]) -> list[Any]:
        from sqlalchemy import Numeric, cast, func, literal

        if self._md5_number:
            return list(columns)
        (digest,) = columns
        return [
            cast(literal("0x") + func.substr(digest, 17, 8), Numeric(38, 0)),
            cast(literal("0x") + func.right(digest, 8), Numeric(38, 0)),
        ]

    def hash_parts_arithmetic(self, columns: list[Any]) -> list[Any]:
        """Real Snowflake sums h into NUMBER(38,0); fakesnow sums into BIGINT, so there h is
        split into its high and low 32 bits (the client recombines them mod 2^64)."""
        from sqlalchemy import func

        if self._md5_number:
            return list(columns)
        (h,) = columns
        return [func.bitshiftright(h, 32), func.bitand(h, 0xFFFFFFFF)]

    def hash_bucket(self, part: Any, buckets: int) -> Any:
        from sqlalchemy import func

        # MOD follows the dividend's sign; shifting by 2^63 (a multiple of `buckets`) keeps it >= 0.
        return func.mod(part + self._bucket_offset if self._bucket_offset else part, buckets)

    def hash_sum(self, part: Any) -> Any:
        from sqlalchemy import Numeric, cast, func

        return cast(func.sum(part), Numeric(38, 0))

    # --- validation: aggregates and expressions
    # REGEXP_LIKE matches the whole value (implicitly anchored). Sums keep the default
    # CAST(SUM(x) AS NUMBER(38, s)), which also makes fakesnow return exact Decimals.

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        from sqlalchemy import String, cast, func, literal

        return func.regexp_like(cast(expr, String), literal(pattern))

    # --- transient faults (snowflake-connector-python): errno codes and HTTP retryable errors

    #: failed to connect, connection closed, request failed (network), failed to reach the
    #: server, connection timeout, retryable request; 390114: authentication token expired
    TRANSIENT_ERRNOS: ClassVar[frozenset[int]] = frozenset(
        {250001, 250002, 250003, 250005, 251011, 251012, 390114}
    )
    #: the connector's HTTP errors that mean "the service is busy or restarting"
    TRANSIENT_CLASSES: ClassVar[frozenset[str]] = frozenset(
        {
            "ServiceUnavailableError",
            "GatewayTimeoutError",
            "BadGatewayError",
            "RequestTimeoutError",
            "OtherHTTPRetryableError",
            "TooManyRequests",
            "InternalServerError",
            "TokenExpiredError",
        }
    )

    def transient_driver_error(self, err: BaseException) -> bool:
        if not type(err).__module__.startswith("snowflake.connector"):
            return False
        if type(err).__name__ in self.TRANSIENT_CLASSES:
            return True
        errno = getattr(err, "errno", None)
        try:
            return int(errno) in self.TRANSIENT_ERRNOS if errno is not None else False
        except (TypeError, ValueError):
            return False


class SnowflakeNumber(sa_types.Numeric):  # type: ignore[type-arg]
    """NUMBER(p, s) in Snowflake DDL (snowflake-sqlalchemy renders DECIMAL / a bare NUMBER)."""

    __visit_name__ = "SNOWFLAKE_NUMBER"


@compiles(SnowflakeNumber)
def _compile_snowflake_number(element: SnowflakeNumber, compiler: Any, **kw: Any) -> str:
    return f"NUMBER({element.precision}, {element.scale})"
