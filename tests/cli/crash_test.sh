#!/bin/sh
# kill -9 under traffic. `tend run` delivers over http to the mock provider
# (30% faults: 500, 503, 429, answers slower than the channel's timeout,
# dropped connections) while a stream of events, each with its own id,
# arrives over HTTP; each journey first looks its order up with http_get
# (at the same faulty server, so kills also hit requests in flight); tend is killed with SIGKILL at random moments
# CRASH_KILLS times (default 20) and started again each time. Then the
# provider turns healthy and the backlog drains. Checked:
#  - every event that got a 202 is stored once and processed once (its
#    customer has orders_count 1);
#  - every stored event's journey sent its two messages, and the provider
#    saw each message under one key only: no message delivered twice;
#  - nothing ended dead or failed, no http_get was left unanswered.
#   CRASH_KILLS=200 CRASH_SEED=7 sh tests/cli/crash_test.sh     (make soak)
NAME=crash_test
. "$(dirname "$0")/serverlib.sh"

KILLS=${CRASH_KILLS:-20}
seed=${CRASH_SEED:-$$}
MAX_EVENTS=$((KILLS * 200))   # the stream's bound (it stops after the last kill)

write_config() {
  { echo "return {"; config_head "$1"; cat; } >"$dir/tend.lua" <<EOF
  http_allow = { "127.0.0.1" },
  channels = { sms = { type = "http", url = "$mock_url/sms", timeout = 1, connect_timeout = 1,
                       max_backoff = 2, max_attempts = 1000 } },
}
EOF
  echo "return \"$mock_url/lookup?order=\"" >"$dir/lookup.lua"
}
cat >"$dir/care.lua" <<'EOF'
template "paid" { category = "transactional", sms = "order {{order}} is paid" }
template "thanks" { category = "transactional", sms = "thanks for order {{order}}" }

local LOOKUP = require "lookup"

journey "paid" {
  on = "order.paid",
  run = function(c, ev)
    local r, err = http_get(LOOKUP .. ev.order)   -- an answer, a 5xx or an error: all recorded
    send("sms", c, "paid", { order = ev.order, seen = r and r.status or err })
    wait(1)
    send("sms", c, "thanks", { order = ev.order })
  end,
}
EOF

start_mock --fail-rate 0.3 --faults 500,503,429,slow,drop --slow-ms 1500 --retry-after 1 --seed "$seed"
start_server
fixed_port=$port

# The stream: events ev-N for customer kN, one POST each; a POST that got no
# 202 is tried again (up to 3 times, as a webhook would), then given up.
# Lines "N CODE" in posted; the acknowledged ids in acked.
stream() {
  n=1 tries=0
  while [ $n -le $MAX_EVENTS ] && [ ! -f "$tmp/stop" ]; do
    c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X POST -H 'Authorization: Bearer secret' \
             --data "{\"id\":\"ev-$n\",\"type\":\"order.paid\",\"customer\":\"k$n\",\"order\":\"o$n\",\"total\":1}" \
             "$url/v1/events")
    echo "$n $c" >>"$tmp/posted"
    tries=$((tries + 1))
    if [ "$c" = 202 ]; then
      echo "$n" >>"$tmp/acked"
    fi
    if [ "$c" = 202 ] || [ $tries -ge 3 ]; then
      n=$((n + 1)) tries=0
    fi
  done
}
: >"$tmp/acked"
: >"$tmp/posted"
stream &
stream_pid=$!

k=0
while [ $k -lt "$KILLS" ]; do
  k=$((k + 1))
  pause=$(awk -v s="$seed" -v k=$k 'BEGIN { srand(s * 1000 + k); printf "%.2f", 0.2 + rand() * 1.0 }')
  sleep "$pause"
  kill -0 "$pid" 2>/dev/null || die "tend run died on its own before kill $k"
  kill_server
  start_server "$fixed_port"
done
touch "$tmp/stop"
wait "$stream_pid"

