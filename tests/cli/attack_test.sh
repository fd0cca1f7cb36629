#!/bin/sh
# Hostile journeys under `tend run`: for each case, an event starts a journey
# that attacks the sandbox (a looping __tostring that sends, string.rep,
# table.move, backtracking patterns, plain find, a 20 MB load, a journey
# that starts itself, 1e5 emits, rawset of a primitive). Checks: the process
# lives (/healthz answers), the instance fails with an error naming
# hostile.lua:LINE and the limit, nothing it did after failing is delivered,
# the honest journey of the same file still runs, a restart does not run the
# failed work again, and each case's wall time is bounded (20 s, against
# hangs, not a speed check: under ASan on a loaded 2-core machine a case
# took over 5 s; the figures are printed).
#   TEND=bin/tend sh tests/cli/attack_test.sh
# Needs curl; skips (exit 0) without it. Every wait is bounded.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "attack_test: TEND=$TEND is not an executable" >&2; exit 1; }
if ! command -v curl >/dev/null 2>&1; then
  echo "attack_test: SKIP: curl is not installed on this machine (nothing was tested)"
  exit 0
fi

tmp=$(mktemp -d) || { echo "attack_test: mktemp -d failed" >&2; exit 1; }
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
fail() { echo "attack_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() {
  fail "$*"
  [ -f "$tmp/server.err" ] && { echo "--- server stderr:" >&2; tail -n 40 "$tmp/server.err" >&2; }
  exit 1
}

dir=$tmp/shop
mkdir "$dir"
# One file: journeys of a file share its env, so the rawset case would break
# "good" for every later run if primitives could be replaced.
cat >"$dir/hostile.lua" <<'EOF'
template "note" { category = "transactional", sms = "note {{what}}" }

journey "good" { on = "good", run = function(c, ev) send("sms", c, "note", { what = "good " .. ev.n }) end }

journey "tostring" { on = "a.tostring", run = function(c)
  error(setmetatable({}, { __tostring = function() send("sms", c, "note", { what = "leak" }) while true do end end }))
end }

journey "rep" { on = "a.rep", run = function(c)
  local e = string.rep("", 2^31)
  local x = string.rep("x", 2^31)
end }

journey "move" { on = "a.move", run = function(c)
  table.move({}, 1, 3e8, 1)
end }

journey "find" { on = "a.find", run = function(c)
  (("a"):rep(300)):find(".-.-.-b")
end }

journey "gsub" { on = "a.gsub", run = function(c)
  (("a"):rep(2000)):gsub("a*a*a*a*b", "")
end }

journey "plain" { on = "a.plain", run = function(c)
  local hay, needle = ("a"):rep(2e6), ("a"):rep(2e4 - 1) .. "b"
  while true do hay:find(needle, 1, true) end
end }

journey "load" { on = "a.load", run = function(c)
  load(("x = 1\n"):rep(5e6))
end }

journey "self" { on = "a.self", run = function(c)
  start("self", c)
end }

journey "emit" { on = "a.emit", run = function(c)
  for i = 1, 1e5 do emit{ type = "noise", customer = c.id, n = i } end
end }

journey "rawset" { on = "a.rawset", run = function(c)
  rawset(_ENV, "send", nil)
end }

journey "spin" { on = "a.spin", run = function(c)
  while true do end
end }
EOF
: >"$tmp/server.err"

sanitizer_check() {
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then
    fail "sanitizer output on tend run's stderr:"
    sed 's/^/    /' "$tmp/server.err" >&2
  fi
}

random_port() {
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  echo $((30000 + (r + $$ * 13 + ${1:-0} * 307) % 25000))
}

start_server() {
  attempt=0
  while [ $attempt -lt 8 ]; do
    attempt=$((attempt + 1))
    port=$(random_port $attempt)
    cat >"$dir/tend.lua" <<EOF
return {
  listen = "127.0.0.1:$port",
  quiet_hours = false,
  caps = false,
  channels = { sms = { type = "file" } },
  limits = { instructions = 50000000, chain = 10 },
}
EOF
    url=http://127.0.0.1:$port
    mark=$(wc -l <"$tmp/server.err")
    TEND_API_TOKEN=secret "$TEND" run "$dir" >>"$tmp/server.out" 2>>"$tmp/server.err" &
    pid=$!
    i=0
    while [ $i -lt 150 ]; do
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
      continue
    fi
    die "tend run exited at start (not a port problem)"
  done
  die "tend run found no free port in 8 tries"
}

