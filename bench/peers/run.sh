#!/bin/sh
# bench/peers/run.sh — tend against BullMQ on Redis, delayed work, same run.
#
#   sh bench/peers/run.sh          (make bench-peers; make bench at 100k jobs)
#   BENCH_PEERS_JOBS=1000000       jobs on each side (default 1000000)
#   BENCH_PEERS_LEAD_TEND=S        seconds from the start of adding to the due
#   BENCH_PEERS_LEAD_BULLMQ=S      moment (default: a pilot adds 1% of the
#                                  jobs, at least 1,000, to a scratch store or
#                                  queue, and the lead is 1.5 times the add
#                                  time it predicts + 3 s, so adding ends
#                                  before the jobs are due)
#   BENCH_PEERS_CHUNK, BENCH_PEERS_CONCURRENCY   BullMQ addBulk size (1000),
#                                  Worker concurrency (100)
#   BENCH_TABLE=FILE               also append the rows of make bench's table
#
# Both sides hold N jobs all due at the same moment, every add fsync-durable:
#   tend   `tend ingest` of N events, each starting a journey parked at
#          wait_until(DUE) (synchronous=full, the default); then `tend run`
#          fires them; bench_firewatch watches the timers leave the store.
#   BullMQ a Redis started here on 127.0.0.1 (appendonly yes, appendfsync
#          always, no RDB, a temp dir) and bench/peers/bullmq.mjs: addBulk
#          of delayed jobs, then a Worker.
# The add's ceiling: bench_add_raw (bench/add_raw.c) writes the rows tend's
# ingest wrote, with raw SQLite in the same batches, into a fresh store.
# Printed: add and fire rates (the add with its ceiling and tend/raw), peak
# RSS (VmHWM from /proc: tend's largest process; redis-server + node), the
# lateness of the first and the median job after the due moment, and the
# ratios. Never pass/fail.
set -e
B=${TEND_BUILD:-build/release}
T=${TEND:-bin/tend}
N=${BENCH_PEERS_JOBS:-1000000}
here=$(cd "$(dirname "$0")" && pwd)

for c in redis-server redis-cli node npm curl; do
    if ! command -v $c >/dev/null 2>&1; then
        echo "peers: skipped: '$c' is not on PATH (make bench-peers installs what it needs)"
        exit 0
    fi
done
if [ ! -f "$here/node_modules/bullmq/package.json" ] ||
   [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    echo "peers: npm ci (bullmq, ioredis as pinned in bench/peers/package-lock.json)"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
bullmq_version=$(node -p "require('$here/node_modules/bullmq/package.json').version")
redis_version=$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')

work=$(mktemp -d "${TMPDIR:-/tmp}/tend-peers.XXXXXX")
redis_pid= tend_pid=
cleanup() {
    [ -z "$tend_pid" ] || { kill "$tend_pid" 2>/dev/null; wait "$tend_pid" 2>/dev/null || true; }
    [ -z "$redis_pid" ] || { kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    node -e 'const s = require("net").createServer();
             s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}
# kv LINE KEY: the value of KEY=... in LINE
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo "== peers: $N delayed jobs, all due at one moment, every add fsync-durable"
echo "peers: $($T --version 2>/dev/null | head -1), BullMQ $bullmq_version on Redis $redis_version" \
     "(appendfsync always), node $(node --version)"

# --- tend ----------------------------------------------------------------
mkdir "$work/tend"
port=$(free_port)
echo "return { listen = \"127.0.0.1:$port\", quiet_hours = false, unknown_customers = \"create\" }" \
    > "$work/tend/tend.lua"
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "{\"id\":\"j%d\",\"type\":\"job.add\",\"customer\":\"j%d\"}\n", i, i }' \
    > "$work/jobs.ndjson"
if [ -n "${BENCH_PEERS_LEAD_TEND:-}" ]; then
    lead=$BENCH_PEERS_LEAD_TEND
else
    pilot=$((N / 100 > 1000 ? N / 100 : 1000))
    pilot=$((pilot < N ? pilot : N))
    mkdir "$work/pilot"
    cp "$work/tend/tend.lua" "$work/pilot/"
    echo 'journey "job" { on = "job.add", run = function(c) wait(days(1)) end }' > "$work/pilot/care.lua"
    head -n "$pilot" "$work/jobs.ndjson" > "$work/pilot.ndjson"
    a=$(date +%s.%N)
    $T ingest --dir "$work/pilot" "$work/pilot.ndjson" >/dev/null
    b=$(date +%s.%N)
    lead=$(awk -v a="$a" -v b="$b" -v p="$pilot" -v n="$N" 'BEGIN { printf "%d", 1.5 * (b - a) * n / p + 3.999 }')
    rm -rf "$work/pilot" "$work/pilot.ndjson"
fi
due=$(( $(date +%s) + lead ))
echo "journey \"job\" { on = \"job.add\", run = function(c) wait_until($due) end }" > "$work/tend/care.lua"
a=$(date +%s.%N)
$B/bench_rusage "ingest" $T ingest --dir "$work/tend" "$work/jobs.ndjson" >/dev/null 2>"$work/ingest.err" ||
    { cat "$work/ingest.err" >&2; exit 1; }
b=$(date +%s.%N)
tend_add_s=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }')
ingest_rss=$(sed -n 's/^ingest: .*peak RSS \([0-9.]*\) MiB$/\1/p' "$work/ingest.err")
overrun=$(awk -v b="$b" -v d="$due" 'BEGIN { printf "%.1f", (b > d ? b - d : 0) }')
[ "$overrun" = 0.0 ] || echo "peers: tend: adding ended ${overrun} s after the due moment" \
    "(raise BENCH_PEERS_LEAD_TEND); its lateness includes that"
