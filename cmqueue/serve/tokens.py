"""The bearer tokens of `cmq serve`: made by ``cmq serve token create NAME`` (printed
once), kept only as SHA-256 hashes in a 0600 file (refused when looser, as ssh refuses
keys), compared in constant time, revoked by name.

A token is ``cmq_`` followed by 43 characters of 32 random bytes: guessing is out of the
question, so one unsalted hash is enough to keep it (the file holds no secret to use).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.files import check_private, private_dir, read_json, write_json_private

#: What every token starts with (so a leaked one is easy to find in a scan).
PREFIX = "cmq_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens file (``<home>/serve/tokens.json``): name -> hash and dates."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cached: tuple[tuple[int, ...], dict[str, dict[str, Any]]] | None = None

    def _read(self) -> dict[str, dict[str, Any]]:
        """The tokens; read again only when the file changed (its inode, size, mtime or
        ctime: a chmod too), so a revoke takes effect at the next request."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._cached = None
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        check_private(self.path, "the tokens file")
        data = read_json(self.path, default={}) or {}
        tokens = data.get("tokens", {}) if isinstance(data, dict) else {}
        self._cached = (key, tokens)
        return tokens

    def create(self, name: str) -> str:
        """A new token called ``name`` (refused when the name is taken); the token itself,
        which is not kept and cannot be shown again."""
        if not _NAME.match(name):
            raise UsageError(f"token name {name!r}: letters, digits and _.@- (up to 64), starting with a letter "
                             "or digit")
        tokens = self._read()
        if name in tokens:
            raise UsageError(f"a token called {name!r} exists; revoke it first (`cmq serve token revoke {name}`)")
        token = PREFIX + secrets.token_urlsafe(32)
        tokens[name] = {"sha256": _digest(token), "created": time.time()}
        private_dir(self.path.parent)
        write_json_private(self.path, {"tokens": tokens})
        return token

    def names(self) -> list[dict[str, Any]]:
        """The tokens by name with their creation time (never the hash)."""
        return [{"name": n, "created": t.get("created")} for n, t in sorted(self._read().items())]

    def revoke(self, name: str) -> None:
        """Forget token ``name``: it no longer opens anything."""
        tokens = self._read()
        if name not in tokens:
            raise UsageError(f"no token called {name!r} (`cmq serve token list`)")
        del tokens[name]
        write_json_private(self.path, {"tokens": tokens})

    def check(self, token: str) -> str | None:
        """The name of ``token`` when it is a live token, else None (every hash compared,
        in constant time)."""
        return self.check_digest(_digest(token)) if token else None

    @staticmethod
    def digest(token: str) -> str:
        """What is kept of ``token``: its SHA-256, in hex."""
        return _digest(token)

    def check_digest(self, digest: str) -> str | None:
        """The name of the live token whose SHA-256 is ``digest``, else None."""
        found = None
        for name, entry in self._read().items():
            if hmac.compare_digest(digest, str(entry.get("sha256", ""))):
                found = name
        return found
