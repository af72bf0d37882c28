#!/usr/bin/env bash
# bash benchmarks/cpu_of.sh CMD...: run CMD, then print the CPU seconds the whole machine
# spent meanwhile (all processes, from /proc/stat: CMD's children, Ray's daemons and
# workers, Flower's processes) and the wall seconds. Meaningful on an otherwise idle
# machine. CMD's output goes to $CPU_OF_LOG (default: the terminal).
set -u
read -r _ u n s _ _ q sq st _ < /proc/stat; before=$((u + n + s + q + sq + st)); t0=$(date +%s.%N)
if [ -n "${CPU_OF_LOG:-}" ]; then "$@" > "$CPU_OF_LOG" 2>&1; else "$@"; fi
rc=$?
read -r _ u n s _ _ q sq st _ < /proc/stat; after=$((u + n + s + q + sq + st)); t1=$(date +%s.%N)
python3 -c "import os, sys; print(f'cpu {($after - $before) / os.sysconf(\"SC_CLK_TCK\"):.1f} s  wall {$t1 - $t0:.1f} s  rc {$rc}: ' + ' '.join(sys.argv[1:]))" "$@"
exit $rc
