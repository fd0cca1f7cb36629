#!/bin/sh
# tend run end to end: the HTTP API (auth, events one by one and in NDJSON
# batches, all-or-nothing batches, the body limit, customers, journeys,
# metrics), the file channel, and kill -9 in the middle: no accepted event
# lost, none processed twice.
#   TEND=bin/tend sh tests/cli/run_test.sh
# Needs curl; skips (exit 0) without it. Every wait is bounded.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "run_test: TEND=$TEND is not an executable" >&2; exit 1; }
if ! command -v curl >/dev/null 2>&1; then
  echo "run_test: SKIP: curl is not installed on this machine (nothing was tested)"
  exit 0
fi

tmp=$(mktemp -d) || { echo "run_test: mktemp -d failed" >&2; exit 1; }
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "run_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() {
  fail "$*"
  if [ -f "$tmp/server.err" ]; then
    echo "--- server stderr:" >&2
    tail -n 40 "$tmp/server.err" >&2
  fi
  exit 1
}

dir=$tmp/shop
mkdir "$dir"
cat >"$dir/care.lua" <<'EOF'
template "paid" { category = "transactional", sms = "{{ name | default: 'friend' }}, we got order {{order}}." }

journey "paid" {
  on = "order.paid",
  run = function(c, ev)
    send("sms", c, "paid", { order = ev.order })
  end,
}
EOF
: >"$tmp/server.err"

# --- the server -----------------------------------------------------------------

sanitizer_check() {
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then
    fail "sanitizer output on tend run's stderr:"
    sed 's/^/    /' "$tmp/server.err" >&2
  fi
}

random_port() {
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  echo $((30000 + (r + $$ * 7 + ${1:-0} * 211) % 25000))
}

# Starts `tend run DIR` on a free port (a random one; another on failure) and
# waits for /healthz. Sets pid, port, url.
start_server() {
  attempt=0
  while [ $attempt -lt 8 ]; do
    attempt=$((attempt + 1))
    port=$(random_port $attempt)
    cat >"$dir/tend.lua" <<EOF
return {
  listen = "127.0.0.1:$port",
  timezone = "Asia/Shanghai",
  quiet_hours = false,
  unknown_customers = "create",
  channels = { sms = { type = "file" } },
}
EOF
    url=http://127.0.0.1:$port
    mark=$(wc -l <"$tmp/server.err")
    TEND_API_TOKEN=secret "$TEND" run "$dir" >>"$tmp/server.out" 2>>"$tmp/server.err" &
    pid=$!
    i=0
    while [ $i -lt 150 ]; do   # 15 s: a sanitizer build starts slowly
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if [ "$(curl -s --max-time 2 "$url/healthz" 2>/dev/null)" = '{"ok":true}' ]; then
        return 0
      fi
      sleep 0.1
      i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      pid=""
      die "tend run did not answer /healthz on $url within 15 s"
    fi
    wait "$pid" 2>/dev/null
    pid=""
    if tail -n +$((mark + 1)) "$tmp/server.err" | grep 'cannot listen' >/dev/null; then
      continue   # the port is taken: another one
    fi
    die "tend run exited at start (not a port problem)"
  done
  die "tend run found no free port in 8 tries"
}

# req METHOD PATH [curl options]: with the token; sets code and body.
req() {
  m=$1 p=$2
  shift 2
  code=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$m" \
              -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body" 2>/dev/null)
}

expect() {   # expect CODE WHAT
  [ "$code" = "$1" ] || fail "$2: expected HTTP $1, got $code: $body"
}
contains() {   # contains TEXT WHAT
  case $body in *"$1"*) ;; *) fail "$2: expected '$1' in the answer: $body" ;; esac
}

# number KEY: the first integer after "KEY": in $body.
number() {
  printf '%s' "$body" | sed -n "s/.*\"$1\":\\([0-9][0-9]*\\).*/\\1/p" | head -n 1
}

