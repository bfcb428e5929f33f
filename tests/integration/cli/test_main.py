"""Bad input on the command line: one clear line, exit 2, no traceback, nothing half-done."""

import os
import subprocess
import sys

import pytest


def cmq(*args, env=None, cwd=None):
    e = {**os.environ, **(env or {})}
    e.pop("CMQ_BROKER", None)
    return subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=e,
                          cwd=cwd, timeout=60)


@pytest.fixture
def inv(tmp_path):
    key = tmp_path / "id"
    key.write_text("not really a key")
    key.chmod(0o600)
    path = tmp_path / "cmq.yaml"
    path.write_text(f"defaults: {{identity: {key}}}\nmachines:\n  n1: {{labels: [cpu]}}\n  n2: {{}}\n")
    return path


def one_line_error(r, *fragments):
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0]


def test_help_is_the_usage_text():
    r = cmq("--help")
    assert r.returncode == 0 and "cmq submit" not in r.stdout and "submit" in r.stdout
    r = cmq("submit", "--help")
    assert r.returncode == 0 and "--label=L" in r.stdout and "::: ARG" in r.stdout


def test_bad_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "cmq.yaml"
    bad.write_text("machines:\n  n1: {slots: 2\n")
    one_line_error(cmq("--config", str(bad), "machines"), "cmq.yaml: line", "invalid YAML")


def test_bad_field_names_machine_and_field(tmp_path):
    bad = tmp_path / "cmq.yaml"
    bad.write_text("machines:\n  node3: {slots: four}\n")
    one_line_error(cmq("machines", env={"CMQ_CONFIG": str(bad)}),
                   "cmq.yaml: machines.node3.slots: must be a positive integer, got 'four'")


def test_unknown_machine_is_a_usage_error(inv, tmp_path):
    r = cmq("--config", str(inv), "submit", "--on=n9", "true", env={"CMQ_HOME": str(tmp_path / "h")})
    one_line_error(r, "unknown machine 'n9'", "machines: n1, n2")
    assert not (tmp_path / "h" / "history.db").exists()


def test_unknown_label_is_a_usage_error(inv, tmp_path):
    r = cmq("--config", str(inv), "submit", "--label=gpu", "true", env={"CMQ_HOME": str(tmp_path / "h")})
    one_line_error(r, "no enabled machine has label 'gpu'", "labels: cpu")


def test_unreadable_key_is_a_config_error(inv, tmp_path):
    (tmp_path / "id").chmod(0o644)
    r = cmq("--config", str(inv), "submit", "true", env={"CMQ_HOME": str(tmp_path / "h")})
    one_line_error(r, "machines.n1.identity", "accessible by group/others")
    (tmp_path / "id").unlink()
    r = cmq("--config", str(inv), "submit", "true", env={"CMQ_HOME": str(tmp_path / "h")})
    one_line_error(r, "machines.n1.identity", "cannot read")


def test_bad_numbers_and_env_are_usage_errors(inv, tmp_path):
    h = {"CMQ_HOME": str(tmp_path / "h")}
    one_line_error(cmq("--config", str(inv), "submit", "--timeout=soon", "true", env=h), "--timeout=soon")
    one_line_error(cmq("--config", str(inv), "submit", "--env=1X=2", "true", env=h), "--env=1X=2")
    one_line_error(cmq("--config", str(inv), "submit", "--on=n1", "--all", "true", env=h), "choose one of")
    one_line_error(cmq("--config", str(inv), "jobs", "--state=done", env=h), "--state=done: not a state")


def test_no_broker_says_what_to_do(inv, tmp_path):
    r = cmq("--config", str(inv), "submit", "true", env={"CMQ_HOME": str(tmp_path / "h")})
    assert r.returncode == 3 and "run `cmq up` first" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_broker_is_exit_3_and_hides_the_password(inv, tmp_path):
    r = cmq("--config", str(inv), "--broker", "redis://:topsecret@127.0.0.1:1/0", "submit", "true",
            env={"CMQ_HOME": str(tmp_path / "h")})
    assert r.returncode == 3, r
    assert "cannot reach the broker" in r.stderr and "topsecret" not in r.stderr


