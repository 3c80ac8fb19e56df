#!/usr/bin/env bash
# Figures for `resumable run` (docs/RUN.md), every comparison side by side in one run,
# variants alternating round by round so machine noise hits both alike.
#
#   cargo build --release && benches/run.sh [ROUNDS]
#
# Needs python3 and GNU parallel (Debian: apt-get install parallel). Writes only to a
# temporary directory. Prints medians and the ratios quoted in docs/RUN.md.
set -euo pipefail
ROUNDS=${1:-3}
BIN=${RESUMABLE:-$(cd "$(dirname "$0")/.." && pwd)/target/release/resumable}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.0f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# A filter that spends ~50 us of CPU per record (busy loop), flushing each answer.
cat > busy.py <<'EOF'
import sys, time
for line in sys.stdin:
    end = time.perf_counter() + 50e-6
    while time.perf_counter() < end:
        pass
    sys.stdout.write(line.upper())
    sys.stdout.flush()
EOF
# The same work, one process per record: the record as an argument (GNU parallel) ...
cat > once_arg.py <<'EOF'
import sys, time
end = time.perf_counter() + 50e-6
while time.perf_counter() < end:
    pass
print(sys.argv[1].upper())
EOF
# ... or on stdin (resumable run --per-record).
cat > once_stdin.py <<'EOF'
import sys, time
line = sys.stdin.read()
end = time.perf_counter() + 50e-6
while time.perf_counter() < end:
    pass
sys.stdout.write(line.upper())
EOF
# The seed practice: a Python loop that appends each output (fsync) and then writes a JSON
# checkpoint with write-temp + fsync + rename after each record.
cat > seed.py <<'EOF'
import json, os, sys, time
inp, out, ckpt = sys.argv[1:4]
start = json.load(open(ckpt))["next"] if os.path.exists(ckpt) else 0
with open(inp) as f, open(out, "a") as o:
    for i, line in enumerate(f):
        if i < start:
            continue
        end = time.perf_counter() + 50e-6
        while time.perf_counter() < end:
            pass
        o.write(line.upper()); o.flush(); os.fsync(o.fileno())
        with open(ckpt + ".tmp", "w") as c:
            json.dump({"next": i + 1}, c); c.flush(); os.fsync(c.fileno())
        os.rename(ckpt + ".tmp", ckpt)
EOF

run_json() { # STORE ARGS... -- CMD: prints elapsed seconds of a fresh run
  local store=$1; shift
  rm -f "$store"
  local t0; t0=$(now)
  "$BIN" run "$store" --json "$@" > "$store.json"
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)"
}

echo "== 1. framework ceiling: 10^6 short lines through cat (durable acks, 2 workers)"
seq 1 1000000 | sed 's/^/record-/' > lines.txt
: > t_cat; : > t_run
for _ in $(seq "$ROUNDS"); do
  t0=$(now); cat lines.txt > out.txt; t1=$(now)
  echo "$t1 - $t0" | bc -l >> t_cat
  run_json cat.redb --input lines.txt --workers 2 -- cat >> t_run
done
c=$(median < t_cat); r=$(median < t_run)
echo "cat input > output: $c s ($(rate 1000000 "$c") lines/s)"
echo "resumable run -- cat: $r s ($(rate 1000000 "$r") records/s, durable; $(python3 -c "import json; d=json.load(open('cat.redb.json')); print(d['commits'])") commits)"

N=${PY_RECORDS:-100000}
echo "== 2. a Python filter at ~50 us/record, W=2, $N records: resumable run vs the input split in two, no checkpoints"
head -n "$N" lines.txt > py.txt
split -n l/2 py.txt half.
: > t_res; : > t_split
for _ in $(seq "$ROUNDS"); do
  run_json py.redb --input py.txt --workers 2 -- python3 -u busy.py >> t_res
  t0=$(now)
  python3 -u busy.py < half.aa > o1 & python3 -u busy.py < half.ab > o2 & wait
  t1=$(now); echo "$t1 - $t0" | bc -l >> t_split
done
a=$(median < t_res); b=$(median < t_split)
echo "resumable run W=2: $a s ($(rate "$N" "$a") records/s)"
echo "split in two, no checkpoints: $b s ($(rate "$N" "$b") records/s)"
echo "share: $(ratio "$b" "$a") (goal >= 0.9)"

P=${PER_RECORD:-300}
echo "== 3. one process per record, $P records, 2 at a time: GNU parallel --joblog --resume vs resumable run --per-record"
head -n "$P" lines.txt > few.txt
: > t_par; : > t_per; : > t_filt
for _ in $(seq "$ROUNDS"); do
  rm -f joblog; t0=$(now)
  parallel -j2 --joblog joblog --resume python3 once_arg.py {} :::: few.txt > par.out
  t1=$(now); echo "$t1 - $t0" | bc -l >> t_par
  run_json per.redb --input few.txt --workers 2 --per-record -- python3 once_stdin.py >> t_per
  run_json filt.redb --input few.txt --workers 2 -- python3 -u busy.py >> t_filt
done
a=$(median < t_par); b=$(median < t_per); f=$(median < t_filt)
echo "GNU parallel --joblog --resume: $a s ($(rate "$P" "$a") records/s)"
echo "resumable run --per-record: $b s ($(rate "$P" "$b") records/s); ratio to parallel $(ratio "$a" "$b")"
echo "resumable run (filter workers, same records, incl. start-up): $f s ($(rate "$P" "$f") records/s)"

S=${SEED_RECORDS:-2000}
echo "== 4. the seed practice: a Python loop with a JSON checkpoint (write-temp + fsync + rename) per record, $S records"
head -n "$S" lines.txt > seed.txt
: > t_seed; : > t_r1; : > t_r2
for _ in $(seq "$ROUNDS"); do
  rm -f seed.out ckpt; t0=$(now)
  python3 seed.py seed.txt seed.out ckpt
  t1=$(now); echo "$t1 - $t0" | bc -l >> t_seed
  run_json s1.redb --input seed.txt --workers 1 -- python3 -u busy.py >> t_r1
  run_json s2.redb --input seed.txt --workers 2 -- python3 -u busy.py >> t_r2
done
a=$(median < t_seed); b=$(median < t_r1); c2=$(median < t_r2)
echo "seed practice: $a s ($(rate "$S" "$a") records/s)"
echo "resumable run W=1: $b s ($(rate "$S" "$b") records/s, incl. start-up); ratio $(ratio "$a" "$b")"
echo "resumable run W=2: $c2 s ($(rate "$S" "$c2") records/s, incl. start-up); ratio $(ratio "$a" "$c2")"
