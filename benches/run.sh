#!/usr/bin/env bash
# Figures for `resumable run` (docs/RUN.md), every comparison side by side in one run,
# variants alternating round by round so machine noise hits both alike.
#
#   cargo build --release && benches/run.sh [ROUNDS]
#
# Needs python3, bc and GNU parallel (Debian: apt-get install parallel). Writes only to a
# temporary directory. Prints medians and the ratios quoted in docs/RUN.md.
set -euo pipefail
ROUNDS=${1:-3}
SECTIONS=${SECTIONS:-1234}  # which of the four sections to run
BIN=${RESUMABLE:-$(cd "$(dirname "$0")/.." && pwd)/target/release/resumable}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.0f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# The work per record: a fixed amount of Python computation (about 50 us on an idle core
# of the project's VM; printed below). Fixed CPU work rather than a wall-clock spin, so
# that CPU contention slows every variant alike instead of shortening the work.
WORK=${WORK:-1500}
# The interpreter itself, not a launcher shim (pyenv's `python3` is a bash script that
# would add ~100 ms to every process start).
PY=$(python3 -c 'import sys; print(sys.executable)')
PATH="$(dirname "$PY"):$PATH"
printf 'def work(line):\n    x = 0\n    for i in range(%d):\n        x += i\n    return line.upper()\n' "$WORK" > work.py
# A filter doing the work per line, flushing each answer.
cat > busy.py <<'PY'
import sys
from work import work
for line in sys.stdin:
    sys.stdout.write(work(line))
    sys.stdout.flush()
PY
# The same work, one process per record: the record as an argument (GNU parallel) ...
cat > once_arg.py <<'PY'
import sys
from work import work
print(work(sys.argv[1]))
PY
# ... or on stdin (resumable run --per-record).
cat > once_stdin.py <<'PY'
import sys
from work import work
sys.stdout.write(work(sys.stdin.read()))
PY
# The seed practice: a Python loop that appends each output (fsync) and then writes a JSON
# checkpoint with write-temp + fsync + rename after each record.
cat > seed.py <<'PY'
import json, os, sys
from work import work
inp, out, ckpt = sys.argv[1:4]
start = json.load(open(ckpt))["next"] if os.path.exists(ckpt) else 0
with open(inp) as f, open(out, "a") as o:
    for i, line in enumerate(f):
        if i < start:
            continue
        o.write(work(line)); o.flush(); os.fsync(o.fileno())
        with open(ckpt + ".tmp", "w") as c:
            json.dump({"next": i + 1}, c); c.flush(); os.fsync(c.fileno())
        os.rename(ckpt + ".tmp", ckpt)
PY

timed() { # OUT_WALL OUT_CPU CMD...: appends wall and CPU (user+sys, children included) seconds
  local wall=$1 cpu=$2; shift 2
  /usr/bin/time -f "%e %U %S" -o tt "$@"
  local e u s; read -r e u s < tt
  echo "$e" >> "$wall"; echo "$u + $s" | bc -l >> "$cpu"
}

seq 1 1000000 | sed 's/^/record-/' > lines.txt
if [[ $SECTIONS == *1* ]]; then
echo "== 1. framework ceiling: 10^6 short lines through cat (durable acks, 2 workers)"
: > t_cat; : > t_run; : > c_cat; : > c_run
for _ in $(seq "$ROUNDS"); do
  timed t_cat c_cat bash -c 'cat lines.txt > out.txt'
  rm -f cat.redb
  timed t_run c_run "$BIN" run cat.redb --json --input lines.txt --workers 2 -- cat > cat.json
done
c=$(median < t_cat); r=$(median < t_run)
echo "cat input > output: $c s ($(rate 1000000 "$c") lines/s)"
echo "resumable run -- cat: $r s wall, $(median < c_run) s CPU ($(rate 1000000 "$r") records/s, durable; $(python3 -c "import json; print(json.load(open('cat.json'))['commits'])") commits)"

