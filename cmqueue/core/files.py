"""Private files and directories: created 0600/0700, refused when others can read them."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import InsecureFileError


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed and make sure it is ours and mode 0700."""
    p = Path(path).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    st = p.stat()
    if st.st_uid != os.getuid():
        raise InsecureFileError(f"{p}: directory is owned by uid {st.st_uid}, not by you")
    if stat.S_IMODE(st.st_mode) & 0o077:
        p.chmod(0o700)
    return p


def check_private(path: str | os.PathLike, what: str = "file") -> None:
    """Raise InsecureFileError when ``path`` is readable or writable by group or others."""
    p = Path(path).expanduser()
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise InsecureFileError(
            f"{p}: {what} holds secrets but is accessible by group/others "
            f"(mode {mode:04o}); run: chmod 600 {p}"
        )


def write_private(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically with mode 0600 (never half-written)."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it does not exist."""
    p = Path(path).expanduser()
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        return default


def write_json_private(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON, atomically, mode 0600."""
    return write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
