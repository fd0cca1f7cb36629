#!/bin/sh
# validate_test — bad input is refused, with the field (HTTP) or file:line
# (ingest, import), at every entry, and nothing of it is stored:
#   times outside 1970..9999 or not finite (1e300, -99999999999, 1e400),
#   invalid UTF-8, NUL (%00 in a path, \u0000 in JSON, a NUL byte in a CSV
#   cell), CR/LF in a name or an email (a Bcc: injection), an email that is
#   not an address, JSON nested too deep.
#   TEND=bin/tend sh tests/cli/validate_test.sh
# Needs curl for the HTTP part (skipped without it). Every wait is bounded.
set -u
TEND=${TEND:?set TEND to the tend binary}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tend-validate.XXXXXX") || exit 1
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
fail() { echo "validate_test: FAIL: $*" >&2; failures=$((failures + 1)); }

dir=$tmp/shop
mkdir "$dir"
cat >"$dir/care.lua" <<'EOF'
segment "all" { where = {} }
segment "early" { where = { first_seen_at = before(1000) } }
EOF

# count SEGMENT N: `tend segment` says the segment has N customers.
count() {
  "$TEND" segment --dir "$dir" --sample 0 "$1" >"$tmp/seg" 2>&1 || fail "tend segment $1: $(cat "$tmp/seg")"
  case $(sed -n 1p "$tmp/seg") in
    "$2 customers "*|"$2 customer "*) ;;
    *) fail "segment $1: expected $2 customers, got '$(sed -n 1p "$tmp/seg")'" ;;
  esac
}
# has FILE TEXT: a line of FILE contains TEXT.
has() { grep -F -q -e "$2" "$1" || fail "$1 lacks '$2'; it was: $(cat "$1")"; }

# --- tend ingest -----------------------------------------------------------------
{
  printf '%s\n' '{"type":"visit","customer":"i1","id":"ok1","at":"2026-03-01T10:00:00Z"}'
  printf '%s\n' '{"type":"visit","customer":"i2","id":"e2","at":1e300}'
  printf '%s\n' '{"type":"visit","customer":"i3","id":"e3","at":-99999999999}'
  printf '%s\n' '{"type":"order.paid","customer":"i4","id":"e4","total":1e400}'
  printf '{"type":"visit","customer":"i5\377","id":"e5"}\n'
  printf '%s\n' '{"type":"visit","customer":"i6\u0000x","id":"e6"}'
  printf '%s\n' '{"type":"visit","customer":"i7","id":"e7","at":253402300800}'
  printf '%s\n' '{"type":"visit","customer":"i8","id":"ok8","at":253402300799}'
  printf '{"type":"visit","customer":"i9","id":"e9","deep":%s1%s}\n' \
    "$(printf '[%.0s' $(seq 40))" "$(printf ']%.0s' $(seq 40))"
} >"$tmp/events.ndjson"
"$TEND" ingest --dir "$dir" "$tmp/events.ndjson" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] || fail "ingest: exit status, expected 1 (lines were rejected)"
has "$tmp/out" "accepted 2, duplicates 0, rejected 7"
has "$tmp/err" "events.ndjson:2: field 'at': time 1e+300 is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z"
has "$tmp/err" "events.ndjson:3: field 'at': time -99999999999 is outside"
has "$tmp/err" "events.ndjson:4: field 'total': number 1e400 is out of range"
has "$tmp/err" "events.ndjson:5: field 'customer': invalid UTF-8 at byte"
has "$tmp/err" "events.ndjson:6: field 'customer': contains a NUL character"
has "$tmp/err" "events.ndjson:7: field 'at': time 253402300800 is outside"
has "$tmp/err" "events.ndjson:9: nested too deep (limit 32)"
count all 2
count early 0

