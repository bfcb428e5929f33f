"""Commands that wait, interrupted with real SIGINTs once their jobs run."""

from __future__ import annotations

import signal
import subprocess
import sys

from ..conftest import wait_for
from .streams import read_until


def interrupted(cmq, argv: list[str], tag: str, jobs: int, twice: bool = False) -> tuple[int, str, list[dict]]:
    """Run `cmq ARGV` (its jobs' commands hold ``tag``), send a SIGINT once its ``jobs`` jobs
    run (and a second one as soon as it said so, when ``twice``); its exit code, what it
    printed on stderr, and its jobs as `cmq jobs` lists them."""
    proc = subprocess.Popen([sys.executable, "-m", "cmqueue", *argv], env=cmq.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def mine() -> list[dict]:
        return [r for r in cmq.run("jobs", "--json", "--last=50").json() if tag in r["command"]]

    try:
        wait_for(lambda: len(mine()) == jobs and all(r["state"] == "running" for r in mine()), timeout=60,
                 what="the jobs to run")
        proc.send_signal(signal.SIGINT)
        err = read_until(proc.stderr, "cancels them", timeout=30)
        if twice:
            proc.send_signal(signal.SIGINT)
        err += proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    return code, err, mine()