def test_unknown_command():
    r = cmq("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


TASKS = "def a(): return 'echo 1'\ndef b(): return 'echo 2'\ndef c(): return 'echo 3'\ndef d(): return 'echo 4'\n"


def test_fuzzed_expressions_through_the_cli_give_a_plan_or_one_line_error(inv, tmp_path, capsys, monkeypatch):
    """Any text as `cmq plan EXPR`: exit 0 with a plan, or exit 2 with one line naming the
    column; never a traceback, an internal error or a hang."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cmqueue.cli.main import main

    tasks = tmp_path / "tasks.py"
    tasks.write_text(TASKS)
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CMQ_BROKER", raising=False)
    pieces = st.sampled_from(["a", "b", "c", "d", "zz", "(", ")", "|", ";", "+", " ", "\n", "$(x)", "'", "é", "\x00"])
    texts = st.one_of(st.lists(pieces, max_size=25).map("".join), st.text(max_size=40))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(texts)
    def check(expr):
        capsys.readouterr()
        code = main(["--config", str(inv), "plan", f"--tasks={tasks}", "--", expr])
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "internal error" not in err, (expr, err)
        if code == 0:
            assert out.strip(), expr
        else:
            assert code == 2, (expr, code, err)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("cmq: "), (expr, err)

    check()


@pytest.mark.parametrize("argv, fragments", [
    (["submit", "--lable=gpu", "x"], ["unknown option --lable", "did you mean `--label`"]),
    (["status", "--jsn"], ["unknown option --jsn", "did you mean `--json`"]),
    (["--bogus", "jobs"], ["unknown option --bogus", "cmq --help"]),
    (["machines", "chek"], ["unknown subcommand 'chek'", "did you mean `check`"]),
    (["vagrant", "upp", "3"], ["unknown subcommand 'upp'", "did you mean `up`"]),
    (["sumbit", "true"], ["unknown command 'sumbit'", "did you mean `submit`"]),
    (["machines", "join"], ["usage: cmq machines join [options] NAME"]),
    (["jobs", "extra"], ["usage: cmq jobs"]),
])
def test_mistakes_on_the_command_line_are_one_line_with_a_suggestion(argv, fragments):
    r = cmq(*argv)
    one_line_error(r, *fragments)
    assert "Option(" not in r.stderr and "Argument(" not in r.stderr


@pytest.mark.parametrize("argv, word", [
    (["submit", "--wait", "echo hi", "--on=n1"], "--on=n1"),
    (["submit", "echo", "hi", "--wait"], "--wait"),
    (["map", "echo {}", "--reduce=sum", ":::", "1", "2"], "--reduce=sum"),
    (["submit", "echo {}", ":::", "a", "--json"], "--json"),
])
def test_an_option_of_cmq_after_the_command_is_refused_not_run(inv, tmp_path, argv, word):
    r = cmq("--config", str(inv), *argv, env={"CMQ_HOME": str(tmp_path / "h")})
    one_line_error(r, word, "put it before the command")
    assert not (tmp_path / "h" / "history.db").exists()        # nothing was submitted


def test_words_after_double_dash_belong_to_the_command(inv, tmp_path):
    # `--` hands every later word to the command: the check is passed and the submit goes
    # on to need a broker (none is configured here), so nothing about options is said.
    r = cmq("--config", str(inv), "submit", "--on=n1", "--", "ls", "--all", env={"CMQ_HOME": str(tmp_path / "h")})
    assert r.returncode != 0 and "option" not in r.stderr and "broker" in r.stderr


def test_a_closed_pipe_ends_quietly(inv, tmp_path):
    # A listing far larger than a pipe's buffer: the writer meets the closed pipe for sure.
    from cmqueue.core.models import JobRecord, JobSpec, new_id
    from cmqueue.history import open_store

    db = tmp_path / "history.db"
    store = open_store(f"sqlite:///{db}")
    store.add([JobRecord(spec=JobSpec(id=new_id(), command=f"echo {i} " + "x" * 40)) for i in range(3000)])
    store.close()
    inv.write_text(inv.read_text() + f"history: sqlite:///{db}\n")
    proc = subprocess.run(f"{sys.executable} -m cmqueue --config {inv} jobs --last=3000 | head -1", shell=True,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "CMQ_HOME": str(tmp_path)})
    assert proc.stdout.split() == ["job", "state", "machine", "exit", "started", "took", "command", "reason"]
    assert proc.stderr == ""
    # `true` exits before cmq has started, so the help text meets a pipe nobody reads.
    proc = subprocess.run(f"{sys.executable} -m cmqueue submit --help | true", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.stderr == ""


def test_every_command_is_where_the_dispatcher_looks():
    from cmqueue.cli.main import COMMAND_MODULES, command

    for name in COMMAND_MODULES:
        func = command(name)
        assert callable(func) and f"cmq {name}" in (func.__doc__ or ""), name


LOADED = """
import sys
from cmqueue.cli.main import main
try:
    code = main(sys.argv[1:])
finally:
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"celery", "kombu", "rich", "asyncio", "redis"})
    print("LOADED", " ".join(heavy), file=sys.stderr)