# --- tend import: CSV ------------------------------------------------------------------
{
  echo 'id,name,email,first_seen_at,total_spent'
  echo 'p1,Plain,p1@shop.example,2026-01-01T00:00:00Z,10'
  printf 'p2,Nul\000Name,p2@shop.example,,\n'
  printf 'p3,Bad\377Byte,p3@shop.example,,\n'
  echo 'p4,Early,p4@shop.example,-5,'
  echo 'p5,Huge,p5@shop.example,,1e400'
  echo 'p6,Mail,not-an-email,,'
  printf 'p7,"Eve\r\nBcc: evil@attacker.example",p7@shop.example,,\n'
  printf 'p8,Eve,"p8@shop.example\r\nBcc: evil@attacker.example",,\n'
  echo 'p9,Late,p9@shop.example,10000-01-01T00:00:00Z,'
} >"$tmp/customers.csv"
"$TEND" import --dir "$dir" "$tmp/customers.csv" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] || fail "import csv: exit status, expected 1"
has "$tmp/out" "imported 1, updated 0, rejected 8"
has "$tmp/err" "customers.csv:3: column 'name': contains a NUL byte (byte 4)"
has "$tmp/err" "customers.csv:4: column 'name': invalid UTF-8 at byte 4"
has "$tmp/err" "customers.csv:5: field 'first_seen_at': time \"-5\" is outside"
has "$tmp/err" "customers.csv:6: field 'total_spent': must be a number"
has "$tmp/err" "customers.csv:7: field 'email': 'not-an-email' is not an email address"
has "$tmp/err" "customers.csv:8: field 'name': contains a line break"
has "$tmp/err" "customers.csv:10: field 'email': is not an email address: contains a line break"
has "$tmp/err" "customers.csv:12: field 'first_seen_at': must be epoch seconds or ISO-8601"
count all 3

# --- tend import: NDJSON ---------------------------------------------------------
{
  printf '%s\n' '{"id":"n1","name":"Ok","email":"n1@shop.example"}'
  printf '%s\n' '{"id":"n2","first_seen_at":1e300}'
  printf '%s\n' '{"id":"n3","total_spent":1e400}'
  printf '%s\n' '{"id":"n4","name":"a\u0000b"}'
  printf '{"id":"n5","attrs":{"note":"\300\257"}}\n'
  printf '%s\n' '{"id":"n6","name":"Eve\r\nBcc: evil@attacker.example"}'
  printf '{"id":"n7","attrs":%s1%s}\n' "$(printf '{"a":%.0s' $(seq 40))" "$(printf '}%.0s' $(seq 40))"
} >"$tmp/customers.ndjson"
"$TEND" import --dir "$dir" "$tmp/customers.ndjson" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] || fail "import ndjson: exit status, expected 1"
has "$tmp/out" "imported 1, updated 0, rejected 6"
has "$tmp/err" "customers.ndjson:2: field 'first_seen_at': time 1e+300 is outside"
has "$tmp/err" "customers.ndjson:3: field 'total_spent': number 1e400 is out of range"
has "$tmp/err" "customers.ndjson:4: field 'name': contains a NUL character"
has "$tmp/err" "customers.ndjson:5: field 'attrs.note': invalid UTF-8 at byte"
has "$tmp/err" "customers.ndjson:6: field 'name': contains a line break"
has "$tmp/err" "customers.ndjson:7: nested too deep (limit 32)"
count all 4

# --- the HTTP API ------------------------------------------------------------------
if ! command -v curl >/dev/null 2>&1; then
  echo "validate_test: SKIP the HTTP part: curl is not installed"
  [ "$failures" -eq 0 ] || exit 1
  exit 0
fi
random_port() {
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  echo $((30000 + (r + $$ * 13 + $1 * 337) % 25000))
}
attempt=0
url=""
while [ $attempt -lt 8 ] && [ -z "$url" ]; do
  attempt=$((attempt + 1))
  port=$(random_port $attempt)
  printf 'return { listen = "127.0.0.1:%s", unknown_customers = "create" }\n' "$port" >"$dir/tend.lua"
  TEND_API_TOKEN=secret "$TEND" run "$dir" >"$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  i=0
  while [ $i -lt 150 ]; do   # 15 s: a sanitizer build starts slowly
    kill -0 "$pid" 2>/dev/null || break
    if [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null)" = '{"ok":true}' ]; then
      url=http://127.0.0.1:$port
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  if [ -z "$url" ]; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    grep -q 'cannot listen' "$tmp/server.err" || { fail "tend run did not start: $(tail -5 "$tmp/server.err")"; exit 1; }
  fi
