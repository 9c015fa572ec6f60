"""Connection blocks of this plugin (registered through the `prefect.collections` entry point)."""

from prefect_ombudsman.blocks.connection_blocks import (
    DatabaseConnection,
    SnowflakeConnection,
    SqlServerConnection,
)

__all__ = ["DatabaseConnection", "SnowflakeConnection", "SqlServerConnection"]
