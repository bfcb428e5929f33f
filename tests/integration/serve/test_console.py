"""The web console of `cmq serve` in Debian's Chromium (headless, Playwright) against a
live cluster: login, jobs (submit, live state, output, edit and resubmit, filter and
sort), a map's value, a workflow's tree, machines, the file browser, clouds.

Screenshots go to $CMQ_SCREENSHOT_DIR (docs/ when taken for the README), else the
test's directory."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.served import serving

CHROMIUM = shutil.which("chromium")
WAIT = 60_000


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("console"), first=225) as it:
        yield it


@pytest.fixture(scope="module")
def browser():
    need("chromium", CHROMIUM is not None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need("playwright (pip)", sync_playwright is not None)
    with sync_playwright() as pw:
        # no background connections: this machine's network is closed, and the test needs none
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-sync", "--disable-quic"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(served, browser):
    """A page logged in to the console, on the jobs page."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(served.url)
    page.fill("input[name=token]", served.token)
    page.click("button:text('Log in')")
    page.wait_for_selector("h1:text('Jobs')", timeout=WAIT)
    yield page
    context.close()


def shot(page, served, name: str) -> None:
    shots = Path(os.environ.get("CMQ_SCREENSHOT_DIR") or served.env.root)
    page.screenshot(path=str(shots / f"console-{name}.png"), full_page=True)


