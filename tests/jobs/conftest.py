"""The REST API's client fixtures (defined in tests/api_clients.py, shared with tests/security)."""

from api_clients import (  # noqa: F401
    anon_client,
    api_app,
    auth_settings,
    client,
    full_token,
    readonly_client,
    readonly_token,
)
