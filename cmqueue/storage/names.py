"""Names of files on a storage service, and addresses of the form ``SERVICE:PATH``.

A name is a relative POSIX path inside the service (``proj/a.csv``): no empty, ``.`` or
``..`` part, no NUL, no backslash. A path typed by a user may start with ``/`` (the
service's root) and may be empty (the root itself); :func:`object_name` turns it into a
name or refuses it with the reason. Providers check every name again before touching
anything, so no name escapes its directory or bucket.
"""

from __future__ import annotations

import posixpath

from ..core.errors import UsageError

#: Longest name an object store keeps (S3's limit in bytes).
MAX_NAME = 1024


class BadNameError(UsageError):
    """A storage path that is not a plain relative path inside the service."""


def object_name(path: str, allow_root: bool = False) -> str:
    """The name of ``path`` inside a service: leading and trailing ``/`` dropped, checked.
    The root (an empty name) is refused unless ``allow_root``."""
    if "\0" in path:
        raise BadNameError(f"{path!r}: a storage path cannot hold a NUL byte")
    if "\\" in path:
        raise BadNameError(f"{path!r}: a storage path uses '/', not '\\'")
    name = path.strip("/")
    if not name:
        if allow_root:
            return ""
        raise BadNameError(f"{path!r}: names the root of the service; give a file or directory")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadNameError(f"{path!r}: a storage path cannot have an empty, '.' or '..' part")
    if len(name.encode()) > MAX_NAME:
        raise BadNameError(f"{path[:40]!r}...: longer than {MAX_NAME} bytes")
    return name


def check_name(name: str) -> str:
    """``name`` itself when it is already a valid name (providers call this on every name)."""
    if name != "" and object_name(name) != name:
        raise BadNameError(f"{name!r}: not a plain relative name")
    return name


def join(directory: str, name: str) -> str:
    """``directory/name`` (either may be the root, ``""``)."""
    return check_name(posixpath.join(directory, name) if directory else name)


def basename(name: str) -> str:
    """The last part of a name."""
    return name.rsplit("/", 1)[-1]


def split_address(text: str, default: str | None) -> tuple[str | None, str]:
    """``(service, path)`` of ``SERVICE:PATH``; a text without a service prefix gives
    ``(default, text)``. A prefix that is not a plain service name (``./a:b``, ``C:\\x``)
    is part of the path."""
    head, sep, tail = text.partition(":")
    if sep and head and "/" not in head and all(c.isalnum() or c in "_.-" for c in head):
        return head, tail
    return default, text
