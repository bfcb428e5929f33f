from cmqueue.core.models import JobSpec, JobStatus, new_id, next_state, short_id, stream_id_key


def test_final_states_never_change():
    for final in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST):
        assert final.final
        assert next_state(final, JobStatus.RUNNING) is None


def test_queued_does_not_undo_running():
    assert next_state(JobStatus.RUNNING, JobStatus.QUEUED) is None
    assert next_state(JobStatus.RETRYING, JobStatus.RUNNING) == JobStatus.RUNNING


def test_ids_are_unique_and_their_short_prefixes_differ():
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    # The first characters are random: ids made in the same millisecond differ at once,
    # so the few characters a user types (`cmq logs 3fk9`) name one job.
    assert len({i[:4] for i in ids}) > 970
    assert len({short_id(i) for i in ids}) == 1000


def test_short_ids_keep_their_prefix_letter():
    assert short_id(new_id("b")).startswith("b") and len(short_id(new_id("b"))) == 7
    assert len(short_id(new_id())) == 6


def test_stream_ids_compare_numerically():
    assert stream_id_key("10-0") > stream_id_key("9-5")
    assert stream_id_key("") < stream_id_key("0-1")


def test_to_dict_is_what_asdict_gives_and_a_copy_of_the_containers():
    import dataclasses

    spec = JobSpec(id="j1", command="c", env={"A": "1"},
                   params={"steps": [{"source": "a", "size": 1}], "pair": ("x", 2), "none": None})
    plain = spec.to_dict()
    assert plain == dataclasses.asdict(spec)
    plain["params"]["steps"][0]["size"] = 99
    plain["env"]["A"] = "2"
    assert spec.params["steps"][0]["size"] == 1 and spec.env["A"] == "1"
