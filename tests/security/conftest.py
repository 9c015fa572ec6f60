"""The REST API's client fixtures (tests/api_clients.py, also imported by tests/jobs)."""

from api_clients import *  # noqa: F403