raise SystemExit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["status"], ["jobs"], ["status", "--json"],
                                  ["submit", "--help"]])
def test_listings_and_help_never_load_celery_and_into_a_pipe_not_rich(inv, tmp_path, argv):
    # Startup time is most of a listing's time: Celery (and its asyncio) and rich cost more
    # than the work. A listing into a pipe needs neither.
    proc = subprocess.run([sys.executable, "-c", LOADED, "--config", str(inv), *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CMQ_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "LOADED", proc.stderr


def test_the_client_finds_the_command_after_the_global_options():
    from cmqueue.cli.argv import command_word
    from cmqueue.cli.client import LAUNCHED

    assert command_word(["-c", "x.yaml", "--debug", "status", "--json"]) == "status"
    assert command_word(["--config", "x.yaml", "--broker", "redis://h", "submit", "true"]) == "submit"
    assert command_word(["--config=x.yaml", "jobs"]) == "jobs"
    assert command_word(["--help"]) is None
    # What starts or stops services, or runs in the foreground for long, runs in its own process.
    assert not LAUNCHED & {"up", "down", "worker", "recorder", "launcher", "flower", "demo", "vagrant"}


def test_a_large_inventory_lists_alike_machines_on_one_row(tmp_path):
    key = tmp_path / "id"
    key.write_text("not really a key")
    key.chmod(0o600)
    machines = "".join(f"  node{i:02d}: {{host: 10.0.0.{i}{', slots: 4' if i == 7 else ''}}}\n" for i in range(1, 41))
    path = tmp_path / "cmq.yaml"
    path.write_text(f"defaults: {{identity: {key}, slots: 2}}\nmachines:\n{machines}")
    env = {"CMQ_HOME": str(tmp_path / "h"), "COLUMNS": "200"}
    r = cmq("--config", str(path), "machines", env=env)
    assert r.returncode == 0, r.stderr
    assert "40 machines, 82 slots enabled: 40 -" in r.stdout
    rows = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip().startswith("node")]
    assert rows == ["node[01-06,08-40]", "node07"]
    assert "(39 hosts)" in r.stdout and "10.0.0.7" in r.stdout
    r = cmq("--config", str(path), "machines", "--long", env=env)
    assert len([ln for ln in r.stdout.splitlines() if ln.strip().startswith("node")]) == 40


def test_worker_part_must_be_a_share_of_the_workers(inv, tmp_path):
    one_line_error(cmq("--config", str(inv), "worker", "--part=3/2", env={"CMQ_HOME": str(tmp_path / "h")}),
                   "--part", "I/N")


@pytest.mark.parametrize("name", sorted(n for n in __import__("cmqueue.cli.main", fromlist=["x"]).COMMAND_MODULES
                                        if n not in ("recorder", "launcher")))
def test_every_commands_usage_text_parses(name):
    """A line of a usage text that starts with an option is read as an option's
    definition: a bad one breaks the command at run time, not at --help."""
    from docopt import docopt

    from cmqueue.cli.common import GLOBAL_OPTIONS
    from cmqueue.cli.main import command

    doc = (command(name).__doc__ or "") + GLOBAL_OPTIONS
    with pytest.raises(SystemExit):               # --help prints the usage and exits: it parsed
        docopt(doc, argv=[name, "--help"])
    r = cmq(name, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout, r.stderr


@pytest.mark.parametrize("argv, meant", [
    (["submit", "--al", "--wait", "uname"], "--all"),
    (["submit", "--wai", "--all", "uname"], "--wait"),
    (["map", "--red=sum", "echo {}", ":::", "1"], "--reduce"),
    (["--conf", "x.yaml", "status"], "--config"),
    (["jobs", "--las=3"], "--last"),
])
def test_an_abbreviated_option_is_refused_and_runs_nothing(inv, argv, meant):
    """first-contact-round2: docopt would take `--al` as `--all`; cmq takes options only as
    spelled, and says which one was meant (exit 2, before anything is read or sent)."""
    r = cmq("--config", str(inv), *argv) if argv[0] != "--conf" else cmq(*argv)
    typed = next(w.split("=")[0] for w in argv if w.startswith("--") and meant.startswith(w.split("=")[0]))
    one_line_error(r, f"unknown option {typed}:", f"did you mean `{meant}`")


def test_words_after_the_double_dash_are_the_commands_own(inv):
    from cmqueue.cli.parse import refuse_abbreviations

    refuse_abbreviations("Usage: cmq submit [options] COMMAND...\n\nOptions:\n  --all  every machine\n",
                         ["--all", "--", "echo", "--al"], "submit")
