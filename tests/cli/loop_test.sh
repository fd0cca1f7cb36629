#!/bin/sh
# The loop closed over HTTP against `tend run`: a real provider (the mock)
# calls back delivered/opened receipts that wake wait_receipt; PATCH closes
# staff tasks (404 unknown, 409 closed, 400 bad status) and wakes wait_task;
# 5,000 tasks page by id with no task lost or repeated; receipts for unknown
# messages are refused one by one; the customer's timeline tells the story.
TEND=${TEND:-bin/tend}
BUILD=${TEND_BUILD:-build/release}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
PY=/usr/bin/python3
tmp=$(mktemp -d) || exit 1
pid="" mock=""
cleanup() {
  for p in $pid $mock; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
failures=0
fail() { echo "loop_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() { fail "$*"; [ -f "$tmp/server.err" ] && tail -n 30 "$tmp/server.err" >&2; exit 1; }

# a port chosen from the pid can be taken by another test running at the same
# time: on "cannot listen" the mock and the server start again on another one
attempt=0
while :; do
port=$((30000 + ($$ * 17 + attempt * 7919) % 25000))
"$BUILD/mock_provider" --port 0 --fail-rate 0 --receipts "http://127.0.0.1:$port/v1/receipts" \
  --receipt-token secret --open-rate 0.5 --seed 7 --reject REJECT-ME --quiet >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock=$!
i=0; while ! grep -q '^PORT' "$tmp/mock.out" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
mport=$(sed -n 's/^PORT //p' "$tmp/mock.out")
[ -n "$mport" ] || die "the mock provider did not start"

dir=$tmp/shop
mkdir -p "$dir"
cat >"$dir/tend.lua" <<EOF
return {
  listen = "127.0.0.1:$port",
  quiet_hours = false,
  channels = {
    sms = { type = "http", url = "http://127.0.0.1:$mport/sms", address = "phone" },
    call = { type = "task" },
    wechat = { type = "http", url = "http://127.0.0.1:$mport/wechat", address = "attrs.openid" },
  },
}
EOF
cat >"$dir/care.lua" <<'EOF'
template "hello" { category = "transactional", sms = "Hello {{ name }}" }
journey "hello" {
  on = "signup",
  run = function(c)
    local r = send("sms", c, "hello")
    if wait_receipt(r, "delivered", { timeout = hours(1) }) then c:tag("delivered") end
  end,
}
template "notice" { category = "transactional", wechat = "REJECT-ME {{ name }}", sms = "Notice {{ name }}" }
journey "notice" {
  on = "notice",
  run = function(c)
    local r = send({ "wechat", "sms" }, c, "notice", {}, { fallback_after = hours(1) })
    c:tag("took_" .. (r.channel or r.status))
  end,
}
journey "call" {
  on = "stuck",
  run = function(c)
    local t = task(c, { kind = "call", note = "parcel stuck", due = days(1) })
    local done = wait_task(t, { timeout = days(3) })
    if done then c:tag("called_" .. done.status) end
  end,
}
EOF
: >"$tmp/server.err"
TEND_API_TOKEN=secret "$TEND" run "$dir" >"$tmp/server.out" 2>>"$tmp/server.err" &
pid=$!
url=http://127.0.0.1:$port
i=0
while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do
  [ "$(curl -s --max-time 2 "$url/healthz")" = '{"ok":true}' ] && break
  sleep 0.1; i=$((i + 1))
done
kill -0 "$pid" 2>/dev/null && break
if [ $attempt -lt 5 ] && grep -q "cannot listen" "$tmp/server.err"; then
  for p in $pid $mock; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  pid="" mock="" attempt=$((attempt + 1))
  continue
fi
die "tend run did not start (port $port)"
done

req() {   # req METHOD PATH [curl args]: sets code, body
  m=$1 p=$2; shift 2
  code=$(curl -s --max-time 30 -o "$tmp/body" -w '%{http_code}' -X "$m" -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body")
}
json() { printf '%s' "$body" | $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- receipts from the provider wake the journeys ------------------------------
: >"$tmp/customers.ndjson"
n=0; while [ $n -lt 50 ]; do
  n=$((n + 1))
  printf '{"type":"signup","customer":"c%d","id":"s%d"}\n' $n $n >>"$tmp/signups.ndjson"
  req PUT /v1/customers/c$n -d "{\"name\":\"C$n\",\"phone\":\"+86138000000$n\"}"
done
req POST /v1/events --data-binary @"$tmp/signups.ndjson"
[ "$code" = 202 ] || die "POST signups: $code $body"
i=0
while [ $i -lt 100 ]; do
  req GET "/v1/customers/c50"
  case $body in *'"delivered"'*) break ;; esac
  sleep 0.1; i=$((i + 1))
done
tagged=0
n=0; while [ $n -lt 50 ]; do n=$((n + 1)); req GET /v1/customers/c$n; case $body in *'"delivered"'*) tagged=$((tagged + 1)) ;; esac; done
[ $tagged = 50 ] || fail "wait_receipt woke $tagged of 50 journeys on the provider's delivered receipts"
req GET "/v1/customers/c1/timeline"
[ "$code" = 200 ] || fail "timeline: $code"
[ "$(json "[x['kind'] for x in d['entries'] if x['kind']=='message' and 'delivered_at' in x].__len__()")" = 1 ] \
  || fail "the timeline's message has no delivered_at: $body"
[ "$(json "sum(1 for x in d['entries'] if x['kind']=='event' and x['type']=='message.delivered')")" = 1 ] \
  || fail "the timeline has no message.delivered event"
# receipts refused: unknown message (404 alone, a line in a batch), bad field
req POST /v1/receipts -d '{"message": 99999, "status": "delivered"}'
[ "$code" = 404 ] && case $body in *"no message 99999"*) true ;; *) false ;; esac || fail "receipt for an unknown message: $code $body"
req POST /v1/receipts -d '{"message": 1, "status": "lost"}'
[ "$code" = 400 ] && case $body in *"field 'status'"*) true ;; *) false ;; esac || fail "receipt with a bad status: $code $body"
printf '{"message":1,"status":"clicked","id":"k1"}\n{"message":99999,"status":"opened"}\nnot json\n' >"$tmp/batch"
req POST /v1/receipts --data-binary @"$tmp/batch"
[ "$code" = 202 ] || fail "a receipt batch: $code $body"
[ "$(json "(d['accepted'], d['rejected'], [e['line'] for e in d['errors']])")" = "(1, 2, [2, 3])" ] || fail "receipt batch report: $body"
req POST /v1/receipts --data-binary @"$tmp/batch"
[ "$(json "(d['accepted'], d['duplicates'])")" = "(0, 1)" ] || fail "a repeated receipt id is a duplicate: $body"