def test_the_console_needs_a_login_and_sends_no_inline_script(served, browser):
    context = browser.new_context()
    page = context.new_page()
    answer = page.goto(served.url)
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.wait_for_selector("h1:text('Log in to cmq')", timeout=WAIT)
    page.fill("input[name=token]", "cmq_wrong")
    page.click("button:text('Log in')")
    page.wait_for_selector("[role=alert]:text('that token is not valid')", timeout=WAIT)
    shot(page, served, "login")
    page.fill("input[name=token]", served.token)
    page.click("button:text('Log in')")
    page.wait_for_selector("h1:text('Jobs')", timeout=WAIT)
    cookie = next(c for c in context.cookies() if c["name"] == "cmq_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("#logout")
    page.wait_for_selector("h1:text('Log in to cmq')", timeout=WAIT)
    context.close()


def test_a_command_submitted_from_the_page_runs_live_and_can_be_edited_and_resubmitted(served, page):
    page.click("nav >> text=Submit")
    page.fill("#submit-job input[name=command]", "echo console says $((6 * 7))")
    page.select_option("#submit-job select[name=where]", "on")
    page.fill("#submit-job input[name=target]", "m2")
    page.click("#submit-job button[type=submit]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)        # live: no reload by the test
    assert page.inner_text("#stdout") == "console says 42\n"
    assert "m2" in page.inner_text("dl")
    shot(page, served, "job")
    page.click("#resubmit")
    assert page.input_value("#submit-job input[name=command]") == "echo console says $((6 * 7))"
    assert page.input_value("#submit-job input[name=target]") == "m2"
    page.fill("#submit-job input[name=command]", "echo edited")
    page.click("#submit-job button[type=submit]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)
    assert page.inner_text("#stdout") == "edited\n"


def test_the_jobs_page_filters_searches_and_sorts(served, page):
    with served.client() as c:
        c.post("/api/jobs", json={"command": "echo zz-sorted-b", "on": "m1", "wait": 60})
        c.post("/api/jobs", json={"command": "false # zz-sorted-a", "on": "m1", "wait": 60})
    page.goto(f"{served.url}/#/jobs?q=zz-sorted")
    commands = page.locator("#jobs td.c-command")
    # The page may still show the jobs of the view before (an earlier test's) until the
    # search has answered: wait for the searched rows themselves, not for any two rows.
    page.wait_for_function("""() => {
        const cells = [...document.querySelectorAll('#jobs td.c-command')];
        return cells.length === 2 && cells.every(c => c.innerText.includes('zz-sorted'));
    }""", timeout=WAIT)
    assert sorted(commands.all_inner_texts()) == ["echo zz-sorted-b", "false # zz-sorted-a"]
    page.click("#jobs th:text('command')")
    expect(commands).to_have_text(["echo zz-sorted-b", "false # zz-sorted-a"], timeout=WAIT)
    page.click("#jobs th:text('command')")
    expect(commands).to_have_text(["false # zz-sorted-a", "echo zz-sorted-b"], timeout=WAIT)
    # A job that ends refreshes the page, which keeps the order the user chose.
    with served.client() as c:
        c.post("/api/jobs", json={"command": "echo zz-sorted-c", "on": "m1", "wait": 60})
    expect(commands).to_have_text(["false # zz-sorted-a", "echo zz-sorted-c", "echo zz-sorted-b"], timeout=WAIT)
    # A filter chosen but not sent yet stays as chosen through refreshes.
    page.select_option("select[name=state]", "failed")
    page.click("button:text('Filter')")
    page.wait_for_url(re.compile(r"state=failed"), timeout=WAIT)
    expect(page.locator("#jobs tbody tr")).to_have_count(1, timeout=WAIT)
    assert page.locator("#jobs td.c-command").all_inner_texts() == ["false # zz-sorted-a"]
    shot(page, served, "jobs")


def test_a_map_and_a_workflow_from_the_page_show_their_value_and_tree(served, page):
    page.click("nav >> text=Submit")
    page.fill("#submit-map input[name=template]", "expr {} + 100")
    page.fill("#submit-map textarea[name=args]", "1\n2\n3")
    page.click("#submit-map button[type=submit]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)
    assert page.inner_text("#value") == "306"
    page.click("nav >> text=Submit")
    page.fill("#submit-workflow input[name=expr]", "(a | b); a + b")
    page.fill("#submit-workflow textarea[name=tasks]", "a: echo 20\nb: sleep 1; echo 22")
    page.click("#submit-workflow button[type=submit]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)         # the tree follows the steps live
    assert page.inner_text("#value") == "42"
    for step in ("a", "b", "a + b"):
        assert page.locator(f"#tree [data-step='{step}'] [data-state]").first.get_attribute("data-state") == "succeeded"
    shot(page, served, "workflow")
    page.click("#rerun")                                                       # edit it and run it again
    assert page.input_value("#submit-workflow input[name=expr]") == "(a | b); a + b"
    assert page.input_value("#submit-workflow textarea[name=tasks]") == "a: echo 20\nb: sleep 1; echo 22"
    page.fill("#submit-workflow textarea[name=tasks]", "a: echo 20\nb: echo 80")
    page.click("#submit-workflow button[type=submit]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)
    assert page.inner_text("#value") == "100"
    page.click("nav >> text=Workflows")
    page.wait_for_selector("#workflows td:text('(a | b); a + b')", timeout=WAIT)


def test_a_suspended_steps_command_is_edited_on_the_page_and_the_workflow_resumed(served, page):
    with served.client() as c:
        stuck = c.post("/api/workflows", json={"expr": "ok; broken; ok + broken", "wait": 60, "tasks": {
            "ok": "echo 40", "broken": "exit 3"}}).json()
    assert stuck["state"] == "suspended"
    page.goto(f"{served.url}/#/workflow/{stuck['workflow']}")
    page.click("#tree [data-step='broken'] button.edit")
    assert page.input_value("#edit-step input[name=command]") == "exit 3"
    page.fill("#edit-step input[name=command]", "echo 2")
    page.click("#edit-step button[name=resume]")
    page.wait_for_selector("h1 [data-state=succeeded]", timeout=WAIT)
    assert page.inner_text("#value") == "42"
    assert "edited 1×" in page.inner_text("#tree [data-step='broken']")


def test_a_step_that_was_done_shows_as_skipped_with_its_reason(served, page):
    tasks = {"once": {"command": "touch console-once && echo 7", "on": "m1", "creates": ["console-once"]}}
    with served.client() as c:
        first = c.post("/api/workflows", json={"expr": "once", "tasks": tasks, "wait": 60}).json()
        again = c.post("/api/workflows", json={"expr": "once", "tasks": tasks, "wait": 60}).json()
    assert first["state"] == again["state"] == "succeeded"
    page.goto(f"{served.url}/#/workflow/{again['workflow']}")
    step = page.locator("#tree [data-step='once']")
    expect(step.locator("[data-state=skipped]")).to_have_count(1, timeout=WAIT)
    assert "done: console-once exists" in step.inner_text()


def test_machines_show_their_slots_and_queues(served, page):
    page.click("nav >> text=Machines")
    page.wait_for_selector("#machines td.c-machine:text('m1')", timeout=WAIT)
    rows = page.locator("#machines tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["m1", "m2"]
    assert all("consuming" in r for r in rows)
    assert "cmq.host" in page.inner_text("#queues")
    shot(page, served, "machines")


def test_the_file_browser_uploads_downloads_replicates_and_prefers(served, page, tmp_path):
    with served.client() as c:
        c.post("/api/vdir/dirs", json={"path": "/data"})
    local = tmp_path / "notes.txt"
    local.write_text("kept in the vdir\n")
    page.goto(f"{served.url}/#/files?path=/data")
    page.wait_for_selector("#upload", timeout=WAIT)
    page.set_input_files("#upload input[type=file]", str(local))
    page.select_option("#upload select[name=service]", "box")
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#files a:text('notes.txt')", timeout=WAIT)
    with page.expect_download() as download:
        page.click("#files a:text('notes.txt')")
    assert Path(download.value.path()).read_text() == "kept in the vdir\n"
    page.click("#files button:text('shelf')")
    page.wait_for_selector("#files td.c-replicas:text('box, shelf')", timeout=WAIT)
    page.select_option("select[aria-label='preferred copy of notes.txt']", "shelf")
    expect(page.locator("select[aria-label='preferred copy of notes.txt']")).to_have_value("shelf", timeout=WAIT)
    with served.client() as c:
        assert c.get("/api/vdir/status", params={"path": "/data/notes.txt"}).json()["preferred"] == "shelf"
    shot(page, served, "files")


def test_clouds_list_their_vms_and_act_on_them(served, page):
    page.click("nav >> text=Clouds")
    page.wait_for_selector("#vms-d td:text('dummy-1')", timeout=WAIT)
    assert "TBD" in page.inner_text("main")                 # aws cannot be listed: its secret is asked for
    with page.expect_response(re.compile(r"/api/clouds/d/actions$")) as acted:
        page.click("#vms-d tr:has-text('dummy-1') [data-action=reboot]")
    assert acted.value.status == 201
    page.wait_for_selector("#vms-d td:text('dummy-1')", timeout=WAIT)
    assert page.inner_text("#cloud-error") == ""
    with served.client() as c:
        jobs = c.get("/api/jobs", params={"q": "reboot dummy-1"}).json()
    assert jobs and jobs[-1]["state"] == "succeeded"
    shot(page, served, "clouds")
