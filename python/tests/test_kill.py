"""Crash campaign: a child process running resumable.map (with a fold counting records) is
SIGKILLed at random moments, dozens of times, then run to the end; the CLI's export of that
store equals the export of an uninterrupted run byte for byte (no record lost, none stored
twice), the folded state equals the uninterrupted run's (no record folded twice), at 1 and
4 workers, and the store verifies. The random seed is printed (set RESUMABLE_KILL_SEED to replay)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import resumable

import helpers
from conftest import HERE, cli, cli_json

RECORDS_PER_WORKER = 2500
KILLS = 24

CHILD = """
import sys, resumable, helpers
with resumable.Store(sys.argv[1]) as store:
    job = store.job("k", fold=helpers.add, initial=helpers.FOLD_INITIAL, total_records=int(sys.argv[2]))
    print("open", flush=True)
    resumable.map(helpers.square_slowly, range(int(sys.argv[2])), store=store, job=job,
                  workers=int(sys.argv[3]), progress=False)
    job.close()
"""

def spawn(store, workers: int, records: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(records), str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("workers", [1, 4])
def test_sigkill_campaign_export_equals_an_uninterrupted_run(tmp_path, workers):
    seed = int(os.environ.get("RESUMABLE_KILL_SEED", time.time_ns() % 2**32))
    print(f"kill campaign seed {seed} (workers={workers})")
    rng = random.Random(seed)
    records = RECORDS_PER_WORKER * workers

    reference = tmp_path / "reference.redb"
    ref = spawn(reference, workers, records)
    assert ref.wait(timeout=120) == 0, ref.stderr.read() if ref.stderr else ""

    store = tmp_path / "killed.redb"
    kills = 0
    finished_early = 0
    done_at_kill = []
    while kills < KILLS:
        child = spawn(store, workers, records)
        if rng.random() < 0.2:
            # Now and then during start-up or open (resume itself must be crash-safe).
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            # Otherwise once the job is open, however slow the machine is to start Python.
            assert child.stdout is not None
            child.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.3))
        if child.poll() is not None:
            assert child.returncode == 0, child.stderr.read() if child.stderr else ""
            finished_early += 1
            break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        kills += 1
        if store.exists():
            with resumable.Store(store) as s:
                if "k" in s.jobs():
                    done_at_kill.append(s.status("k")["records_done"])
    final = spawn(store, workers, records)
    assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else ""
    print(f"{kills} kills; records done at each kill: {done_at_kill}")
    assert kills >= 12, f"only {kills} kills landed before the job finished (seed {seed})"
    assert any(0 < d < records for d in done_at_kill), "no kill landed mid-run"

    killed_export = cli("export", str(store), "--job", "k").stdout
    reference_export = cli("export", str(reference), "--job", "k").stdout
    assert killed_export == reference_export
    assert len(killed_export.splitlines()) == records
    verify = cli_json("verify", str(store))
    assert verify["first_problem"] is None, verify
    (status,) = cli_json("status", str(store))["jobs"]
    assert status["lifecycle"] == "completed" and status["records_done"] == records
    assert status["recoveries"] >= 1
    states = []
    for path in (store, reference):
        with resumable.Store(path) as s:
            with s.job("k", fold=helpers.add, initial=helpers.FOLD_INITIAL) as job:
                states.append(job.state)
    assert states[0] == states[1] == {
        "n": records,
        "sum": sum(i * i for i in range(records)),
        "ids": sum(range(records)),
    }
