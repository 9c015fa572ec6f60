"""Resolved connection settings and the pooled SQLAlchemy engines built from them.

A `ConnectionSpec` is what every connection reference (block, URL, project alias, legacy
environment variables) resolves to. Engines are cached per resolved configuration, never per
a fixed name, so two projects with different databases never share an engine.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from prefect_ombudsman.dialects.base import Dialect, dialect_class, dialect_for, dialect_kind
from prefect_ombudsman.dialects.registry import driver_alias
from prefect_ombudsman.errors import ConnectionReferenceError
from prefect_ombudsman.redaction import register_secret

#: a dialect name (`sqlite`, `duckdb`, `postgresql`, `snowflake`, `sqlserver`, ... registered in
#: dialects/registry.py), or `other` for a database without a registered dialect
Kind = str

DEFAULT_ODBC_DRIVER = "ODBC Driver 18 for SQL Server"


class ConnectionSpec(BaseModel):
    """A fully resolved connection. Its `url` never holds a secret; secrets are `SecretStr`."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    password: SecretStr | None = None
    token: SecretStr | None = None
    odbc_connect: SecretStr | None = None
    connect_args_json: str = "{}"
    default_schema: str | None = None
    login_timeout: int = 15

    @property
    def kind(self) -> Kind:
        return dialect_kind(make_url(self.url).get_backend_name())

    @property
    def connect_args(self) -> dict[str, Any]:
        return dict(json.loads(self.connect_args_json))

    def cache_key(self) -> str:
        """Identity of the resolved configuration (secrets hashed, never stored)."""
        parts = [
            self.url,
            self.connect_args_json,
            self.default_schema or "",
            str(self.login_timeout),
            *(
                hashlib.sha256(s.get_secret_value().encode()).hexdigest() if s else ""
                for s in (self.password, self.token, self.odbc_connect)
            ),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def display(self) -> str:
        """A label safe for logs and results."""
        return f"{self.name} ({self.url})" if self.name != self.url else self.url


def _connect_args_json(args: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(args or {}), sort_keys=True, default=str)


def _register(*secrets: SecretStr | str | None) -> None:
    for secret in secrets:
        if isinstance(secret, SecretStr):
            register_secret(secret.get_secret_value())
        elif isinstance(secret, str):
            register_secret(secret)


def odbc_escape(value: str) -> str:
    """Quote an ODBC attribute value when it holds characters the syntax reserves."""
    if any(ch in value for ch in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def build_odbc_string(
    *,
    driver: str,
    host: str | None,
    port: int | None,
    database: str | None,
    username: str | None,
    password: str | None,
    encrypt: bool | None = True,
    trust_server_certificate: bool = False,
    login_timeout: int = 15,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The ODBC connection string for SQL Server, as ODBC Driver 18 expects it."""
    parts = [f"DRIVER={{{driver}}}"]
    if host:
        parts.append(f"SERVER={host},{port}" if port else f"SERVER={host}")
    if database:
        parts.append(f"DATABASE={odbc_escape(database)}")
    if username:
        parts.append(f"UID={odbc_escape(username)}")
    if password:
        parts.append(f"PWD={odbc_escape(password)}")
    if encrypt is not None:
        parts.append(f"Encrypt={'yes' if encrypt else 'no'}")
    parts.append(f"TrustServerCertificate={'yes' if trust_server_certificate else 'no'}")
    parts.append(f"Connection Timeout={login_timeout}")
    for key, value in (extra or {}).items():
        parts.append(f"{key}={odbc_escape(str(value))}")
    return ";".join(parts) + ";"


def _odbc_display(odbc: str) -> str:
    """A password-free URL-ish label for an ODBC string."""
    fields = {}
    for part in odbc.split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            fields[k.strip().upper()] = v.strip().strip("{}")
    host = fields.get("SERVER", "").replace(",", ":")
    driver = fields.get("DRIVER", "")
    db = fields.get("DATABASE", fields.get("DATABASE NAME", ""))
    user = fields.get("UID", "")
    label = f"mssql+pyodbc://{user + '@' if user else ''}{host}/{db}"
    if driver:
        label += "?driver=" + driver.replace(" ", "+")
    return label


def sqlserver_spec(
    *,
    name: str,
    host: str | None = None,
    port: int | None = 1433,
    database: str | None = None,
    username: str | None = None,
    password: SecretStr | str | None = None,
    driver: str = DEFAULT_ODBC_DRIVER,
    encrypt: bool | None = True,
    trust_server_certificate: bool = False,
    odbc_connect: SecretStr | str | None = None,
    login_timeout: int = 15,
    default_schema: str | None = "dbo",
    extra: Mapping[str, str] | None = None,
) -> ConnectionSpec:
    """A SQL Server connection through pyodbc, from fields or from a full ODBC string."""
    secret_pw = password.get_secret_value() if isinstance(password, SecretStr) else password
    if odbc_connect is not None:
        odbc = (
            odbc_connect.get_secret_value() if isinstance(odbc_connect, SecretStr) else odbc_connect
        )
    else:
        if not host:
            raise ConnectionReferenceError(
                f"SQL Server connection {name!r}: 'host' is required (or give 'odbc_connect')"
            )
        odbc = build_odbc_string(
            driver=driver,
            host=host,
            port=port,
            database=database,
            username=username,
            password=secret_pw,
            encrypt=encrypt,
            trust_server_certificate=trust_server_certificate,
            login_timeout=login_timeout,
            extra=extra,
        )
    _register(secret_pw, odbc)
    for part in odbc.split(";"):
        key, _, value = part.partition("=")
        if key.strip().upper() in ("PWD", "PASSWORD"):
            _register(value.strip().strip("{}"))
    return ConnectionSpec(
        name=name,
        url=_odbc_display(odbc),
        password=SecretStr(secret_pw) if secret_pw else None,
        odbc_connect=SecretStr(odbc),
        default_schema=default_schema,
        login_timeout=login_timeout,
    )


def snowflake_spec(
    *,
    name: str,
    account: str,
    user: str,
    password: SecretStr | str | None = None,
    token: SecretStr | str | None = None,
    warehouse: str | None = None,
    database: str | None = None,
    schema: str | None = None,
    role: str | None = None,
    host: str | None = None,
    port: int | None = None,
    protocol: str | None = None,
    login_timeout: int = 30,
) -> ConnectionSpec:
    """A Snowflake connection (password or OAuth token). host/port/protocol serve private links and fakesnow."""
    pw = password.get_secret_value() if isinstance(password, SecretStr) else password
    tok = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not pw and not tok:
        raise ConnectionReferenceError(f"Snowflake connection {name!r}: give 'password' or 'token'")
    _register(pw, tok)
    query: dict[str, str] = {}
    if warehouse:
        query["warehouse"] = warehouse
    if role:
        query["role"] = role
    path = "/".join(p for p in (database, schema if database else None) if p)
    url = URL.create("snowflake", username=user, host=account, database=path or None, query=query)
    args: dict[str, Any] = {
        "login_timeout": login_timeout,
        "network_timeout": max(login_timeout, 60),
    }
    if host:
        args["host"] = host
    if port:
        args["port"] = int(port)
    if protocol:
        args["protocol"] = protocol
    args["session_parameters"] = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}
    return ConnectionSpec(
        name=name,
        url=url.render_as_string(hide_password=True),
        password=SecretStr(pw) if pw else None,
        token=SecretStr(tok) if tok else None,
        connect_args_json=_connect_args_json(args),
        default_schema=schema,
        login_timeout=login_timeout,
    )


def spec_from_url(
    url: str,
    *,
    name: str | None = None,
    base_dir: Path | None = None,
    password: SecretStr | str | None = None,
    connect_args: Mapping[str, Any] | None = None,
) -> ConnectionSpec:
    """Parse a SQLAlchemy URL. Relative SQLite/DuckDB paths resolve against `base_dir`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConnectionReferenceError(f"not a valid database URL: {url!r} ({exc})") from None
    drivername = driver_alias(parsed.drivername)
    parsed = parsed.set(drivername=drivername)
    pw = password.get_secret_value() if isinstance(password, SecretStr) else password
    pw = pw or parsed.password
    label = name or parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "mssql":
        query = dict(parsed.query)
        if "odbc_connect" in query:
            return sqlserver_spec(name=label, odbc_connect=str(query["odbc_connect"]))
        driver = str(query.pop("driver", DEFAULT_ODBC_DRIVER))
        encrypt = str(query.pop("Encrypt", query.pop("encrypt", "yes"))).lower() in (
            "yes",
            "true",
            "1",
            "mandatory",
        )
        trust = str(
            query.pop("TrustServerCertificate", query.pop("trust_server_certificate", "no"))
        ).lower() in (
            "yes",
            "true",
            "1",
        )
        return sqlserver_spec(
            name=label,
            host=parsed.host,
            port=parsed.port,
            database=parsed.database,
            username=parsed.username,
            password=pw,
            driver=driver,
            encrypt=encrypt,
            trust_server_certificate=trust,
            extra={k: str(v) for k, v in query.items()},
        )
    if backend == "snowflake":
        db, _, schema = (parsed.database or "").partition("/")
        query = dict(parsed.query)
        return snowflake_spec(
            name=label,
            account=parsed.host or "",
            user=parsed.username or "",
            password=pw,
            token=str(query["token"]) if "token" in query else None,
            warehouse=query.get("warehouse"),  # type: ignore[arg-type]
            database=db or None,
            schema=schema or None,
            role=query.get("role"),  # type: ignore[arg-type]
            **{k: v for k, v in (connect_args or {}).items() if k in ("host", "port", "protocol")},
        )
    dialect = dialect_class(backend)
    embedded = dialect is not None and dialect.embedded
    if embedded and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        parsed = parsed.set(database=str(path.resolve()))
    _register(pw)
    default_schema = dialect.default_schema if dialect is not None else None
    return ConnectionSpec(
        name=label if name else parsed.render_as_string(hide_password=True),
        url=_without_password(parsed),
        password=SecretStr(pw) if pw else None,
        connect_args_json=_connect_args_json(connect_args),
        default_schema=default_schema,
    )


def _without_password(url: URL) -> str:
    bare = URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )
    return bare.render_as_string(hide_password=False)


def spec_from_environment(kind: str, env: Mapping[str, str] | None = None) -> ConnectionSpec:
    """The Studio's legacy `sqlserver` / `snowflake` connections from its environment variables."""
    env = os.environ if env is None else env
    if kind == "sqlserver":
        if env.get("SQLSERVER_CONN_STR"):
            return sqlserver_spec(name="sqlserver", odbc_connect=env["SQLSERVER_CONN_STR"])
        if not env.get("MSSQL_HOST"):
            raise ConnectionReferenceError(
                "connection 'sqlserver' is not configured: the project has no source and neither "
                "SQLSERVER_CONN_STR nor MSSQL_HOST is set"
            )
        return sqlserver_spec(
            name="sqlserver",
            host=env["MSSQL_HOST"],
            port=int(env.get("MSSQL_PORT", "1433")),
            database=env.get("MSSQL_DATABASE", "master"),
            username=env.get("MSSQL_USER", "sa"),
            password=env.get("MSSQL_PASSWORD"),
            driver=env.get("SQL_SERVER_DRIVER", DEFAULT_ODBC_DRIVER),
            encrypt=env.get("MSSQL_ENCRYPT", "yes").lower() in ("yes", "true", "1"),
            trust_server_certificate=env.get("MSSQL_TRUST_SERVER_CERTIFICATE", "yes").lower()
            in ("yes", "true", "1"),
        )
    if kind == "snowflake":
        missing = [k for k in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not env.get(k)]
        if missing:
            raise ConnectionReferenceError(
                "connection 'snowflake' is not configured: the project has no target and "
                + ", ".join(missing)
                + " not set"
            )
        return snowflake_spec(
            name="snowflake",
            account=env["SNOWFLAKE_ACCOUNT"],
            user=env["SNOWFLAKE_USER"],
            password=env.get("SNOWFLAKE_PASSWORD"),
            token=env.get("SNOWFLAKE_TOKEN"),
            warehouse=env.get("SNOWFLAKE_WAREHOUSE", "COMPUTE_WH"),
            database=env.get("SNOWFLAKE_DATABASE", "SAMPLEDW"),
            schema=env.get("SNOWFLAKE_SCHEMA", "PUBLIC"),
            role=env.get("SNOWFLAKE_ROLE"),
            host=env.get("SNOWFLAKE_HOST"),
            port=int(env["SNOWFLAKE_PORT"]) if env.get("SNOWFLAKE_PORT") else None,
            protocol=env.get("SNOWFLAKE_PROTOCOL"),
        )
    raise ConnectionReferenceError(
        f"unknown legacy connection {kind!r}; expected 'sqlserver' or 'snowflake'"
    )


def open_odbc(spec: ConnectionSpec) -> Any:
    """A raw pyodbc connection for a SQL Server spec (the path SQLAlchemy's creator uses)."""
    import pyodbc

    if spec.odbc_connect is None:
        raise ConnectionReferenceError(f"connection {spec.name!r} is not an ODBC connection")
    return pyodbc.connect(
        spec.odbc_connect.get_secret_value(), timeout=spec.login_timeout, autocommit=False
    )


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
# Called with the spec on every get_engine (the Prefect layer takes per-database slots there).
ENGINE_HOOKS: list[Callable[[ConnectionSpec], None]] = []


def get_engine(spec: ConnectionSpec) -> Engine:
    """The pooled engine for a resolved configuration, created once per process."""
    for hook in ENGINE_HOOKS:
        hook(spec)
    key = spec.cache_key()
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create_engine(spec)
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, shutdown)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def _create_engine(spec: ConnectionSpec) -> Engine:
    """The dialect's engine for `spec`, its connections sharing the database as the dialect says."""
    dialect = dialect_for(make_url(spec.url).get_backend_name())
    engine = dialect.create_engine(spec)
    _hold_while_open(engine, dialect, spec.url)
    return engine


def _hold_while_open(engine: Engine, dialect: Dialect, url: str) -> None:
    """Each DBAPI connection holds `dialect.exclusive_use(url)` from before it opens until
    after it closes; idle pooled connections close after `dialect.idle_release_seconds(url)`.
    Both are no-ops except for databases one process may open at a time (DuckDB files); the
    listeners are installed only there (closing a connection before the pool does raises "Already
    closed" on drivers such as PyMySQL)."""
    seconds = dialect.idle_release_seconds(url)
    if seconds is not None:
        _IdleRelease(engine, seconds)
    if isinstance(dialect.exclusive_use(url), nullcontext):
        return
    held: dict[int, AbstractContextManager[None]] = {}

    @event.listens_for(engine, "do_connect")
    def _open(sa_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        use = dialect.exclusive_use(url)
        use.__enter__()
        try:
            connection = sa_dialect.connect(*cargs, **cparams)
        except BaseException:
            use.__exit__(None, None, None)
            raise
        held[id(connection)] = use
        return connection

    def _close(dbapi_connection: Any, *_record: Any) -> None:
        use = held.pop(id(dbapi_connection), None)
        if use is None:
            return
        try:  # the pool closes it right after this event; the database must be free first
            dbapi_connection.close()
        finally:
            use.__exit__(None, None, None)

    event.listen(engine, "close", _close)
    event.listen(engine, "close_detached", _close)


class _IdleRelease:
    """Closes an engine's pooled connections once none has been in use for `seconds`."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.engine = engine
        self.seconds = seconds
        self.in_use = 0
        self.generation = 0
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()
        event.listen(engine, "checkout", self.checkout)
        event.listen(engine, "checkin", self.checkin)
        _IDLE_RELEASES.add(self)

    def checkout(self, *_args: Any) -> None:
        with self.lock:
            self.in_use += 1
            self.generation += 1

    def checkin(self, *_args: Any) -> None:
        with self.lock:
            self.in_use -= 1
            if self.in_use:
                return
            self.generation += 1
            if self.timer is not None:
                self.timer.cancel()
            self.timer = threading.Timer(self.seconds, self.release, args=(self.generation,))
            self.timer.daemon = True
            self.timer.start()

    def release(self, generation: int | None = None) -> None:
        """Close the idle connections (now, when `generation` is None). The pool stays usable."""
        with self.lock:
            if self.in_use == 0 and generation in (None, self.generation):
                if self.timer is not None:
                    self.timer.cancel()
                self.engine.pool.dispose()


_IDLE_RELEASES: weakref.WeakSet[_IdleRelease] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    # In the main thread, before the interpreter stops: a daemon timer closing a DuckDB
    # connection during shutdown would abort the process.
    for idle in list(_IDLE_RELEASES):
        idle.release()
