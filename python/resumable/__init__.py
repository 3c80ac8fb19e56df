"""resumable: crash-proof, exactly-once batch jobs.

Each record's output, its progress mark and the job's state change commit in one
transaction of a redb file, so a job killed at any instant resumes exactly where its last
durable commit left it: no record lost, none applied twice. The same store format as the
Rust library; the ``resumable`` operator CLI reads stores written from Python.

Low level::

    import resumable
    with resumable.Store("job.redb") as store:
        with store.job("count") as job:
            for i, line in enumerate(lines):
                if job.is_done(i):
                    continue
                job.submit(i, {"words": len(line.split())})   # group-committed
            job.complete()

High level::

    summary = resumable.map(fetch, urls, store="job.redb", job="fetch", workers=8)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import pickle
import sys
from typing import Any, Callable, Iterable, Literal, Optional, Union

from ._resumable import (
    FOLD_STATE_TYPE,
    JSON_STATE_TYPE,
    CorruptError,
    DiskFullError,
    Error,
    InvalidArgumentError,
    IoError,
    Job,
    JobMismatchError,
    JobNotFoundError,
    LifecycleError,
    LockedError,
    NotAStoreError,
    PanickedError,
    PermanentError,
    PoisonedError,
    RecordError,
    SnapshotNotFoundError,
    StorageError,
    Store,
    UnsupportedFormatError,
    run_map as _run_map,
)

__all__ = [
    "Store",
    "Job",
    "map",
    "MapResult",
    "Error",
    "NotAStoreError",
    "UnsupportedFormatError",
    "CorruptError",
    "JobMismatchError",
    "JobNotFoundError",
    "LockedError",
    "DiskFullError",
    "PoisonedError",
    "IoError",
    "StorageError",
    "LifecycleError",
    "RecordError",
    "PanickedError",
    "SnapshotNotFoundError",
    "InvalidArgumentError",
    "PermanentError",
    "FOLD_STATE_TYPE",
    "JSON_STATE_TYPE",
]


@dataclasses.dataclass(frozen=True)
class MapResult:
    """What one :func:`map` run did.

    ``end`` is "finished" (every record settled), "already_done" (the job was completed
    before this run) or "stopped". Counts are of this run, except ``records_done``, which
    counts every settled record of the job.
    """

    end: str
    records_committed: int
    dead_lettered: int
    records_acked: int
    records_done: int
    skipped: int
    retries: int
    commits: int
    fsyncs: int
    elapsed: float
    rate: float
    state: Any = None
    """The folded state after the run (jobs with a fold), else None."""
    scrub_passes: int = 0
    """Passes the background scrub finished during the run."""
    scrub_bytes: int = 0
    """Stored bytes the scrub re-read and checked."""
    scrub_damaged: int = 0
    """Stored values the scrub found damaged (each also logged); see docs/SCRUB.md."""


def _caller(
    fn: Callable[[Any], Any],
    pool: Optional[concurrent.futures.Executor],
    timeout: Optional[float],
) -> Callable[[Any], Any]:
    if pool is None:
        return fn

    def call(record: Any) -> Any:
        # future.result waits with the GIL released; a timed-out call is abandoned (Python
        # cannot kill a thread or a pool process's task) and counts as a failed attempt.
        return pool.submit(fn, record).result(timeout=timeout)

    return call


def map(
    fn: Callable[[Any], Any],
    records: Iterable[Any],
    *,
    store: Union[str, "os.PathLike[str]", Store],
    job: Union[str, Job],
    workers: int = 8,
    attempts: int = 5,
    timeout: Optional[float] = None,
    processes: bool = False,
    keyed: bool = False,
    complete: bool = True,
    progress: Optional[bool] = None,
    output: Literal["json", "bytes"] = "json",
    schema_version: int = 0,
    input_manifest: Any = None,
    total_records: Optional[int] = None,
    base_delay: float = 0.1,
    max_delay: float = 30.0,
    fold: Optional[Callable[[Any, int, Any], Any]] = None,
    initial: Any = None,
    scrub_rate: int = 32 << 20,
    scrub_every: float = 3600.0,
) -> MapResult:
    """Runs ``fn(record)`` over ``records`` exactly once per record, committing each output.

    Records already done in the job are skipped, so calling ``map`` again after a crash, a
    kill or Ctrl-C resumes the job. Outputs are group-committed with durable (fsynced)
    commits by the Rust engine, which runs ``fn`` on ``workers`` threads (the GIL is held
    only while ``fn`` runs and its output is encoded).

    - ``records``: any iterable; ids are positions (0, 1, ...), or with ``keyed=True`` it
      yields ``(id, record)`` pairs with int ids. The iterable is read again from the start
      on resume, so it must give the same records in the same order (pass
      ``input_manifest`` to have a changed input refused).
    - ``store``: a path (opened and closed here) or an open :class:`Store`; ``job``: a name
      (opened with ``output``, ``schema_version``, ``input_manifest``, ``total_records``,
      closed here) or an open :class:`Job`.
    - Failures: an exception from ``fn`` is retried up to ``attempts`` times in all, with
      exponential backoff from ``base_delay`` to ``max_delay`` seconds (with jitter); then
      the record becomes a dead letter (see ``Store.dead_letters``). Raise
      :class:`PermanentError` to dead-letter at once. An output JSON cannot hold is a
      permanent failure.
    - ``timeout``: seconds per attempt; a call that takes longer counts as a failed attempt
      (it is abandoned, not killed: Python cannot kill a thread).
    - ``processes=True``: ``fn`` runs in a pool of ``workers`` processes started with the
      ``spawn`` method (never ``fork``: this process holds Rust threads); ``fn`` and the
      records must be picklable and ``fn`` importable.
    - ``complete``: mark the job completed when every record is settled (default), else
      leave it paused for more input.
    - ``progress``: draw a progress line on stderr; default: when stderr is a terminal.
    - ``fold``/``initial``: fold each committed output into a JSON state,
      ``fold(state, id, output) -> state`` (see ``Store.job``); the result's ``state`` is
      the state after the run.
    - ``scrub_rate``/``scrub_every``: while the run goes on, a background scrub re-reads the
      job's committed values at ``scrub_rate`` bytes per second (0: off) and checks their
      checksums, the first pass 10 s in (or after ``scrub_every`` seconds, if shorter), then
      ``scrub_every`` seconds after each pass; damage is logged and counted in the result's
      ``scrub_damaged`` (docs/SCRUB.md).
    - Ctrl-C (KeyboardInterrupt) stops cleanly: in-flight records are finished and
      committed durably, the job is paused, then KeyboardInterrupt propagates.

    Returns a :class:`MapResult`.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if scrub_rate < 0:
        raise ValueError("scrub_rate must be at least 0 (0 turns the scrub off)")
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if total_records is None and not keyed and hasattr(records, "__len__"):
        total_records = len(records)  # type: ignore[arg-type]  # hasattr does not narrow

    own_store = not isinstance(store, Store)
    the_store = store if isinstance(store, Store) else Store(store)
    own_job = not isinstance(job, Job)
    pool: Optional[concurrent.futures.Executor] = None
    try:
        the_job = (
            job
            if isinstance(job, Job)
            else the_store.job(
                job,
                output=output,
                schema_version=schema_version,
                input_manifest=input_manifest,
                total_records=total_records,
                fold=fold,
                initial=initial,
            )
        )
        try:
            if the_job.lifecycle == "completed":
                return MapResult("already_done", 0, 0, 0, the_job.done_count, 0, 0, 0, 0, 0.0, 0.0, the_job.state)
            if processes:
                try:
                    pickle.dumps(fn)
                except Exception as e:
                    # Else every record would fail to reach the pool and be dead-lettered.
                    raise TypeError(f"processes=True needs a picklable, importable fn: {e}") from e
                pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=multiprocessing.get_context("spawn")
                )
            elif timeout is not None:
                pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="resumable-map"
                )
            pairs = iter(records) if keyed else iter(enumerate(records))
            summary = _run_map(
                the_job,
                _caller(fn, pool, timeout),
                pairs,
                workers=workers,
                attempts=attempts,
                base_delay=base_delay,
                max_delay=max_delay,
                complete=complete,
                progress=progress,
                scrub_rate=scrub_rate,
                scrub_every=float(scrub_every),
            )
            return MapResult(**summary, state=the_job.state)
        finally:
            if own_job:
                the_job.close()
    finally:
        if pool is not None:
            # Abandoned (timed-out) calls may still run; do not wait for them.
            pool.shutdown(wait=timeout is None, cancel_futures=True)
        if own_store:
            the_store.close()
