"""Jobs with a Python fold: the state is folded once per committed record, snapshotted and
replayed by the engine (a reopen restores it exactly), a raising fold aborts its commit,
and Python-fold jobs, JSON jobs and Rust jobs refuse each other (JobMismatchError)."""

from __future__ import annotations

import json

import pytest

import resumable

import helpers
from conftest import cli, cli_json


def expected(n: int) -> dict:
    return {"n": n, "sum": sum(i * i for i in range(n)), "ids": sum(range(n))}


def test_fold_state_is_committed_snapshotted_and_restored(store_path):
    with resumable.Store(store_path) as store:
        job = store.job("f", fold=helpers.add, initial=helpers.FOLD_INITIAL, max_group_records=7, snapshot_every_commits=3)
        assert job.state == helpers.FOLD_INITIAL
        for i in range(100):
            job.submit(i, helpers.square(i))
        assert job.submit(5, helpers.square(5)) == "already_done"
        job.flush()
        assert job.state == expected(100)
        state = job.state
        state["n"] = -1  # a copy: the job's state is not touched
        assert job.state == expected(100)
        job.close()
        # A crash-like reopen (no pause): the newest snapshot plus a replay of what followed.
        with store.job("f", fold=helpers.add, initial=helpers.FOLD_INITIAL) as again:
            assert again.state == expected(100)
            for i in range(100, 150):
                again.submit(i, helpers.square(i))
            again.complete()
            assert again.state == expected(150)
            assert again.verify()["problems"] == []
        assert store.status("f")["state_type"] == resumable.FOLD_STATE_TYPE


def test_map_with_a_fold_returns_the_state(store_path):
    r = resumable.map(helpers.square, range(1000), store=store_path, job="m", workers=4, fold=helpers.add, initial=helpers.FOLD_INITIAL)
    assert r.state == expected(1000)
    again = resumable.map(helpers.square, range(1000), store=store_path, job="m", fold=helpers.add, initial=helpers.FOLD_INITIAL)
    assert again.end == "already_done" and again.state == expected(1000)
    rows = [json.loads(line) for line in cli("export", str(store_path), "--job", "m").stdout.splitlines()]
    assert rows == [{"id": i, "output": helpers.square(i)} for i in range(1000)], "the CLI prints fold jobs' outputs as JSON"
    assert cli_json("verify", str(store_path))["first_problem"] is None


def test_a_raising_fold_aborts_the_commit_and_a_reopen_has_the_last_committed_state(store_path):
    def picky(state, id, output):
        if output == "bad":
            raise ValueError("no bad outputs")
        return state + 1

    with resumable.Store(store_path) as store:
        job = store.job("p", fold=picky, initial=0)
        job.submit(0, "ok")
        job.flush()
        job.submit(1, "bad")
        with pytest.raises(resumable.PanickedError, match="no bad outputs"):
            job.flush()
        with pytest.raises(resumable.PoisonedError):
            job.submit(2, "ok")
        job.close()
        with store.job("p", fold=picky, initial=0) as again:
            assert again.state == 1 and not again.is_done(1)


def test_fold_json_and_rust_jobs_refuse_each_other(store_path):
    with resumable.Store(store_path) as store:
        store.job("f", fold=helpers.add, initial=helpers.FOLD_INITIAL).close()
        store.job("plain").close()
        with pytest.raises(resumable.JobMismatchError, match="state type"):
            store.job("f")
        with pytest.raises(resumable.JobMismatchError, match="state type"):
            store.job("plain", fold=helpers.add)
        with pytest.raises(ValueError):
            store.job("b", output="bytes", fold=helpers.add)
    # The CLI's Rust demo job refuses the Python fold job's state type ...
    proc = cli("demo", str(store_path), "--job", "f", "--records", "10", check=False)
    assert proc.returncode == 1 and "state type" in proc.stderr
    # ... and Python refuses the Rust job.
    demo = store_path.with_name("demo.redb")
    cli("demo", str(demo), "--records", "10")
    with resumable.Store(demo) as store:
        (name,) = store.jobs()
        with pytest.raises(resumable.JobMismatchError):
            store.job(name, fold=helpers.add)
        with pytest.raises(resumable.JobMismatchError):
            store.job(name)
