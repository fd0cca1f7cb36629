#!/bin/sh
# tend ingest reads its input as a stream in bounded pieces: a file several
# pieces long is stored whole, each bad line is reported with its exact
# line number on either side of a piece boundary, a line longer than a piece
# is rejected without stopping the rest, a last line without a newline
# counts, and stdin gives the same. The events journeys then see carry the
# stored columns whatever the body's spelling (no "at", an ISO "at", numeric
# ids, spaces).
NAME=ingest_stream_test
. "$(dirname "$0")/lib.sh"

# 60,000 events of ~170 bytes (~10 MiB, about 2.5 pieces of 4 MiB), with a
# bad line at 20000, a 2 MiB line at 30000 (fits a piece, over the 1 MiB
# event limit), a 9 MiB line at 45000 (longer than a piece) and a missing
# type at 59999; the last line has no newline.
awk 'BEGIN {
    pad = sprintf("%0100d", 0)
    big = "0123456789abcdef"
    while (length(big) < 2097152) big = big big
    for (i = 1; i <= 60000; i++) {
        if (i == 20000) line = "not json"
        else if (i == 30000) line = "{\"type\":\"page.view\",\"customer\":\"c1\",\"pad\":\"" big "\"}"
        else if (i == 45000) { printf "{\"type\":\"page.view\",\"pad\":\""; for (k = 0; k < 4; k++) printf "%s%s", big, big; line = "\"}" }
        else if (i == 59999) line = "{\"customer\":\"c1\",\"id\":\"x" i "\"}"
        else line = sprintf("{\"type\":\"page.view\",\"customer\":\"c%d\",\"id\":\"v%d\",\"pad\":\"%s\"}", i % 500, i, pad)
        if (i < 60000) print line; else printf "%s", line
    }
}' > events.ndjson
mkdir s1 s2
run ingest --no-process --dir s1 events.ndjson
status 1 "lines were rejected"
has "$out" "accepted 59996, duplicates 0, rejected 4" "summary"
has "$err" "events.ndjson:20000: invalid JSON" "a bad line in the first piece"
has "$err" "events.ndjson:30000: event is larger than 1 MiB" "an over-long line that fits a piece"
has "$err" "events.ndjson:45000: event is larger than 1 MiB" "a line longer than a piece"
has "$err" "events.ndjson:59999: field 'type' is required" "a bad line after the long one"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 4 ] || fail "expected 4 rejections: $err"
# the same through stdin, into another store
"$TEND" ingest --no-process --dir s2 - < events.ndjson > out2 2> err2
has "$(cat out2)" "accepted 59996, duplicates 0, rejected 4" "stdin summary"
has "$(cat err2)" "-:45000: event is larger than 1 MiB" "stdin line numbers"
# again into the first store: all duplicates, counted across pieces
run ingest --no-process --dir s1 events.ndjson
has "$out" "accepted 0, duplicates 59996, rejected 4" "second run"

# what a journey sees of an event, however its body spells it
mkdir j
cat > j/care.lua <<'LUA'
journey "seen" { on = "order.paid", run = function(c, ev)
  c:set{ attrs = { seen = tostring(ev.id) .. "|" .. ev.type .. "|" .. ev.customer .. "|" .. string.format("%d", ev.at) .. "|" .. tostring(ev.note) } }
  wait(days(1))
end }
LUA
cat > j.ndjson <<'EOF'
{"id":"e1","type":"order.paid","customer":"c1","note":"plain"}
{"id":"e2","type":"order.paid","customer":"c2","at":"2026-03-01T10:00:00+08:00","note":"iso"}
{"id":3,"type":"order.paid","customer":4,"at":1767225602,"note":"numbers"}
{ "note" : "spaced" , "type":"order.paid","customer":"c5" , "at": 1767225603 , "id":"e5" }
{"type":"order.paid","customer":"c6","at":1767225604}
EOF
run ingest --dir j j.ndjson
status 0 "journey events"
run customer --dir j c1 --json
case $out in *'e1|order.paid|c1|17'[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'|plain'*) ;; *) fail "c1 saw: $out" ;; esac
run customer --dir j c2 --json
has "$out" 'e2|order.paid|c2|1772330400|iso' "an ISO time is the epoch seconds"
run customer --dir j 4 --json
has "$out" '3|order.paid|4|1767225602|numbers' "numeric ids are strings"
run customer --dir j c5 --json
has "$out" 'e5|order.paid|c5|1767225603|spaced' "a spaced body"
run customer --dir j c6 --json
has "$out" 'nil|order.paid|c6|1767225604|nil' "an event without an id"

finish
