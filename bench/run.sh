#!/bin/sh
# make bench: figures and ratios on this machine. Nothing here passes or
# fails; it prints what it measured. Sizes can be lowered for a quick look:
#   BENCH_INSTANCES=100000 BENCH_EVENTS=200000 BENCH_CUSTOMERS=200000 \
#   BENCH_BIG=1000000 BENCH_DELIVERIES=20000 BENCH_RENDERS=100000 BENCH_HOLIDAY=50000 make bench
set -e
B=build/release
T=bin/tend
N_WAKE=${BENCH_INSTANCES:-1000000}
N_CUST=${BENCH_CUSTOMERS:-1000000}
N_EV=${BENCH_EVENTS:-1000000}
N_BIG=${BENCH_BIG:-10000000}
N_DEL=${BENCH_DELIVERIES:-100000}
N_HOL=${BENCH_HOLIDAY:-1000000}
N_SIM=${BENCH_SIMULATE:-100000}
N_RENDER=${BENCH_RENDERS:-1000000}
work=$(mktemp -d "${TMPDIR:-/tmp}/tend-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
     "SQLite $(pkg-config --modversion sqlite3), Lua $(pkg-config --modversion lua5.4 2>/dev/null || echo 5.4)"

echo
echo "== journey wake + replay + one step ($N_WAKE instances of a 3-step journey)"
$B/bench_wake "$N_WAKE"

echo
echo "== Liquid template render rate (one core, CPU time)"
$B/bench_render "$N_RENDER"

echo
echo "== ingest: NDJSON events through tend ingest into a store with $N_CUST customers"
mkdir "$work/ing"
$B/gen customers "$N_CUST" > "$work/customers.csv"
$B/gen events "$N_EV" --customers "$N_CUST" > "$work/events.ndjson"
$B/bench_rusage "import $N_CUST customers" $T import --dir "$work/ing" "$work/customers.csv" >/dev/null
cp "$work/ing/tend.db" "$work/base.db"
a=$(now)
$T ingest --no-process --dir "$work/ing" "$work/events.ndjson" >/dev/null
b=$(now)
tend_rate=$(rate "$N_EV" "$a" "$b")
echo "ingest: $N_EV events stored (durable, synchronous=full) in $(secs "$a" "$b") s = $tend_rate events/s"
set -- $($B/bench_ingest_raw "$work/events.ndjson" "$work/raw.db")
raw_rate=$(awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }')
echo "ingest: raw SQLite, same rows, same table and index, same 50k batches: $2 s = $raw_rate rows/s"
awk -v a="$tend_rate" -v b="$raw_rate" 'BEGIN { printf "ingest: tend/raw = %.2f (target >= 0.5)\n", a / b }'
# the same events again, processed: fields, journeys, cursor
mkdir "$work/proc"
cp "$work/base.db" "$work/proc/tend.db"
cat > "$work/proc/care.lua" <<'EOF'
template "thanks" { category = "transactional", sms = "{{ name | default: 'friend' }}, thank you for order {{ order | default: '?' }}." }
journey "thanks" { on = "order.paid", run = function(c, ev) send("sms", c, "thanks", { order = ev.id }) end }
EOF
a=$(now)
$T ingest --dir "$work/proc" "$work/events.ndjson" >/dev/null
b=$(now)
echo "ingest+process: $N_EV events stored, applied to customers, journeys started and messages" \
     "delivered to the file channel in $(secs "$a" "$b") s = $(rate "$N_EV" "$a" "$b") events/s"
rm -rf "$work/ing" "$work/proc" "$work/raw.db"* "$work/base.db" "$work/events.ndjson" "$work/customers.csv"

echo
echo "== $N_BIG customers"
mkdir "$work/big"
cat > "$work/big/segments.lua" <<'EOF'
segment "shanghai_recent" { where = { city = "Shanghai", last_order_at = after(1764633600) } }
segment "vip_lapsed" { where = { tags = has("vip"), last_order_at = before(1759276800) } }
EOF
$B/gen customers "$N_BIG" > "$work/big.csv"
$B/bench_rusage "import $N_BIG customers" $T import --dir "$work/big" "$work/big.csv"
rm -f "$work/big.csv"
echo "store: $(du -m "$work/big/tend.db" | cut -f1) MiB for $N_BIG customers"
$B/bench_rusage "segment city + last_order_at" $T segment --sample 0 --dir "$work/big" shanghai_recent
$B/bench_rusage "segment tags + last_order_at" $T segment --sample 0 --dir "$work/big" vip_lapsed
rm -rf "$work/big"

N_LOOP=${BENCH_LOOP:-1000000}
N_RCPT=${BENCH_RECEIPTS:-200000}
if command -v curl >/dev/null 2>&1; then
    echo
    echo "== receipts through POST /v1/receipts, and task pages ($N_LOOP messages and tasks in the store)"
    mkdir "$work/loop"
    $B/bench_loop_seed "$work/loop/tend.db" "$N_LOOP"
    lport=$((30000 + ($$ * 31) % 25000))
    printf 'return { listen = "127.0.0.1:%d" }\n' "$lport" > "$work/loop/tend.lua"
    TEND_API_TOKEN=bench $T run "$work/loop" 2>"$work/loop/err" &
    lpid=$!
    i=0; while [ $i -lt 100 ] && ! curl -s "http://127.0.0.1:$lport/healthz" >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
    awk -v n="$N_RCPT" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"key\":\"k%d\",\"status\":\"delivered\",\"id\":\"r%d\"}\n", i, i }' \
        | split -l 10000 - "$work/loop/batch."
    a=$(now)
    for f in "$work/loop"/batch.*; do
        curl -s -o /dev/null -H 'Authorization: Bearer bench' --data-binary @"$f" "http://127.0.0.1:$lport/v1/receipts"
    done
    b=$(now)
    echo "receipts: $N_RCPT acknowledged in $(secs "$a" "$b") s = $(rate "$N_RCPT" "$a" "$b") receipts/s (NDJSON batches of 10,000; target >= 50k/s)"
    worst=0; total=0
    for k in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        after=$(( (k * 48271) % N_LOOP ))
        t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Authorization: Bearer bench' \
            "http://127.0.0.1:$lport/v1/tasks?status=open&after=$after&limit=100")
        total=$(awk -v a="$total" -v b="$t" 'BEGIN { print a + b }')
        worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
    done
    awk -v t="$total" -v w="$worst" 'BEGIN { printf "task pages: 100 open tasks a page, mean %.1f ms, worst %.1f ms over 20 pages, as curl sees them (target < 10 ms)\n", t / 20 * 1000, w * 1000 }'
    kill "$lpid"; wait "$lpid" 2>/dev/null
    rm -rf "$work/loop"
fi

if [ -x $B/bench_delivery ]; then
    echo
    echo "== delivery to a local HTTP provider ($N_DEL messages)"
    $B/bench_delivery "$N_DEL"
fi

echo
echo "== a holiday trigger over $N_HOL customers in 12 zones (slot to all started, per zone)"
$B/bench_holiday "$N_HOL"

echo
echo "== tend simulate: the journey library over a year of $N_SIM customers, with the policy audit"
a=$(now)
SIMULATE_SHOW=1 TEND=$T sh tests/cli/simulate_test.sh "$N_SIM"
b=$(now)
echo "simulate: $N_SIM customers, 365 days in $(secs "$a" "$b") s (wall, with generating the data)"
