"""Connection blocks: typed, secrets as `SecretStr`, each with `get_engine()`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, ValidationError
from sqlalchemy.engine import Engine

from prefect_ombudsman.dialects import connection as dc
from prefect_ombudsman.errors import ConnectionReferenceError

_LOGO = "https://raw.githubusercontent.com/PrefectHQ/prefect/main/docs/images/logos/prefect-logo-mark.png"


class SqlServerConnection(Block):
    """A SQL Server database reached through pyodbc and an ODBC driver."""

    _block_type_name = "SQL Server Connection"
    _block_type_slug = "sql-server-connection"
    _description = (
        "SQL Server source or target for Ombudsman validation (pyodbc, ODBC Driver 18 by default)."
    )

    host: str | None = Field(default=None, description="Server host name or address.")
    port: int = Field(default=1433, ge=1, le=65535)
    database: str | None = Field(default=None, description="Database name.")
    username: str | None = None
    password: SecretStr | None = None
    driver: str = Field(
        default=dc.DEFAULT_ODBC_DRIVER, description="ODBC driver name as listed by odbcinst."
    )
    encrypt: bool = True
    trust_server_certificate: bool = False
    login_timeout: int = Field(default=15, ge=1, le=600)
    odbc_connect: SecretStr | None = Field(
        default=None, description="A full ODBC connection string; overrides the fields above."
    )
    default_schema: str = "dbo"

    def to_spec(self, name: str = "sqlserver", base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.sqlserver_spec(
            name=name,
            host=self.host,
            port=self.port,
            database=self.database,
            username=self.username,
            password=self.password,
            driver=self.driver,
            encrypt=self.encrypt,
            trust_server_certificate=self.trust_server_certificate,
            odbc_connect=self.odbc_connect,
            login_timeout=self.login_timeout,
            default_schema=self.default_schema,
        )

    def get_engine(self) -> Engine:
        return dc.get_engine(self.to_spec())


class SnowflakeConnection(Block):
    """A Snowflake database (password or OAuth token)."""

    _block_type_name = "Snowflake Connection"
    _block_type_slug = "snowflake-connection"
    _description = "Snowflake target for Ombudsman validation."

    account: str
    user: str
    password: SecretStr | None = None
    token: SecretStr | None = Field(
        default=None, description="OAuth access token, used instead of the password."
    )
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    role: str | None = None
    host: str | None = Field(
        default=None, description="Override host (private link, or a fakesnow server)."
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: str | None = Field(default=None, description="https (default) or http.")
    login_timeout: int = Field(default=30, ge=1, le=600)

    def to_spec(self, name: str = "snowflake", base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.snowflake_spec(
            name=name,
            account=self.account,
            user=self.user,
            password=self.password,
            token=self.token,
            warehouse=self.warehouse,
            database=self.database,
            schema=self.schema_,
            role=self.role,
            host=self.host,
            port=self.port,
            protocol=self.protocol,
            login_timeout=self.login_timeout,
        )

    def get_engine(self) -> Engine:
        return dc.get_engine(self.to_spec())


class DatabaseConnection(Block):
    """Any database SQLAlchemy can reach, by URL, with the password kept secret."""

    _block_type_name = "Database Connection"
    _block_type_slug = "database-connection"
    _description = "Any SQLAlchemy URL (PostgreSQL, DuckDB, SQLite, ...) for Ombudsman validation."

    url: str = Field(
        description="SQLAlchemy URL without the password, e.g. postgresql://user@host:5432/db"
    )
    password: SecretStr | None = None
    connect_args: dict[str, Any] = Field(default_factory=dict)

    def to_spec(self, name: str | None = None, base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.spec_from_url(
            self.url,
            name=name,
            base_dir=base_dir,
            password=self.password,
            connect_args=self.connect_args,
        )

    def get_engine(self) -> Engine:
        return dc.get_engine(self.to_spec())


_KINDS: dict[str, type[Block]] = {
    "sqlserver": SqlServerConnection,
    "snowflake": SnowflakeConnection,
    "database": DatabaseConnection,
}


def block_from_fields(
    fields: dict[str, Any], name: str
) -> SqlServerConnection | SnowflakeConnection | DatabaseConnection:
    """A block from a mapping of its fields (`kind` picks the type, else it is inferred)."""
    fields = dict(fields)
    kind = fields.pop("kind", None) or fields.pop("type", None)
    if kind is None:
        if "url" in fields:
            kind = "database"
        elif "account" in fields:
            kind = "snowflake"
        elif "host" in fields or "odbc_connect" in fields:
            kind = "sqlserver"
        else:
            raise ConnectionReferenceError(
                f"connection {name!r}: cannot tell the kind from fields {sorted(fields)}; add kind: sqlserver|snowflake|database"
            )
    cls = _KINDS.get(str(kind).lower())
    if cls is None:
        raise ConnectionReferenceError(
            f"connection {name!r}: unknown kind {kind!r}; expected one of {sorted(_KINDS)}"
        )
    try:
        return cls.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConnectionReferenceError(f"connection {name!r}: {problems}") from None
