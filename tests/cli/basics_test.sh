#!/bin/sh
# The command line itself: --help, --version, misuse, and `tend test`'s
# output and exit statuses.
#   TEND=bin/tend sh tests/cli/basics_test.sh
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "basics_test: TEND=$TEND is not an executable" >&2; exit 1; }

tmp=$(mktemp -d) || { echo "basics_test: mktemp -d failed" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
cd "$tmp" || exit 1

failures=0
fail() { echo "basics_test: FAIL: $*" >&2; failures=$((failures + 1)); }

# run ARGS...: tend ARGS → $out, $err, $rc; sanitizer reports are failures.
run() {
  "$TEND" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/err" >/dev/null; then
    fail "tend $*: sanitizer output on stderr:
$err"
  fi
}
status() {
  [ "$rc" = "$1" ] || fail "$2: expected exit status $1, got $rc
stdout: $out
stderr: $err"
}
has() {   # has VAR_CONTENT TEXT WHAT
  case $1 in *"$2"*) ;; *) fail "$3: expected '$2' in:
$1" ;; esac
}

# --- --help, --version, misuse ----------------------------------------------------
run --help
status 0 "tend --help"
for c in run test check import ingest segment simulate status; do
  printf '%s\n' "$out" | grep -E "^  $c( |$)" >/dev/null || fail "tend --help does not list the command '$c':
$out"
done

run --version
status 0 "tend --version"
printf '%s\n' "$out" | grep -E '^tend [0-9]+\.[0-9]+\.[0-9]+' >/dev/null ||
  fail "tend --version: expected 'tend X.Y.Z', got '$out'"

run frobnicate
status 2 "an unknown command"
has "$err" "frobnicate" "an unknown command (names it)"
has "$err" "usage: tend" "an unknown command (prints usage)"

run
status 2 "no command at all"
has "$err" "usage: tend" "no command at all (prints usage)"

run check --no-such-option
status 2 "an unknown option"

# --- tend test --------------------------------------------------------------------
mkdir failing passing
cat >failing/sum_test.lua <<'EOF'
local t = require "tend.test"

t.case("arithmetic is hard", function()
  local total = 2 + 2
  t.eq(total, 5)
end)
EOF
run test failing
status 1 "tend test on a failing file"
has "$out" "not ok 1 - arithmetic is hard" "tend test on a failing file"
has "$out" "sum_test.lua:5:" "tend test on a failing file (file:line of the assertion)"
printf '%s\n' "$out" | grep 'sum_test.lua:5:' | grep 'expected 5' | grep 'got 4' >/dev/null ||
  fail "tend test on a failing file: the failure must say 'expected 5' and 'got 4' at sum_test.lua:5; got:
$out"
has "$out" "0 passed, 1 failed" "tend test on a failing file (summary)"

cat >passing/sum_test.lua <<'EOF'
local t = require "tend.test"

t.case("arithmetic is easy", function()
  t.eq(2 + 2, 4)
  t.eq({ a = { 1, 2 } }, { a = { 1, 2 } })
end)
EOF
run test passing
status 0 "tend test on a passing file"
has "$out" "ok 1 - arithmetic is easy" "tend test on a passing file"
printf '%s\n' "$out" | tail -n 1 | grep -E '^1 passed, 0 failed$' >/dev/null ||
  fail "tend test on a passing file: the last line must be '1 passed, 0 failed'; got:
$out"

# a single file by path works as well, and both together sum up
run test passing/sum_test.lua failing
status 1 "tend test on a passing file and a failing directory"
has "$out" "1 passed, 1 failed" "tend test on both"

run test "$tmp/no/such/path"
status 2 "tend test on a missing path"

if [ "$failures" -gt 0 ]; then
  echo "basics_test: $failures failure(s)" >&2
  exit 1
fi
echo "basics_test: ok"
