"""The connection blocks pass Prefect's own standard test suite for collection blocks.

Prefect's logo check downloads `_logo_url`; this machine has no network, so the published URL is
answered with the file the package ships (the very file the URL names in this repository).
"""

from __future__ import annotations

import email.message
import urllib.request
import urllib.response
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.abstract import CredentialsBlock, DatabaseBlock
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type
from prefect.utilities.importtools import to_qualified_name

from prefect_ombudsman.blocks import DatabaseConnection, SnowflakeConnection, SqlServerConnection
from prefect_ombudsman.blocks.database import DOCUMENTATION_URL, LOGO_FILE, LOGO_URL

BLOCKS = [SqlServerConnection, SnowflakeConnection, DatabaseConnection]
REPO = Path(__file__).resolve().parents[2]


def _package_blocks() -> set[type[Block]]:
    import prefect_ombudsman.blocks  # noqa: F401  (registers the types)

    return {
        cls
        for cls in get_registry_for_type(Block).values()
        if to_qualified_name(cls).startswith("prefect_ombudsman.") and not cls.__abstractmethods__
    }


class _PublishedLogo(urllib.request.BaseHandler):
    """Answers the logo's published URL with the packaged file; other URLs go on as usual."""

    handler_order = 100  # before the default HTTPS handler

    def https_open(self, request: urllib.request.Request) -> urllib.response.addinfourl | None:
        if request.full_url != LOGO_URL:
            return None
        headers = email.message.Message()
        headers["Content-Type"] = "image/png"
        response = urllib.response.addinfourl(LOGO_FILE.open("rb"), headers, LOGO_URL, 200)
        response.msg = "OK"  # type: ignore[attr-defined]  # read by urllib's error processor
        return response


@pytest.fixture(autouse=True)
def published_logo() -> Iterator[None]:
    urllib.request.install_opener(urllib.request.build_opener(_PublishedLogo))
    try:
        yield
    finally:
        urllib.request.install_opener(None)  # type: ignore[arg-type]


def test_the_suite_covers_every_block_of_the_package():
    assert _package_blocks() == set(BLOCKS)


def test_logo_and_documentation_urls_name_files_of_this_repository():
    assert LOGO_URL.startswith("https://") and DOCUMENTATION_URL.startswith("https://")
    logo = LOGO_URL.split("/main/", 1)[1]
    assert (REPO / logo).resolve() == LOGO_FILE.resolve() and LOGO_FILE.is_file()
    assert (REPO / DOCUMENTATION_URL.split("/blob/main/", 1)[1]).is_file()


@pytest.mark.parametrize("cls", BLOCKS)
def test_blocks_implement_prefects_credentials_and_database_interfaces(cls):
    assert issubclass(cls, CredentialsBlock) and issubclass(cls, DatabaseBlock)
    assert not cls.__abstractmethods__


@pytest.mark.parametrize("block", BLOCKS)
class TestBlocksAdhereToPrefectStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block
