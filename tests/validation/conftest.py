"""Projects with an embedded source (SQLite) and target (DuckDB) holding the small warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from warehouse import make_project


@pytest.fixture
def project_factory(tmp_projects: Path):
    def factory(project_id: str = "retail", **kwargs: Any) -> Path:
        return make_project(tmp_projects, project_id, **kwargs)

    return factory
