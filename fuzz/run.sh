#!/bin/sh
# Runs libFuzzer targets for a while each, from their committed seeds.
#   fuzz/run.sh BUILD_DIR SECONDS NAME...
# First every file of fuzz/regressions/NAME/ is run (each once crashed and
# was fixed); then the target fuzzes for SECONDS with fuzz/corpus/NAME/ as
# seeds (new inputs go to BUILD_DIR/corpus/NAME/, a crash to
# BUILD_DIR/crashes/NAME/). One summary line per target; exit 1 on a crash.
build=$1
seconds=$2
shift 2
[ -n "$build" ] && [ -n "$seconds" ] || { echo "usage: fuzz/run.sh BUILD SECONDS NAME..." >&2; exit 2; }
failed=""
# the targets' throw-away stores go under $TMPDIR: one directory for this
# run, removed at its end, so fuzzing leaves nothing in /tmp
fuzz_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tend-fuzz-run-XXXXXX")
export TMPDIR="$fuzz_tmp"
trap 'rm -rf "$fuzz_tmp"' EXIT
for name in "$@"; do
  bin=$build/fuzz_$name
  mkdir -p "$build/corpus/$name" "$build/crashes/$name" "$build/logs"
  log=$build/logs/$name.log
  set -- fuzz/regressions/"$name"/*
  if [ -e "$1" ]; then
    if ! "$bin" -runs=1 "$@" >"$log" 2>&1; then
      echo "fuzz $name: FAIL: a regression input crashes again (see $log)"
      failed="$failed $name"
      continue
    fi
  fi
  dict=""
  [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
  # -timeout: one input taking 10 s is a finding (a hang), not patience
  # -detect_leaks=0: Lua and SQLite free lazily, so the per-input leak check
  # would scan the heap after nearly every input; leaks are still checked at
  # exit here, and per input by the ASan replay in `make test`
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -detect_leaks=0 \
         -artifact_prefix="$build/crashes/$name/" $dict "$build/corpus/$name" "fuzz/corpus/$name" \
         >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=$(ls "$build/crashes/$name" 2>/dev/null | wc -l)
  corpus=$(ls "$build/corpus/$name" 2>/dev/null | wc -l)
  if [ "$rc" != 0 ]; then
    echo "fuzz $name: FAIL after ${runs:-?} executions: exit $rc, inputs in $build/crashes/$name/ (log $log):"
    grep -E 'ERROR|SUMMARY|invariant broken|runtime error' "$log" | head -n 5 | sed 's/^/    /'
    failed="$failed $name"
  else
    echo "fuzz $name: ok, ${runs:-?} executions in ${seconds} s, corpus $corpus new + $(ls "fuzz/corpus/$name" | wc -l) seeds, $crashes crash files"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed"
  exit 1
fi
