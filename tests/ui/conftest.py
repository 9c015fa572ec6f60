"""The browser and notification tests share one Prefect site (see prefect_site.py)."""

from prefect_site import prefect_site  # noqa: F401 - the session fixture
