"""Per-database SQL pieces (`dialect_for`) and connection specs/engines (`connection`)."""

from prefect_ombudsman.dialects.base import Dialect, dialect_for

__all__ = ["Dialect", "dialect_for"]
