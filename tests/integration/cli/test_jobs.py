"""Jobs through real Celery workers to real sshd machines on loopback."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from collections import defaultdict

import psutil

from tests.conftest import make_env, teardown, wait_for
from tests.support.interrupt import interrupted


def no_process_with(text: str) -> bool:
    for p in psutil.process_iter(["cmdline"]):
        if text in " ".join(p.info["cmdline"] or []):
            return False
    return True


def test_round_trip_through_the_python_api(cmq):
    with cmq.cluster_api() as c:
        job = c.submit("echo hello; echo to-err >&2; pwd", on="m1")
        res = job.wait(timeout=60)
    assert res.ok and res.exit_code == 0
    assert res.machine == "m1"
    assert res.stdout.splitlines() == ["hello", str(cmq.workdir("m1"))]
    assert res.stderr == "to-err\n"
    assert res.started <= res.ended and res.duration >= 0


def test_round_trip_through_the_command_line(cmq):
    r = cmq.run("submit", "--wait", "--on=m2", "echo", "$CMQ_MACHINE", check=True)
    assert r.out == "m2\n"


def test_untargeted_jobs_spread_over_all_machines(cmq):
    r = cmq.run("submit", "--wait", "--json", ": {}; sleep 0.3; echo $CMQ_MACHINE", ":::", *map(str, range(12)),
                check=True)
    records = r.json()
    assert {rec["state"] for rec in records} == {"succeeded"}
    assert {rec["machine"] for rec in records} == {"m1", "m2", "m3"}
    assert all(rec["stdout"].strip() == rec["machine"] for rec in records)


def test_a_machines_slots_are_never_exceeded(cmq):
    log = f"spans-{uuid.uuid4().hex}.log"
    cmd = f': {{}}; s=$(date +%s.%N); sleep 0.3; e=$(date +%s.%N); echo "$s $e" >> {log}'
    cmq.run("submit", "--wait", cmd, ":::", *map(str, range(24)), check=True)
    peak = {}
    total = 0
    for m in ("m1", "m2", "m3"):
        path = cmq.workdir(m) / log
        spans = [tuple(map(float, line.split())) for line in path.read_text().splitlines()] if path.exists() else []
        total += len(spans)
        points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
        running = best = 0
        for _, delta in points:
            running += delta
            best = max(best, running)
        peak[m] = best
    assert total == 24
    assert max(peak.values()) <= 2, peak          # slots: 2 per machine
    assert max(peak.values()) == 2, peak          # and the slots are really used


def test_pinning_by_name_by_hostlist_and_by_label(cmq):
    r = cmq.run("submit", "--wait", "--json", "--on=m2", "echo {}", ":::", "a", "b", "c", check=True)
    assert {rec["machine"] for rec in r.json()} == {"m2"}
    r = cmq.run("submit", "--wait", "--json", "--on=m[1,3]", "hostname", check=True)
    assert sorted(rec["machine"] for rec in r.json()) == ["m1", "m3"]
    r = cmq.run("submit", "--wait", "--json", "--label=cpu", "sleep 0.2; : {}", ":::", *map(str, range(8)), check=True)
    assert {rec["machine"] for rec in r.json()} <= {"m1", "m2"}
    r = cmq.run("submit", "--wait", "--json", "--all", "echo $CMQ_MACHINE", check=True)
    assert sorted(rec["stdout"].strip() for rec in r.json()) == ["m1", "m2", "m3"]


def test_wait_prints_every_machines_output_tagged_and_in_order(cmq):
    r = cmq.run("submit", "--all", "--wait", "echo on $CMQ_MACHINE; echo warn >&2", check=True)
    assert r.out == "m1: on m1\nm2: on m2\nm3: on m3\n"
    assert "m1 (stderr): warn\nm2 (stderr): warn\nm3 (stderr): warn\n" in r.err
    # ::: jobs come back in argument order, whichever machine ran them and whenever.
    r = cmq.run("submit", "--wait", "sleep 0.$((5 - {})); echo arg {}", ":::", "1", "2", "3", "4", check=True)
    assert [line.split(": ", 1)[1] for line in r.out.splitlines()] == ["arg 1", "arg 2", "arg 3", "arg 4"]
    assert all(line.split(": ")[0] in ("m1", "m2", "m3") for line in r.out.splitlines())


def test_gather_folds_identical_outputs_under_their_machines(cmq):
    r = cmq.run("submit", "--all", "--wait", "-b", "echo same", check=True)
    assert r.out == "---------------\nm[1-3] (3)\n---------------\nsame\n"
    r = cmq.run("submit", "--all", "--wait", "--gather", '[ "$CMQ_MACHINE" = m2 ] && echo two || echo other',
                check=True)
    assert r.out == ("---------------\nm[1,3] (2)\n---------------\nother\n"
                     "---------------\nm2 (1)\n---------------\ntwo\n")
    batch = cmq.run("submit", "--json", "--all", "echo again", check=True).json()["batch"]
    r = cmq.run("wait", "-b", batch, check=True)                # `cmq wait` shows the same
    assert r.out == "---------------\nm[1-3] (3)\n---------------\nagain\n"


def test_hostile_arguments_arrive_verbatim(cmq, tmp_path):
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); \"'\n`touch {marker}` ; rm -rf nothing ||"
    r = cmq.run("submit", "--wait", "--json", "printf %s {}", ":::", hostile, check=True)
    assert r.json()[0]["stdout"] == hostile
    with cmq.cluster_api() as c:
        res = c.submit(f"printf %s {shlex.quote(hostile)}", on="m1").wait(timeout=60)
    assert res.ok and res.stdout == hostile
    assert not marker.exists()


def test_env_reaches_the_job_quoted(cmq):
    r = cmq.run("submit", "--wait", "--env=GREETING=hi there; $(id)", 'printf %s "$GREETING"', check=True)
    assert r.out == "hi there; $(id)"


def test_failure_exits_non_zero_and_shows_machine_exit_code_and_stderr(cmq):
    r = cmq.run("submit", "--wait", "--on=m3", "echo line1 >&2; echo boom >&2; exit 4")
    assert r.code == 1
    assert "failed on m3 (exit 4)" in r.err and "line1\nboom\n" in r.err
    assert "Traceback" not in r.err


def test_timeout_kills_the_remote_process_tree(cmq):
    marker = f"sleep 37.{uuid.uuid4().int % 10000:04d}"
    r = cmq.run("submit", "--wait", "--json", "--timeout=1", f"{marker} & {marker}; echo never")
    assert r.code == 1
    (rec,) = r.json()
    assert rec["state"] == "failed" and rec["reason"] == "timed out after 1s"
    assert "never" not in rec["stdout"]
    assert wait_for(lambda: no_process_with(marker), timeout=10, what="the remote sleep to be gone")


def test_retries_run_a_failed_job_again(cmq):
    counter = f"count-{uuid.uuid4().hex}"
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo try $n; [ $n -ge 3 ]"
    r = cmq.run("submit", "--wait", "--json", "--on=m1", "--retries=2", cmd, check=True)
    (rec,) = r.json()
    assert rec["state"] == "succeeded" and rec["attempt"] == 3 and rec["stdout"] == "try 3\n"


def test_cancel_kills_a_running_job_and_drops_a_queued_one(cmq):
    marker = f"sleep 38.{uuid.uuid4().int % 10000:04d}"
    flag = f"ran-{uuid.uuid4().hex}"
    with cmq.cluster_api() as c:
        blockers = [c.submit(marker, on="m3") for _ in range(2)]   # both slots of m3
        queued = c.submit(f"touch {flag}", on="m3")
        wait_for(lambda: all(b.state.value == "running" for b in blockers), what="blockers running")
        assert queued.state.value == "queued"
        r = cmq.run("cancel", "--json", queued.id, blockers[0].id, blockers[1].id, check=True)
        states = {rec["id"]: rec["state"] for rec in r.json()}
        assert states == {queued.id: "cancelled", blockers[0].id: "cancelled", blockers[1].id: "cancelled"}
        wait_for(lambda: no_process_with(marker), timeout=10, what="cancelled sleeps to be gone")
        # m3 is free again; the cancelled job never ran even though its message was delivered.
        after = c.submit("true", on="m3")
        assert after.wait(timeout=60).ok
    assert not (cmq.workdir("m3") / flag).exists()


def test_status_jobs_and_logs(cmq):
    r = cmq.run("submit", "--json", "--on=m1", "echo out-line; echo err-line >&2", check=True)
    job = r.json()["jobs"][0]["id"]
    cmq.run("wait", job, check=True)
    st = cmq.run("status", "--json", job, check=True).json()
    assert st[0]["state"] == "succeeded" and st[0]["machine"] == "m1"
    assert cmq.run("logs", job, check=True).out == "out-line\n"
    assert cmq.run("logs", "--stderr", job[:10], check=True).out == "err-line\n"
    listed = cmq.run("jobs", "--json", "--last=3", check=True).json()
    assert listed[-1]["id"] == job
    failed = cmq.run("jobs", "--json", "--state=failed", "--last=1000", check=True).json()
    assert all(j["state"] == "failed" for j in failed)
    r = cmq.run("status", "nosuchjob")
    assert r.code == 2 and "no job or batch 'nosuchjob'" in r.err



LOADED = """
import sys
from cmqueue.cli.main import main
try:
    code = main(sys.argv[1:])
