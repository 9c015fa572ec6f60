"""Connection blocks: typed, secrets as `SecretStr`, each a `CredentialsBlock` and `DatabaseBlock`.

The fields a user fills in (in the Prefect UI or in Python) and their `to_spec()`, the Prefect-free
`ConnectionSpec` the engine ring connects with; the clients and query methods are in database.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, ValidationError

from prefect_ombudsman.blocks.database import ConnectionBlock
from prefect_ombudsman.dialects import engines as dc
from prefect_ombudsman.errors import ConnectionReferenceError


class SqlServerConnection(ConnectionBlock):
    """A SQL Server database reached through pyodbc and an ODBC driver (ODBC Driver 18 by default).

    Example:
        Save a connection once (Prefect's server keeps the password encrypted):
        ```python
        from prefect_ombudsman.blocks import SqlServerConnection

        SqlServerConnection(
            host="sql01.example.com",
            database="SampleDW",
            username="etl",
            password="change-me",
            trust_server_certificate=True,
        ).save("BLOCK_NAME")
        ```

        Load it by name in a flow, or name it as a pipeline's source (`source: BLOCK_NAME`):
        ```python
        from prefect_ombudsman.blocks import SqlServerConnection

        source = SqlServerConnection.load("BLOCK_NAME")
        print(source.get_engine().dialect.name)  # -> mssql
        print("change-me" in repr(source))  # -> False
        ```
    """

    _block_type_name = "SQL Server Connection"
    _block_type_slug = "sql-server-connection"
    _description = "A SQL Server source or target for Ombudsman validation (pyodbc, ODBC Driver 18 by default)."

    host: str | None = Field(default=None, description="Server host name or address.")
    port: int = Field(default=1433, ge=1, le=65535, description="TCP port of the server.")
    database: str | None = Field(default=None, description="Database name.")
    username: str | None = Field(default=None, description="SQL Server login name.")
    password: SecretStr | None = Field(default=None, description="Password of the login.")
    driver: str = Field(
        default=dc.DEFAULT_ODBC_DRIVER, description="ODBC driver name as listed by odbcinst."
    )
    encrypt: bool = Field(default=True, description="Encrypt the connection (TLS).")
    trust_server_certificate: bool = Field(
        default=False,
        description="Accept the server's certificate without checking it (self-signed servers).",
    )
    login_timeout: int = Field(
        default=15, ge=1, le=600, description="Seconds to wait for the login."
    )
    odbc_connect: SecretStr | None = Field(
        default=None, description="A full ODBC connection string; overrides the fields above."
    )
    default_schema: str = Field(
        default="dbo", description="Schema of table names given without one."
    )

    def to_spec(self, name: str | None = None, base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.sqlserver_spec(
            name=name or "sqlserver",
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


class SnowflakeConnection(ConnectionBlock):
    """A Snowflake database, signed in with a password or an OAuth token.

    Example:
        Save a connection once:
        ```python
        from prefect_ombudsman.blocks import SnowflakeConnection

        SnowflakeConnection(
            account="xy12345.eu-west-1",
            user="ETL",
            password="change-me",
            warehouse="COMPUTE_WH",
            database="SAMPLEDW",
            schema="PUBLIC",
        ).save("BLOCK_NAME")
        ```

        Load it by name and query it:
        ```python
        from prefect_ombudsman.blocks import SnowflakeConnection

        target = SnowflakeConnection.load("BLOCK_NAME")
        with target:
            print(target.fetch_one("SELECT 6 * 7"))  # -> (42,)
        ```
    """

    _block_type_name = "Snowflake Connection"
    _block_type_slug = "snowflake-connection"
    _description = "A Snowflake target for Ombudsman validation."

    account: str = Field(description="Account identifier, e.g. xy12345.eu-west-1.")
    user: str = Field(description="User name.")
    password: SecretStr | None = Field(default=None, description="Password of the user.")
    token: SecretStr | None = Field(
        default=None, description="OAuth access token, used instead of the password."
    )
    warehouse: str | None = Field(default=None, description="Virtual warehouse to run queries on.")
    database: str | None = Field(default=None, description="Database name.")
    schema_: str | None = Field(
        default=None, alias="schema", description="Schema of table names given without one."
    )
    role: str | None = Field(default=None, description="Role to use after signing in.")
    host: str | None = Field(
        default=None, description="Override host (private link, or a fakesnow server)."
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Override port (with host).")
    protocol: str | None = Field(default=None, description="https (default) or http.")
    login_timeout: int = Field(
        default=30, ge=1, le=600, description="Seconds to wait for the login."
    )

    def to_spec(self, name: str | None = None, base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.snowflake_spec(
            name=name or "snowflake",
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


class DatabaseConnection(ConnectionBlock):
    """Any database SQLAlchemy reaches by URL (PostgreSQL, DuckDB, SQLite, ...), password kept apart.

    Example:
        Save a connection once (the password in its own secret field, not in the URL):
        ```python
        from prefect_ombudsman.blocks import DatabaseConnection

        DatabaseConnection(
            url="postgresql://etl@warehouse.example.com:5432/sales", password="change-me"
        ).save("BLOCK_NAME")
        ```

        Load it by name and query it:
        ```python
        from prefect_ombudsman.blocks import DatabaseConnection

        warehouse = DatabaseConnection.load("BLOCK_NAME")
        with warehouse:
            warehouse.execute("CREATE TABLE customers (name VARCHAR(40), city VARCHAR(40))")
            warehouse.execute_many(
                "INSERT INTO customers (name, city) VALUES (:name, :city)",
                [{"name": "Ford", "city": "Betelgeuse"}, {"name": "Arthur", "city": "Cottington"}],
            )
            print(warehouse.fetch_all("SELECT name, city FROM customers ORDER BY name"))
            # -> [('Arthur', 'Cottington'), ('Ford', 'Betelgeuse')]
        ```
    """

    _block_type_name = "Database Connection"
    _block_type_slug = "database-connection"
    _description = "Any SQLAlchemy URL (PostgreSQL, DuckDB, SQLite, ...) for Ombudsman validation."

    url: str = Field(
        description="SQLAlchemy URL without the password, e.g. postgresql://user@host:5432/db."
    )
    password: SecretStr | None = Field(
        default=None, description="Password of the URL's user, kept out of the URL."
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra arguments for the database driver's connect()."
    )

    def to_spec(self, name: str | None = None, base_dir: Path | None = None) -> dc.ConnectionSpec:
        return dc.spec_from_url(
            self.url,
            name=name,
            base_dir=base_dir,
            password=self.password,
            connect_args=self.connect_args,
        )


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
