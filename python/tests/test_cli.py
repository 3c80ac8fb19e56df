"""The operator CLI reads a store written from Python: `status --json`, `export` (outputs as
JSON, byte-for-byte what Python stored), `verify`, `dead-letters`, `requeue`; and a job the
CLI touched (requeue) resumes from Python."""

from __future__ import annotations

import json

import resumable

import helpers
from conftest import cli, cli_json


def flaky_on_five(x: int) -> dict:
    if x == 5:
        raise ValueError("five is bad")
    return helpers.square(x)


def test_cli_reads_a_python_written_store(store_path):
    r = resumable.map(flaky_on_five, range(500), store=store_path, job="sq", workers=2, attempts=1)
    assert r.dead_lettered == 1
    status = cli_json("status", str(store_path))
    (job,) = status["jobs"]
    assert job["name"] == "sq" and job["lifecycle"] == "completed"
    assert job["records_done"] == 500 and job["dead_letters"] == 1
    assert job["state_type"] == resumable.JSON_STATE_TYPE

    export = cli("export", str(store_path), "--job", "sq").stdout.splitlines()
    rows = [json.loads(line) for line in export]
    assert rows == [{"id": i, "output": helpers.square(i)} for i in range(500) if i != 5]
    with resumable.Store(store_path, read_only=True) as store:
        assert [{"id": i, "output": o} for i, o in store.outputs("sq")] == rows
        # map closed its store: nobody holds it for writing, as the CLI says too.
        assert store.writer_alive is False
    assert status["writer_alive"] is False
    with resumable.Store(store_path) as store:
        assert store.writer_alive is True

    verify = cli_json("verify", str(store_path))
    assert verify["first_problem"] is None, verify

    dead = cli_json("dead-letters", str(store_path), "--job", "sq")
    assert "five is bad" in json.dumps(dead)


def test_a_job_requeued_by_the_cli_resumes_from_python(store_path):
    resumable.map(flaky_on_five, range(50), store=store_path, job="sq", attempts=1)
    cli("requeue", str(store_path), "--job", "sq", "--all")
    with resumable.Store(store_path) as store:
        assert store.status("sq")["lifecycle"] == "paused"
        assert store.dead_letters("sq") == []
    r = resumable.map(helpers.square, range(50), store=store_path, job="sq")
    assert (r.records_committed, r.skipped) == (1, 49)
    rows = [json.loads(line) for line in cli("export", str(store_path), "--job", "sq").stdout.splitlines()]
    assert rows == [{"id": i, "output": helpers.square(i)} for i in range(50)]


def test_a_bytes_job_is_exported_as_its_bytes_and_as_hex_on_request(store_path):
    with resumable.Store(store_path) as store:
        with store.job("raw", output="bytes") as job:
            job.submit(0, b"\x01\x02")
    # The job's output type is described at creation, so export decodes it: the byte values.
    (row,) = [json.loads(line) for line in cli("export", str(store_path), "--job", "raw").stdout.splitlines()]
    assert row == {"id": 0, "output": [1, 2]}
    # --hex gives the stored payload: bincode, one length byte, then the bytes.
    (row,) = [
        json.loads(line)
        for line in cli("export", str(store_path), "--job", "raw", "--hex").stdout.splitlines()
    ]
    assert row == {"id": 0, "output": "020102"}
