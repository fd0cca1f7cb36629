#!/bin/sh
# tend ingest: good lines are stored and processed, each bad line is
# reported with its line number and reason, duplicates are counted, and the
# exit status says whether anything was rejected.
set -u
TEND=${TEND:?set TEND to the tend binary}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tend-ingest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat > "$tmp/care.lua" <<'LUA'
template "thanks" { category = "transactional", sms = "thanks for {{order}}" }
journey "thanks" { on = "order.paid", run = function(c, ev) send("sms", c, "thanks", { order = ev.order }) end }
segment "buyers" { where = { orders_count = at_least(1) } }
LUA
cat > "$tmp/events.ndjson" <<'EOF2'
{"type":"order.paid","customer":"c1","id":"e1","order":"A","total":10,"at":"2026-03-01T10:00:00+08:00"}
{"type":"order.paid","customer":"c1","id":"e1","order":"A","total":10}

{"type":"order.paid","customer":"c2","id":"e2","order":"B","total":"ten"}
not json at all
{"customer":"c3","id":"e3"}
{"type":"order.paid","customer":"c3","id":"e4","order":"C","total":5,"at":"yesterday"}
{"type":"page.view","customer":"c4","id":"e5"}
{"type":"order.paid","customer":"c5","id":"e6","order":"D","total":7}
EOF2
"$TEND" ingest --dir "$tmp" "$tmp/events.ndjson" > "$tmp/out" 2> "$tmp/err"
rc=$?
[ $rc = 1 ] || fail "exit status $rc, expected 1 (lines were rejected)"
grep -q "^accepted 3, duplicates 1, rejected 4$" "$tmp/out" || fail "summary: $(cat "$tmp/out")"
grep -q "events.ndjson:4: field 'total' must be a non-negative number" "$tmp/err" || fail "line 4 not reported: $(cat "$tmp/err")"
grep -q "events.ndjson:5: invalid JSON at byte 1" "$tmp/err" || fail "line 5 not reported"
grep -q "events.ndjson:6: field 'type' is required" "$tmp/err" || fail "line 6 not reported"
grep -q "events.ndjson:7: field 'at': must be epoch seconds or ISO-8601" "$tmp/err" || fail "line 7 not reported"
[ "$(wc -l < "$tmp/err")" -eq 4 ] || fail "expected 4 rejections on stderr: $(cat "$tmp/err")"
# the good lines were processed: two buyers, two messages in the file channel
"$TEND" segment --dir "$tmp" --sample 0 buyers | grep -q "^2 customers" || fail "buyers: $("$TEND" segment --dir "$tmp" buyers)"
[ "$(grep -c '"template":"thanks"' "$tmp/outbox.ndjson" 2>/dev/null)" = 2 ] || fail "messages: $(cat "$tmp/outbox.ndjson" 2>/dev/null)"
# again: everything is a duplicate now, nothing new happens
"$TEND" ingest --dir "$tmp" "$tmp/events.ndjson" > "$tmp/out" 2>/dev/null
grep -q "^accepted 0, duplicates 4, rejected 4$" "$tmp/out" || fail "second run: $(cat "$tmp/out")"
[ "$(grep -c '"template":"thanks"' "$tmp/outbox.ndjson")" = 2 ] || fail "a duplicate was sent again"
# stdin, and a clean file exits 0
printf '{"type":"page.view","customer":"c9"}\n' | "$TEND" ingest --dir "$tmp" - > "$tmp/out" 2>&1 ||
    fail "clean stdin ingest failed: $(cat "$tmp/out")"
# --no-process stores without processing: no new message for a new order
printf '{"type":"order.paid","customer":"c7","id":"e7","order":"E","total":1}\n' |
    "$TEND" ingest --no-process --dir "$tmp" - > /dev/null 2>&1 || fail "--no-process failed"
[ "$(grep -c '"template":"thanks"' "$tmp/outbox.ndjson")" = 2 ] || fail "--no-process processed the event"
"$TEND" status --dir "$tmp" | grep -q "1 waiting to be processed" || fail "status: $("$TEND" status --dir "$tmp")"

# an event that starts a journey waiting for another event, and that event
# later in the same file (the same batch): the batch began with no
# listener, and the wait the start wrote still hears it (and only its
# customer's: k2's shipment finds no instance)
mkdir "$tmp/w"
cat > "$tmp/w/care.lua" <<'EOF2'
journey "track" { on = "order.paid", run = function(c, ev)
  if wait_for("order.shipped", { timeout = days(3) }) then c:set{ attrs = { shipped = true } } end
end }
EOF2
printf '%s\n' '{"type":"order.paid","customer":"k1","id":"w1","total":5}' \
    '{"type":"page.view","customer":"k2","id":"w2"}' '{"type":"order.shipped","customer":"k2","id":"w3"}' \
    '{"type":"order.shipped","customer":"k1","id":"w4"}' > "$tmp/w/events.ndjson"
