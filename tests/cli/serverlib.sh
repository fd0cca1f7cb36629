# serverlib.sh — shared by the CLI tests that run `tend run` against the mock provider
# (http_get_test.sh, crash_test.sh); sourced, not run. Every wait is bounded.
# The sourcing test sets NAME (for messages) and defines
#   write_config PORT    writes $dir/tend.lua for tend listening on PORT
# and gets: $tmp (removed at exit), $dir (the script directory), fail, die,
# start_server / kill_server (pid, port, url), start_mock ARGS... (mock_pid,
# mock_port, mock_url), req METHOD PATH [curl options] (code, body, took).
# KEEP_TMP=1 keeps $tmp (the store, logs, what was posted) for a look.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
TEND_BUILD=${TEND_BUILD:-build/release}
case $TEND_BUILD in /*) ;; *) TEND_BUILD=$(pwd)/$TEND_BUILD ;; esac
[ -x "$TEND" ] || { echo "$NAME: TEND=$TEND is not an executable" >&2; exit 1; }
if ! command -v curl >/dev/null 2>&1; then
  echo "$NAME: SKIP: curl is not installed on this machine (nothing was tested)"
  exit 0
fi
[ -x "$TEND_BUILD/mock_provider" ] || { echo "$NAME: no $TEND_BUILD/mock_provider (make all)" >&2; exit 1; }

tmp=$(mktemp -d) || { echo "$NAME: mktemp -d failed" >&2; exit 1; }
dir=$tmp/shop
mkdir "$dir"
pid="" mock_pid=""
: >"$tmp/server.err"
cleanup() {
  for p in $pid $mock_pid; do
    if kill -0 "$p" 2>/dev/null; then
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  [ -n "$KEEP_TMP" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "$NAME: FAIL: $*" >&2; failures=$((failures + 1)); }
die() {
  fail "$*"
  echo "--- server stderr:" >&2
  tail -n 40 "$tmp/server.err" >&2
  exit 1
}

# Below Linux's ephemeral range (32768-60999 by default): crash_test starts
# tend again on the same port after each kill, and a port that an outgoing
# connection (tend to the mock, curl to tend) took as its local port stays
# taken for a minute in TIME_WAIT, so that restart would fail.
random_port() {
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  echo $((20000 + (r + $$ * 7 + ${1:-0} * 211) % 12000))
}

# config_head PORT: the first settings of every test's tend.lua.
config_head() {
  printf '  listen = "127.0.0.1:%s",\n  timezone = "Asia/Shanghai",\n' "$1"
  printf '  quiet_hours = false,\n  unknown_customers = "create",\n'
}

# start_server [PORT]: `tend run $dir` on PORT, or on a free port, and waits
# (15 s at most) for /healthz.
start_server() {
  attempt=0
  while [ $attempt -lt 8 ]; do
    attempt=$((attempt + 1))
    port=${1:-$(random_port $attempt)}
    write_config "$port"
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
      die "tend run did not answer /healthz on $url within 15 s"
    fi
    wait "$pid" 2>/dev/null
    pid=""
    if [ -z "$1" ] && tail -n +$((mark + 1)) "$tmp/server.err" | grep 'cannot listen' >/dev/null; then
      continue
    fi
    die "tend run exited at start (not a port problem)"
  done
  die "tend run found no free port in 8 tries"
}

kill_server() {   # kill_server [SIGNAL]: default -9
  if [ -n "$pid" ]; then
    kill "${1:--9}" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  pid=""
}

# start_mock ARGS...: the mock provider on a port of its choosing.
start_mock() {
  "$TEND_BUILD/mock_provider" --port 0 --quiet --max-seconds 900 "$@" >"$tmp/mock.out" 2>"$tmp/mock.err" &
  mock_pid=$!
  i=0
  mock_port=""
  while [ $i -lt 100 ] && [ -z "$mock_port" ]; do
    mock_port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$tmp/mock.out" 2>/dev/null)
    [ -n "$mock_port" ] || sleep 0.1
    i=$((i + 1))
  done
  [ -n "$mock_port" ] || die "the mock provider did not say its port within 10 s: $(cat "$tmp/mock.err")"
  mock_url=http://127.0.0.1:$mock_port
}

# mock_stat NAME: a number from the mock's /_stats.
mock_stat() {
  curl -s --max-time 5 "$mock_url/_stats" | sed -n "s/.*\"$1\":\\([0-9][0-9]*\\).*/\\1/p"
}

# req METHOD PATH [curl options]: with the token; sets code, body and took (seconds).
req() {
  m=$1 p=$2
  shift 2
  out=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code} %{time_total}' -X "$m" \
             -H 'Authorization: Bearer secret' "$@" "$url$p")
  code=${out% *} took=${out#* }
  body=$(cat "$tmp/body" 2>/dev/null)
}

sanitizer_check() {
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then
    fail "sanitizer output on tend run's stderr:"
    sed 's/^/    /' "$tmp/server.err" >&2
  fi
}

finish() {
  sanitizer_check
  if [ "$failures" -gt 0 ]; then
    echo "--- server stderr:" >&2
    tail -n 40 "$tmp/server.err" >&2
    echo "$NAME: $failures failure(s)" >&2
    exit 1
  fi
  echo "$NAME: ok"
}
