from cmqueue.models import JobStatus, new_id, next_state, stream_id_key


def test_final_states_never_change():
    for final in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST):
        assert final.final
        assert next_state(final, JobStatus.RUNNING) is None


def test_queued_does_not_undo_running():
    assert next_state(JobStatus.RUNNING, JobStatus.QUEUED) is None
    assert next_state(JobStatus.RETRYING, JobStatus.RUNNING) == JobStatus.RUNNING


def test_ids_sort_by_time_and_are_unique():
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids[0][:8] <= ids[-1][:8]


def test_stream_ids_compare_numerically():
    assert stream_id_key("10-0") > stream_id_key("9-5")
    assert stream_id_key("") < stream_id_key("0-1")
