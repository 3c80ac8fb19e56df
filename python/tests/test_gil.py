"""The GIL is released while a commit (and its fsync) is in flight: a second Python thread
keeps counting during a slow commit, whether the commit comes from flush() or from the
submit() that fills a group."""

from __future__ import annotations

import threading
import time

import resumable

BIG = "x" * 4096


class Counter(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.n = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            self.n += 1


def _measure(action) -> tuple[int, float]:
    counter = Counter()
    counter.start()
    time.sleep(0.05)
    before = counter.n
    t = time.perf_counter()
    action()
    elapsed = time.perf_counter() - t
    advanced = counter.n - before
    counter.stop = True
    counter.join()
    return advanced, elapsed


def test_a_second_thread_advances_during_a_slow_flush(store_path):
    with resumable.Store(store_path) as store:
        with store.job("g", max_group_records=1_000_000, max_group_bytes=1 << 30, max_group_delay=3600) as job:
            for i in range(4_000):  # about 16 MB in one commit
                job.submit(i, BIG)
            assert job.pending == 4_000
            advanced, elapsed = _measure(job.flush)
            assert job.done_count == 4_000
    assert elapsed > 0.02, "the commit was not slow enough to tell"
    # Holding the GIL for the whole commit would leave the counter where it was.
    assert advanced > 1000, f"counter advanced {advanced} during a {elapsed:.3f}s commit"


def test_a_second_thread_advances_during_a_commit_triggered_by_submit(store_path):
    with resumable.Store(store_path) as store:
        with store.job("g", max_group_records=4_000, max_group_bytes=1 << 30, max_group_delay=3600) as job:
            for i in range(3_999):
                job.submit(i, BIG)
            result: list = []
            advanced, elapsed = _measure(lambda: result.append(job.submit(3_999, BIG)))
            assert result == ["committed"]
    assert elapsed > 0.02, "the commit was not slow enough to tell"
    assert advanced > 1000, f"counter advanced {advanced} during a {elapsed:.3f}s commit"
