"""Which driver errors each dialect calls transient (real driver exception classes)."""

from __future__ import annotations

import sqlite3

import duckdb
import psycopg
import psycopg.errors as pge
import pyodbc
import pytest
import snowflake.connector.errors as sfe
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from prefect_ombudsman.dialects.base import dialect_for, driver_cause, is_transient
from prefect_ombudsman.errors import OperationFailed, TransientError


def wrapped(orig: BaseException, invalidated: bool = False) -> sa_exc.DBAPIError:
    """The error SQLAlchemy raises around a driver error (as `Connection.execute` does)."""
    return sa_exc.OperationalError("SELECT 1", None, orig, connection_invalidated=invalidated)


PG_REFUSED = (
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)

CASES = {
    "postgresql": (
        [
            pge.AdminShutdown("terminating connection due to administrator command"),
            pge.CrashShutdown("terminating connection because of crash of another server process"),
            pge.CannotConnectNow("the database system is starting up"),
            pge.ConnectionFailure("connection failure"),
            pge.SerializationFailure("could not serialize access due to concurrent update"),
            pge.DeadlockDetected("deadlock detected"),
            pge.LockNotAvailable("canceling statement due to lock timeout"),
            psycopg.OperationalError(PG_REFUSED),
            psycopg.OperationalError("connection failed: FATAL:  the database system is starting up"),
            psycopg.OperationalError("server closed the connection unexpectedly"),
        ],
        [
            pge.UndefinedTable('relation "missing" does not exist'),
            pge.QueryCanceled("canceling statement due to user request"),
            pge.DivisionByZero("division by zero"),
            psycopg.OperationalError('connection failed: FATAL:  database "nodb" does not exist'),
            psycopg.OperationalError(
                'connection failed: FATAL:  password authentication failed for user "x"'
            ),
        ],
    ),
    "sqlserver": (
        [
            pyodbc.OperationalError(
                "08S01",
                "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: An existing "
                "connection was forcibly closed by the remote host. (10054) (SQLExecDirectW)",
            ),
            pyodbc.OperationalError(
                "08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider (0)"
            ),
            pyodbc.OperationalError(
                "HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired"
            ),
            pyodbc.Error(
                "40001",
                "[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction "
                "(Process ID 52) was deadlocked on lock resources with another process and has "
                "been chosen as the deadlock victim. Rerun the transaction. (1205) (SQLExecDirectW)",
            ),
            pyodbc.ProgrammingError(
                "42000",
                "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Database 'db' on "
                "server 'srv' is not currently available. Please retry the connection later. "
                "(40613) (SQLDriverConnect)",
            ),
            pyodbc.Error("42000", "[42000] Resource ID : 1. The request limit for the database is 30 and has been reached. (10928) (SQLExecDirectW)"),
            pyodbc.Error("HY000", "[HY000] The service is currently busy. (40501) (SQLExecDirectW)"),
        ],
        [
            pyodbc.ProgrammingError(
                "42S02",
                "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object "
                "name 'dbo.missing'. (208) (SQLExecDirectW)",
            ),
            pyodbc.InterfaceError(
                "28000",
                "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for "
                "user 'sa'. (18456) (SQLDriverConnect)",
            ),
            pyodbc.Error("HY008", "[HY008] Operation canceled (0) (SQLExecDirectW)"),
        ],
    ),
    "snowflake": (
        [
            sfe.OperationalError(msg="Failed to connect to DB: x.snowflakecomputing.com:443", errno=250001),
            sfe.OperationalError(msg="250003: Failed to get the response. Hanging?", errno=250003),
            sfe.ProgrammingError(msg="Authentication token has expired.  The user must authenticate again.", errno=390114),
            sfe.ServiceUnavailableError(),
            sfe.GatewayTimeoutError(),
        ],
        [
            sfe.ProgrammingError(msg="SQL compilation error: Object 'X' does not exist", errno=2003),
            sfe.DatabaseError(msg="Incorrect username or password was specified.", errno=250001 + 140000),
        ],
    ),
    "sqlite": (
        [
            sqlite3.OperationalError("database is locked"),
            sqlite3.OperationalError("database table is locked: t"),
        ],
        [
            sqlite3.OperationalError("no such table: missing"),
            sqlite3.IntegrityError("UNIQUE constraint failed: t.id"),
        ],
    ),
    "duckdb": (
        [
            duckdb.IOException(
                'IO Error: Could not set lock on file "/p/target.duckdb": Conflicting lock is '
                "held in /usr/bin/python3.11 (PID 4242)."
            ),
            duckdb.TransactionException(
                "TransactionContext Error: Catalog write-write conflict on create with \"t\""
            ),
        ],
        [
            duckdb.IOException('IO Error: No files found that match the pattern "x.csv"'),
            duckdb.CatalogException("Catalog Error: Table with name missing does not exist!"),
        ],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_dialect_classifies_its_driver_errors(kind: str):
    transient, permanent = CASES[kind]
    dialect = dialect_for(kind)
    for err in transient:
        assert dialect.is_transient(err), f"{kind}: {err!r} should be transient"
        assert dialect.is_transient(wrapped(err)), f"{kind}: wrapped {err!r}"
        assert is_transient(wrapped(err))
    for err in permanent:
        assert not dialect.is_transient(err), f"{kind}: {err!r} should not be transient"
        assert not dialect.is_transient(wrapped(err))
        assert not is_transient(wrapped(err))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_dialect_claims_only_its_own_drivers_errors(kind: str):
    dialect = dialect_for(kind)
    for other, (transient, _) in CASES.items():
        if other == kind:
            continue
        for err in transient:
            assert not dialect.is_transient(err), f"{kind} claimed {other}'s {err!r}"


def test_sqlalchemy_disconnects_and_network_errors_are_transient_everywhere():
    lost = wrapped(RuntimeError("whatever the driver said"), invalidated=True)
    for kind in [*CASES, "mysql"]:
        dialect = dialect_for(kind)
        assert dialect.is_transient(lost)
        assert dialect.is_transient(ConnectionResetError("reset by peer"))
        assert dialect.is_transient(sa_exc.TimeoutError("QueuePool limit reached"))
        assert dialect.is_transient(TransientError("asked for a retry"))
        assert not dialect.is_transient(wrapped(RuntimeError("syntax error")))
        assert not dialect.is_transient(OperationFailed("3 rows differ"))


def test_reusing_a_connection_lost_inside_a_transaction_is_transient():
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        conn.begin()
        conn.exec_driver_sql("SELECT 1")
        conn.invalidate()  # what SQLAlchemy does when the server goes away
        with pytest.raises(sa_exc.PendingRollbackError) as info:
            conn.exec_driver_sql("SELECT 1")
    assert "Can't reconnect until invalid transaction is rolled back" in str(info.value)
    assert is_transient(info.value) and dialect_for("postgresql").is_transient(info.value)
    assert not is_transient(
        sa_exc.PendingRollbackError("This Session's transaction was rolled back")
    )


def test_the_cause_chain_is_followed():
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("load failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert not is_transient(ValueError("column 'x' does not exist"))
    # a verdict wrapping a transient error stays a verdict
    verdict = OperationFailed("2 steps FAIL")
    verdict.__cause__ = ConnectionResetError()
    assert not is_transient(verdict)


def test_a_real_sqlite_lock_is_transient(tmp_path):
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("INSERT INTO t VALUES (1)")
    finally:
        other.close()
        holder.close()
    assert dialect_for("sqlite").is_transient(info.value)


def test_driver_cause_is_the_driver_error_not_sqlalchemys_wrapper():
    err = wrapped(pge.AdminShutdown("terminating connection due to administrator command"), True)
    assert "Background on this error" in str(err)
    assert driver_cause(err) == "AdminShutdown: terminating connection due to administrator command"
    retry = TransientError("source database x: lost")
    retry.__cause__ = err
    assert driver_cause(retry).startswith("AdminShutdown: ")
    assert driver_cause(psycopg.OperationalError(PG_REFUSED)) == (
        'OperationalError: connection failed: connection to server at "127.0.0.1", port 5432 '
        "failed: Connection refused"
    )
