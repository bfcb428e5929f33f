"""What cmq keeps with an object, and how it reads what other tools kept.

cmq writes two metadata keys on S3 and Azure: ``sha256`` (the file's SHA-256, hex: object
stores keep only an MD5, and not even that for multipart uploads) and ``mtime`` (the
file's time). ``mtime`` is written in the form rclone writes and reads on each service:
epoch seconds on S3, RFC 3339 with nanoseconds on Azure; either form is read on both.
An object another tool stored has no ``sha256``: its copy is checked against the MD5 the
service keeps (Azure's Content-MD5, an S3 ETag of an object put in one piece).
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import math
import re
import time

#: Where S3 and Azure put an object's metadata among a GET's headers.
META_PREFIX = {"s3": "x-amz-meta-", "azure": "x-ms-meta-"}


#: How a stored time is written, by service type: epoch seconds on S3 (the form rclone
#: and s3cmd write and read there), RFC 3339 with nanoseconds on Azure (rclone's form).
RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|z|[+-]\d\d:?\d\d)$")


def mtime_value(kind: str, mtime: float) -> str:
    """``mtime`` as the ``mtime`` metadata of a ``kind`` service (see RFC3339's note)."""
    if kind != "azure":
        return repr(mtime)
    whole = math.floor(mtime)
    nanos = round((mtime - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


def parse_mtime(text: str | None) -> float | None:
    """A stored ``mtime``: epoch seconds or RFC 3339 (whoever wrote it); None when it is
    neither."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    m = RFC3339.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8).upper().replace(":", "")
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
    try:
        whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return whole - offset + (float(m.group(7)) if m.group(7) else 0.0)


def served_md5(headers: dict[str, str]) -> str | None:
    """The MD5 (hex) a GET's headers give: Azure's Content-MD5, or an S3 ETag that is an
    MD5 (an object put in one piece; a multipart ETag ends in ``-N``)."""
    stored = headers.get("content-md5") or headers.get("x-ms-blob-content-md5")
    if stored:
        try:
            raw = base64.b64decode(stored, validate=True)
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw.hex()
    etag = headers.get("etag", "").strip('"').lower()
    return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None


def http_time(text: str) -> float:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return 0.0
    return parsed.timestamp() if parsed else 0.0