done
[ -n "$url" ] || { fail "tend run found no free port"; exit 1; }

# req METHOD PATH BODY-FILE: sets code and body.
req() {
  code=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$1" -H 'Authorization: Bearer secret' \
              --data-binary "@$3" "$url$2")
  body=$(cat "$tmp/body" 2>/dev/null)
}
# send METHOD PATH CODE TEXT [printf-format body]: the answer is CODE and holds TEXT.
send() {
  printf "$5" >"$tmp/req"
  req "$1" "$2" "$tmp/req"
  [ "$code" = "$3" ] || fail "$1 $2 $5: expected HTTP $3, got $code: $body"
  case $body in *"$4"*) ;; *) fail "$1 $2 $5: expected '$4' in: $body" ;; esac
}

send POST /v1/events 400 "field 'at': time 1e+300 is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z" \
  '{"type":"visit","customer":"h1","at":1e300}'
send POST /v1/events 400 "field 'at': time -99999999999 is outside" '{"type":"visit","customer":"h1","at":-99999999999}'
send POST /v1/events 400 "field 'total': number 1e400 is out of range" '{"type":"order.paid","customer":"h1","total":1e400}'
send POST /v1/events 400 "field 'customer': invalid UTF-8 at byte 31" '{"type":"visit","customer":"h1\377"}'
send POST /v1/events 400 "field 'customer': contains a NUL character" '{"type":"visit","customer":"h\\u0000x"}'
send POST /v1/events 400 "line 2: field 'note': invalid UTF-8" \
  '{"type":"visit","customer":"h1"}\n{"type":"visit","customer":"h1","note":"\355\240\200"}\n'
send POST /v1/events 400 "nested too deep (limit 32) at byte" \
  "{\"type\":\"visit\",\"customer\":\"h1\",\"x\":$(printf '[%.0s' $(seq 2000))"
send POST /v1/events 202 '"accepted":1' '{"type":"visit","customer":"h1","at":"9999-12-31T23:59:59Z"}'

send PUT /v1/customers/a%00b 400 "the customer id in the path: contains a NUL byte (byte 2)" '{"name":"Nul"}'
send GET /v1/customers/a 404 "no such customer" ''
send PUT /v1/customers/a%FFb 400 "the customer id in the path: invalid UTF-8 at byte 2" '{"name":"Bad"}'
send PUT /v1/customers/a%0Ab 400 "the customer id in the path: contains a line break" '{"name":"LF"}'
send PUT /v1/customers/c2 201 '"created":true' '{"name":"Bo","email":"bo@shop.example"}'
send PUT /v1/customers/c2 400 "field 'email': 'not-an-email' is not an email address" '{"email":"not-an-email"}'
send PUT /v1/customers/c2 400 "field 'email': is not an email address: contains a line break" \
  '{"email":"bo@shop.example\\r\\nBcc: evil@attacker.example"}'
send PUT /v1/customers/c2 400 "field 'name': contains a line break" '{"name":"Bo\\r\\nBcc: evil@attacker.example"}'
send PUT /v1/customers/c2 400 "field 'first_seen_at': time 1e+300 is outside" '{"first_seen_at":1e300}'
send PUT /v1/customers/c2 400 "field 'name': invalid UTF-8 at byte 11" '{"name":"B\300\257"}'
send PUT /v1/customers/c2 400 "field 'attrs.a.a.a" \
  "{\"attrs\":{\"a\":{\"a\":{\"a\":\"\\\\u0000 is text, \\u0000 is not\"}}}}"
send GET /v1/customers/c2 200 '"email":"bo@shop.example"' ''
case $body in *Bcc*|*first_seen_at\":1e*) fail "a refused change was stored: $body" ;; esac
case $body in *'"name":"Bo"'*) ;; *) fail "c2's name changed: $body" ;; esac

if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then
  fail "sanitizer output on tend run's stderr: $(cat "$tmp/server.err")"
fi
if [ "$failures" -ne 0 ]; then
  echo "validate_test: $failures failure(s)" >&2
  exit 1
fi
echo "validate_test: ok"
