"""The metadata cmq keeps with objects, in the forms other tools write and read, and the
summary of what a copy verified (never a check that did not happen)."""

import base64
import hashlib

import pytest

from cmqueue.storage.cloud_metadata import mtime_value, parse_mtime, served_md5
from cmqueue.storage.ops import verified_counts, verified_summary


def test_azure_times_are_rfc3339_with_nanoseconds_as_rclone_writes_them_and_s3_times_epoch_seconds():
    assert mtime_value("azure", 1760000000.5) == "2025-10-09T08:53:20.500000000Z"
    assert mtime_value("azure", 1760000000.0) == "2025-10-09T08:53:20.000000000Z"
    assert mtime_value("s3", 1760000000.5) == "1760000000.5"


@pytest.mark.parametrize("text, value", [
    ("2025-10-09T08:53:20.500000000Z", 1760000000.5),        # rclone on Azure
    ("2025-10-09T08:53:20Z", 1760000000.0),
    ("2025-10-09T10:53:20.25+02:00", 1760000000.25),
    ("1760000000.5", 1760000000.5),                            # rclone and cmq on S3
    ("1760000000", 1760000000.0),
])
def test_either_form_is_read_back(text, value):
    assert parse_mtime(text) == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2025-13-40T99:00:00Z", "2025-10-09 08:53"])
def test_a_time_that_is_neither_form_is_none(text):
    assert parse_mtime(text) is None


def test_every_time_round_trips_through_the_azure_form():
    for t in (0.0, 1.999999999, 1760000000.123456, 1760000000.999999):
        assert parse_mtime(mtime_value("azure", t)) == pytest.approx(t, abs=1e-6)


def test_the_md5_a_service_gives_azure_content_md5_or_a_single_part_etag_not_a_multipart_one():
    digest = hashlib.md5(b"data").digest()
    assert served_md5({"content-md5": base64.b64encode(digest).decode()}) == digest.hex()
    assert served_md5({"etag": f'"{digest.hex()}"'}) == digest.hex()
    assert served_md5({"etag": '"d41d8cd98f00b204e9800998ecf8427e-3"'}) is None        # multipart
    assert served_md5({"content-md5": "not base64!"}) is None
    assert served_md5({}) is None


def test_the_summary_says_what_was_verified_and_how():
    assert verified_summary(verified_counts([{"how": "put", "verified": "sha256"}] * 3)) == "verified by SHA-256"
    mixed = verified_counts([{"how": "get", "verified": "sha256"}, {"how": "get", "verified": "md5"},
                             {"how": "get", "verified": "reread"}, {"how": "mkdir", "verified": ""}])
    assert verified_summary(mixed) == ("verified 1 by SHA-256, 1 by the service's MD5, 1 by reading twice")
    inside = verified_counts([{"how": "copy within", "verified": "service"}])
    assert verified_summary(inside) == "1 copied inside the service, not read by cmq"
    assert "SHA-256" not in verified_summary(inside)
    assert verified_summary({}) == ""
