#!/bin/sh
# Running tend as a service: make install/uninstall into a DESTDIR, the man
# page, the systemd unit, --listen/--db and their errors, sd_notify READY and
# STOPPING, /readyz, /metrics read by real parsers, Idempotency-Key, the
# OpenAPI document (validated, served, and the same as docs/openapi.yaml),
# and tend backup of a live store.
#   TEND=bin/tend TEND_ROOT=. sh tests/cli/ops_test.sh
TEND=${TEND:-bin/tend}
ROOT=${TEND_ROOT:-$(pwd)}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
PY=/usr/bin/python3
tmp=$(mktemp -d) || exit 1
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  rm -rf "$tmp"
}
listener=""
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
failures=0
fail() { echo "ops_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() { fail "$*"; [ -f "$tmp/server.err" ] && tail -n 30 "$tmp/server.err" >&2; exit 1; }

# --- make install / uninstall -------------------------------------------------
stage=$tmp/stage
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C "$ROOT" "$@"; }
mk install DESTDIR="$stage" PREFIX=/usr >"$tmp/install.out" 2>&1 || { cat "$tmp/install.out" >&2; die "make install failed"; }
(cd "$stage" && find . -type f | sort) >"$tmp/installed"
cat >"$tmp/expected" <<'EOF'
./usr/bin/tend
./usr/lib/systemd/system/tend.service
./usr/share/bash-completion/completions/tend
./usr/share/doc/tend/cli.md
./usr/share/doc/tend/examples/tend.lua
./usr/share/doc/tend/guide.md
./usr/share/doc/tend/http-api.md
./usr/share/doc/tend/lua-api.md
./usr/share/doc/tend/openapi.yaml
./usr/share/doc/tend/operations.md
./usr/share/man/man1/tend.1
./usr/share/zsh/site-functions/_tend
EOF
diff "$tmp/expected" "$tmp/installed" >&2 || fail "make install did not install exactly the expected files"
"$stage/usr/bin/tend" --version | grep -E '^tend [0-9.]+ \(Lua 5\.4[^,]*, SQLite 3[^,]*, libcurl [^,]+, libevent [^)]+\)$' >/dev/null \
  || fail "the installed binary's --version: $("$stage/usr/bin/tend" --version 2>&1)"
grep -q "^ExecStart=/usr/bin/tend run" "$stage/usr/lib/systemd/system/tend.service" || fail "the unit's ExecStart does not follow PREFIX"
mk uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1 || fail "make uninstall failed"
left=$(find "$stage" -type f | wc -l)
[ "$left" = 0 ] || fail "make uninstall left $left files"
mk install DESTDIR="$stage" PREFIX="/opt/my tend" >"$tmp/space.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "PREFIX with a space: expected exit 2, got $rc"
grep -q "PREFIX must be one path without spaces" "$tmp/space.out" || fail "PREFIX with a space: no clear error: $(cat "$tmp/space.out")"

# --- the man page and the unit file ---------------------------------------------
if command -v mandoc >/dev/null 2>&1; then
  mandoc -T lint -W style "$ROOT/docs/tend.1" >"$tmp/lint" 2>&1 || { cat "$tmp/lint" >&2; fail "mandoc -T lint docs/tend.1"; }
else
  echo "ops_test: mandoc missing: man page lint skipped"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  sed "s|^ExecStart=/usr/local/bin/tend|ExecStart=$TEND|" "$ROOT/examples/tend.service" >"$tmp/tend.service"
  systemd-analyze verify --man=no "$tmp/tend.service" >"$tmp/verify" 2>&1 || { cat "$tmp/verify" >&2; fail "systemd-analyze verify examples/tend.service"; }
else
  echo "ops_test: systemd-analyze missing: unit verification skipped"
fi

# --- flags and their errors -------------------------------------------------------
dir=$tmp/shop
mkdir "$dir"
cat >"$dir/care.lua" <<'EOF'
template "paid" { category = "transactional", sms = "thanks" }
journey "paid" { on = "order.paid", run = function(c, ev) send("sms", c, "paid") end }
EOF
printf 'return { timezone = "Asia/Shanghai", channels = { sms = { type = "file" } } }\n' >"$dir/tend.lua"
"$TEND" run --listen nonsense "$dir" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "listen address 'nonsense'" "$tmp/err" || fail "a bad --listen: rc $rc: $(cat "$tmp/err")"
"$TEND" run --listen 127.0.0.1:99999 "$dir" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "1 to 65535" "$tmp/err" || fail "a port out of range: rc $rc: $(cat "$tmp/err")"
"$TEND" status --db /nonexistent/dir/x.db 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "cannot be written" "$tmp/err" || fail "an unwritable --db: rc $rc: $(cat "$tmp/err")"

