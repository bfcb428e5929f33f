"""A placeholder's argument reaches the command verbatim: a real shell runs what
render() made of a hostile argument."""

import subprocess

from cmqueue.submit.placeholders import render


def test_hostile_argument_arrives_verbatim():
    arg = "$(touch /tmp/cmq-never); \"'\n`id`"
    out = subprocess.run(["bash", "-c", render("printf %s {}", arg, 1)], capture_output=True, text=True,
                         timeout=30).stdout
    assert out == arg