"$TEND" ingest --dir "$tmp/w" "$tmp/w/events.ndjson" > "$tmp/out" 2>&1 || fail "wait_for ingest: $(cat "$tmp/out")"
"$TEND" status --dir "$tmp/w" | grep -q "instances: 1 done" ||
    fail "the shipment in the same batch did not reach the wait: $("$TEND" status --dir "$tmp/w")"

# best_time in a run reads the activity hours of the events before it in
# the same batch (they are written together, and before it reads them)
mkdir "$tmp/b"
echo 'return { timezone = "UTC" }' > "$tmp/b/tend.lua"
cat > "$tmp/b/care.lua" <<'EOF2'
segment "owls" { where = { tags = "owl" } }
journey "later" { on = "later", run = function(c)
  if best_time(c, { default = "11:00" }) % 86400 == 20 * 3600 then c:tag("owl") end
end }
EOF2
printf '%s\n' '{"type":"page.view","customer":"b1","at":"2026-03-01T20:10:00Z"}' \
    '{"type":"page.view","customer":"b1","at":"2026-03-02T20:20:00Z"}' \
    '{"type":"page.view","customer":"b1","at":"2026-03-03T20:30:00Z"}' \
    '{"type":"later","customer":"b1"}' > "$tmp/b/events.ndjson"
"$TEND" ingest --dir "$tmp/b" "$tmp/b/events.ndjson" > "$tmp/out" 2>&1 || fail "best_time ingest: $(cat "$tmp/out")"
"$TEND" segment --dir "$tmp/b" --sample 0 owls | grep -q "^1 customer " ||
    fail "best_time missed the batch's activity: $("$TEND" segment --dir "$tmp/b" --sample 0 owls)"

# events whose body is their columns alone ({"id","type","customer"}, in
# that order) are not parsed unless read: a `when`, the run's `ev` and a
# waiting instance still see them whole (event.c's head_only, lazy_tree)
mkdir "$tmp/h"
cat > "$tmp/h/care.lua" <<'EOF2'
segment "confirmed" { where = { tags = "confirmed" } }
segment "visited" { where = { tags = "visited" } }
journey "plain" { on = "visit", run = function(c, ev) if ev.id == "v1" and ev.at > 0 then c:tag("visited") end end }
journey "gate" { on = "signup", when = function(c, ev) return ev.id ~= "s2" end, run = function(c, ev)
  if ev.id == "s1" and ev.customer == "h1" and ev.type == "signup" and ev.at > 0 then c:tag("seen") end
  local got = wait_for("confirm", { timeout = days(3) })
  if got and got.id == "f1" and got.customer == "h1" and got.at > 0 then c:tag("confirmed") end
end }
EOF2
printf '%s\n' '{"id":"s1","type":"signup","customer":"h1"}' '{"id":"s2","type":"signup","customer":"h2"}' \
    '{"id":"f1","type":"confirm","customer":"h1"}' '{"id":"v1","type":"visit","customer":"h3"}' > "$tmp/h/events.ndjson"
"$TEND" ingest --dir "$tmp/h" "$tmp/h/events.ndjson" > "$tmp/out" 2>&1 || fail "head-only ingest: $(cat "$tmp/out")"
[ "$("$TEND" status --dir "$tmp/h" | grep -c "instances: 1 done")" = 2 ] ||
    fail "when or the wait missed a head-only event: $("$TEND" status --dir "$tmp/h")"
"$TEND" segment --dir "$tmp/h" --sample 0 confirmed | grep -q "^1 customer " ||
    fail "the wait's event was not whole: $("$TEND" segment --dir "$tmp/h" --sample 0 confirmed)"
"$TEND" segment --dir "$tmp/h" --sample 0 visited | grep -q "^1 customer " || fail "a run without when: $("$TEND" customer --dir "$tmp/h" h3)"
"$TEND" customer --dir "$tmp/h" h1 | grep -q 'tag h1, seen -> true' || fail "the run's ev was not whole: $("$TEND" customer --dir "$tmp/h" h1)"
[ "$(sqlite3 "$tmp/h/tend.db" "SELECT trigger FROM instances WHERE customer = 'h1'" 2>/dev/null || echo none)" = \
  "$(sqlite3 "$tmp/h/tend.db" "SELECT substr(body, 1, length(body) - 1) || ',\"at\":' || at || '}' FROM events WHERE id = 's1'" 2>/dev/null || echo none)" ] ||
    fail "trigger: $(sqlite3 "$tmp/h/tend.db" "SELECT trigger FROM instances" 2>&1)"

if [ $failures -gt 0 ]; then echo "ingest_test: $failures failure(s)"; exit 1; fi
echo "ingest_test: ok"