# --- the server under a notify socket ------------------------------------------------
sock=$tmp/notify.sock
$PY - "$sock" >"$tmp/notify.log" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
try:
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", " ").strip(), flush=True)
        if "STOPPING=1" in msg:
            break
except socket.timeout:
    pass
EOF
listener=$!
i=0; while [ ! -S "$sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
: >"$tmp/server.err"
attempt=0
while [ $attempt -lt 6 ]; do
  attempt=$((attempt + 1))
  port=$((30000 + ($$ * 13 + attempt * 977) % 25000))
  url=http://127.0.0.1:$port
  NOTIFY_SOCKET=$sock TEND_API_TOKEN=secret TEND_DB=$tmp/live.db "$TEND" run --listen 127.0.0.1:$port "$dir" \
    >"$tmp/server.out" 2>>"$tmp/server.err" &
  pid=$!
  i=0
  while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do
    [ "$(curl -s --max-time 2 "$url/healthz")" = '{"ok":true}' ] && break
    sleep 0.1; i=$((i + 1))
  done
  kill -0 "$pid" 2>/dev/null && break
  wait "$pid" 2>/dev/null; pid=""
  grep -q "cannot listen" "$tmp/server.err" || die "tend run exited at start"
done
[ -n "$pid" ] || die "no free port"
[ -f "$tmp/live.db" ] || fail "TEND_DB was not used for the store"
i=0; while ! grep -q "READY=1" "$tmp/notify.log" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "READY=1" "$tmp/notify.log" || fail "no READY=1 on NOTIFY_SOCKET: $(cat "$tmp/notify.log")"

req() {   # req METHOD PATH [curl args]: sets code, body
  m=$1 p=$2; shift 2
  code=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$m" -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body")
}

code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/readyz"); body=$(cat "$tmp/body")
[ "$code" = 200 ] || fail "/readyz: $code $body"
case $body in *'"ready":true'*'"store":"ok"'*) ;; *'"store":"ok"'*'"ready":true'*) ;; *) fail "/readyz body: $body" ;; esac

# Idempotency-Key: the default id of a single event
req POST /v1/events -H 'Idempotency-Key: order-A1-paid' -d '{"type":"order.paid","customer":"c1","total":5}'
[ "$code" = 202 ] && [ "$body" = '{"accepted":1,"duplicates":0}' ] || fail "first POST with Idempotency-Key: $code $body"
req POST /v1/events -H 'Idempotency-Key: order-A1-paid' -d '{"type":"order.paid","customer":"c1","total":5}'
[ "$code" = 202 ] && [ "$body" = '{"accepted":0,"duplicates":1}' ] || fail "a retry with the same Idempotency-Key is a duplicate: $code $body"
long=$(printf '%0300d' 0)
req POST /v1/events -H "Idempotency-Key: $long" -d '{"type":"order.paid","customer":"c1"}'
[ "$code" = 400 ] && case $body in *Idempotency-Key*) true ;; *) false ;; esac || fail "a 300-byte Idempotency-Key: $code $body"
req POST /v1/events -H "$(printf 'Idempotency-Key: a\001b')" -d '{"type":"order.paid","customer":"c1"}'
[ "$code" = 400 ] || fail "a non-printable Idempotency-Key: $code $body"

# metrics, read by Prometheus's own tools
i=0
while [ $i -lt 50 ]; do
  req GET /metrics
  case $body in *'tend_deliveries_total{channel="sms"} 1'*) break ;; esac
  sleep 0.1; i=$((i + 1))
done
printf '%s\n' "$body" >"$tmp/metrics"
for f in tend_build_info tend_events_ingested_total tend_sends_total tend_deliveries_total \
         tend_delivery_latency_seconds tend_wake_lateness_seconds tend_oldest_due_seconds tend_instances; do
  grep -q "^# HELP $f " "$tmp/metrics" && grep -q "^# TYPE $f " "$tmp/metrics" || fail "/metrics: no HELP/TYPE for $f"
