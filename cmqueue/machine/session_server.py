"""The remote half of the session transport: a small job server run by ``python3`` on a
machine, over one ssh session (through the machine's master).

It must stay standalone (stdlib only, Python 3.6+): the worker sends this file's source
as the first line of the session. Protocol: JSON lines. In: ``run`` {id, cmd, cwd, env},
``kill`` {id, grace}, ``ping``. Out: ``hello`` {pid, python, t: the machine's clock},
``started`` {id, pid}, ``o``/``e`` {id, d: base64 chunk of stdout/stderr}, ``done`` {id,
code, t0, t1}, ``pong``, ``error`` {id, msg}.
Each job runs in a session of its own so a kill reaches its whole process tree.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

_out_lock = threading.Lock()
_jobs = {}
_jobs_lock = threading.Lock()
_SHELL = shutil.which("bash") or "/bin/sh"


def send(msg):
    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
    with _out_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def pump(job_id, stream, tag):
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        send({"op": tag, "id": job_id, "d": base64.b64encode(chunk).decode()})
    stream.close()


def run(msg):
    job_id = msg["id"]
    try:
        cwd = os.path.expanduser(msg.get("cwd") or "~")
        if not os.path.isdir(cwd):
            os.makedirs(cwd, exist_ok=True)
        env = dict(os.environ)
        env.update(msg.get("env") or {})
        t0 = time.time()
        proc = subprocess.Popen([_SHELL, "-c", msg["cmd"]], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except Exception as e:  # the job could not start: report, never crash the server
        send({"op": "done", "id": job_id, "code": 125, "t0": time.time(), "t1": time.time(),
              "msg": f"cmq session: cannot start job: {e}"})
        return
    with _jobs_lock:
        _jobs[job_id] = proc
    send({"op": "started", "id": job_id, "pid": proc.pid})
    pumps = [threading.Thread(target=pump, args=(job_id, proc.stdout, "o")),
             threading.Thread(target=pump, args=(job_id, proc.stderr, "e"))]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join()
    with _jobs_lock:
        _jobs.pop(job_id, None)
    send({"op": "done", "id": job_id, "code": code if code >= 0 else 128 - code, "t0": t0, "t1": time.time()})


def kill(msg):
    with _jobs_lock:
        proc = _jobs.get(msg["id"])
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, float(msg.get("grace", 3))), (signal.SIGKILL, 0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.time() + wait
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # stragglers of the group
            except (ProcessLookupError, PermissionError):
                pass
            return


def main():
    send({"op": "hello", "pid": os.getpid(), "python": sys.version.split()[0], "t": time.time()})
    for line in sys.stdin.buffer:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        op = msg.get("op")
        if op == "run":
            threading.Thread(target=run, args=(msg,), daemon=True).start()
        elif op == "kill":
            threading.Thread(target=kill, args=(msg,), daemon=True).start()
        elif op == "ping":
            send({"op": "pong"})
    # The session ended (the worker went away): stop what still runs.
    with _jobs_lock:
        procs = list(_jobs.values())
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


if __name__ == "__main__":
    main()
