#!/bin/sh
# bench/scaling.sh — how tend's rates hold as the store grows: for each size
# N of waiting instances, the start, wake and delivery rates over a fixed
# number of operations on top, `tend run`'s time to ready, its RSS and the
# store's size. Figures only; nothing passes or fails.
#   sh bench/scaling.sh [N ...]          (default: 100000 1000000)
#   BENCH_SCALING="100000 1000000 10000000" make bench
#   BENCH_SCALING_OPS=20000              operations per measure
#   BENCH_SCALING_ROWS=FILE              also append tab-separated rows there
#                                        (measure, tend, ceiling, ratio, target)
#   BENCH_SCALING_KEEP=1                 keep the stores (under $TMPDIR)
# The N waiting instances are seeded by raw SQL (bench_scale_seed: N
# instances of journey "park" waiting a year, spread over 5 script
# versions, with their timers); the measures go through tend itself:
#   start     K signup events, each starting a journey that parks at a wait
#             (`tend ingest`: stored, customer created, journey started);
#   wake      K instances due now woken, replayed and finished;
#   delivery  K events whose journey sends one SMS at once, delivered to the
#             file channel (start + send + delivery, one message each);
#   ready     `tend run` from exec to its first /healthz answer (opens the
#             store, loads the scripts with 5 versions stored);
# Each processing time is that of a `tend ingest` of the backlog minus the
# same command's time with nothing to do (start-up is not a rate).
set -e
B=${B:-build/release}
T=${T:-bin/tend}
sizes=${*:-${BENCH_SCALING:-100000 1000000}}
K=${BENCH_SCALING_OPS:-20000}
rows=${BENCH_SCALING_ROWS:-/dev/null}
work=$(mktemp -d "${TMPDIR:-/tmp}/tend-scaling.XXXXXX")
trap '[ -n "$BENCH_SCALING_KEEP" ] || rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

now() { date +%s.%N; }
# elapsed A B, minus C: seconds
elapsed() { awk -v a="$1" -v b="$2" -v c="${3:-0}" 'BEGIN { d = b - a - c; if (d < 0.001) d = 0.001; printf "%.3f", d }'; }
per_s() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
# events TYPE PREFIX: K events of TYPE for customers PREFIX1..PREFIXK
events() { awk -v n="$K" -v t="$1" -v p="$2" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"type\":\"%s\",\"customer\":\"%s%d\"}\n", t, p, i }'; }
# timed DIR: seconds a `tend ingest` of nothing takes in DIR (processing what is due)
timed() {
    a=$(now)
    $T ingest --dir "$1" "$work/empty.ndjson" >/dev/null
    b=$(now)
    elapsed "$a" "$b"
}
: > "$work/empty.ndjson"

printf '%-10s %10s %10s %12s %9s %9s %9s\n' "waiting" "start/s" "wake/s" "delivery/s" "ready s" "RSS MiB" "store MiB"
for n in $sizes; do
    d=$work/s$n
    mkdir "$d"
    echo 'journey "park" { on = "park", run = function(c) wait(days(365)) end }' > "$d/park.lua"
    cat > "$d/care.lua" <<'EOF'
template "hello" { category = "transactional", sms = "Hello {{ name | default: 'friend' }}" }
journey "onboard" { on = "signup", run = function(c) wait(days(30)) end }
journey "nudge" { on = "nudge", run = function(c) wait(1) end }
journey "ping" { on = "ping", run = function(c) send("sms", c, "hello") end }
EOF
    port=$((30000 + ($$ * 37 + n) % 25000))
    printf 'return { listen = "127.0.0.1:%d", caps = false, quiet_hours = false }\n' "$port" > "$d/tend.lua"
    $B/bench_scale_seed "$d/tend.db" "$n" "$d/park.lua" 5

    # ready: tend run from exec to its first answer
    a=$(now)
    $T run "$d" 2>"$d/run.err" &
    pid=$!
    i=0
    while [ $i -lt 3000 ] && ! curl -s -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
        sleep 0.01
        i=$((i + 1))
    done
    b=$(now)
    ready=$(elapsed "$a" "$b")
    rss=$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "?")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true

    base=$(timed "$d")
    events signup s > "$work/ev.ndjson"
    $T ingest --no-process --dir "$d" "$work/ev.ndjson" >/dev/null
    t=$(elapsed 0 "$(timed "$d")" "$base")
    start=$(per_s "$K" "$t")

    events nudge w > "$work/ev.ndjson"
    $T ingest --dir "$d" "$work/ev.ndjson" >/dev/null
    sleep 2
    t=$(elapsed 0 "$(timed "$d")" "$base")
    wake=$(per_s "$K" "$t")

    events ping m > "$work/ev.ndjson"
    $T ingest --no-process --dir "$d" "$work/ev.ndjson" >/dev/null
    t=$(elapsed 0 "$(timed "$d")" "$base")
    delivery=$(per_s "$K" "$t")

    size=$(du -cm "$d"/tend.db* | tail -1 | cut -f1)
    printf '%-10s %10s %10s %12s %9s %9s %9s\n' "$n" "$start" "$wake" "$delivery" "$ready" "$rss" "$size"
    printf 'scaling: start, journeys/s (%s waiting)\t%s\t-\t-\t-\n' "$n" "$start" >> "$rows"
    printf 'scaling: wake, /s (%s waiting)\t%s\t-\t-\t-\n' "$n" "$wake" >> "$rows"
    printf 'scaling: start+send+delivery, /s (%s waiting)\t%s\t-\t-\t-\n' "$n" "$delivery" >> "$rows"
    printf 'scaling: tend run ready, s (%s waiting, 5 versions)\t%s\t-\t-\t< 1 s (10M)\n' "$n" "$ready" >> "$rows"
    [ -n "$BENCH_SCALING_KEEP" ] || rm -rf "$d"
done
echo "(K = $K operations per measure; start-up time of an idle tend ingest, $base s at the last size, subtracted)"
