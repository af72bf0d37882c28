#!/usr/bin/env bash
# The reliability tests N times in a row (default 5) with two CPU-bound busy loops
# competing for the cores: a check that they wait for events the work reports, not
# for guessed times. Stops at the first failure. Usage, from the repository root:
#   bash benchmarks/reliability_under_load.sh [N]
set -u
N="${1:-5}"
PY="${PYTHON:-python}"
busy=()
stop_busy() {
    for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${busy[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
for _ in 1 2; do
    "$PY" -c "while True: pass" &
    busy+=("$!")
done
echo "load: ${#busy[@]} busy loops (PIDs ${busy[*]}) on $(nproc) cores"
passed=0
for i in $(seq 1 "$N"); do
    start=$(date +%s)
    "$PY" -m pytest tests/test_reliability.py -q -p no:cacheprovider
    rc=$?
    took=$(( $(date +%s) - start ))
    if [ "$rc" -ne 0 ]; then
        echo "iteration $i/$N: FAILED (pytest exit $rc) after ${took} s"
        echo "$passed/$N passed"
        exit 1
    fi
    passed=$((passed + 1))
    echo "iteration $i/$N: passed in ${took} s"
done
echo "$passed/$N passed"
