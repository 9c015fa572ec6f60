"""Secret scrubbing: registered secrets and inline passwords never leave the process."""

from __future__ import annotations

import logging

from prefect_ombudsman.redaction import (
    MASK,
    SecretScrubbingFilter,
    register_secret,
    scrub,
    scrub_data,
)


def test_long_secret_is_masked_anywhere():
    register_secret("Long-Secret-Value-123")
    assert scrub("dsn=x:Long-Secret-Value-123@host") == f"dsn=x:{MASK}@host"


def test_short_secret_is_masked_only_as_a_whole_token():
    register_secret("snow")
    assert scrub("snowflake://fake:snow@fakesnow/db") == f"snowflake://fake:{MASK}@fakesnow/db"
    assert scrub("none of the snowflake tables") == "none of the snowflake tables"


def test_inline_passwords_in_odbc_strings_and_urls_are_masked_unregistered():
    assert "hunter2" not in scrub("DRIVER={X};SERVER=a;PWD=hunter2;UID=u")
    assert "hunter2" not in scrub("DRIVER={X};PWD={hunt;er2};")
    assert "hunter2" not in scrub("postgresql://user:hunter2@db:5432/x")


def test_scrub_data_walks_json_structures():
    register_secret("Another-Long-Secret")
    data = {"a": ["x Another-Long-Secret y", 3], "b": {"c": "Another-Long-Secret"}}
    assert "Another-Long-Secret" not in str(scrub_data(data))


def test_log_filter_masks_messages_and_exception_text():
    register_secret("Log-Secret-Value-77")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "connecting with %s", ("Log-Secret-Value-77",), None
    )
    SecretScrubbingFilter().filter(record)
    assert "Log-Secret-Value-77" not in record.getMessage()
