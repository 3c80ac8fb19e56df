#!/usr/bin/env python3
"""The same worker under `--protocol json`: gets {"id": N, "record": {...}} and answers
{"id": N, "output": ...} or {"id": N, "error": "...", "retry": false}."""
import json
import sys

for line in sys.stdin:
    msg = json.loads(line)
    row = msg["record"]
    try:
        out = {"id": msg["id"], "output": {"city": row["city"], "temp_f": round(float(row["temp_c"]) * 9 / 5 + 32, 1)}}
    except ValueError:
        out = {"id": msg["id"], "error": f"bad temperature {row['temp_c']!r}", "retry": False}
    print(json.dumps(out), flush=True)
