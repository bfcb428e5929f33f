"""`cmq shell`'s pure parts (line splitting, the words a usage offers, what completes
where) and its prompt driven through prompt_toolkit's own pipe input."""

from __future__ import annotations

import os

import pytest
import yaml

from cmqueue.cli.shell import Shell, completions, options_in, split_line, subcommands_in, usage_of


class FakeNames:
    """Names as a cluster would give them."""

    def machines(self):
        return ["node01", "node02", "gpu1"]

    def jobs(self):
        return ["j1abc", "b9batch"]

    def vdir(self, typed):
        return [p for p in ("/proj/", "/proj/a.csv", "/readme.txt") if p.startswith(typed[:1])]

    def cwd(self):
        return "/proj"


def test_a_line_splits_as_a_shell_splits_it_and_a_hash_starts_a_comment():
    assert split_line("submit --on=node01 'echo a b'  # run it") == ["submit", "--on=node01", "echo a b"]
    with pytest.raises(ValueError):
        split_line("submit 'unclosed")


def test_the_words_of_a_usage_are_its_subcommands_and_options():
    usage = usage_of("vdir")
    assert subcommands_in("vdir", usage) == ["mkdir", "cd", "pwd", "ls", "add", "delete", "status", "get",
                                             "replicate", "prefer"]
    assert {"--output", "--purge", "--verify", "--config", "--debug"} <= set(options_in(usage))
    assert subcommands_in("serve", usage_of("serve")) == ["token", "create", "list", "revoke"]


def test_what_completes_depends_on_where_the_cursor_is():
    names = FakeNames()
    first = completions([], "", names)
    assert {"submit", "vdir", "serve", "shell", "cd", "exit"} <= set(first) and "recorder" not in first
    assert "--wait" in completions(["submit"], "--w", names)
    assert completions(["submit"], "--on=node01,", names) == ["--on=node01,node01", "--on=node01,node02",
                                                               "--on=node01,gpu1"]
    assert completions(["submit", "--on"], "", names) == ["node01", "node02", "gpu1"]
    assert completions(["logs"], "", names) == ["j1abc", "b9batch"]
    assert completions(["vdir"], "", names)[:2] == ["mkdir", "cd"]
    assert completions(["vdir", "ls"], "/", names) == ["/proj/", "/proj/a.csv", "/readme.txt"]
    assert completions(["cd"], "/", names) == ["/proj/"]                      # cd: directories only
    assert "node02" in completions(["machines", "check"], "", names)


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    inv = tmp_path / "cmq.yaml"
    inv.write_text(yaml.safe_dump({"machines": {"here": {"mode": "local"}},
                                   "history": f"sqlite:///{tmp_path / 'history.db'}"}))
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CMQ_BROKER", raising=False)
    return inv


def test_the_completer_offers_prompt_toolkit_the_rest_of_the_word(inventory, tmp_path):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from cmqueue.cli.shell import Names, ShellCompleter

    Shell(["--config", str(inventory)], tmp_path / "h").run_line("vdir mkdir /data/raw")
    completer = ShellCompleter(Names(["--config", str(inventory)]))

    def offered(text):
        return [(c.text, c.start_position) for c in completer.get_completions(Document(text), CompleteEvent())]

    assert offered("cd /da") == [("/data/", -3)]
    assert offered("cd /data/") == [("/data/raw/", -6)]
    assert ("pwd", -2) in offered("pw")
    assert offered("submit --on=he") == [("--on=here", -7)]


def test_the_prompt_runs_lines_and_keeps_history_private(inventory, tmp_path, capfd):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    history = tmp_path / "home" / "shell_history"
    with create_pipe_input() as keys:
        keys.send_text("vdir mkdir /data\r")
        keys.send_text("cd /data\r")
        keys.send_text("pwd\r")
        keys.send_text("\x04")                              # Ctrl-D leaves
        assert Shell(["--config", str(inventory)], history).interactive(input=keys, output=DummyOutput()) == 0
    assert capfd.readouterr().out.splitlines()[-2:] == ["/data", "/data"]
    lines = [ln.removeprefix("+") for ln in history.read_text().splitlines() if ln.startswith("+")]
    assert lines == ["vdir mkdir /data", "cd /data", "pwd"]
    assert oct(os.stat(history).st_mode & 0o777) == "0o600"
    Shell(["--config", str(inventory)], history).run_line("cd /")
    with create_pipe_input() as keys:                     # a new session finds them
        keys.send_text("\x1b[A\x1b[A\r")                 # Up, Up, Enter: `cd /data` again
        keys.send_text("exit\r")
        Shell(["--config", str(inventory)], history).interactive(input=keys, output=DummyOutput())
    assert capfd.readouterr().out.splitlines()[-1] == "/data"


def test_a_script_runs_every_line_and_exits_with_the_last_failure(inventory, capfd):
    shell = Shell(["--config", str(inventory)], inventory.parent / "h")
    code = shell.script(["vdir mkdir /x\n", "# a comment\n", "\n", "nosuch\n", "vdir pwd\n"])
    captured = capfd.readouterr()
    assert code == 2
    assert "unknown command 'nosuch'" in captured.err
    assert captured.out.strip().splitlines()[-1] == "/"        # the line after the failure ran


def test_inside_the_shell_errors_point_at_help_not_at_cmq_help(inventory, capfd):
    shell = Shell(["--config", str(inventory)], inventory.parent / "h")
    assert shell.script(["nosuch\n", "submit --al true\n"]) == 2
    err = capfd.readouterr().err
    assert "unknown command 'nosuch'; type `help`" in err
    assert "type `help submit`" in err and "cmq --help" not in err and "cmq submit --help" not in err
    from cmqueue.cli.parse import help_hint

    assert help_hint("submit") == "see `cmq submit --help`"           # outside the shell again
