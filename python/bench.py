"""Records/s of three ways to checkpoint a Python batch job, side by side in one run.

1. seed practice: a Python loop that, after each record, appends its output to a JSONL file
   and writes a JSON checkpoint (next id, a count) with write-temp, fsync, rename (what
   people hand-roll), alone and with fn on 8 threads;
2. resumable, per-record durable commits (``max_group_records=1``: one fsync per record);
3. resumable's default: ``resumable.map`` with group commits and durable acks (8 threads;
   1 thread, the low-level ``Job.submit`` loop and a Python thread pool feeding
   ``Job.submit`` shown too).

The last column divides map's 8-thread rate by the seed loop's (trivial fn) or by the seed
practice on 8 threads (1 ms fn).

Each for a trivial fn and for a fn that sleeps 1 ms (I/O-bound), 8 threads for map.

    python python/bench.py [--records N] [--slow-records N] [--sleep-records N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import resumable


def trivial(x: int) -> dict:
    return {"x": x, "sq": x * x}


def sleepy(x: int) -> dict:
    time.sleep(0.001)
    return {"x": x}


def _checkpoint(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def seed_practice(fn, n: int, path: str) -> float:
    """The hand-rolled checkpoint, in its cheapest form: outputs appended to a JSONL file,
    then a constant-size checkpoint (next id, a running count) written to a temp file,
    fsynced and renamed over the old one, after each record. (Not even exactly-once: a crash
    between the append and the rename repeats the record.)"""
    state = {"next": 0, "n": 0}
    t = time.perf_counter()
    with open(path + ".jsonl", "a") as out:
        for i in range(n):
            if i < state["next"]:
                continue
            out.write(json.dumps({"id": i, "output": fn(i)}) + "\n")
            out.flush()
            state["next"] = i + 1
            state["n"] += 1
            _checkpoint(path, state)
    return n / (time.perf_counter() - t)


def seed_practice_threads(fn, n: int, path: str, workers: int) -> float:
    """The same checkpoint per record, with fn run on a thread pool (results in order)."""
    import concurrent.futures

    state = {"next": 0, "n": 0}
    t = time.perf_counter()
    with open(path + ".jsonl", "a") as out, concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, output in zip(range(n), pool.map(fn, range(n))):
            out.write(json.dumps({"id": i, "output": output}) + "\n")
            out.flush()
            state["next"] = i + 1
            state["n"] += 1
            _checkpoint(path, state)
    return n / (time.perf_counter() - t)


def per_record(fn, n: int, path: str) -> float:
    t = time.perf_counter()
    with resumable.Store(path) as store:
        with store.job("bench", max_group_records=1) as job:
            for i in range(n):
                if job.is_done(i):
                    continue
                job.submit(i, fn(i))
            job.complete()
    return n / (time.perf_counter() - t)


def low_level_default(fn, n: int, path: str) -> float:
    t = time.perf_counter()
    with resumable.Store(path) as store:
        with store.job("bench") as job:
            for i in range(n):
                if job.is_done(i):
                    continue
                job.submit(i, fn(i))
            job.complete()
    return n / (time.perf_counter() - t)


def pool_submit(fn, n: int, path: str, workers: int) -> float:
    """Driven from Python instead of the Rust runner: a thread pool computes, the loop submits
    (group commits, no retries): the alternative design to resumable.map."""
    import concurrent.futures

    t = time.perf_counter()
    with resumable.Store(path) as store:
        with store.job("bench") as job, concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for i, out in zip(range(n), pool.map(fn, range(n))):
                job.submit(i, out)
            job.complete()
    return n / (time.perf_counter() - t)


def default_map(fn, n: int, path: str, workers: int) -> float:
    t = time.perf_counter()
    r = resumable.map(fn, range(n), store=path, job="bench", workers=workers, progress=False)
    assert r.records_committed == n, r
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="records for resumable's default (trivial fn)")
    ap.add_argument("--slow-records", type=int, default=1_000, help="records for the fsync-per-record variants")
    ap.add_argument("--sleep-records", type=int, default=5_000, help="records for the 1 ms fn")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="resumable-bench-", dir=args.dir)
    counter = iter(range(1_000_000))

    def fresh(name: str) -> str:
        return os.path.join(base, f"{next(counter)}-{name}")

    rows = []
    for label, fn, n_fast in (("trivial fn", trivial, args.records), ("1 ms sleep fn", sleepy, args.sleep_records)):
        n_slow = args.slow_records
        seed = seed_practice(fn, n_slow, fresh("seed.json"))
        seed_t = seed_practice_threads(fn, n_slow, fresh("seedt.json"), args.workers)
        per = per_record(fn, n_slow, fresh("per.redb"))
        low = low_level_default(fn, n_fast, fresh("low.redb"))
        m1 = default_map(fn, n_fast, fresh("map1.redb"), 1)
        mw = default_map(fn, n_fast, fresh("mapw.redb"), args.workers)
        pw = pool_submit(fn, n_fast, fresh("pool.redb"), args.workers)
        rows.append((label, seed, seed_t, per, low, pw, m1, mw))

    print(f"records: {args.slow_records} for fsync-per-record variants; {args.records} (trivial) / {args.sleep_records} (1 ms) for group commits; {args.workers} threads; dir {base}")
    hdr = ("fn", "seed loop", f"seed {args.workers} thr", "per-record", "Job loop", f"pool+submit {args.workers} thr", "map 1 thr", f"map {args.workers} thr", "map/seed")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for label, seed, seed_t, per, low, pw, m1, mw in rows:
        base = seed if label.startswith("trivial") else seed_t
        print(f"| {label} | {seed:,.0f} | {seed_t:,.0f} | {per:,.0f} | {low:,.0f} | {pw:,.0f} | {m1:,.0f} | {mw:,.0f} | {mw / base:,.0f}x |")


if __name__ == "__main__":
    main()
