from cmqueue.submit.placeholders import render


def test_braces_are_replaced_and_quoted():
    assert render("gzip {}", "a b.txt", 1) == "gzip 'a b.txt'"


def test_no_placeholder_appends_the_argument():
    assert render("gzip -9", "x", 1) == "gzip -9 x"


def test_parallel_replacement_strings():
    cmd = render("echo {#} {.} {/} {//} {/.}", "/d/e/f.tar", 3)
    assert cmd == "echo 3 /d/e/f f.tar /d/e f"
