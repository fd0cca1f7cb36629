#!/bin/sh
# import_test — `tend import` end to end: CSV with good and broken rows,
# quoting, tags and attrs; re-import; NDJSON; stdin; a bad header.
#   TEND=path/to/tend sh tests/cli/import_test.sh
# What the store holds is checked with `tend segment` only (no sqlite3 on a
# fresh machine): segments.lua declares one segment per fact to check.
: "${TEND:?set TEND to the tend binary}"
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
cd "$tmp" || exit 1

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run EXPECTED_STATUS ARGS...: runs tend, output in out.txt and err.txt.
run() {
    want=$1
    shift
    "$TEND" "$@" >out.txt 2>err.txt
    got=$?
    [ "$got" = "$want" ] || fail "tend $*: exit $got, expected $want; stderr: $(cat err.txt)"
    if grep -q -e 'Sanitizer' -e 'runtime error:' err.txt; then
        fail "tend $*: sanitizer report:"
        cat err.txt >&2
    fi
}

# stdout_is TEXT: out.txt is exactly one line, TEXT.
stdout_is() {
    [ "$(cat out.txt)" = "$1" ] || fail "stdout: expected '$1', got '$(cat out.txt)'"
}

# stderr_has TEXT: a line of err.txt starts with TEXT.
stderr_has() {
    awk -v p="$1" 'index($0, p) == 1 { f = 1 } END { exit !f }' err.txt ||
        fail "stderr lacks '$1'; it was: $(cat err.txt)"
}

# count SEGMENT N: `tend segment` says the segment has N customers.
count() {
    "$TEND" segment --dir "$tmp" --sample 0 "$1" >seg.txt 2>&1 || fail "tend segment $1: $(cat seg.txt)"
    first=$(sed -n 1p seg.txt)
    case $first in
        "$2 customers "*|"$2 customer "*) ;;
        *) fail "segment $1: expected $2 customers, got '$first'" ;;
    esac
}

cat >segments.lua <<'EOF'
segment "all"    { where = {} }
segment "vip"    { where = { tags = has("vip") } }
segment "gold"   { where = { tags = has("gold") } }
segment "baby"   { where = { ["attrs.baby_birthday"] = "2025-06-01" } }
segment "leap"   { where = { birthday = "2000-02-29", timezone = "Europe/London" } }
segment "quoted" { where = { name = 'Wang, "Fang"', ["attrs.note"] = "first line\nsecond line" } }
segment "spent"  { where = { total_spent = at_least(299.5), orders_count = 3 } }
segment "tier"   { where = { ["attrs.tier"] = 2 } }
EOF

# --- CSV: three good rows, six broken ones ----------------------------------
# Line 8 opens a quoted cell holding a comma, a doubled quote and a newline,
# so the rows after it start one line later than their record number.
cat >customers.csv <<'EOF'
id,name,phone,timezone,birthday,orders_count,total_spent,tags,attrs.baby_birthday,attrs.note
c1,Lingling,+8613800000001,Asia/Shanghai,1990-05-01,3,299.5,vip|gold,2025-06-01,
c2,Bad Zone,,Mars/Base,,,,,,
c3,Bad Date,,Asia/Shanghai,2026-02-30,,,,,
c4,Negative,,Asia/Shanghai,,-1,,,,
c5,Short,,Asia/Shanghai
,No Id,,Asia/Shanghai,,,,,,
c6,"Wang, ""Fang""",,Europe/London,2000-02-29,,, vip ; ,,"first line
second line"
c7,Plain,,,,,,,,
c8,Later Bad Zone,,Nowhere/City,,,,,,
c9,"Two
Lines",,,,,,,,
EOF

run 1 import --dir "$tmp" customers.csv
stdout_is "imported 3, updated 0, rejected 7"
stderr_has "customers.csv:3: field 'timezone': 'Mars/Base' is not a zone in the tz database"
stderr_has "customers.csv:4: field 'birthday'"
stderr_has "customers.csv:5: field 'orders_count': cannot be negative"
stderr_has "customers.csv:6: row has 4 cells, the header has 10"
stderr_has "customers.csv:7: field 'id' is empty"
stderr_has "customers.csv:11: field 'timezone': 'Nowhere/City' is not a zone in the tz database"
stderr_has "customers.csv:12: field 'name': contains a line break (byte 4)"
[ "$(wc -l <err.txt)" -eq 7 ] || fail "expected 7 lines on stderr, got: $(cat err.txt)"

count all 3
count vip 2
count gold 1
count baby 1
count leap 1
count quoted 1
count spent 1

# The same file again: every good row is an update now.
run 1 import --dir "$tmp" customers.csv
stdout_is "imported 0, updated 3, rejected 7"
count all 3
count vip 2

# --- NDJSON: a malformed line, an unknown field ---------------------------
cat >more.ndjson <<'EOF'
{"id":"n1","name":"Ndjson One","tags":["vip"],"attrs":{"tier":2}}

{"id":"n2","name": }
{"id":"n3","favourite":"tea"}
{"id":"n4","city":"Hangzhou"}
EOF

run 1 import --dir "$tmp" more.ndjson
stdout_is "imported 2, updated 0, rejected 2"
stderr_has "more.ndjson:3: invalid JSON at byte"
stderr_has "more.ndjson:4: unknown field 'favourite'"
count all 5
count vip 3
count tier 1

# --- a clean file exits 0: BOM, CRLF, read from stdin -----------------------
printf '\357\273\277id,name,tags\r\nz1,Zed,vip\r\n' >clean.csv
"$TEND" import --dir "$tmp" - <clean.csv >out.txt 2>err.txt
status=$?
[ "$status" = 0 ] || fail "import from stdin: exit status $status; $(cat err.txt)"
stdout_is "imported 1, updated 0, rejected 0"
count all 6
count vip 4

# NDJSON from stdin is told apart by its first character.
printf '{"id":"z2"}\n' | "$TEND" import --dir "$tmp" - >out.txt 2>err.txt ||
    fail "NDJSON from stdin: $(cat err.txt)"
stdout_is "imported 1, updated 0, rejected 0"

# --- a bad header rejects the whole file ----------------------------------
printf 'id,name,shoe_size\nh1,Heel,42\n' >unknown.csv
run 1 import --dir "$tmp" unknown.csv
stdout_is "imported 0, updated 0, rejected 0"
stderr_has "unknown.csv:1: unknown column 'shoe_size'"

printf 'id,lifecycle\nh2,active\n' >computed.csv
run 1 import --dir "$tmp" computed.csv
stderr_has "computed.csv:1: column 'lifecycle' is computed by tend"

count all 7

# --- a file that is not there ---------------------------------------------
run 1 import --dir "$tmp" missing.csv
stderr_has "tend import: missing.csv:"

if [ "$failures" -ne 0 ]; then
    echo "import_test: $failures failure(s)" >&2
    exit 1
fi
echo "import_test: ok"