# counts: started instances and stored events, from GET /v1/journeys.
counts() {
  req GET /v1/journeys
  expect 200 "GET /v1/journeys"
  started=$(printf '%s' "$body" | grep -o '"started":[0-9]*' | head -n 1 | cut -d: -f2)
  events=$(printf '%s' "$body" | grep -o '"events":{"total":[0-9]*' | head -n 1 | sed 's/.*://')
  [ -n "$started" ] || started=0
  [ -n "$events" ] || fail "GET /v1/journeys has no events.total: $body"
}

outbox_lines() {   # outbox_lines TEXT: lines of the file channel's file with TEXT
  if [ -f "$dir/outbox.ndjson" ]; then grep -c -F "$1" "$dir/outbox.ndjson"; else echo 0; fi
}

# wait_outbox TEXT N: up to 10 s for N lines with TEXT.
wait_outbox() {
  i=0
  while [ $i -lt 100 ]; do
    [ "$(outbox_lines "$1")" -ge "$2" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

start_server

# --- auth -------------------------------------------------------------------------
code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' "$url/v1/journeys")
[ "$code" = 401 ] || fail "GET /v1/journeys without a token: expected 401, got $code"
code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' -H 'Authorization: Bearer wrong' "$url/v1/journeys")
[ "$code" = 401 ] || fail "GET /v1/journeys with a wrong token: expected 401, got $code"
code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' -X POST \
            --data '{"type":"order.paid","customer":"c1","order":"X0"}' "$url/v1/events")
[ "$code" = 401 ] || fail "POST /v1/events without a token: expected 401, got $code"

# --- events ---------------------------------------------------------------------------
req POST /v1/events --data '{"type":"order.paid","customer":"c1","order":"A1","total":10}'
expect 202 "POST one event"
contains '"accepted":1' "POST one event"

printf '%s\n%s\n' '{"type":"order.paid","customer":"c2","order":"B1","total":5}' \
                  '{"type":"order.paid","customer":"c3","order":"B2","total":7}' >"$tmp/batch"
req POST /v1/events --data-binary "@$tmp/batch" -H 'Content-Type: application/x-ndjson'
expect 202 "POST an NDJSON batch of 2"
contains '"accepted":2' "POST an NDJSON batch of 2"

wait_outbox "order A1." 1 || fail "the file channel's outbox.ndjson never got the message for A1"
wait_outbox "order B1." 1 || fail "outbox.ndjson never got the message for B1"
wait_outbox "order B2." 1 || fail "outbox.ndjson never got the message for B2"
grep -F '"customer":"c1"' "$dir/outbox.ndjson" | grep -F 'friend, we got order A1.' >/dev/null ||
  fail "outbox.ndjson: no line for c1 with the rendered text: $(cat "$dir/outbox.ndjson" 2>/dev/null)"

counts
started0=$started events0=$events
[ "$events0" = 3 ] || fail "GET /v1/journeys: expected 3 events stored, got $events0"
[ "$started0" = 3 ] || fail "GET /v1/journeys: expected 3 instances of 'paid', got $started0"

# a batch with one malformed line: 400 naming the line; nothing of it stored
printf '%s\n%s\n%s\n' '{"type":"order.paid","customer":"c2","order":"M1"}' \
                      '{"type":"order.paid", "customer": ' \
                      '{"type":"order.paid","customer":"c3","order":"M3"}' >"$tmp/bad"
req POST /v1/events --data-binary "@$tmp/bad"
expect 400 "a batch with a malformed line"
contains 'line 2' "a batch with a malformed line (names the line)"
# a batch with a well-formed line that is not an event: the same
printf '%s\n%s\n' '{"type":"order.paid","customer":"c2","order":"M4"}' '{"customer":"c3","order":"M5"}' >"$tmp/bad2"
req POST /v1/events --data-binary "@$tmp/bad2"
expect 400 "a batch with an event without a type"
sleep 0.5
counts
[ "$events" = "$events0" ] || fail "rejected batches stored events: $events0 before, $events after"
[ "$started" = "$started0" ] || fail "rejected batches started instances: $started0 before, $started after"
[ "$(outbox_lines 'order M')" = 0 ] || fail "rejected batches sent messages: $(cat "$dir/outbox.ndjson")"

# a body over 1 MiB
awk 'BEGIN { s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; for (i = 0; i < 18000; i++) print s }' >"$tmp/big"
req POST /v1/events --data-binary "@$tmp/big"
expect 413 "a body over 1 MiB"

# --- customers ------------------------------------------------------------------------
req PUT /v1/customers/c5 --data '{"name":"Xiu","shoe_size":42}'
expect 400 "PUT a customer with an unknown field"
contains 'shoe_size' "PUT a customer with an unknown field (names the field)"
req GET /v1/customers/c5
expect 404 "a rejected customer is not stored"

req PUT /v1/customers/c5 --data '{"name":"Xiu","city":"Hangzhou","attrs":{"shoe_size":42}}'
case $code in 200|201) ;; *) fail "PUT a valid customer: expected 200 or 201, got $code: $body" ;; esac
req GET /v1/customers/c5
expect 200 "GET /v1/customers/c5"
contains '"name":"Xiu"' "GET /v1/customers/c5"

