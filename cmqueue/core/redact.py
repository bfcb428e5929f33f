"""Keep secrets out of output: URLs are printed with their password masked."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str | None) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``; secrets in the query
    (``password``, ``sentinel_password``) are masked too. Works on URLs naming several hosts."""
    if not url:
        return str(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    netloc = f"{user}:***@{hosts}" if colon and password else parts.netloc
    query = "&".join(f"{k}=***" if "password" in k.lower() else f"{k}={v}" if v or "=" in pair else k
                     for pair in parts.query.split("&") if pair
                     for k, _, v in [pair.partition("=")])
    if netloc == parts.netloc and query == parts.query:
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
