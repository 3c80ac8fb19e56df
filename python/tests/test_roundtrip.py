"""Round trips through the low-level API: submit, commit, reopen, read back; bytes jobs;
context managers; a job reopened after a clean stop resumes where it stopped."""

from __future__ import annotations

import pytest

import resumable


def test_submit_flush_reopen_reads_every_output_back(store_path):
    values = [{"i": i, "s": "ü\n\"x\"", "f": i / 3, "l": [1, None, True], "n": {"b": 2, "a": 1}} for i in range(2500)]
    with resumable.Store(store_path) as store:
        job = store.job("count", total_records=len(values))
        answers = {job.submit(i, v) for i, v in enumerate(values)}
        assert answers == {"queued", "committed"}
        assert job.submit(0, values[0]) == "already_done"
        job.flush()
        assert job.done_count == 2500
        assert job.progress == [(0, 2500)]
        assert job.output(7) == values[7]
        assert job.output(99999) is None
        job.complete()
        assert job.lifecycle == "completed"
        job.close()
        outputs = store.outputs("count")
    assert [o for _, o in outputs] == values
    # Key order of a dict survives the trip.
    assert list(outputs[0][1]["n"]) == ["b", "a"]
    with resumable.Store(store_path) as store:
        status = store.status("count")
        assert status["lifecycle"] == "completed"
        assert status["records_done"] == 2500
        assert status["state_type"] == resumable.JSON_STATE_TYPE
        with store.job("count") as job:
            assert job.is_done(2499) and job.is_durable(2499)
            with pytest.raises(resumable.LifecycleError):
                job.submit(2500, 1)


def test_resume_after_pause_skips_done_records(store_path):
    with resumable.Store(store_path) as store:
        with store.job("j") as job:
            for i in range(10):
                job.submit(i, i)
            job.pause()
        with store.job("j") as job:
            assert job.lifecycle == "paused"
            done = [i for i in range(20) if not job.is_done(i)]
            assert done == list(range(10, 20))
            for i in done:
                job.submit(i, i)
        assert [v for _, v in store.outputs("j")] == list(range(20))


def test_bytes_outputs_round_trip(store_path):
    with resumable.Store(store_path) as store:
        with store.job("raw", output="bytes") as job:
            assert job.output_kind == "bytes"
            job.submit(0, b"\x00\xffabc")
            job.submit(1, bytearray(b"xyz"))
            with pytest.raises(TypeError):
                job.submit(2, "not bytes")
            job.flush()
            assert job.output(0) == b"\x00\xffabc"
        assert store.outputs("raw") == [(0, b"\x00\xffabc"), (1, b"xyz")]


def test_values_json_cannot_hold_are_refused_before_anything_is_queued(store_path):
    with resumable.Store(store_path) as store:
        with store.job("j") as job:
            with pytest.raises(ValueError):
                job.submit(0, float("nan"))
            with pytest.raises(ValueError):
                job.submit(0, 2**70)
            with pytest.raises(TypeError):
                job.submit(0, {"s": {1, 2}})
            loop: list = []
            loop.append(loop)
            with pytest.raises(ValueError):
                job.submit(0, loop)
            assert job.pending == 0
            job.submit(0, {1: "int keys become strings", None: 0})
            job.flush()
            assert job.output(0) == {"1": "int keys become strings", "null": 0}


def test_exit_with_an_exception_pauses_and_keeps_what_was_submitted(store_path):
    with resumable.Store(store_path) as store:
        with pytest.raises(RuntimeError):
            with store.job("j") as job:
                job.submit(0, "a")
                raise RuntimeError("boom")
        assert store.status("j")["lifecycle"] == "paused"
        assert store.outputs("j") == [(0, "a")]
        assert job.closed


def test_closed_handles_refuse_use(store_path):
    store = resumable.Store(store_path)
    job = store.job("j")
    store.close()
    assert job.closed and store.closed
    with pytest.raises(resumable.Error):
        job.submit(0, 1)
    with pytest.raises(resumable.Error):
        store.job("k")
    job.close()
    store.close()


def test_dead_letters_and_requeue_from_python(store_path):
    with resumable.Store(store_path) as store:
        with store.job("j") as job:
            job.submit(0, "ok")
            job.dead_letter(1, 3, "ValueError: bad")
            job.pause()
        dead = store.dead_letters("j")
        assert [(d["id"], d["attempts"], d["error"]) for d in dead] == [(1, 3, "ValueError: bad")]
        assert store.requeue("j") == [1]
        with store.job("j") as job:
            assert not job.is_done(1)
            job.submit(1, "fixed")
        assert store.outputs("j") == [(0, "ok"), (1, "fixed")]
        report = store.verify("j")
        assert report["problems"] == []