finally:
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"celery", "kombu", "rich", "redis"})
    print("LOADED", *heavy, file=sys.stderr)
raise SystemExit(code)
"""


def loaded(cmq, *argv: str) -> tuple[str, list[str]]:
    """Run ``cmq ARGV`` into a pipe; (its stdout, the heavy packages it imported)."""
    proc = subprocess.run([sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, env=cmq.env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr.strip().splitlines()[-1].split()[1:]


def test_listings_read_what_the_recorder_keeps_and_load_no_broker_client(cmq):
    # No client catches the stream up here (no --wait, no `cmq wait`): the recorder that
    # `cmq up` started applies the events, and listings read the store it keeps.
    job = cmq.run("submit", "--json", "--on=m2", "echo kept-by-the-recorder", check=True).json()["jobs"][0]["id"]
    wait_for(lambda: json.loads(loaded(cmq, "status", "--json", job)[0])[0]["state"] == "succeeded", timeout=60,
             what="the recorder to record the job's end")
    for argv in (["status", job], ["status"], ["jobs", "--last=5"], ["logs", job]):
        out, heavy = loaded(cmq, *argv)
        assert heavy == [], (argv, heavy)                  # no Celery, kombu, redis-py or rich
    assert loaded(cmq, "logs", job)[0] == "kept-by-the-recorder\n"
    assert job[:6] in loaded(cmq, "jobs", "--last=5")[0]


def test_without_a_recorder_listings_catch_the_history_up_themselves(tmp_path):
    cenv = make_env(tmp_path, machines=1, slots=1, first=178)
    try:
        recorder = psutil.Process(json.loads((cenv.home / "services.json").read_text())["recorder"]["pid"])
        recorder.kill()
        recorder.wait(10)
        job = cenv.run("submit", "--json", "echo caught-up", check=True).json()["jobs"][0]["id"]
        wait_for(lambda: cenv.run("status", "--json", job).json()[0]["state"] == "succeeded", timeout=60,
                 what="the listing to apply the job's events itself")
        assert cenv.run("logs", job, check=True).out == "caught-up\n"
    finally:
        teardown(cenv)

def test_each_file_makes_one_job_per_line(cmq, tmp_path):
    args = tmp_path / "args.txt"
    args.write_text("alpha\n\nbeta gamma\n")
    r = cmq.run("submit", "--wait", "--json", f"--each={args}", "echo [{}]", check=True)
    assert sorted(rec["stdout"] for rec in r.json()) == ["[alpha]\n", "[beta gamma]\n"]


def test_map_through_the_api_keeps_order(cmq):
    with cmq.cluster_api() as c:
        jobs = c.map("echo $(( {} * {} ))", range(6))
        records = c.wait(jobs, timeout=60)
    assert [r.result.stdout.strip() for r in records] == [str(i * i) for i in range(6)]
    by_machine = defaultdict(int)
    for r in records:
        by_machine[r.machine] += 1
    assert sum(by_machine.values()) == 6


def test_machines_lists_and_checks(cmq):
    rows = cmq.run("machines", "--json", check=True).json()
    assert [r["name"] for r in rows] == ["m1", "m2", "m3"]
    assert all(r["worker"] == "consuming" for r in rows)
    checks = cmq.run("machines", "check", "--json", check=True).json()
    assert all(c["reachable"] and c["host_key"] == "ok" for c in checks)
    assert all(c["latency_ms"] > 0 for c in checks)


def _check_with_known_hosts(cmq, tmp_path, known):
    """`cmq machines check m1` through a copy of the inventory that trusts ``known``."""
    import yaml

    inv = yaml.safe_load(cmq.config.read_text())
    inv["defaults"]["ssh_options"]["UserKnownHostsFile"] = str(known)
    config = tmp_path / "cmq.yaml"
    config.write_text(yaml.safe_dump(inv))
    config.chmod(0o600)
    r = cmq.run("--config", str(config), "machines", "check", "--json", "m1")
    assert r.code == 1
    (row,) = r.json()
    return row


def test_unknown_host_key_is_refused_not_accepted(cmq, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    row = _check_with_known_hosts(cmq, tmp_path, empty)
    assert not row["reachable"] and row["host_key"] == "REJECTED", row
    assert empty.read_text() == ""            # nothing was added behind the user's back


def test_changed_host_key_is_refused_with_a_clear_message(cmq, tmp_path):
    import subprocess

    m1 = cmq.cluster.machine("m1")
    key = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{m1.address}]:{m1.port} {kind} {blob}\n")
    before = known.read_text()
    row = _check_with_known_hosts(cmq, tmp_path, known)
    assert (row["reachable"], row["host_key"]) == (False, "CHANGED"), row
    assert f"host key of [{m1.address}]:{m1.port} has CHANGED: refused" in row["error"]
    assert known.read_text() == before            # the recorded key was not replaced


def test_non_utf8_and_newlines_in_arguments_and_binary_output(cmq):
    r = cmq.run("submit", "--wait", "--json", "printf '%s' {} | od -An -tx1", ":::", "a\udcffb", "x\ny")
    assert r.code == 0, r.err
    assert sorted(j["stdout"].strip() for j in r.json()) == ["61 ff 62", "78 0a 79"]   # byte for byte
    r = cmq.run("submit", "--wait", "--json", "head -c 3000000 /dev/urandom")
    assert r.code == 0, r.err
    (rec,) = r.json()
    assert rec["state"] == "succeeded" and 0 < len(rec["stdout"].encode("utf-8", "surrogateescape")) <= 4 * 65536


def _interrupted_submit(cmq, tag: str, twice: bool) -> tuple[int, str, list[dict]]:
    """`cmq submit --all --wait 'sleep 30'`, interrupted (see :func:`interrupted`)."""
    return interrupted(cmq, ["submit", "--all", "--wait", f"sleep 30; echo {tag}"], tag, jobs=3, twice=twice)


def test_a_ctrl_c_during_wait_leaves_the_jobs_running_and_names_the_batch(cmq):
    """first-contact-round2: the first Ctrl-C stops waiting, not the jobs, and prints the
    batch id with the ways on; `cmq status` takes that id."""
    tag = uuid.uuid4().hex[:8]
    code, err, rows = _interrupted_submit(cmq, tag, twice=False)
    assert code == 130, err
    batch = rows[0]["batch"]
    assert f"`cmq wait {batch}`" in err and f"`cmq cancel {batch}`" in err
    status = cmq.run("status", "--json", batch, check=True).json()
    assert len(status) == 3 and {r["state"] for r in status} == {"running"}
    cancelled = cmq.run("cancel", "--json", batch, check=True).json()
    assert {r["state"] for r in cancelled} == {"cancelled"}


def test_a_second_ctrl_c_cancels_the_jobs_on_their_machines(cmq):
    tag = uuid.uuid4().hex[:8]
    code, err, rows = _interrupted_submit(cmq, tag, twice=True)
    assert code == 130, err
    assert f"cancelled 3 of 3 job(s) of {rows[0]['batch']}" in err
    assert {r["state"] for r in rows} == {"cancelled"}
    assert wait_for(lambda: no_process_with(f"sleep 30; echo {tag}"), timeout=30, what="the jobs' processes to end")
