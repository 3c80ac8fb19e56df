#!/usr/bin/env bash
# Builds the Python package from source and runs its tests, from a fresh clone:
#   python/test.sh [pytest args...]
# Uses (or creates) the venv python/.venv, which sees the system's packages, so maturin and
# pytest are installed only when missing. Builds the operator CLI (target/release/resumable)
# that the tests drive. Exits non-zero on any failure, and when pytest collects no tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)"; }

python="${PYTHON:-python3}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  step "venv $venv"
  "$python" -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
missing=()
"$py" -c "import maturin" 2>/dev/null || command -v maturin >/dev/null || missing+=(maturin)
"$py" -c "import pytest" 2>/dev/null || missing+=(pytest)
if [ ${#missing[@]} -gt 0 ]; then
  step "pip install ${missing[*]}"
  "$py" -m pip install --quiet "${missing[@]}"
fi

# The CLI and the extension build at the same time (two cargo processes, separate target dirs).
# --all-features: the same feature set as `cargo test --all-features --release`, so after the
# Rust tests (as in .ci/run) the binary is already built.
step "cargo build --release (the CLI) and maturin develop --release (the package)"
(cd "$root" && cargo build --release --all-features --quiet --bin resumable) &
cli_pid=$!
maturin_bin="$venv/bin/maturin"
[ -x "$maturin_bin" ] || maturin_bin="$(command -v maturin)"
(cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$maturin_bin" develop --release --quiet)
"$py" -c "import resumable._resumable" || { echo "the package did not install" >&2; exit 1; }
wait "$cli_pid"

step "pytest"
cd "$here"
export RESUMABLE_CLI="$root/target/release/resumable"
set +e
"$py" -m pytest -q -p no:cacheprovider tests "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: a failure here.
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
step "done (pytest exit $rc)"
exit "$rc"
