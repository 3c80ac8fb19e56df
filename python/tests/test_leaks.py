"""No threads or file handles outlive close(): after a Store (with jobs and a map run) is
closed, the process has the threads and open files it had before, and another process can
open the store (the file lock is released)."""

from __future__ import annotations

import os
import threading

import resumable

import helpers
from conftest import run_child


def snapshot() -> tuple[int, int, set]:
    tasks = len(os.listdir("/proc/self/task"))
    fds = set(os.listdir("/proc/self/fd"))
    return tasks, threading.active_count(), fds


def test_close_releases_threads_files_and_the_lock(store_path):
    # Warm up lazily created runtime pieces (imports, json module) before measuring.
    resumable.map(helpers.square, range(10), store=store_path.with_suffix(".warm"), job="w")
    before_tasks, before_threads, before_fds = snapshot()

    store = resumable.Store(store_path)
    job = store.job("a")
    for i in range(100):
        job.submit(i, i)
    resumable.map(helpers.square, range(2000), store=store, job="m", workers=4)
    other = store.job("b", output="bytes")
    other.submit(0, b"x")
    store.close()
    assert job.closed and other.closed

    after_tasks, after_threads, after_fds = snapshot()
    assert after_threads == before_threads
    assert after_tasks == before_tasks, "a native thread outlived close()"
    leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in after_fds - before_fds if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"file handles left open: {leaked}"

    child = run_child("import sys, resumable\nprint(resumable.Store(sys.argv[1]).jobs())", str(store_path))
    assert child.returncode == 0, child.stderr
    assert "'a'" in child.stdout and "'m'" in child.stdout
    with resumable.Store(store_path) as s:
        assert s.outputs("a")[99] == (99, 99), "close() flushed the pending group"
