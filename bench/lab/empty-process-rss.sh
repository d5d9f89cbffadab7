#!/bin/bash
# The fixed memory of an empty c10m node: RSS, PSS and anonymous memory
# (/proc/PID/smaps_rollup) of `c10m serve` and the mean of its node
# processes (--processes), after WAIT seconds idle (default 10). Run it
# under the bench lock; TREE picks the checkout (to compare two builds in
# one run), NODEFLAGS adds node flags (they reach the node processes too).
#   flock /tmp/bench.lock bench/lab/empty-process-rss.sh after -- --processes 8 --engine redis --redis-url redis://127.0.0.1:6379
set -u
label=$1
shift 2
cd "${TREE:-$(dirname "$0")/../..}"
node ${NODEFLAGS:-} bin/c10m.js serve --port 0 --admin-port 0 --host 127.0.0.1 --log-format json --log-level warn "$@" >/dev/null 2>&1 &
pid=$!
sleep "${WAIT:-10}"
roll() { awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Anonymous:/{a=$2} END{printf "%d %d %d\n", r, p, a}' "/proc/$1/smaps_rollup"; }
top=$(roll $pid | awk '{printf "rss %.1f MB pss %.1f MB anon %.1f MB", $1/1024, $2/1024, $3/1024}')
kids=$(for k in $(pgrep -P $pid); do roll "$k"; done | awk '{r+=$1;p+=$2;a+=$3;n++} END{if(n) printf "node processes (%d) mean rss %.1f MB pss %.1f MB anon %.1f MB", n, r/n/1024, p/n/1024, a/n/1024}')
echo "$label | top $top | $kids"
kill -TERM $pid
wait $pid 2>/dev/null
