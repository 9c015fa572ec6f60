"""Statement classification for SQL that comes from outside (the `sql_query` operation).

Only one read query passes: a single SELECT / WITH ... SELECT / set operation of selects, parsed
with sqlglot in the connection's own dialect, with no data-changing clause anywhere inside it and
no function that reads files, the server's disk or other databases. This is the first guard; the
second is the dialect's read-only session (`Dialect.read_only`).
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.errors import ConfigurationError

#: nodes that change data, schema, session or files wherever they appear in the tree
_WRITES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable",
        "Copy", "Command", "Pragma", "Attach", "Detach", "Install", "Set", "Use", "Transaction",
        "Commit", "Rollback", "Grant", "Revoke", "Comment", "Analyze", "Export", "LoadData",
        "Refresh", "Cache", "Uncache", "Summarize",
    )
    if hasattr(exp, name)
)  # fmt: skip

#: functions that read files, list folders, reach other servers, sleep or change state
DENIED_FUNCTIONS = frozenset(
    {
        # DuckDB file and network readers
        "read_text", "read_blob", "read_csv", "read_csv_auto", "read_parquet", "parquet_scan",
        "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
        "read_json", "read_json_auto", "read_json_objects", "read_ndjson", "read_ndjson_auto",
        "read_ndjson_objects", "json_execute_serialized_sql", "glob", "sniff_csv",
        "iceberg_scan", "delta_scan", "read_xlsx", "st_read", "sqlite_scan", "postgres_scan",
        "mysql_scan", "query", "query_table", "load_extension", "install_extension",
        # PostgreSQL server files, other databases, sessions and state
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
        "pg_ls_waldir", "pg_ls_tmpdir", "lo_import", "lo_export", "lo_from_bytea", "lo_put",
        "dblink", "dblink_exec", "dblink_connect", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "set_config", "nextval", "setval", "pg_advisory_lock", "pg_advisory_xact_lock",
        "txid_current", "pg_current_xact_id", "pg_notify",
        # SQL Server / Snowflake / SQLite
        "openrowset", "opendatasource", "openquery", "openxml", "xp_cmdshell", "system$",
        "readfile", "writefile", "fts3_tokenizer", "sleep",
    }
)  # fmt: skip


# A table "name" DuckDB would read as a file (`FROM '/etc/passwd'`, `FROM 'x.csv'`).
_FILE_NAME = re.compile(
    r"[/\\:~]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|db|duckdb|sqlite3?|xlsx|arrow|gz|zst)$",
    re.IGNORECASE,
)


def _function_names(node: Any) -> set[str]:
    names = {node.name.lower()} if isinstance(node, exp.Anonymous) else set()
    if isinstance(node, exp.Func):
        names.add(node.sql_name().lower())
        names.update(n.lower() for n in type(node)._sql_names)
    return names


def check_read_query(query: str, dialect: Dialect, *, field: str = "query") -> None:
    """Refuse anything but one read-only SELECT / WITH query (the message names `field` and why)."""
    try:
        statements = [s for s in sqlglot.parse(query, read=dialect.sqlglot_dialect) if s]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ConfigurationError(
            f"{field}: not a query this {dialect.name} connection can check ({first}); "
            "only a single SELECT or WITH query is allowed"
        ) from None
    if len(statements) != 1:
        raise ConfigurationError(
            f"{field}: {len(statements)} statements given; only a single SELECT or WITH query is allowed"
        )
    root = statements[0]
    while isinstance(root, exp.Subquery | exp.Paren):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        kind = root.key.upper() if root.key != "command" else str(root.this).upper()
        raise ConfigurationError(
            f"{field}: {kind} statements are refused; only a single SELECT or WITH query is allowed"
        )
    for node in root.walk():
        if isinstance(node, _WRITES):
            raise ConfigurationError(
                f"{field}: a {node.key.upper()} inside the query is refused; the query must only read"
            )
        if isinstance(node, exp.Select) and (node.args.get("into") or node.args.get("locks")):
            clause = "SELECT ... INTO" if node.args.get("into") else "FOR UPDATE / FOR SHARE"
            raise ConfigurationError(f"{field}: {clause} is refused; the query must only read")
        if isinstance(node, exp.Anonymous | exp.Func):
            denied = _function_names(node) & DENIED_FUNCTIONS
            if denied or any(n.startswith("system$") for n in _function_names(node)):
                name = sorted(denied)[0] if denied else node.name
                raise ConfigurationError(
                    f"{field}: function {name}() is refused (it reaches files, other servers or "
                    "session state)"
                )
        if isinstance(node, exp.Table) and _FILE_NAME.search(node.name):
            raise ConfigurationError(
                f"{field}: reading the file {node.name!r} is refused; name a table"
            )