# --- fallback: the provider refuses the WeChat message (dead) -> SMS at once ------
req PUT /v1/customers/w1 -d '{"name":"W","phone":"+8613900000001","attrs":{"openid":"o-1"}}'
req POST /v1/events -d '{"type":"notice","customer":"w1"}'
i=0; while [ $i -lt 100 ]; do req GET /v1/customers/w1; case $body in *took_*) break ;; esac; sleep 0.1; i=$((i + 1)); done
case $body in *took_sms*) ;; *) fail "a dead WeChat message did not fall back to SMS: $body" ;; esac
req GET "/v1/customers/w1/timeline"
[ "$(json "[(x['channel'], x['status']) for x in d['entries'] if x['kind']=='message'][::-1]")" = "[('wechat', 'dead'), ('sms', 'sent')]" ] \
  || fail "the timeline's attempts: $body"

# --- tasks: PATCH, wait_task, paging -------------------------------------------
req PUT /v1/customers/s1 -d '{"name":"S"}'
req POST /v1/events -d '{"type":"stuck","customer":"s1"}'
i=0; while [ $i -lt 50 ]; do req GET "/v1/tasks?customer=s1"; case $body in *'"id"'*) break ;; esac; sleep 0.1; i=$((i + 1)); done
tid=$(json "d['tasks'][0]['id']")
req PATCH /v1/tasks/$tid -d '{"status":"finished"}'
[ "$code" = 400 ] || fail "PATCH with a bad status: $code $body"
req PATCH /v1/tasks/$tid -d '{"status":"done","outcome":"reached, parcel found","colour":1}'
[ "$code" = 400 ] && case $body in *"unknown field 'colour'"*) true ;; *) false ;; esac || fail "PATCH with an unknown field: $code $body"
req PATCH /v1/tasks/$tid -d '{"status":"done","outcome":"reached, parcel found"}'
[ "$code" = 200 ] && [ "$(json "(d['status'], d['outcome'])")" = "('done', 'reached, parcel found')" ] || fail "PATCH done: $code $body"
req PATCH /v1/tasks/$tid -d '{"status":"failed"}'
[ "$code" = 409 ] || fail "PATCH of a closed task: $code $body"
req PATCH /v1/tasks/424242 -d '{"status":"done"}'
[ "$code" = 404 ] || fail "PATCH of an unknown task: $code $body"
i=0; while [ $i -lt 50 ]; do req GET /v1/customers/s1; case $body in *called_done*) break ;; esac; sleep 0.1; i=$((i + 1)); done
case $body in *called_done*) ;; *) fail "wait_task did not wake on PATCH: $body" ;; esac

# 5,000 tasks, paged by id
$PY - >"$tmp/stuck.ndjson" <<'EOF'
for i in range(5000):
    print('{"type":"stuck","customer":"p%04d","id":"stuck-%d"}' % (i, i))
EOF
req POST /v1/events --data-binary @"$tmp/stuck.ndjson"
[ "$code" = 202 ] || die "POST 5,000 events: $code $body"
i=0
while [ $i -lt 300 ]; do
  req GET "/v1/tasks/summary"
  [ "$(json "sum(a['open'] for a in d['assignees'])")" = 5000 ] && break
  sleep 0.1; i=$((i + 1))
done
after=0 pages=0
: >"$tmp/ids"
while [ $pages -lt 20 ]; do
  req GET "/v1/tasks?limit=700&after=$after"
  [ "$code" = 200 ] || { fail "page after $after: $code $body"; break; }
  printf '%s' "$body" | $PY -c 'import json,sys; [print(t["id"]) for t in json.load(sys.stdin)["tasks"]]' >>"$tmp/ids"
  pages=$((pages + 1))
  next=$(json "d['next']")
  [ "$next" = None ] && break
  after=$next
done
[ "$(wc -l <"$tmp/ids")" = 5000 ] || fail "paging saw $(wc -l <"$tmp/ids") open tasks, not 5000"
[ "$(sort -u "$tmp/ids" | wc -l)" = 5000 ] || fail "paging repeated tasks"
[ $pages = 8 ] || fail "5,000 tasks at 700 a page took $pages pages, not 8"
req GET "/v1/tasks?limit=0"
[ "$code" = 400 ] || fail "limit=0: $code"
"$TEND" tasks --dir "$dir" --limit 3 >"$tmp/cli" 2>&1 || fail "tend tasks: $(cat "$tmp/cli")"
grep -q "3 tasks; more with --after" "$tmp/cli" || fail "tend tasks paging: $(cat "$tmp/cli")"

kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then fail "sanitizer output"; cat "$tmp/server.err" >&2; fi
[ $failures = 0 ] || { echo "loop_test: $failures failure(s)" >&2; exit 1; }
echo "loop_test: ok"