req GET /v1/customers/c1
expect 200 "GET /v1/customers/c1"
contains '"id":"c1"' "GET /v1/customers/c1"
[ "$(number orders_count)" = 1 ] || fail "GET /v1/customers/c1: expected orders_count 1: $body"
contains '"total_spent":10' "GET /v1/customers/c1"

# --- journeys, metrics --------------------------------------------------------------------
req GET /v1/journeys
expect 200 "GET /v1/journeys"
contains '"name":"paid"' "GET /v1/journeys"

req GET /metrics
expect 200 "GET /metrics"
printf '%s\n' "$body" | grep -E '^tend_events_stored 3$' >/dev/null ||
  fail "GET /metrics: expected the line 'tend_events_stored 3': $body"

# --- kill -9 after an accepted event ----------------------------------------------------
req POST /v1/events --data '{"id":"evt-k1","type":"order.paid","customer":"c9","order":"K1","total":3}'
expect 202 "POST the event before kill -9"
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=""

start_server
counts
[ "$events" = $((events0 + 1)) ] || fail "after kill -9: expected $((events0 + 1)) events stored, got $events"
wait_outbox "order K1." 1 || fail "after kill -9 and a restart the event was never processed (no message for K1)"
req GET /metrics
printf '%s\n' "$body" | grep -E "^tend_events_stored $((events0 + 1))\$" >/dev/null ||
  fail "after kill -9: GET /metrics: expected tend_events_stored $((events0 + 1)): $body"

# the same event again (a webhook retry) is a duplicate: no new instance, no new message
req POST /v1/events --data '{"id":"evt-k1","type":"order.paid","customer":"c9","order":"K1","total":3}'
expect 202 "POST a duplicate event"
contains '"accepted":0' "POST a duplicate event"
sleep 1
counts
[ "$started" = $((started0 + 1)) ] || fail "after kill -9: expected $((started0 + 1)) instances (one for K1), got $started"
n=$(outbox_lines "order K1.")
[ "$n" = 1 ] || fail "after kill -9: the message for K1 is in outbox.ndjson $n times, expected once"
for o in A1 B1 B2; do
  n=$(outbox_lines "order $o.")
  [ "$n" = 1 ] || fail "after the restart the message for $o is in outbox.ndjson $n times, expected once"
done

# --- a clean stop ------------------------------------------------------------------------
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
  fail "tend run did not stop within 10 s of SIGTERM"
else
  wait "$pid"
  rc=$?
  [ "$rc" = 0 ] || fail "tend run exited with $rc after SIGTERM (expected 0)"
fi
pid=""
sanitizer_check

if [ "$failures" -gt 0 ]; then
  echo "--- server stderr:" >&2
  tail -n 40 "$tmp/server.err" >&2
  echo "run_test: $failures failure(s)" >&2
  exit 1
fi
echo "run_test: ok"
