"""Type stubs of the native module resumable._resumable (re-exported by resumable)."""

import os
import pathlib
from typing import Any, Callable, Iterator, Literal, Optional, Union, final

FOLD_STATE_TYPE: str
JSON_STATE_TYPE: str

_Path = Union[str, "os.PathLike[str]"]
_SubmitResult = Literal["queued", "committed", "already_done"]

class Error(Exception):
    """Base class of every error raised by resumable."""

class NotAStoreError(Error):
    """The file exists but is not a resumable store (zero bytes, another format, a foreign redb file)."""

class UnsupportedFormatError(Error):
    """The store was written in a format this build does not read."""

class CorruptError(Error):
    """Stored bytes failed a check (checksum, hash chain, structure); nothing corrupt is returned."""

class JobMismatchError(Error):
    """The job exists with another state type, schema version or input manifest."""

class JobNotFoundError(Error):
    """No job of that name exists in the store."""

class LockedError(Error):
    """Another writer (process, Store or job handle) holds the store or the job."""

class DiskFullError(Error):
    """The disk is full; the store is at its last good commit."""

class PoisonedError(Error):
    """An earlier storage error made this handle unusable; reopen the store."""

class IoError(Error):
    """An operating-system I/O error."""

class StorageError(Error):
    """An error from the storage engine that is none of the others."""

class LifecycleError(Error):
    """A lifecycle transition the job's state machine does not allow."""

class RecordError(Error):
    """A record's output could not be stored."""

class PanickedError(Error):
    """User code (a fold) failed inside a commit; the handle is poisoned: reopen the store."""

class SnapshotNotFoundError(Error):
    """A snapshot generation that does not exist."""

class InvalidArgumentError(Error):
    """A caller-supplied argument is out of range or of the wrong kind."""

class PermanentError(Exception):
    """Raise it from a map function to dead-letter the record at once (no retries)."""

@final
class Job:
    """An open job. Get one from Store.job; use it as a context manager (exit flushes and
    closes; after an exception it pauses and closes)."""

    @property
    def name(self) -> str: ...
    @property
    def output_kind(self) -> Literal["json", "bytes"]: ...
    @property
    def lifecycle(self) -> Literal["created", "running", "paused", "completed", "failed"]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def done_count(self) -> int: ...
    @property
    def progress(self) -> list[tuple[int, int]]: ...
    @property
    def total_records(self) -> Optional[int]: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def durable_seq(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def at_risk(self) -> int: ...
    @property
    def recoveries(self) -> int: ...
    @property
    def stats(self) -> dict[str, int]: ...
    @property
    def state(self) -> Any:
        """The folded state as of the last commit (a copy), or None for a job without a fold."""
    def is_done(self, id: int) -> bool: ...
    def is_durable(self, id: int) -> bool: ...
    def gaps(self, bound: int) -> list[tuple[int, int]]: ...
    def submit(self, id: int, output: Any) -> _SubmitResult: ...
    def dead_letter(self, id: int, attempts: int, error: str) -> _SubmitResult: ...
    def flush(self) -> Optional[int]: ...
    def snapshot(self) -> int: ...
    def pause(self) -> None: ...
    def complete(self) -> None: ...
    def fail(self) -> None: ...
    def output(self, id: int) -> Any: ...
    def verify(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Job": ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool: ...

@final
class Store:
    """An open store file holding any number of jobs; a context manager (exit closes it and
    every job opened from it)."""

    def __new__(cls, path: _Path, *, create: bool = True, read_only: bool = False, verify_on_open: Optional[bool] = None) -> "Store": ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def closed(self) -> bool: ...
    @property
    def writer_alive(self) -> Optional[bool]: ...
    def job(
        self,
        name: str,
        *,
        output: Literal["json", "bytes"] = "json",
        schema_version: int = 0,
        input_manifest: Union[int, "Iterator[Union[str, bytes]]", list[Union[str, bytes]], None] = None,
        total_records: Optional[int] = None,
        create: bool = True,
        max_group_records: int = 1000,
        max_group_bytes: int = 4_194_304,
        max_group_delay: float = 0.05,
        durable: bool = True,
        durable_interval: float = 1.0,
        snapshot_every_commits: int = 16,
        fold: Optional[Callable[[Any, int, Any], Any]] = None,
        initial: Any = None,
    ) -> Job: ...
    def jobs(self) -> list[str]: ...
    def status(self, job: str) -> dict[str, Any]: ...
    def dead_letters(self, job: str) -> list[dict[str, Any]]: ...
    def requeue(self, job: str, ids: Optional[list[int]] = None) -> list[int]: ...
    def verify(self, job: str) -> dict[str, Any]: ...
    def outputs(self, job: str, start: int = 0, end: Optional[int] = None) -> list[tuple[int, Any]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Store": ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool: ...

def run_map(
    job: Job,
    call: Callable[[Any], Any],
    iter: Iterator[tuple[int, Any]],
    *,
    workers: int,
    attempts: int,
    base_delay: float,
    max_delay: float,
    complete: bool,
    progress: bool,
    scrub_rate: int,
    scrub_every: float,
) -> dict[str, Any]: ...
