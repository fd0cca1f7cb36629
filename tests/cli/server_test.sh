#!/bin/sh
# tend run under hostile clients and operators: many idle connections, slow
# headers, idle keep-alive, every error in JSON (libevent's own included),
# HEAD, the 202 not waiting for a slow journey, SIGHUP (reload, a broken set
# refused, file rotation), SIGTERM (exit 0, nothing lost), the log formats.
#   TEND=bin/tend sh tests/cli/server_test.sh
# Needs curl and /usr/bin/python3 (raw sockets); skips (exit 0) without them.
# Every wait is bounded.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "server_test: TEND=$TEND is not an executable" >&2; exit 1; }
PY=/usr/bin/python3
if ! command -v curl >/dev/null 2>&1 || [ ! -x $PY ]; then
  echo "server_test: SKIP: needs curl and $PY (nothing was tested)"
  exit 0
fi

tmp=$(mktemp -d) || exit 1
pid=""
mock_pid="" mock2_pid="" mock2_port=1
cleanup() {
  [ -n "$mock2_pid" ] && kill -9 "$mock2_pid" 2>/dev/null && wait "$mock2_pid" 2>/dev/null
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "$mock_pid" ] && kill -9 "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "server_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() { fail "$*"; tail -n 30 "$tmp/err" >&2; exit 1; }

dir=$tmp/shop
mkdir "$dir"
cat >"$dir/care.lua" <<'EOF'
template "paid" { category = "transactional", sms = "v1 order {{order}}" }
journey "paid" {
  on = "order.paid",
  run = function(c, ev)
    if ev.slow then   -- holds the loop for 2-3 s of CPU (within its budget)
      local t0 = os.time()
      while os.time() < t0 + 3 do end
    end
    send("sms", c, "paid", { order = ev.order })
  end,
}
EOF
cat >"$dir/fail.lua" <<'EOF'
journey "failing" { on = "order.fail", run = function(c, ev) error("boom in a journey") end }
template "webt" { category = "transactional", web = "order {{order}}" }
journey "web" { on = "order.web", run = function(c, ev) send("web", c, "webt", { order = ev.order }) end }
template "badt" { category = "transactional", bad = "order {{order}}" }
journey "bad" { on = "order.bad", run = function(c, ev) send("bad", c, "badt", { order = ev.order }) end }
EOF
# a provider that answers every message 1.5 s late (for the shutdown grace)
mock=${TEND_BUILD:-build/release}/mock_provider
mock_port=1
if [ -x "$mock" ]; then
  "$mock" --port 0 --fail-rate 1 --faults slow --slow-ms 1500 --quiet >"$tmp/mock.out" 2>&1 &
  mock_pid=$!
  i=0
  while [ $i -lt 50 ] && ! grep '^PORT' "$tmp/mock.out" >/dev/null; do sleep 0.1; i=$((i + 1)); done
  mock_port=$(sed -n 's/^PORT //p' "$tmp/mock.out")
  # and one that refuses (400) a message naming DEAD and answers 503 to every other
  "$mock" --port 0 --reject DEAD --fail-rate 1 --faults 503 --quiet >"$tmp/mock2.out" 2>&1 &
  mock2_pid=$!
  i=0
  while [ $i -lt 50 ] && ! grep '^PORT' "$tmp/mock2.out" >/dev/null; do sleep 0.1; i=$((i + 1)); done
  mock2_port=$(sed -n 's/^PORT //p' "$tmp/mock2.out")
fi
: >"$tmp/err"