done
grep -q '^tend_events_ingested_total 1$' "$tmp/metrics" || fail "/metrics: events ingested is not 1"
grep -q '^tend_sends_total{channel="sms",status="queued"} 1$' "$tmp/metrics" || fail "/metrics: no queued sms send"
grep -q '^tend_delivery_latency_seconds_count{channel="sms"} 1$' "$tmp/metrics" || fail "/metrics: no delivery latency sample"
grep -q '^tend_http_requests_total{code="400"} 2$' "$tmp/metrics" || fail "/metrics: the two 400s are not counted"
if command -v promtool >/dev/null 2>&1; then
  promtool check metrics <"$tmp/metrics" >"$tmp/promtool" 2>&1 || { cat "$tmp/promtool" >&2; fail "promtool check metrics"; }
else
  echo "ops_test: promtool missing: skipped"
fi
$PY - "$tmp/metrics" <<'EOF' || fail "prometheus_client could not parse /metrics"
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
assert fams["tend_delivery_latency_seconds"].type == "histogram", fams["tend_delivery_latency_seconds"].type
assert fams["tend_sends"].type == "counter"
assert any(s.labels.get("channel") == "sms" for s in fams["tend_deliveries"].samples)
EOF

# the OpenAPI document: served as the YAML's JSON, valid, and naming what answers
req GET /v1/openapi.json
[ "$code" = 200 ] || fail "/v1/openapi.json: $code"
printf '%s' "$body" >"$tmp/openapi.json"
$PY - "$ROOT/docs/openapi.yaml" "$tmp/openapi.json" <<'EOF' || fail "/v1/openapi.json differs from docs/openapi.yaml"
import json, sys, yaml
assert yaml.safe_load(open(sys.argv[1])) == json.load(open(sys.argv[2]))
EOF
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  if [ ! -d "$ROOT/tests/openapi/node_modules/@apidevtools/swagger-parser" ]; then
    (cd "$ROOT/tests/openapi" && npm ci --no-audit --no-fund --silent) >"$tmp/npm" 2>&1 || { cat "$tmp/npm" >&2; fail "npm ci in tests/openapi"; }
  fi
  node "$ROOT/tests/openapi/validate.mjs" "$ROOT/docs/openapi.yaml" >"$tmp/ops" 2>"$tmp/ops.err" || { cat "$tmp/ops.err" >&2; fail "docs/openapi.yaml is not a valid OpenAPI 3.1 document"; }
  # every documented GET answers something other than "no such route"
  while read -r m p; do
    [ "$m" = GET ] || continue
    case $p in *"{"*) p=$(printf '%s' "$p" | sed 's/{[^}]*}/nosuch/') ;; esac
    req GET "$p"
    case $body in *'no such route'*) fail "documented GET $p is not routed" ;; esac
  done <"$tmp/ops"
else
  echo "ops_test: node/npm missing: OpenAPI schema validation skipped"
fi

# a backup while the server runs
"$TEND" backup --db "$tmp/live.db" "$tmp/copy.db" >"$tmp/backup.out" 2>&1 || fail "tend backup: $(cat "$tmp/backup.out")"
"$TEND" status --db "$tmp/copy.db" --json >"$tmp/copy.json" 2>&1 || fail "status of the backup"
$PY -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["events"]["total"] == 1 and r["outbox"]["sent"] == 1, r' \
  "$tmp/copy.json" || fail "the backup does not hold the stored event and message"
"$TEND" backup --db "$tmp/live.db" "$tmp/copy.db" >"$tmp/backup.out" 2>&1 && fail "a backup over an existing file succeeded"
grep -q "exists already" "$tmp/backup.out" || fail "backup over a file: no clear error: $(cat "$tmp/backup.out")"

# SIGTERM: STOPPING=1, then exit 0
kill -TERM "$pid"
i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then fail "tend run did not stop within 15 s of SIGTERM"; else wait "$pid"; rc=$?; [ $rc = 0 ] || fail "exit status after SIGTERM: $rc"; fi
pid=""
wait "$listener" 2>/dev/null; listener=""
grep -q "STOPPING=1" "$tmp/notify.log" || fail "no STOPPING=1 on NOTIFY_SOCKET: $(cat "$tmp/notify.log")"
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then fail "sanitizer output"; cat "$tmp/server.err" >&2; fi

[ $failures = 0 ] || { echo "ops_test: $failures failure(s)" >&2; exit 1; }
echo "ops_test: ok"
