# Shared by the CLI tests that source it (not a test itself):
#   NAME=x_test; . "$(dirname "$0")/lib.sh"
# Resolves $TEND (absolute) and $ROOT (the project), makes $tmp (removed at
# exit) and enters it. fail MESSAGE counts a failure; run ARGS runs tend
# with ARGS into $out, $err, $rc (sanitizer output on stderr is a failure);
# status N WHAT, has TEXT NEEDLE WHAT, hasnt TEXT NEEDLE WHAT check them;
# finish prints the verdict and exits.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
ROOT=${TEND_ROOT:-$(pwd)}
[ -x "$TEND" ] || { echo "$NAME: TEND=$TEND is not an executable" >&2; exit 1; }

tmp=$(mktemp -d) || { echo "$NAME: mktemp -d failed" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
cd "$tmp" || exit 1

failures=0
fail() { echo "$NAME: FAIL: $*" >&2; failures=$((failures + 1)); }

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
has() {
  case $1 in *"$2"*) ;; *) fail "$3: expected '$2' in:
$1" ;; esac
}
hasnt() {
  case $1 in *"$2"*) fail "$3: did not expect '$2' in:
$1" ;; esac
}
finish() {
  if [ "$failures" -gt 0 ]; then
    echo "$NAME: $failures failure(s)" >&2
    exit 1
  fi
  echo "$NAME: ok"
  exit 0
}
