#!/bin/sh
# branch loop2: POST /v1/events batches are stored a few ms at a time while
# the loop serves others, and the write batch commits on the store's thread.
# Three batches of 3,000 events posted at once are each taken whole (their
# answers count every event, the store holds all 9,000, in each batch's
# order); a fourth, posted with them, whose last line is bad is refused whole
# (none of its events stored); /healthz and /metrics answer meanwhile; and a
# kill -9 right after the answers loses none of the acknowledged events.
NAME=ingest_slices_test
. "$(dirname "$0")/serverlib.sh"
write_config() {
  { echo 'return {'; config_head "$1"; echo '}'; } >"$dir/tend.lua"
}
echo 'journey "thanks" { on = "order.paid", run = function(c) wait(days(1)) end }' >"$dir/care.lua"
for b in 1 2 3; do
  awk -v b="$b" 'BEGIN { for (i = 0; i < 3000; i++) printf "{\"id\":\"b%d-%d\",\"type\":\"order.paid\",\"customer\":\"c%d-%d\",\"total\":5}\n", b, i, b, i }' \
    >"$tmp/batch$b.ndjson"
done
awk 'BEGIN { for (i = 0; i < 2999; i++) printf "{\"id\":\"bad-%d\",\"type\":\"order.paid\",\"customer\":\"x%d\"}\n", i, i;
             print "{\"id\":\"bad-last\",\"type\":" }' >"$tmp/bad.ndjson"
start_server
posts=""
for b in 1 2 3 bad; do
  f=$tmp/batch$b.ndjson
  [ "$b" = bad ] && f=$tmp/bad.ndjson
  curl -s --max-time 60 -o "$tmp/answer.$b" -w '%{http_code}' -H "Authorization: Bearer secret" \
    --data-binary @"$f" "$url/v1/events" >"$tmp/code.$b" &
  posts="$posts $!"
done
probes=0
i=0
while [ $i -lt 20 ]; do
  [ "$(curl -s --max-time 5 "$url/healthz")" = '{"ok":true}' ] && probes=$((probes + 1))
  i=$((i + 1))
done
req GET /metrics
[ "$code" = 200 ] || fail "/metrics while batches are stored: $code"
for p in $posts; do wait "$p"; done
[ "$probes" = 20 ] || fail "/healthz answered $probes of 20 probes while batches were stored"
for b in 1 2 3; do
  [ "$(cat "$tmp/code.$b")" = 202 ] || fail "batch $b: $(cat "$tmp/code.$b") $(cat "$tmp/answer.$b")"
  grep -q '"accepted":3000' "$tmp/answer.$b" || fail "batch $b: not every event accepted: $(cat "$tmp/answer.$b")"
done
[ "$(cat "$tmp/code.bad")" = 400 ] || fail "the batch with a bad last line: $(cat "$tmp/code.bad")"
grep -q 'line 3000' "$tmp/answer.bad" || fail "the refusal names the bad line: $(cat "$tmp/answer.bad")"
kill_server
db=$dir/tend.db
n=$(sqlite3 "$db" "SELECT COUNT(*) FROM events")
[ "$n" = 9000 ] || fail "after kill -9: $n events stored, 9000 acknowledged"
n=$(sqlite3 "$db" "SELECT COUNT(*) FROM events WHERE id LIKE 'bad-%'")
[ "$n" = 0 ] || fail "$n events of the refused batch were stored"
for b in 1 2 3; do
  # each batch in its own order: its events' seqs rise with their line
  n=$(sqlite3 "$db" "SELECT COUNT(*) FROM (SELECT seq, CAST(substr(id, 4) AS INTEGER) AS k,
      LAG(seq) OVER (ORDER BY CAST(substr(id, 4) AS INTEGER)) AS prev FROM events WHERE id LIKE 'b$b-%')
      WHERE prev IS NOT NULL AND prev > seq")
  [ "$n" = 0 ] || fail "batch $b: $n events stored out of its order"
done
[ $failures -eq 0 ] || exit 1
echo "$NAME: ok"