stop_server() {
  kill -TERM "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    fail "tend run did not stop within 10 s of SIGTERM"
    kill -9 "$pid"
  fi
  wait "$pid" 2>/dev/null
  pid=""
}

post() {   # post JSON: one event, with the token
  curl -s --max-time 30 -o "$tmp/body" -w '%{http_code}' -X POST -H 'Authorization: Bearer secret' \
       --data "$1" "$url/v1/events" >"$tmp/code" 2>/dev/null
}

healthy() {
  [ "$(curl -s --max-time 5 "$url/healthz" 2>/dev/null)" = '{"ok":true}' ]
}

failed_lines() {   # failed_lines JOURNEY: log lines of its failed instances
  grep -c "of '$1' failed:" "$tmp/server.err"
}

outbox_lines() {
  if [ -f "$dir/outbox.ndjson" ]; then grep -c -F "$1" "$dir/outbox.ndjson"; else echo 0; fi
}

wait_outbox() {   # wait_outbox TEXT: up to 10 s for a line with TEXT
  i=0
  while [ $i -lt 100 ]; do
    [ "$(outbox_lines "$1")" -ge 1 ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

good_n=0
good() {   # the honest journey of the same file still runs
  good_n=$((good_n + 1))
  post "{\"type\":\"good\",\"customer\":\"c1\",\"n\":$good_n}"
  wait_outbox "note good $good_n" || fail "$1: the honest journey did not run after it (no 'note good $good_n')"
}

# attack JOURNEY TYPE NEEDLE: posts the event, waits for the instance's
# failure in the log, checks it names hostile.lua:LINE and NEEDLE.
figures=""
attack() {
  journey=$1 type=$2 needle=$3
  before=$(failed_lines "$journey")
  t0=$(now_ms)
  post "{\"type\":\"$type\",\"customer\":\"c1\"}"
  i=0
  while [ "$(failed_lines "$journey")" -le "$before" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
  t1=$(now_ms)
  ms=$((t1 - t0))
  figures="$figures $journey=${ms}ms"
  line=$(grep "of '$journey' failed:" "$tmp/server.err" | tail -n 1)
  [ -n "$line" ] || { fail "$journey: no failed instance in the log within $ms ms"; return; }
  case $line in *"hostile.lua:"[0-9]*) ;; *) fail "$journey: the error does not name hostile.lua:LINE: $line" ;; esac
  case $line in *"$needle"*) ;; *) fail "$journey: the error does not say '$needle': $line" ;; esac
  [ $ms -lt 20000 ] || fail "$journey: took $ms ms (bound 20000)"
  healthy || fail "$journey: /healthz does not answer after the attack"
  good "$journey"
}

start_server
good "start"

attack tostring a.tostring "(error object: table)"
attack rep a.rep "resulting string too large"
attack move a.move "instruction budget exceeded"
attack find a.find "instruction budget exceeded"
attack gsub a.gsub "instruction budget exceeded"
attack plain a.plain "instruction budget exceeded"
attack load a.load "load limit"
attack self a.self "chain limit reached"
attack emit a.emit "more than 100 emits"
attack spin a.spin "instruction budget exceeded"
[ "$(outbox_lines "note leak")" = 0 ] || fail "a failed instance's __tostring sent a message"

# rawset(_ENV, "send", nil) is refused; send still works for the file's journeys
post '{"type":"a.rawset","customer":"c1"}'
i=0
while [ "$(failed_lines rawset)" = 0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
grep "of 'rawset' failed:" "$tmp/server.err" | grep "cannot assign to 'send'" >/dev/null ||
  fail "rawset(_ENV, 'send', nil): no clear refusal in the log"
good "rawset"

# --- a restart replays none of it ---------------------------------------------------
total_failed=$(grep -c "failed:" "$tmp/server.err")
stop_server
start_server
sleep 0.5
healthy || fail "after the restart /healthz does not answer"
after=$(grep -c "failed:" "$tmp/server.err")
[ "$after" = "$total_failed" ] || fail "the restart ran failed work again ($total_failed failure lines before, $after after)"
good "restart"
stop_server
sanitizer_check

echo "attack_test: wall times (event posted to failure logged):$figures"
if [ "$failures" -gt 0 ]; then
  echo "--- server stderr:" >&2
  tail -n 40 "$tmp/server.err" >&2
  echo "attack_test: $failures failure(s)" >&2
  exit 1
fi
echo "attack_test: ok"