fi
if [[ $SECTIONS == *2* ]]; then
N=${PY_RECORDS:-100000}
echo "== 2. a Python filter, W=2, $N records: resumable run vs the input split in two, no checkpoints"
head -n "$N" lines.txt > py.txt
split -n l/2 py.txt half.
/usr/bin/time -f "%U %S" -o t_alone python3 busy.py < half.aa > /dev/null
echo "work per record (one process alone, output to /dev/null): $(python3 -c "u,s=open('t_alone').read().split(); print(f'{(float(u)+float(s))/($N/2)*1e6:.0f}')") us of CPU"
: > t_res; : > t_split; : > c_res; : > c_split; : > t_null; : > c_null
for _ in $(seq "$ROUNDS"); do
  rm -f py.redb
  timed t_res c_res "$BIN" run py.redb --json --input py.txt --workers 2 -- python3 -u busy.py > py.json
  timed t_split c_split bash -c 'python3 -u busy.py < half.aa > o1 & python3 -u busy.py < half.ab > o2 & wait'
  timed t_null c_null bash -c 'python3 -u busy.py < half.aa > /dev/null & python3 -u busy.py < half.ab > /dev/null & wait'
done
a=$(median < t_res); b=$(median < t_split); ca=$(median < c_res); cb=$(median < c_split)
n=$(median < t_null); cn=$(median < c_null)
echo "resumable run W=2: $a s wall, $ca s CPU in all ($(rate "$N" "$a") records/s)"
echo "split in two, no checkpoints, output to files: $b s wall, $cb s CPU in all ($(rate "$N" "$b") records/s)"
echo "split in two, no checkpoints, output to /dev/null: $n s wall, $cn s CPU in all ($(rate "$N" "$n") records/s)"
echo "share of the uncheckpointed throughput: to files: wall $(ratio "$b" "$a"), CPU $(ratio "$cb" "$ca"); to /dev/null: wall $(ratio "$n" "$a"), CPU $(ratio "$cn" "$ca") (goal >= 0.9)"

fi
if [[ $SECTIONS == *3* ]]; then
P=${PER_RECORD:-300}
echo "== 3. one process per record, $P records, 2 at a time: GNU parallel --joblog --resume vs resumable run --per-record"
head -n "$P" lines.txt > few.txt
: > t_par; : > t_per; : > t_filt; : > c_par; : > c_per; : > c_filt
for _ in $(seq "$ROUNDS"); do
  rm -f joblog per.redb filt.redb
  timed t_par c_par bash -c 'parallel -j2 --joblog joblog --resume python3 once_arg.py {} :::: few.txt > par.out'
  timed t_per c_per "$BIN" run per.redb --json --input few.txt --workers 2 --per-record -- python3 once_stdin.py > per.json
  timed t_filt c_filt "$BIN" run filt.redb --json --input few.txt --workers 2 -- python3 -u busy.py > filt.json
done
a=$(median < t_par); b=$(median < t_per); f=$(median < t_filt)
echo "GNU parallel --joblog --resume: $a s ($(rate "$P" "$a") records/s)"
echo "resumable run --per-record: $b s ($(rate "$P" "$b") records/s); throughput ratio to parallel $(ratio "$a" "$b")"
echo "resumable run (filter workers, same records, start-up included): $f s ($(rate "$P" "$f") records/s); ratio to parallel $(ratio "$a" "$f")"

fi
if [[ $SECTIONS == *4* ]]; then
S=${SEED_RECORDS:-2000}
echo "== 4. the seed practice (same work): a Python loop with a JSON checkpoint (write-temp + fsync + rename) per record, $S records"
head -n "$S" lines.txt > seed.txt
: > t_seed; : > t_r1; : > t_r2; : > c_seed; : > c_r1; : > c_r2
for _ in $(seq "$ROUNDS"); do
  rm -f seed.out ckpt s1.redb s2.redb
  timed t_seed c_seed python3 seed.py seed.txt seed.out ckpt
  timed t_r1 c_r1 "$BIN" run s1.redb --json --input seed.txt --workers 1 -- python3 -u busy.py > s1.json
  timed t_r2 c_r2 "$BIN" run s2.redb --json --input seed.txt --workers 2 -- python3 -u busy.py > s2.json
done
a=$(median < t_seed); b=$(median < t_r1); c2=$(median < t_r2)
echo "seed practice: $a s ($(rate "$S" "$a") records/s)"
echo "resumable run W=1: $b s ($(rate "$S" "$b") records/s, start-up included); throughput ratio $(ratio "$a" "$b")"
echo "resumable run W=2: $c2 s ($(rate "$S" "$c2") records/s, start-up included); throughput ratio $(ratio "$a" "$c2")"
fi
