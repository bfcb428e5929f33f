"""`cmq shell < script` against a live cluster: each line runs as `cmq LINE` would, in one
process, and the exit status is that of the last failure."""

from __future__ import annotations

import pytest

from tests.conftest import make_env, teardown


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cenv = make_env(tmp_path_factory.mktemp("shell"), machines=2, slots=2, first=229)
    yield cenv
    teardown(cenv)


def test_a_script_of_commands_runs_jobs_and_reads_them_back(env):
    script = "\n".join([
        "# a comment, then jobs on both machines",
        "submit --all --wait 'echo from $(hostname -s 2>/dev/null || echo here) ${CMQ_MACHINE}'",
        "jobs --last=2 --json",
        "machines",
        "submit --on=m1 --wait 'exit 3'",
        "cmq submit --on=m2 --wait 'echo still going'",
    ]) + "\n"
    r = env.run("shell", stdin=script, timeout=120)
    assert r.code == 1, r.err                                   # the failed job's status
    assert r.out.count("still going") == 1
    assert "m1" in r.out and "m2" in r.out
    assert "cmq>" not in r.out                                  # no prompt without a terminal
    ok = env.run("shell", stdin="submit --all --wait true\n", timeout=120)
    assert ok.code == 0, ok.err
