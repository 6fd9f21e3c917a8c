#!/usr/bin/env bash
# Run every fleet-scale target (F1-F8) one after the other, each with the baseline its own
# run measures, and keep the output in reports/bench/. Nothing else should run meanwhile:
# the figures are ratios because this machine is noisy, not because noise cancels out.
#
#   ./bench/fleet_targets.sh            # all targets (about 20 minutes here)
#   ./bench/fleet_targets.sh F4 F6      # only those
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p reports/bench
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(F1 F3 F4 F5 F6 F7 F8)

run() {
  local name=$1; shift
  echo "=== $name: $*" | tee "reports/bench/$name.txt"
  "$@" 2>&1 | tee -a "reports/bench/$name.txt"
}

for target in "${targets[@]}"; do
  case $target in
    # F1 and F2 come from one run: the product, then the naive design, same wrk script.
    F1 | F2) run F1-F2 $PY bench/ingest_bench.py versus-naive --seconds 20 --connections 64 --web-workers 2 ;;
    F3) run F3 $PY bench/ingest_bench.py latency --seconds 30 --rate 100 --batch 50 --web-workers 2 ;;
    F4) run F4 $PY bench/worker_bench.py drain --messages 10000 --readings-per-message 100 ;;
    F5) run F5 $PY bench/worker_bench.py end-to-end --requests 1000 --readings-per-message 1000 ;;
    F6) run F6 $PY bench/console_bench.py --requeue-only --readings 0 --dead-letters 100000 ;;
    # F7 is read against F4's worker rate (the same messages of stored readings).
    F7) run F7 $PY bench/ingest_bench.py import --readings 1000000 --batch 1000 ;;
    F8) run F8 $PY bench/worker_bench.py memory --messages 1000000 ;;
    *) echo "unknown target $target (F1-F8)" >&2; exit 2 ;;
  esac
done