# --- drain against a healthy provider ------------------------------------------------
curl -s --max-time 5 -X POST "$mock_url/_heal" >/dev/null || die "the mock provider did not take POST /_heal"
metric() {   # metric LINE-PREFIX: the value of the first /metrics line starting so
  printf '%s\n' "$metrics" | awk -v p="$1" 'index($0, p " ") == 1 { print $2; exit }'
}
drained=0 i=0
while [ $i -lt 600 ]; do   # 60 s
  metrics=$(curl -s --max-time 5 -H 'Authorization: Bearer secret' "$url/metrics")
  stored=$(metric tend_events_stored)
  done_n=$(metric 'tend_instances{journey="paid",state="done"}')
  sent=$(metric 'tend_outbox{status="sent"}')
  pending=$(metric tend_events_pending)
  if [ -n "$stored" ] && [ "$pending" = 0 ] && [ "${done_n:-0}" = "$stored" ] && [ "${sent:-0}" = $((2 * stored)) ]; then
    drained=1
    break
  fi
  sleep 0.1
  i=$((i + 1))
done
[ $drained = 1 ] || die "did not drain within 60 s of the provider turning healthy: $(printf '%s' "$metrics" | grep -E '^tend_(events|instances|outbox)')"
other=$(printf '%s\n' "$metrics" | grep -E '^tend_(outbox|instances)\{' | grep -v -E 'status="sent"|state="done"')
[ -z "$other" ] || fail "after draining, outbox rows or instances in other states: $other"

# --- every acknowledged event: stored and processed once ------------------------------
acked=$(sort -n -u "$tmp/acked" | wc -l | tr -d ' ')
posted=$(awk '{ print $1 }' "$tmp/posted" | sort -u | wc -l | tr -d ' ')
[ "$acked" -gt 0 ] || die "no event was acknowledged"
[ "$stored" -ge "$acked" ] || fail "$acked events were acknowledged but only $stored are stored"
[ "$stored" -le "$posted" ] || fail "$stored events stored, more than the $posted ids posted"
sort -n -u "$tmp/acked" | awk -v u="$url" '{ printf "url = \"%s/v1/customers/k%s\"\n", u, $1 }' >"$tmp/gets"
curl -s --max-time 60 -H 'Authorization: Bearer secret' -K "$tmp/gets" >"$tmp/customers"
once=$(grep -c '"orders_count":1[,}]' "$tmp/customers")
[ "$once" = "$acked" ] ||
  fail "of $acked acknowledged events, $once have a customer with orders_count 1 (lost or counted twice): $(grep -v '"orders_count":1[,}]' "$tmp/customers" | head -n 3)"

# --- every message delivered once --------------------------------------------------------
curl -s --max-time 30 "$mock_url/_deliveries" >"$tmp/deliveries"
delivered=$(grep -o '"key":"[^"]*"' "$tmp/deliveries" | wc -l | tr -d ' ')
keys=$(grep -o '"key":"[^"]*"' "$tmp/deliveries" | sort -u | wc -l | tr -d ' ')
[ "$keys" = "$delivered" ] || fail "the provider recorded $delivered deliveries under $keys keys"
grep -o '"customer":"k[0-9]*"' "$tmp/deliveries" | sort | uniq -c | awk '{ print $2, $1 }' |
  sed 's/"customer":"k\([0-9]*\)"/\1/' >"$tmp/per_customer"
duplicates=$(awk '$2 > 2' "$tmp/per_customer" | wc -l | tr -d ' ')
[ "$duplicates" = 0 ] || fail "$duplicates customers got a message twice (under two keys): $(awk '$2 > 2' "$tmp/per_customer" | head -n 3)"
short=$(sort -n -u "$tmp/acked" | awk 'NR == FNR { n[$1] = $2; next } (n[$1] + 0) != 2 { c++ } END { print c + 0 }' "$tmp/per_customer" -)
[ "$short" = 0 ] || fail "$short acknowledged events did not get both their messages delivered"
[ "$delivered" = $((2 * stored)) ] || fail "$delivered messages delivered for $stored stored events (expected $((2 * stored)))"
unanswered=$(awk '$2 != 202' "$tmp/posted" | wc -l | tr -d ' ')
replays=$(mock_stat replays)
faults=$(mock_stat faults)
slow=$(mock_stat slow)

kill_server -TERM
echo "$NAME: $KILLS kills (seed $seed); $posted events posted ($unanswered POSTs without a 202)," \
     "$acked acknowledged, $stored stored;" \
     "$delivered messages delivered under $keys keys, $duplicates duplicates;" \
     "provider faults $faults + $slow slow, $replays re-sends answered as replays"
finish
