"""Jobs with their own directory: inputs staged through the machine's cache, outputs
fetched back, bad paths refused."""

from __future__ import annotations

import os
import uuid

from cmqueue.transfer.machine_copy import sha256_file


def _submit_json(cmq, *args):
    r = cmq.run("submit", "--wait", "--json", *args, timeout=180)
    return r, (r.json() if r.out.strip().startswith("[") else None)


def test_inputs_staged_outputs_fetched_and_directory_removed(cmq, tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("one\ntwo\nthree\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.txt").write_text("x\n")
    results = tmp_path / "results"
    r, recs = _submit_json(cmq, "--on=m1", f"--put={data}", f"--put={tree}:t", "--get=out.txt", "--get=outdir",
                           f"--results={results}",
                           "pwd > where; wc -l < in.txt > out.txt; mkdir outdir; cat t/sub/x.txt > outdir/copy")
    assert r.code == 0, r.err
    (rec,) = recs
    job = rec["id"]
    assert (results / job / "out.txt").read_text().strip() == "3"
    assert (results / job / "outdir" / "copy").read_text() == "x\n"
    jobdir = cmq.workdir("m1") / "jobs" / job
    assert not jobdir.exists()                    # removed: no --keep
    cache = cmq.workdir("m1") / "cache"
    assert (cache / sha256_file(data)).read_text() == data.read_text()


def test_same_input_again_moves_no_bytes(cmq, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    first = cmq.run("submit", "--wait", "--json", "--on=m2", f"--put={big}", "--keep", "cmp big.bin big.bin && pwd")
    assert first.code == 0, first.err
    again = cmq.run("submit", "--wait", "--json", "--on=m2", f"--put={big}:copy.bin", "wc -c < copy.bin")
    assert again.code == 0, again.err
    with cmq.cluster_api() as c:
        a, b = (c.store.get(x.json()[0]["id"]) for x in (first, again))
        assert a.result.data["staged"]["bytes"] == 3 << 20
        assert b.result.data["staged"] == {**b.result.data["staged"], "bytes": 0, "files": 0, "hits": 1}
        assert b.result.stdout.strip() == str(3 << 20)
        kept = cmq.workdir("m2") / "jobs" / a.id
        assert (kept / "big.bin").exists() and a.result.stdout.strip() == str(kept)
        entries = [e for e in c.store.cache_entries("m2") if e["sha"] == sha256_file(big)]
        assert len(entries) == 1 and entries[0]["size"] == 3 << 20


def test_each_job_stages_its_own_argument(cmq, tmp_path):
    shards = []
    for i in range(4):
        p = tmp_path / f"shard-{i}.txt"
        p.write_text("w " * (i + 1))
        shards.append(str(p))
    r = cmq.run("map", "--reduce=sum", "--put={}", "wc -w < {/}", ":::", *shards)
    assert (r.code, r.out) == (0, "10\n"), r.err


def test_bad_staging_input_is_refused_before_anything_runs(cmq, tmp_path):
    before = cmq.run("jobs", "--json", "--last=1").json()
    r = cmq.run("submit", f"--put={tmp_path / 'missing.txt'}", "cat missing.txt")
    assert r.code == 2 and "missing.txt: no such file or directory" in r.err
    for bad in ("../etc/passwd", "/etc/passwd", "a/../../x"):
        r = cmq.run("submit", f"--get={bad}", "true")
        assert r.code == 2, bad
        assert "must be a relative path inside the job's directory" in r.err
    r = cmq.run("submit", "--get=out:fixed.txt", "echo {}", ":::", "a", "b")
    assert r.code == 2 and "put {job} in it" in r.err
    assert cmq.run("jobs", "--json", "--last=1").json() == before


def test_missing_output_of_a_successful_job_is_a_transfer_failure(cmq, tmp_path):
    tag = uuid.uuid4().hex
    r, recs = _submit_json(cmq, "--on=m3", "--get=never-written.txt", f"--results={tmp_path}", f"echo {tag}")
    assert r.code == 1
    (rec,) = recs
    assert rec["exit_code"] == 0 and rec["state"] == "failed"
    assert rec["reason"].startswith(f"transfer failed: job {rec['id']}: fetching never-written.txt")


def test_submit_wait_says_where_the_fetched_outputs_are(cmq, tmp_path):
    """first-contact-round2: --get results land in ./cmq-results/<id>/ (by default): the
    command names where, relative to the directory it was run in."""
    r = cmq.run("submit", "--wait", "--on=m2", "--get=out.txt", "echo hi > out.txt", cwd=tmp_path, timeout=180)
    assert r.code == 0, r.err
    job = next(p.name for p in (tmp_path / "cmq-results").iterdir())
    assert f"fetched: cmq-results/{job}/out.txt" in r.err
    assert (tmp_path / "cmq-results" / job / "out.txt").read_text() == "hi\n"
    r = cmq.run("submit", "--wait", "--on=m2", "--get=o.txt", "echo {} > o.txt", ":::", "a", "b", cwd=tmp_path,
                timeout=180)
    assert r.code == 0 and "fetched 2 outputs under cmq-results/" in r.err, r.err
