#!/bin/sh
# make demo: the main job of tend on its embedded defaults — a SQLite file,
# the file channel, the loopback server — with the demo shop's customers and
# events and the journey library from scripts/.
set -e
root=$(pwd)
T=$root/bin/tend
work=$root/build/demo
rm -rf "$work"
mkdir -p "$work"
cp examples/demo/tend.lua examples/demo/customers.csv "$work/"
for f in scripts/*.lua; do
  case $f in *_test.lua) ;; *) cp "$f" "$work/" ;; esac
done
step() { printf '\n== %s\n' "$1"; }

step "tend check: load every script, lint templates and sends"
$T check "$work"

step "tend import: the shop's customers"
$T import --dir "$work" "$work/customers.csv"

step "tend ingest: orders and a storm alert (one line is a duplicate, one is bad)"
$T ingest --dir "$work" examples/demo/events.ndjson || true

step "tend run: the server on 127.0.0.1:8725 for a few seconds"
TEND_API_TOKEN=demo $T run "$work" > "$work/run.log" 2>&1 &
pid=$!
up=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  if command -v curl >/dev/null 2>&1; then
    curl -sf http://127.0.0.1:8725/healthz >/dev/null 2>&1 && { up=1; break; }
  elif grep -q listening "$work/run.log" 2>/dev/null; then up=1; break
  fi
  sleep 0.2
done
if [ $up = 1 ] && command -v curl >/dev/null 2>&1; then
  echo "POST /v1/events (a delivery for order 1001):"
  curl -s -H "Authorization: Bearer demo" -X POST http://127.0.0.1:8725/v1/events \
       -d '{"type":"order.shipped","customer":"c001","id":"o-1001-shipped","order":"1001"}'
  curl -s -H "Authorization: Bearer demo" -X POST http://127.0.0.1:8725/v1/events \
       -d '{"type":"order.delivered","customer":"c001","id":"o-1001-delivered","order":"1001","product":"tea set"}'
  sleep 0.5
  echo "GET /v1/customers/c001:"
  curl -s -H "Authorization: Bearer demo" http://127.0.0.1:8725/v1/customers/c001
  echo
  # the provider reports back: the first message to c001 was delivered and opened
  key=$(grep '"customer":"c001"' "$work/outbox.ndjson" 2>/dev/null | head -n 1 | sed 's/.*"key":"\([^"]*\)".*/\1/')
  if [ -n "$key" ]; then
    echo "POST /v1/receipts (delivered and opened, for message $key):"
    printf '{"key":"%s","status":"delivered"}\n{"key":"%s","status":"opened"}\n' "$key" "$key" |
      curl -s -H "Authorization: Bearer demo" --data-binary @- http://127.0.0.1:8725/v1/receipts
    echo
  fi
  echo "GET /v1/tasks/summary (the care team's calls):"
  curl -s -H "Authorization: Bearer demo" http://127.0.0.1:8725/v1/tasks/summary
  echo
  sleep 0.5
elif [ $up = 1 ]; then
  echo "(curl is not installed: the server runs, but the demo skips its HTTP calls)"
  sleep 1
fi
kill $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
sed 's/^/  server: /' "$work/run.log"

step "messages delivered to the file channel ($work/outbox.ndjson)"
cat "$work/outbox.ndjson" 2>/dev/null || echo "(none)"

step "tend tasks: what the care team has to do"
$T tasks --dir "$work" --status all --limit 5

step "tend customer c001: why did Lingling get what she got"
$T customer --dir "$work" c001 --limit 12

step "tend status: journeys, experiment groups and lift, coupons, tasks"
$T status --dir "$work"

step "tend simulate: the next 400 days for these customers, every channel captured"
$T simulate "$work" --days 400 --customers "$work/customers.csv"

printf '\nThe demo ran in %s. Try: %s status --dir %s\n' "$work" "$T" "$work"
