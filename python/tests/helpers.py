"""Functions tests hand to resumable.map: importable, so a spawned process can run them."""

from __future__ import annotations

import time


def square(x: int) -> dict:
    return {"x": x, "sq": x * x}


def square_slowly(x: int) -> dict:
    time.sleep(0.002)
    return {"x": x, "sq": x * x}


def pid_of_worker(x: int) -> dict:
    import os

    return {"x": x, "pid": os.getpid()}


def add(state: dict, id: int, output: dict) -> dict:
    """A fold: count records and sum their squares (and ids, to catch a wrong id)."""
    state["n"] += 1
    state["sum"] += output["sq"]
    state["ids"] += id
    return state


FOLD_INITIAL = {"n": 0, "sum": 0, "ids": 0}
