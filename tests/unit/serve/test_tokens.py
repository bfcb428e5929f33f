"""`cmq serve`'s tokens (cmqueue.serve.tokens) and console sessions (cmqueue.serve.auth)."""

from __future__ import annotations

import os

import pytest

from cmqueue.core.errors import CmqError
from cmqueue.serve.auth import Sessions
from cmqueue.serve.tokens import TokenStore


def test_a_token_is_kept_as_a_hash_and_checked_until_revoked(tmp_path):
    store = TokenStore(tmp_path / "serve" / "tokens.json")
    token = store.create("ci")
    assert token.startswith("cmq_") and token not in store.path.read_text()
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert store.check(token) == "ci" and store.check(token + "x") is None and store.check("") is None
    TokenStore(store.path).revoke("ci")               # by another process: `cmq serve token revoke`
    assert store.check(token) is None


def test_the_file_is_read_again_only_when_it_changed(tmp_path, monkeypatch):
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create("a")
    reads = []
    real = store.__class__._read.__globals__["read_json"]
    monkeypatch.setitem(store.__class__._read.__globals__, "read_json",
                        lambda *a, **k: reads.append(1) or real(*a, **k))
    for _ in range(5):
        assert store.check(token) == "a"
    assert len(reads) == 1
    other = TokenStore(store.path).create("b")      # written by another process
    reads.clear()
    assert store.check(other) == "b" and store.check(other) == "b" and len(reads) == 1


def test_a_tokens_file_made_readable_by_others_is_refused_at_once(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create("a")
    assert store.check(token) == "a"
    os.chmod(store.path, 0o644)                       # no write: only its ctime changes
    with pytest.raises(CmqError, match="tokens file"):
        store.check(token)


def test_a_session_keeps_the_tokens_hash_not_the_token_and_ends_with_it(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create("console")
    sessions = Sessions(store)
    sid = sessions.open(token)
    assert sid and sessions.who(sid) == "console"
    assert token not in repr(sessions._live)
    store.revoke("console")
    assert sessions.who(sid) is None