# start [OPTIONS]: tend run on a free port; waits for /healthz. Sets pid, url.
start() {
  for attempt in 1 2 3 4 5 6; do
    sec=$(date +%S)
    port=$((30000 + ($$ * 13 + attempt * 977 + ${sec#0} * 31) % 25000))
    cat >"$dir/tend.lua" <<EOF
return {
  listen = "127.0.0.1:$port",
  quiet_hours = false,
  limits = { instructions = 2000000000 },
  server = { max_connections = 500, idle_timeout = 2, header_timeout = 2, request_timeout = 4 },
  shutdown_grace = 5,
  channels = { sms = { type = "file" }, web = { type = "http", url = "http://127.0.0.1:$mock_port/sms" },
               bad = { type = "http", url = "http://127.0.0.1:$mock2_port/sms" } },
}
EOF
    url=http://127.0.0.1:$port
    mark=$(wc -l <"$tmp/err")
    TEND_API_TOKEN=secret "$TEND" run "$@" "$dir" >/dev/null 2>>"$tmp/err" &
    pid=$!
    i=0
    while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do
      [ "$(curl -s --max-time 2 "$url/healthz")" = '{"ok":true}' ] && return 0
      sleep 0.1
      i=$((i + 1))
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    tail -n +$((mark + 1)) "$tmp/err" | grep 'cannot listen' >/dev/null || die "tend run did not start"
  done
  die "no free port"
}

# stop: SIGTERM; must exit 0 within 10 s.
stop() {
  kill -TERM "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    fail "tend run did not stop within 10 s of SIGTERM"
    kill -9 "$pid"
  fi
  wait "$pid"
  rc=$?
  pid=""
  [ "$rc" = 0 ] || fail "tend run exited $rc after SIGTERM (expected 0)"
}

# req METHOD PATH [curl options]: sets code, body (and the head in $tmp/head).
req() {
  m=$1 p=$2
  shift 2
  code=$(curl -s --max-time 20 -D "$tmp/head" -o "$tmp/body" -w '%{http_code}' -X "$m" \
              -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body")
}
json_error() {   # json_error CODE WHAT: the body is {"error": ..., "code": CODE}
  [ "$code" = "$1" ] || fail "$2: expected HTTP $1, got $code: $body"
  printf '%s' "$body" | $PY -c 'import json,sys; j=json.load(sys.stdin); assert j["code"]=='"$1"' and j["error"]' \
    2>/dev/null || fail "$2: not a JSON error with code $1: $body"
}
lines() { if [ -f "$dir/$2" ]; then grep -c -F "$1" "$dir/$2"; else echo 0; fi; }
wait_line() {   # wait_line TEXT FILE: up to 10 s
  i=0
  while [ $i -lt 100 ]; do
    [ "$(lines "$1" "$2")" -ge 1 ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

start

# --- connections: many idle ones, slow headers, idle keep-alive ---------------
$PY - "$port" "$pid" "$tmp/err" >"$tmp/conns" 2>&1 <<'EOF'
import os, resource, socket, sys, time
port, pid, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
def fds():
    return len(os.listdir("/proc/%s/fd" % pid))
def healthz():
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(4096)
    s.close()
    return data, time.time() - t
idle = []
for i in range(2000):   # no token, no bytes
    try:
        idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError as e:
        print("connect %d failed: %s" % (i, e)); break
time.sleep(0.3)
data, took = healthz()
print("opened %d idle connections; server descriptors %d; /healthz %.3f s: %r" % (len(idle), fds(), took, data[:15]))
print("HEALTHZ_OK" if b"200 OK" in data and took < 5 else "HEALTHZ_BAD")
print("FDS_OK" if fds() < 500 + 300 else "FDS_BAD %d" % fds())
for s in idle:
    s.close()
# an idle connection is closed after idle_timeout (2 s)
s = socket.create_connection(("127.0.0.1", port), timeout=8)
t = time.time()
gone = s.recv(1) == b""
print("idle connection closed after %.1f s" % (time.time() - t))
print("IDLE_OK" if gone and 1.5 < time.time() - t < 6 else "IDLE_BAD")
# slow headers: a byte every 0.5 s never completes the head; header_timeout (2 s) closes it
s = socket.create_connection(("127.0.0.1", port), timeout=1)
t = time.time()
head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
closed = False
for b in head:
    try:
        s.sendall(bytes([b]))
        time.sleep(0.5)
        s.settimeout(0.01)
        try:
            if s.recv(1) == b"":
                closed = True
                break
        except socket.timeout:
            pass
    except OSError:
        closed = True
        break
    if time.time() - t > 8:
        break
print("slow head closed after %.1f s" % (time.time() - t))
print("SLOW_OK" if closed and time.time() - t < 5 else "SLOW_BAD")
# a body over the limit sent slowly (as from a loaded machine): the 413 is
# written at once; the rest is read and dropped while it keeps coming, so the
# client, sending for 4 s, still reads the answer (closing after 2 s reset it)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
t = time.time()
chunk = b"a" * 65536
answer = b""
try:
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
              b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n" % (20 * len(chunk)))
    for i in range(20):
        s.sendall(chunk)
        time.sleep(0.2)
    while len(answer) < 65536 and time.time() - t < 10:
        got = s.recv(4096)
        if not got:
            break
        answer += got
except OSError as e:
    print("slow big body: %s" % e)
s.close()
print("slow big body sent for %.1f s; answer %r" % (time.time() - t, answer[:20]))
print("LINGER_OK" if answer.startswith(b"HTTP/1.1 413") else "LINGER_BAD")
# descriptors run out (the limit lowered under tend's feet): accept() fails;
# the listener pauses, a few log lines say so, and service comes back
limit = resource.prlimit(int(pid), resource.RLIMIT_NOFILE)
resource.prlimit(int(pid), resource.RLIMIT_NOFILE, (fds() + 10, limit[1]))
more = []
for i in range(40):
    try:
        more.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
    except OSError:
        pass
time.sleep(2.5)
for s in more:
    s.close()
resource.prlimit(int(pid), resource.RLIMIT_NOFILE, limit)
time.sleep(3)   # the idle ones are gone, the listener resumed
data, took = healthz()
lines = [l for l in open(log) if "accept()" in l]
print("descriptors exhausted: %d accept() log lines; then /healthz %r" % (len(lines), data[:15]))
print("EMFILE_OK" if 1 <= len(lines) <= 4 and b"200 OK" in data else "EMFILE_BAD")
EOF
for k in HEALTHZ FDS IDLE SLOW LINGER EMFILE; do
  grep "^${k}_OK" "$tmp/conns" >/dev/null || fail "connections ($k): $(cat "$tmp/conns")"
done
sed 's/^/  /' "$tmp/conns" | grep -v '_OK$'

# --- every error is JSON ---------------------------------------------------------------
awk 'BEGIN { s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; for (i = 0; i < 18000; i++) print s }' >"$tmp/big"
req POST /v1/events --data-binary "@$tmp/big"
json_error 413 "a body over 1 MiB"
req POST /v1/events --data-binary "@$tmp/big" -H 'Expect:'
json_error 413 "a body over 1 MiB sent at once"
req BREW /v1/events
json_error 501 "an unknown method"
req TRACE /healthz
json_error 501 "TRACE"
req GET /nowhere
json_error 404 "an unknown path"
req DELETE /v1/events
json_error 405 "DELETE /v1/events"
req POST /v1/events -H 'Transfer-Encoding: chunked' --data 'x'
json_error 411 "a chunked body"
req POST /v1/events --data 'not json'
json_error 400 "a malformed event"
printf 'CONNECT example.com:443 HTTP/1.1\r\n\r\n' >"$tmp/connect"
printf 'GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n' >"$tmp/badheader"
printf 'GET /healthz HTTP/1.1\r\n\r\nFOO /healthz HTTP/1.1\r\n\r\n' >"$tmp/pipelined"
for f in connect badheader pipelined; do
  $PY - "$port" "$tmp/$f" >"$tmp/raw.$f" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(open(sys.argv[2], "rb").read())
out = b""
while True:
    try:
        d = s.recv(4096)
    except socket.timeout:
        break
    if not d:
        break
    out += d
sys.stdout.write(out.decode("latin-1"))
EOF
done
grep -F 'HTTP/1.1 501 Not Implemented' "$tmp/raw.connect" >/dev/null && grep -F '"code":501' "$tmp/raw.connect" >/dev/null ||
  fail "CONNECT: expected a 501 JSON error: $(cat "$tmp/raw.connect")"
grep -F 'HTTP/1.1 400 Bad Request' "$tmp/raw.badheader" >/dev/null && grep -F '"code":400' "$tmp/raw.badheader" >/dev/null ||
  fail "a malformed header: expected a 400 JSON error: $(cat "$tmp/raw.badheader")"
grep -F '{"ok":true}' "$tmp/raw.pipelined" >/dev/null && grep -F '"code":501' "$tmp/raw.pipelined" >/dev/null ||
  fail "a pipelined unknown method after a good request: expected 200 then 501 JSON: $(cat "$tmp/raw.pipelined")"
if grep -i -E 'text/html|<html' "$tmp/raw.connect" "$tmp/raw.badheader" "$tmp/raw.pipelined" "$tmp/body" >/dev/null; then
  fail "an HTML page reached a client"
fi

# HEAD: the headers of GET, with Content-Length, and no body
head_out=$(curl -s --max-time 10 -I "$url/healthz" | tr -d '\r')
printf '%s\n' "$head_out" | grep -E '^Content-Length: 12$' >/dev/null ||
  fail "HEAD /healthz: no Content-Length: 12: $head_out"
n=$(curl -s --max-time 10 -X HEAD -o "$tmp/headbody" -w '%{size_download}' "$url/healthz" 2>/dev/null)
[ "$n" = 0 ] || fail "HEAD /healthz sent a body of $n bytes"
req PUT /v1/customers/new1 --data '{"name":"N"}'
head -n 1 "$tmp/head" | grep -F 'HTTP/1.1 201 Created' >/dev/null ||
  fail "PUT a new customer: expected 'HTTP/1.1 201 Created', got $(head -n 1 "$tmp/head")"

# --- the 202 does not wait for a slow journey ---------------------------------------------
t0=$($PY -c 'import time; print(time.time())')
req POST /v1/events --data '{"type":"order.paid","customer":"s1","order":"SLOW1","slow":true}'
t1=$($PY -c 'import time; print(time.time())')
[ "$code" = 202 ] || fail "POST a slow event: expected 202, got $code: $body"
wait_line "order SLOW1" outbox.ndjson || fail "the slow journey never sent"
t2=$($PY -c 'import time; print(time.time())')
$PY -c "import sys; a,b,c=$t0,$t1,$t2; print('202 after %.3f s; the journey ended %.1f s after the POST' % (b-a, c-a)); sys.exit(0 if b-a < 1 and c-a >= 2 else 1)" ||
  fail "the 202 waited for the slow journey (or the journey was not slow)"

# --- a failed instance: one log line (the traceback only at debug) --------------------------
req POST /v1/events --data '{"type":"order.fail","customer":"f1"}'
i=0
while [ $i -lt 50 ] && ! grep -F "of 'failing' failed" "$tmp/err" >/dev/null; do sleep 0.1; i=$((i + 1)); done
grep -E "^20[0-9-]+T[0-9:.]+Z error instance [0-9]+ of 'failing' failed: .*fail.lua:1: boom in a journey" "$tmp/err" >/dev/null ||
  fail "no error line for the failed instance: $(grep failing "$tmp/err")"
if grep -E 'stack traceback|^[[:space:]]' "$tmp/err" >/dev/null; then
  fail "the log has a traceback or continuation lines at --log-level info"
fi

# --- a dead letter and a retry burst: one line each ---------------------------------------
if [ -n "$mock2_pid" ]; then
  req POST /v1/events --data '{"type":"order.bad","customer":"d1","order":"DEAD1"}'
  req POST /v1/events --data '{"type":"order.bad","customer":"d2","order":"R503"}'
  i=0
  while [ $i -lt 100 ] && ! { grep -F 'is a dead letter: HTTP 400' "$tmp/err" >/dev/null &&
                              grep -F 'will be retried (last: channel '"'bad'"': HTTP 503)' "$tmp/err" >/dev/null; }; do
    sleep 0.1; i=$((i + 1))
  done
  grep -E "warn message [0-9]+ on channel 'bad' is a dead letter: HTTP 400" "$tmp/err" >/dev/null ||
    fail "no log line for the dead letter"
  grep -E "warn 1 delivery failed and will be retried \(last: channel 'bad': HTTP 503\)" "$tmp/err" >/dev/null ||
    fail "no log line for the retry"
  grep -E "dead letter|will be retried" "$tmp/err" | head -n 2 | sed 's/^/  /'
fi

# --- SIGHUP: reload, a broken set refused, rotation ------------------------------------------
req POST /v1/events --data '{"type":"order.paid","customer":"r1","order":"R1"}'
wait_line "v1 order R1" outbox.ndjson || fail "before SIGHUP: no message for R1"
cp "$dir/care.lua" "$tmp/care.good"
printf 'journey "broken" { on = "x", run = }\n' >"$dir/broken.lua"
kill -HUP "$pid"
sleep 0.5
kill -0 "$pid" 2>/dev/null || die "tend run died on SIGHUP"
grep -E 'SIGHUP: 1 script error.*broken.lua' "$tmp/err" >/dev/null || fail "SIGHUP with a broken script: no error line"
req GET /readyz
[ "$code" = 503 ] && printf '%s' "$body" | grep -F 'broken.lua' >/dev/null ||
  fail "after a refused reload /readyz should be 503 naming the script: $code $body"
req POST /v1/events --data '{"type":"order.paid","customer":"r2","order":"R2"}'
wait_line "v1 order R2" outbox.ndjson || fail "after a refused reload the old scripts no longer serve (no message for R2)"
rm "$dir/broken.lua"
sed 's/v1 order/v2 order/' "$tmp/care.good" >"$dir/care.lua"
mv "$dir/outbox.ndjson" "$dir/outbox.old"
kill -HUP "$pid"
sleep 0.5
grep -F 'SIGHUP: scripts reloaded' "$tmp/err" >/dev/null || fail "SIGHUP: no reload line"
req GET /readyz
[ "$code" = 200 ] || fail "after a good reload /readyz should be 200: $code $body"
req POST /v1/events --data '{"type":"order.paid","customer":"r3","order":"R3"}'
wait_line "v2 order R3" outbox.ndjson || fail "after SIGHUP the edited script (or the new outbox.ndjson) is not used: $(cat "$dir/outbox.ndjson" 2>/dev/null)"
[ "$(lines 'order R3' outbox.old)" = 0 ] || fail "after rotation + SIGHUP a line still went to the moved file"

# --- SIGTERM: exit 0 at once, nothing lost --------------------------------------------------------
for i in 1 2 3 4 5; do
  req POST /v1/events --data "{\"id\":\"t$i\",\"type\":\"order.paid\",\"customer\":\"t$i\",\"order\":\"T$i\"}"
  [ "$code" = 202 ] || fail "POST before SIGTERM: $code"
done
t0=$($PY -c 'import time; print(time.time())')
stop
$PY -c "import sys,time; d=time.time()-$t0; print('SIGTERM: exited in %.2f s' % d); sys.exit(0 if d < 5 else 1)" ||
  fail "SIGTERM took more than 5 s with nothing in flight"
grep -E 'signal 15: stopping' "$tmp/err" >/dev/null || fail "no stopping line"

# --- logs: text and JSON -----------------------------------------------------------------------------
start --log-format json --log-level debug
for i in 1 2 3 4 5; do   # processed now if SIGTERM left them
  wait_line "order T$i" outbox.ndjson || fail "event t$i (acknowledged before SIGTERM) was never processed"
done
req POST /v1/events --data '{"customer":"x"}'
[ "$code" = 400 ] || fail "a rejected batch: $code"
if [ -n "$mock_pid" ]; then
  # in_flight N: POST a web message and wait (5 s at most) until the provider holds request N
  in_flight() {
    req POST /v1/events --data "{\"type\":\"order.web\",\"customer\":\"w$1\",\"order\":\"W$1\"}"
    i=0
    while [ $i -lt 50 ] && ! curl -s "http://127.0.0.1:$mock_port/_stats" | grep "\"requests\":$1," >/dev/null; do
      sleep 0.1; i=$((i + 1))
    done
  }
  # SIGTERM while a delivery is in flight: tend waits for it (within
  # shutdown_grace), stores it as sent, exits 0; after a restart it is not sent again
  in_flight 1
  t0=$($PY -c 'import time; print(time.time())')
  stop
  $PY -c "import sys,time; d=time.time()-$t0; print('SIGTERM with a transfer in flight: exited after %.2f s' % d); sys.exit(0 if 0.8 < d < 4.5 else 1)" ||
    fail "SIGTERM did not wait for the transfer in flight (or waited past the grace)"
  start
  sleep 1
  curl -s "http://127.0.0.1:$mock_port/_stats" | grep '"requests":1,' >/dev/null ||
    fail "the message in flight at SIGTERM was sent again after a restart: $(curl -s "http://127.0.0.1:$mock_port/_stats")"
  # a second signal stops at once, without waiting for the transfer
  in_flight 2
  t0=$($PY -c 'import time; print(time.time())')
  kill -TERM "$pid"
  sleep 0.1
  stop
  $PY -c "import sys,time; d=time.time()-$t0; print('two SIGTERMs with a transfer in flight: exited after %.2f s' % d); sys.exit(0 if d < 1.2 else 1)" ||
    fail "a second SIGTERM did not stop at once"
  grep -F 'signal 15 again: stopping now (1 transfer in flight abandoned' "$tmp/err" >/dev/null ||
    fail "no line for the second signal"
else
  stop
fi
$PY - "$tmp/err" <<'EOF' || fail "the JSON log"
import json, re, sys
text = [l for l in open(sys.argv[1]) if l.startswith("20")]
js = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) ")
assert text and all(iso.match(l) for l in text), "text lines without an ISO time and level"
assert js, "no JSON lines"
for j in js:
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", j["ts"]) and j["level"] in ("debug", "info", "warn", "error") and isinstance(j["msg"], str), j
assert any("rejected a batch" in j["msg"] for j in js), "no line for the rejected batch"
assert len(open(sys.argv[1]).read().splitlines()) == len(text) + len(js), "a line that is no log entry"
assert any(j["msg"].startswith("listening on") for j in js)
print("log: %d text lines, %d JSON lines" % (len(text), len(js)))
EOF

if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/err" >/dev/null; then
  fail "sanitizer output on tend run's stderr: $(grep -A20 -E 'Sanitizer|runtime error' "$tmp/err" | head -40)"
fi
if [ "$failures" -gt 0 ]; then
  tail -n 30 "$tmp/err" >&2
  echo "server_test: $failures failure(s)" >&2
  exit 1
fi
echo "server_test: ok"
