#!/bin/sh
# Runs every test once against one build.
#   tests/run.sh BUILD_DIR TEND_BINARY
# Unit tests (cmocka), then the Lua tests (`tend test`), then the CLI
# end-to-end tests. Exits 1 if anything failed.
build=$1
tend=$2
[ -n "$build" ] && [ -n "$tend" ] || { echo "usage: tests/run.sh BUILD TEND" >&2; exit 2; }
case $tend in /*) ;; *) tend=$(pwd)/$tend ;; esac
case $build in /*) ;; *) build=$(pwd)/$build ;; esac

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
export TEND="$tend" TEND_BUILD="$build" TEND_ROOT="$(pwd)"

failed=""
echo "== unit tests ($build)"
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  case $t in *.d|*.o) continue ;; esac
  if ! "$t"; then failed="$failed $(basename "$t")"; fi
done

echo "== fuzz replays (fuzz/corpus and fuzz/regressions, no libFuzzer)"
# each target keeps its throw-away store under $TMPDIR: give them one
# directory for this pass and remove it after, so runs leave nothing in /tmp
fuzz_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tend-fuzz-replays-XXXXXX")
for t in "$build"/tests/fuzz_*_replay; do
  [ -x "$t" ] || continue
  name=${t##*/fuzz_}
  name=${name%_replay}
  set -- fuzz/corpus/"$name"/* fuzz/regressions/"$name"/*
  files=""
  for f in "$@"; do [ -f "$f" ] && files="$files $f"; done
  # shellcheck disable=SC2086 # file names are ours, without spaces
  if out=$(TMPDIR=$fuzz_tmp "$t" $files 2>&1); then echo "ok - fuzz $name: $out"; else
    echo "not ok - fuzz $name:"; echo "$out" | tail -n 20; failed="$failed fuzz-$name"; fi
done
rm -rf "$fuzz_tmp"

echo "== lua tests"
if ! "$tend" test tests/lua scripts examples; then failed="$failed lua-tests"; fi

echo "== cli tests"
for t in tests/cli/*_test.sh; do
  [ -f "$t" ] || continue
  if sh "$t"; then echo "ok - $t"; else echo "not ok - $t"; failed="$failed $(basename "$t")"; fi
done

if [ -n "$failed" ]; then
  echo "FAILED:$failed"
  exit 1
fi
echo "all tests passed ($build)"
