#!/bin/sh
# http_get under `tend run`, against a local server (the mock provider,
# every answer held 5 s):
#  - SSRF: an allowed host NAME that resolves to 127.0.0.1 ("localhost") is
#    refused at connect time with a clear error, and no byte reaches the
#    listener; naming the literal 127.0.0.1 in http_allow allows it;
#  - while an http_get waits 5 s for its answer, /healthz and POST
#    /v1/events are answered (the loop is not held), then the answer comes
#    and the journey goes on;
#  - kill -9 while the request is pending: the restarted tend asks again
#    and the journey finishes once.
#   TEND=bin/tend TEND_BUILD=build/release sh tests/cli/http_get_test.sh
NAME=http_get_test
. "$(dirname "$0")/serverlib.sh"

allow='"localhost"'
write_config() {
  { echo "return {"; config_head "$1"; cat; } >"$dir/tend.lua" <<EOF
  http_allow = { $allow },
  channels = { sms = { type = "file" } },
}
EOF
}
cat >"$dir/look.lua" <<'EOF'
template "got" { category = "transactional", sms = "{{what}}" }

journey "look" {
  on = "look",
  run = function(c, ev)
    local r, err = http_get(ev.url)
    send("sms", c, "got", { what = r and ("status " .. r.status .. " " .. r.body) or ("error " .. err) })
  end,
}
EOF

lines() {   # lines TEXT: lines of the file channel's file with TEXT
  if [ -f "$dir/outbox.ndjson" ]; then grep -c -F "$1" "$dir/outbox.ndjson"; else echo 0; fi
}
wait_lines() {   # wait_lines TEXT N SECONDS
  i=0
  while [ $i -lt $(($3 * 10)) ]; do
    [ "$(lines "$1")" -ge "$2" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
wait_requests() {   # wait_requests N: the mock has seen N requests (10 s at most)
  i=0
  while [ $i -lt 100 ]; do
    [ "$(mock_stat requests)" -ge "$1" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
look() {   # look CUSTOMER URL
  req POST /v1/events --data "{\"type\":\"look\",\"customer\":\"$1\",\"url\":\"$2\"}"
  [ "$code" = 202 ] || fail "POST the look event for $1: expected 202, got $code: $body"
}

start_mock --fail-rate 1 --faults slow --slow-ms 5000

# --- SSRF: an allowed name resolving to loopback ------------------------------------
start_server
look c-ssrf "http://localhost:$mock_port/ssrf"
wait_lines '"customer":"c-ssrf"' 1 10 || die "the journey never sent its message after an http_get to localhost"
line=$(grep -F '"customer":"c-ssrf"' "$dir/outbox.ndjson")
case $line in
  *"error GET http://localhost:$mock_port/ssrf refused: localhost resolves to "*"127.0.0.1 (loopback)"*"; http_allow (tend.lua) does not name that address"*) ;;
  *) fail "http_get to an allowed name resolving to 127.0.0.1: expected the refusal, got: $line" ;;
esac
refusal=$(printf '%s' "$line" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p')
[ "$(mock_stat requests)" = 0 ] || fail "a refused http_get reached the listener: $(curl -s "$mock_url/_stats")"
kill_server -TERM

# --- the literal address allowed; the loop stays free while it waits ---------------------
allow='"localhost", "127.0.0.1"'
start_server
look c-slow "http://127.0.0.1:$mock_port/slow"
wait_requests 1 || die "the http_get to 127.0.0.1 (named in http_allow) never reached the listener"
req GET /healthz
healthz_code=$code healthz_took=$took
req POST /v1/events --data '{"type":"ping","customer":"c-other"}'
post_code=$code post_took=$took
req GET /v1/customers/c-other
get_code=$code
# all three were answered while the mock still holds its answer (5 s)
[ "$(lines '"customer":"c-slow"')" = 0 ] ||
  fail "the slow answer came before the checks: the test cannot tell whether the loop was free"
[ "$healthz_code" = 200 ] || fail "GET /healthz while an http_get is pending: expected 200, got $healthz_code"
[ "$post_code" = 202 ] || fail "POST /v1/events while an http_get is pending: expected 202, got $post_code"
[ "$get_code" = 200 ] || fail "the event posted while an http_get was pending was not stored (GET the customer: $get_code)"
echo "$NAME: while an http_get waited 5 s: GET /healthz answered in ${healthz_took} s, POST /v1/events in ${post_took} s"
req GET /v1/journeys
case $body in *'http_get http://127.0.0.1'*) ;; *) fail "GET /v1/journeys does not show the instance waiting on http_get: $body" ;; esac
req GET /metrics
printf '%s\n' "$body" | grep -E '^tend_http_get_pending 1$' >/dev/null ||
  fail "GET /metrics while one http_get waits: expected tend_http_get_pending 1: $(printf '%s' "$body" | grep http_get)"
wait_lines '"customer":"c-slow"' 1 15 || die "the answer of the slow http_get never reached the journey"
grep -F '"customer":"c-slow"' "$dir/outbox.ndjson" | grep -F 'status 200 {\"id\":\"m1\"}' >/dev/null ||
  fail "the journey did not get the slow server's answer: $(grep -F c-slow "$dir/outbox.ndjson")"

# --- kill -9 while pending: asked again after the restart, finished once ------------------
look c-crash "http://127.0.0.1:$mock_port/crash"
wait_requests 2 || die "the second http_get never reached the listener"
kill_server
start_server
wait_requests 3 || die "after kill -9 the pending http_get was not asked again"
wait_lines '"customer":"c-crash"' 1 15 || die "after kill -9 and a restart the pending http_get never finished"
sleep 0.5
[ "$(lines '"customer":"c-crash"')" = 1 ] || fail "the journey whose http_get survived kill -9 sent $(lines '"customer":"c-crash"') messages, expected 1"
grep -F '"customer":"c-crash"' "$dir/outbox.ndjson" | grep -F 'status 200 {\"id\":\"m3\"}' >/dev/null ||
  fail "after kill -9 the journey did not get the answer of the request asked again: $(grep -F c-crash "$dir/outbox.ndjson")"
echo "$NAME: refused: $refusal"
kill_server -TERM
finish
