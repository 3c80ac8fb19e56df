#!/usr/bin/env python3
"""A `resumable run` worker: reads one JSON record per line on stdin, answers one JSON
line per record on stdout, flushed (run it with `python3 -u`).

Each record is a CSV row turned into an object keyed by the header, e.g.
{"city": "Lyon", "temp_c": "14.5"}. The answer is stored as the record's output.
A row whose temperature is not a number fails with a message on stderr; under
`--protocol json` it would be reported as a permanent error instead.
"""
import json
import sys

for line in sys.stdin:
    row = json.loads(line)
    try:
        celsius = float(row["temp_c"])
    except ValueError:
        # Printing nothing would shift every later answer: answer something instead.
        print(f"bad temperature {row['temp_c']!r} for {row['city']}", file=sys.stderr)
        print(json.dumps({"city": row["city"], "error": "bad temperature"}))
        continue
    print(json.dumps({"city": row["city"], "temp_f": round(celsius * 9 / 5 + 32, 1)}))
