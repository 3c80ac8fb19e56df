"""Typed exceptions: each Rust error variant reaches Python as its own subclass of
resumable.Error with the Rust message (zero-byte file, foreign file, second writer in
another process, mismatched job, missing job)."""

from __future__ import annotations

import pytest

import resumable

from conftest import run_child


def test_zero_byte_file_is_not_a_store(tmp_path):
    p = tmp_path / "empty.redb"
    p.write_bytes(b"")
    with pytest.raises(resumable.NotAStoreError, match="is not a resumable store .the file is empty"):
        resumable.Store(p)
    assert p.read_bytes() == b"", "nothing written to the file"


def test_foreign_file_is_not_a_store(tmp_path):
    p = tmp_path / "foreign.redb"
    content = b"PK\x03\x04 this is a zip file, not a store" * 200
    p.write_bytes(content)
    with pytest.raises(resumable.NotAStoreError) as e:
        resumable.Store(p)
    assert isinstance(e.value, resumable.Error)
    assert "move the file away" in str(e.value)
    assert p.read_bytes() == content


def test_second_writer_in_another_process_is_locked(store_path):
    with resumable.Store(store_path) as store:
        store.job("j").close()
        child = run_child(
            "import sys, resumable\n"
            "try:\n"
            "    resumable.Store(sys.argv[1])\n"
            "except resumable.LockedError as e:\n"
            "    print('LOCKED', e)\n",
            str(store_path),
        )
        assert child.stdout.startswith("LOCKED"), child.stderr
        assert "in use by another writer" in child.stdout


def test_second_handle_on_an_open_job_is_locked(store_path):
    with resumable.Store(store_path) as store:
        with store.job("j"):
            with pytest.raises(resumable.LockedError):
                store.job("j")


def test_mismatched_jobs_are_refused(store_path):
    with resumable.Store(store_path) as store:
        store.job("j", schema_version=1, input_manifest=["a.csv:100"]).close()
        with pytest.raises(resumable.JobMismatchError, match="schema version"):
            store.job("j", schema_version=2, input_manifest=["a.csv:100"])
        with pytest.raises(resumable.JobMismatchError, match="input manifest"):
            store.job("j", schema_version=1, input_manifest=["a.csv:101"])
        with pytest.raises(resumable.JobMismatchError, match="state type"):
            store.job("j", output="bytes", schema_version=1, input_manifest=["a.csv:100"])
        store.job("j", schema_version=1, input_manifest=["a.csv:100"]).close()


def test_missing_job_without_create(store_path):
    with resumable.Store(store_path) as store:
        with pytest.raises(resumable.JobNotFoundError, match="no job named"):
            store.job("nope", create=False)
        with pytest.raises(resumable.JobNotFoundError):
            store.status("nope")


def test_every_exception_is_a_resumable_error():
    for name in resumable.__all__:
        obj = getattr(resumable, name)
        if isinstance(obj, type) and name.endswith("Error") and name != "PermanentError":
            assert issubclass(obj, resumable.Error), name
