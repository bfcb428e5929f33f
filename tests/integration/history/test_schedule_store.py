"""The schedules of both history backends (SQLite, MongoDB): add, read, change, remove, and
the compare-and-set that makes a due time fire once, also between two stores that race."""

from __future__ import annotations

import threading

from cmqueue.history import open_store
from cmqueue.schedules.model import Schedule


def _doc(name: str = "nightly", checked: float = 100.0) -> dict:
    return Schedule(name, "0 3 * * *", "command", command="echo hi", on="node1", env={"A": "1"},
                    created=checked, checked=checked).to_dict()


def test_add_read_list_update_remove(history_store):
    s = history_store
    assert s.schedules() == [] and s.schedule("nightly") is None
    assert s.add_schedule(_doc()) is True
    assert s.add_schedule({**_doc(), "command": "other"}) is False            # the name is taken
    assert s.add_schedule(_doc("b-first", 5.0)) is True
    got = s.schedule("nightly")
    assert Schedule.from_dict(got) == Schedule.from_dict(_doc())
    assert [d["name"] for d in s.schedules()] == ["b-first", "nightly"]
    assert s.update_schedule("nightly", {"paused": True, "checked": 150.0}) is True
    assert s.schedule("nightly")["paused"] is True and s.schedule("nightly")["checked"] == 150.0
    assert s.update_schedule("nope", {"paused": True}) is False
    assert s.remove_schedule("nightly") is True and s.remove_schedule("nightly") is False
    assert [d["name"] for d in s.schedules()] == ["b-first"]


def test_a_claim_moves_checked_forward_once_and_counts(history_store):
    s = history_store
    s.add_schedule(_doc(checked=100.0))
    assert s.claim_schedule("nightly", 200.0, {"last_id": "b1", "last_due": 200.0}, count="fired") is True
    assert s.claim_schedule("nightly", 200.0, {"last_id": "b2"}, count="fired") is False     # same due time
    assert s.claim_schedule("nightly", 150.0, {"last_id": "b3"}, count="fired") is False     # an older one
    got = s.schedule("nightly")
    assert (got["checked"], got["last_id"], got["last_due"], got["fired"]) == (200.0, "b1", 200.0, 1)
    assert s.claim_schedule("nightly", 260.0, {}, count="skipped") is True
    got = s.schedule("nightly")
    assert (got["checked"], got["fired"], got["skipped"], got["last_id"]) == (260.0, 1, 1, "b1")
    assert s.claim_schedule("gone", 300.0, {}) is False


def test_two_stores_racing_for_one_due_time_one_wins(history_store, tmp_path):
    """Two store objects on one database (as two recorders would have), many threads each."""
    first = history_store
    url = f"sqlite:///{first.path}" if hasattr(first, "path") else first._url
    second = open_store(url)
    try:
        first.add_schedule(_doc(checked=0.0))
        for due in (60.0, 120.0, 180.0):
            wins: list[bool] = []
            start = threading.Barrier(8)

            def claim(store, due=due, wins=wins, start=start):
                start.wait(timeout=30)
                wins.append(store.claim_schedule("nightly", due, {"last_due": due}, count="fired"))

            threads = [threading.Thread(target=claim, args=(first if i % 2 else second,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert sorted(wins) == [False] * 7 + [True], due
        assert second.schedule("nightly")["fired"] == 3
    finally:
        second.close()
