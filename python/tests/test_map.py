"""resumable.map: skips done records, retries with backoff, dead-letters what keeps failing,
runs in a spawn process pool, stops cleanly on Ctrl-C (the job is paused and resumes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import resumable

import helpers
from conftest import HERE


def test_map_stores_every_output_and_a_rerun_skips_them(store_path):
    r = resumable.map(helpers.square, range(3000), store=store_path, job="sq", workers=4, complete=False)
    assert (r.end, r.records_committed, r.dead_lettered, r.records_done) == ("finished", 3000, 0, 3000)
    assert r.records_acked == 3000
    again = resumable.map(helpers.square, range(3000), store=store_path, job="sq", workers=4)
    assert again.records_committed == 0 and again.skipped == 3000
    with resumable.Store(store_path) as store:
        assert store.outputs("sq") == [(i, helpers.square(i)) for i in range(3000)]
        assert store.status("sq")["lifecycle"] == "completed"
    done = resumable.map(helpers.square, range(3000), store=store_path, job="sq")
    assert done.end == "already_done"


def test_map_with_keyed_records_and_an_open_job(store_path):
    with resumable.Store(store_path) as store:
        with store.job("k") as job:
            r = resumable.map(str.upper, [(10, "a"), (20, "b")], store=store, job=job, keyed=True, complete=False)
            assert r.records_committed == 2
            assert job.output(20) == "B" and not job.closed
        assert store.outputs("k") == [(10, "A"), (20, "B")]


def test_transient_failures_are_retried_and_persistent_ones_dead_lettered(store_path):
    lock = threading.Lock()
    calls: dict = {}

    def flaky(x: int) -> int:
        with lock:
            calls[x] = calls.get(x, 0) + 1
            n = calls[x]
        if x % 10 == 3 and n < 3:
            raise ConnectionError(f"try again ({n})")
        if x == 7:
            raise ValueError("record 7 is malformed")
        if x == 8:
            raise resumable.PermanentError("give up on 8")
        return x

    r = resumable.map(flaky, range(40), store=store_path, job="f", workers=4, attempts=4, base_delay=0.001, max_delay=0.01)
    assert r.dead_lettered == 2
    assert r.records_committed == 38
    assert all(calls[x] == 3 for x in range(3, 40, 10)), "retried until it succeeded"
    assert calls[7] == 4, "retried up to attempts in all"
    assert calls[8] == 1, "PermanentError is not retried"
    with resumable.Store(store_path) as store:
        dead = {d["id"]: d for d in store.dead_letters("f")}
        assert set(dead) == {7, 8}
        assert dead[7]["attempts"] == 4 and dead[7]["error"] == "ValueError: record 7 is malformed"
        assert dead[8]["attempts"] == 1 and "give up on 8" in dead[8]["error"]
        assert [i for i, _ in store.outputs("f")] == [i for i in range(40) if i not in (7, 8)]


def test_an_output_json_cannot_hold_is_dead_lettered(store_path):
    r = resumable.map(lambda x: {x} if x == 1 else x, range(3), store=store_path, job="j", attempts=3)
    assert (r.records_committed, r.dead_lettered) == (2, 1)
    with resumable.Store(store_path) as store:
        (d,) = store.dead_letters("j")
        assert d["id"] == 1 and d["attempts"] == 1 and "cannot store the output" in d["error"]


def test_timeout_counts_as_a_failed_attempt(store_path):
    def slow_on_two(x: int) -> int:
        if x == 2:
            time.sleep(0.5)
        return x

    r = resumable.map(slow_on_two, range(4), store=store_path, job="t", workers=2, attempts=1, timeout=0.1)
    assert (r.records_committed, r.dead_lettered) == (3, 1)
    with resumable.Store(store_path) as store:
        assert "TimeoutError" in store.dead_letters("t")[0]["error"]


def test_an_exception_from_the_iterable_propagates_and_keeps_what_was_done(store_path):
    def records():
        yield from range(100)
        raise OSError("input went away")

    with pytest.raises(OSError, match="input went away"):
        resumable.map(helpers.square, records(), store=store_path, job="s", workers=2)
    with resumable.Store(store_path) as store:
        status = store.status("s")
        assert status["records_done"] == 100 and status["lifecycle"] == "paused"


def test_process_pool_runs_fn_in_spawned_processes(store_path):
    r = resumable.map(helpers.pid_of_worker, range(200), store=store_path, job="p", workers=2, processes=True)
    assert r.records_committed == 200
    with resumable.Store(store_path) as store:
        outs = store.outputs("p")
    assert [o["x"] for _, o in outs] == list(range(200))
    pids = {o["pid"] for _, o in outs}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_process_pool_refuses_a_function_it_cannot_send(store_path):
    with pytest.raises(TypeError, match="picklable"):
        resumable.map(lambda x: x, range(3), store=store_path, job="p", processes=True)


def test_progress_line_on_request(store_path, capfd):
    resumable.map(helpers.square, range(500), store=store_path, job="p", progress=True)
    err = capfd.readouterr().err
    assert "500/500 100.0% done" in err


# The child restores Python's Ctrl-C handler first: a process started in the background by a
# non-interactive shell (a CI runner, `cmd &`) inherits SIGINT as ignored, and Python then
# never raises KeyboardInterrupt.
CTRL_C_CHILD = """
import signal, sys, resumable, helpers
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    resumable.map(helpers.square_slowly, range(100000), store=sys.argv[1], job="c", workers=2)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(75)
"""


def test_ctrl_c_stops_cleanly_and_the_job_resumes(store_path):
    env = dict(os.environ, PYTHONPATH=str(HERE))
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, str(store_path)], stdout=subprocess.PIPE, text=True, env=env)
    # Wait until records are being committed, then interrupt.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if store_path.exists() and store_path.stat().st_size > 0:
            break
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 75 and "INTERRUPTED" in out
    with resumable.Store(store_path) as store:
        status = store.status("c")
        assert status["lifecycle"] == "paused", "a clean stop, not a crash"
        done = status["records_done"]
        assert 0 < done < 100000
        assert store.verify("c")["problems"] == []
    # Resume: only the rest is processed.
    r = resumable.map(helpers.square, range(100000), store=store_path, job="c", workers=2)
    assert r.skipped == done and r.records_committed == 100000 - done


def _slow_square(x):
    time.sleep(0.002)
    return x * x


def test_the_background_scrub_reads_back_the_run_at_the_rate_given(store_path):
    # About 0.5 s of work with a pass due every 0.1 s: the scrub re-read what was committed
    # and found it sound.
    r = resumable.map(_slow_square, range(500), store=store_path, job="s", workers=2, scrub_every=0.1)
    assert r.end == "finished"
    assert r.scrub_passes >= 1 and r.scrub_bytes > 0 and r.scrub_damaged == 0, r
    off = resumable.map(_slow_square, range(500), store=store_path, job="t", workers=2, scrub_every=0.1, scrub_rate=0)
    assert (off.scrub_passes, off.scrub_bytes) == (0, 0), off
    with pytest.raises(ValueError, match="scrub_every"):
        resumable.map(_slow_square, range(5), store=store_path, job="u", scrub_every=0)
    with pytest.raises(ValueError, match="scrub_rate"):
        resumable.map(_slow_square, range(5), store=store_path, job="u", scrub_rate=-1)
