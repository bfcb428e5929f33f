"""OpenSSH argv building and the remote job wrapper. Knows nothing of Celery.

cmq runs the ``ssh`` client as a subprocess so that the user's ~/.ssh/config (host
aliases, ProxyJump, agent) keeps working. Every call goes through a ControlMaster; a
machine gets enough masters that its concurrent sessions stay under sshd's MaxSessions.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config.inventory import Machine
from ..core import defaults

# The job wrapper, run by POSIX sh on the machine as
#   sh -c WRAPPER cmq-job WORKDIR JOB_ID COMMAND
# It enters the work directory, starts the command in a session of its own (so a
# timeout or a cancel can kill the whole process tree), records that session's pid in
# WORKDIR/.cmq/run/JOB_ID.pid and exits with the command's status. Exit 125 means the
# work directory could not be made.
JOB_WRAPPER = (
    'case "$1" in "~/"*) set -- "$HOME/${1#"~/"}" "$2" "$3";; "~") set -- "$HOME" "$2" "$3";; esac; '
    'mkdir -p -- "$1/.cmq/run" 2>/dev/null && cd -- "$1" '
    '|| { echo "cmq: cannot use work directory $1" >&2; exit 125; }; '
    'p="$1/.cmq/run/$2.pid"; '
    "command -v bash >/dev/null 2>&1 && b=bash || b=sh; "
    "command -v setsid >/dev/null 2>&1 && s=setsid || s=; "
    '$s $b -c "$3" </dev/null & c=$!; echo $c > "$p"; '
    "wait $c; r=$?; rm -f -- \"$p\"; exit $r"
)

# Kill a job's process group: TERM, wait up to GRACE seconds, then KILL.
#   sh -c KILLER cmq-kill WORKDIR JOB_ID GRACE
KILLER = (
    'case "$1" in "~/"*) set -- "$HOME/${1#"~/"}" "$2" "$3";; "~") set -- "$HOME" "$2" "$3";; esac; '
    'p="$1/.cmq/run/$2.pid"; [ -f "$p" ] || exit 0; c=$(cat "$p"); '
    'kill -TERM "-$c" 2>/dev/null || kill -TERM "$c" 2>/dev/null; i=0; '
    'while kill -0 "-$c" 2>/dev/null && [ $i -lt $(($3*10)) ]; do sleep 0.1; i=$((i+1)); done; '
    'kill -KILL "-$c" 2>/dev/null || kill -KILL "$c" 2>/dev/null; exit 0'
)


def quote_command(words: Sequence[str]) -> str:
    """Join ``words`` into one shell command line, each word quoted."""
    return " ".join(shlex.quote(w) for w in words)


def with_env(command: str, env: Mapping[str, str]) -> str:
    """Prefix ``command`` with quoted ``export`` statements for ``env``.

    ssh's SendEnv/SetEnv are ignored once a master is up (and sshd's AcceptEnv filters
    them), so variables travel inside the command line instead.
    """
    if not env:
        return command
    exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
    return f"export {exports}; {command}"


def job_argv(workdir: str, job_id: str, command: str) -> list[str]:
    """argv that runs ``command`` under the job wrapper (locally, or as the remote command)."""
    return ["sh", "-c", JOB_WRAPPER, "cmq-job", workdir, job_id, command]


def kill_argv(workdir: str, job_id: str, grace: float = defaults.KILL_GRACE) -> list[str]:
    """argv that kills the process group of a running job."""
    return ["sh", "-c", KILLER, "cmq-kill", workdir, job_id, str(int(max(1, grace)))]


def control_path(control_dir: Path, machine: Machine, index: int | str) -> str:
    """ControlPath of master ``index`` of ``machine`` (short: socket paths max ~104 bytes).

    The name carries a hash of everything that decides the connection (host, port, user,
    key, ssh options), so two inventories with a machine of the same name never share a
    master, and a changed option never reuses a master opened with the old one.
    """
    ident = repr((machine.host, machine.port, machine.user, machine.identity, machine.ssh_options,
                  machine.host_key_policy))
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    return str(control_dir / f"{machine.name[:40]}-{digest}-{index}")


def ssh_options(machine: Machine, control: str | None, *, persist: int = defaults.CONTROL_PERSIST,
                connect_timeout: int = defaults.CONNECT_TIMEOUT) -> list[str]:
    """The ``-o``/``-p``/``-l``/``-i`` options for ``machine``, without host or command."""
    # ssh keeps the first value given for an option: the inventory's ssh_options win
    # over these defaults by leaving them out.
    mine = {key.lower() for key, _ in machine.ssh_options}
    argv = ["-o", "BatchMode=yes"]
    for key, value in (("ConnectTimeout", int(connect_timeout)), ("ServerAliveInterval", 15),
                       ("ServerAliveCountMax", 3)):
        if key.lower() not in mine:
            argv += ["-o", f"{key}={value}"]
    if control:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
                 "-o", f"ControlPersist={int(persist)}"]
    if machine.host_key_policy == "accept-new":
        argv += ["-o", "StrictHostKeyChecking=accept-new"]
    elif machine.host_key_policy == "strict":
        argv += ["-o", "StrictHostKeyChecking=yes"]
    if machine.port:
        argv += ["-p", str(machine.port)]
    if machine.user:
        argv += ["-l", machine.user]
    if machine.identity:
        argv += ["-i", str(Path(machine.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
    for key, value in machine.ssh_options:
        argv += ["-o", f"{key}={value}"]
    return argv


def ssh_argv(machine: Machine, remote: Sequence[str] | None, control: str | None = None,
             extra: Sequence[str] = (), **kw: int) -> list[str]:
    """Full argv: ``ssh OPTIONS EXTRA -T -- HOST 'quoted remote argv'``.

    ``remote`` is an argv for the remote side; it is quoted word by word so that no
    argument can break out of the remote login shell. None opens a master only (-N).
    ``extra`` are more ssh options, after the machine's (a tunnel's forward).
    """
    argv = ["ssh", *ssh_options(machine, control, **kw), *extra, "-T"]
    if remote is None:
        return [*argv, "-N", "--", machine.host]
    return [*argv, "--", machine.host, quote_command(remote)]


def master_argv(machine: Machine, control: str, **kw: int) -> list[str]:
    """argv that opens master ``control`` in the background and returns once it is up."""
    argv = ssh_argv(machine, None, control=None, **kw)
    opts = ["-o", "ControlMaster=yes", "-o", f"ControlPath={control}",
            "-o", f"ControlPersist={int(kw.get('persist', defaults.CONTROL_PERSIST))}", "-f"]
    return [argv[0], *opts, *argv[1:]]      # first: ssh keeps the first value of an option


def check_master_argv(machine: Machine, control: str) -> list[str]:
    """argv that asks master ``control`` whether it is running (exit 0 if so)."""
    return ["ssh", "-o", f"ControlPath={control}", "-O", "check", "--", machine.host]


def exit_master_argv(machine: Machine, control: str) -> list[str]:
    """argv that tells master ``control`` to exit."""
    return ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "--", machine.host]


def explain_failure(stderr: str, machine: Machine) -> str:
    """One line saying why ssh failed; host key problems in words a user can act on."""
    target = f"[{machine.host}]:{machine.port}" if machine.port else machine.host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return (f"host key of {target} has CHANGED: refused (if the change is expected, remove the old key: "
                f"ssh-keygen -R '{target}', then accept the new one)")
    if "Host key verification failed" in stderr or "No matching host key" in stderr:
        return (f"host key of {target} is unknown: refused (check it and add it to known_hosts, "
                f"e.g. ssh-keyscan, or set host_key_policy: accept-new)")
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