TEND_API_TOKEN=bench $T run "$work/tend" >"$work/run.out" 2>"$work/run.err" &
tend_pid=$!
tend=$($B/bench_firewatch "$work/tend/tend.db" "$N" "$due" "$tend_pid" "$((N / 1000 + 120))") ||
    { echo "peers: tend did not fire every job: $tend" >&2; sed 's/^/    /' "$work/run.err" >&2; }
kill "$tend_pid"; wait "$tend_pid" || true; tend_pid=
# the add's ceiling, once tend has fired (run between the two, it would eat
# into the lead): raw SQLite writing the rows tend's ingest wrote, in its
# batches, into a fresh store of the same schema (bench/add_raw.c)
raw=$($B/bench_add_raw "$work/jobs.ndjson" "$work/raw.db" "$due") ||
    { echo "peers: bench_add_raw failed: $raw" >&2; exit 1; }
raw_add_s=$(echo "$raw" | awk '{ print $2 }')
rm -f "$work/jobs.ndjson" "$work/raw.db"*
tend_rss=$(awk -v a="$ingest_rss" -v b="$(kv "$tend" rss_mb)" 'BEGIN { printf "%.1f", (a > b ? a : b) }')
rm -rf "$work/tend"

# --- BullMQ --------------------------------------------------------------
mkdir "$work/redis"
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --dir "$work/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize no --logfile "$work/redis/log" &
redis_pid=$!
i=0
until [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "peers: redis-server did not answer within 10 s" >&2; cat "$work/redis/log" >&2; exit 1; }
    sleep 0.1
done
due_ms=0
[ -z "${BENCH_PEERS_LEAD_BULLMQ:-}" ] || due_ms=$(( ($(date +%s) + BENCH_PEERS_LEAD_BULLMQ) * 1000 ))
bull=$(cd "$here" && node bullmq.mjs "$rport" "$N" "$due_ms" "$redis_pid")
kill "$redis_pid"; wait "$redis_pid" || true; redis_pid=
overrun=$(kv "$bull" overrun_s)
[ "$overrun" = 0.000 ] || echo "peers: BullMQ: adding ended ${overrun} s after the due moment" \
    "(raise BENCH_PEERS_LEAD_BULLMQ); its lateness includes that"
bull_rss=$(awk -v a="$(kv "$bull" rss_redis_mb)" -v b="$(kv "$bull" rss_node_mb)" 'BEGIN { printf "%.1f", a + b }')

# --- side by side --------------------------------------------------------
awk -v n="$N" -v ta="$tend_add_s" -v ra="$raw_add_s" -v ba="$(kv "$bull" add_s)" \
    -v tf="$(kv "$tend" fire_s)" -v bf="$(kv "$bull" fire_s)" \
    -v tr="$tend_rss" -v tri="$ingest_rss" -v trr="$(kv "$tend" rss_mb)" -v br="$bull_rss" -v brr="$(kv "$bull" rss_redis_mb)" -v brn="$(kv "$bull" rss_node_mb)" \
    -v t1="$(kv "$tend" first_ms)" -v b1="$(kv "$bull" first_ms)" \
    -v tm="$(kv "$tend" median_ms)" -v bm="$(kv "$bull" median_ms)" \
    -v table="${BENCH_TABLE:-}" -v bv="BullMQ $bullmq_version" '
BEGIN {
    tar = n / ta; bar = n / ba; tfr = (tf > 0 ? n / tf : 0); bfr = (bf > 0 ? n / bf : 0)
    printf "%-26s %14s %14s %12s  %s\n", "peers (" n " jobs)", "tend", bv, "ratio", "target"
    printf "%-26s %14.0f %14.0f %11.2fx  %s\n", "add (jobs/s)", tar, bar, tar / bar, ">= 5x"
    rar = n / ra
    printf "%-26s %14.0f %14s %11.2f   %s\n", "  ceiling, tend/raw", rar, "-", tar / rar, "(raw SQLite, bench_add_raw)"
    printf "%-26s %14.0f %14.0f %11.2fx  %s\n", "fire (jobs/s, from due)", tfr, bfr, (bfr ? tfr / bfr : 0), ">= 10x"
    printf "%-26s %14.1f %14.1f %11.2fx  %s\n", "peak RSS (MiB)", tr, br, br / tr, ">= 5x less (BullMQ/tend)"
    printf "%-26s %14.1f %14.1f %12s  %s\n", "first job late (ms)", t1, b1, "", "tend < 100"
    printf "%-26s %14.1f %14.1f %11.2fx  %s\n", "median job late (ms)", tm, bm, (tm > 0 ? bm / tm : 0), "(BullMQ/tend)"
    printf "peers: peak RSS: tend ingest %.1f, tend run %.1f MiB; BullMQ redis-server %.1f + node %.1f MiB\n", tri, trr, brr, brn
    if (table != "") {
        printf "peers: add, jobs/s (%d)\t%.0f\t%.0f %s\t%.2f\t>= 5\n", n, tar, bar, bv, tar / bar >> table
        printf "peers: add against its ceiling, jobs/s (%d)\t%.0f\t%.0f raw SQLite\t%.2f\t-\n", n, tar, rar, tar / rar >> table
        printf "peers: fire, jobs/s (%d)\t%.0f\t%.0f %s\t%.2f\t>= 10\n", n, tfr, bfr, bv, (bfr ? tfr / bfr : 0) >> table
        printf "peers: peak RSS MiB (%d)\t%.1f\t%.1f %s\t%.2f\t>= 5 (peer/tend)\n", n, tr, br, bv, br / tr >> table
        printf "peers: first job late ms\t%.1f\t%.1f %s\t-\t< 100\n", t1, b1, bv >> table
    }
}'
