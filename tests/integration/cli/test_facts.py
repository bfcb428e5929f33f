"""Facts about machines through real Celery workers and real sshd machines on loopback:
`cmq machines facts` and `cmq submit --where` (issue 34, part 5)."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import make_env, teardown

#: The inventory's own probes: one for every machine, one that m1 and m3 have.
SECTIONS = {"facts": {"answer": "echo 42"}}
SITE = {"facts": {"site": "echo lab-b"}}


@pytest.fixture(scope="module")
def fenv(tmp_path_factory):
    """3 machines (m1, m2 labelled cpu; m3 big); m1 and m3 have the fact site=lab-b."""
    cenv = make_env(tmp_path_factory.mktemp("facts"), machines=3, slots=2, first=245,
                    labels={"m1": ["cpu"], "m2": ["cpu"], "m3": ["big"]}, sections=SECTIONS,
                    machine_fields={"m1": SITE, "m3": SITE})
    yield cenv
    teardown(cenv)


def _jobs(cenv) -> int:
    return len(cenv.run("jobs", "--last=100000", "--json", check=True).json())


@pytest.mark.timeout(180)
def test_facts_give_cpus_memory_and_os_of_every_machine_and_are_stored(fenv):
    r = fenv.run("machines", "facts", "--json", check=True)
    rows = {row["machine"]: row for row in r.json()}
    assert list(rows) == ["m1", "m2", "m3"]
    for name, row in rows.items():
        facts = row["facts"]
        assert row["error"] is None and row["gathered"] <= time.time()
        assert facts["cpus"] == os.cpu_count()
        assert facts["mem_gb"] > 0.1 and facts["disk_free_gb"] > 0
        assert facts["os"] and facts["kernel"] == os.uname().release
        assert isinstance(facts["load"], float)
        assert facts["answer"] == 42
        assert facts.get("site") == ("lab-b" if name in ("m1", "m3") else None)
    cached = fenv.run("machines", "facts", "--cached", "--json", check=True).json()
    assert cached == r.json()                          # the history keeps them, with their time
    table = fenv.run("machines", "facts", "--cached", check=True).out.splitlines()
    assert table[0].split()[:4] == ["machine", "cpus", "mem_gb", "disk_free_gb"]
    assert "answer" in table[0] and "site" in table[0]
    assert table[1].split()[:2] == ["m1", str(os.cpu_count())]


@pytest.mark.timeout(180)
def test_where_runs_on_the_machines_that_match_and_nothing_when_none_matches(fenv):
    r = fenv.run("submit", "--where", "cpus>=1", "--all", "--wait", "--json", "echo $CMQ_MACHINE", check=True)
    assert sorted(rec["stdout"].strip() for rec in r.json()) == ["m1", "m2", "m3"]
    assert "where cpus>=1: m1,m2,m3 (3 of 3)" in r.err
    before = _jobs(fenv)
    r = fenv.run("submit", "--where", "cpus>=4096", "--all", "--wait", "echo never")
    assert r.code == 2 and r.out == ""
    assert r.err.strip() == f"cmq: no machine matches --where 'cpus>=4096'; m1,m2,m3: cpus={os.cpu_count()}"
    assert _jobs(fenv) == before                       # nothing was sent


@pytest.mark.timeout(180)
def test_where_chooses_a_label_any_machine_or_spreads_the_jobs(fenv):
    r = fenv.run("submit", "--where", "site==lab-b", "--wait", "--json", "echo $CMQ_MACHINE {}",
                 ":::", "a", "b", "c", "d", check=True)
    assert "where site==lab-b: m1,m3 (2 of 3) (jobs spread over them, pinned in turn)" in r.err
    ran = sorted(rec["stdout"].split()[0] for rec in r.json())
    assert ran == ["m1", "m1", "m3", "m3"]
    r = fenv.run("submit", "--where", "answer==42", "--json", "true", check=True)
    assert r.json()["jobs"][0]["target"] == "any" and "(any machine)" in r.err
    r = fenv.run("submit", "--where", "answer == 42 and not site==lab-b or os=='no such'", "--json", "true",
                 check=True)
    assert r.json()["jobs"][0]["target"] == "machine:m2"
    r = fenv.run("submit", "--where", "(site==lab-b or answer>40) and cpus>0", "--label=cpu", "--json", "true",
                 check=True)
    assert r.json()["jobs"][0]["target"] == "label:cpu" and "(2 of 2) (label cpu)" in r.err
    r = fenv.run("submit", "--where", "site==lab-b", "--label=cpu", "--wait", "--json", "echo $CMQ_MACHINE",
                 check=True)
    assert [rec["stdout"] for rec in r.json()] == ["m1\n"]
    r = fenv.run("submit", "--where", "site==lab-b", "--on=m[2-3]", "--wait", "--json", "echo $CMQ_MACHINE",
                 check=True)
    assert [rec["stdout"] for rec in r.json()] == ["m3\n"] and "(1 of 2)" in r.err


@pytest.mark.timeout(180)
def test_stale_facts_are_gathered_again_and_fresh_ones_are_used_as_they_are(fenv):
    with fenv.cluster_api() as c:
        c.store.set_facts("m2", time.time(), {"cpus": 999999, "os": "made-up"})
    r = fenv.run("submit", "--where", "cpus>=999999", "--json", "true", check=True)   # fresh: not gathered
    assert r.json()["jobs"][0]["target"] == "machine:m2"
    with fenv.cluster_api() as c:
        c.store.set_facts("m2", time.time() - 2 * 3600, {"cpus": 999999, "os": "made-up"})
    r = fenv.run("submit", "--where", "cpus>=999999", "--json", "true")                # stale: gathered again
    assert r.code == 2 and f"cpus={os.cpu_count()}" in r.err
    with fenv.cluster_api() as c:
        assert c.store.facts(["m2"])["m2"]["facts"]["cpus"] == os.cpu_count()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("expr", "words"), [
    ("gpus>1", "column 1: unknown fact 'gpus' "
               "(known: cpus, mem_gb, disk_free_gb, os, kernel, python, load, answer, site)"),
    ("cpus>", "column 6: expected a value after '>', found the end"),
    ("cpus=4", "column 5: '=' is not a comparison; use '=='"),
])
def test_a_wrong_where_is_one_line_and_exit_2(fenv, expr, words):
    r = fenv.run("submit", "--where", expr, "true")
    assert r.code == 2 and r.out == ""
    assert r.err.strip() == f"cmq: --where {expr!r}: {words}"


@pytest.mark.timeout(180)
def test_a_machine_that_does_not_answer_gets_a_row_and_its_job_is_cancelled(tmp_path):
    cenv = make_env(tmp_path, machines=1, slots=1, first=249, settings={"facts_timeout": 4})
    try:
        cenv.cluster.machine("m1").stop()                 # unreachable from now on
        r = cenv.run("machines", "facts", "--timeout=3", "--json")
        assert r.code == 1
        (row,) = r.json()
        assert row["machine"] == "m1" and row["facts"] is None
        assert row["error"].startswith("no answer within 3 s (its gather job was cancelled)")
        (job,) = cenv.run("jobs", "--json", check=True).json()
        assert job["state"] == "cancelled"
        r = cenv.run("submit", "--where", "cpus>=1", "true", timeout=60)     # the setting facts_timeout
        assert r.code == 2
        assert r.err.startswith("cmq: no machine matches --where 'cpus>=1'; m1: no facts (no answer within 4 s")
        assert {j["state"] for j in cenv.run("jobs", "--json", check=True).json()} == {"cancelled"}
    finally:
        teardown(cenv)
