#!/bin/sh
# import_fresh_test — a first import (into a store without customers, from a
# file) is loaded without the customer indexes and the triggers that copy a
# customer's last_order_at into its tag rows, which it makes good at its end:
# a tag + last-order segment (read from the tag rows) counts right after it,
# a customer named twice in the file counts by its last row, and later
# imports (no longer first) keep the copies up to date through the triggers.
#   TEND=path/to/tend sh tests/cli/import_fresh_test.sh
NAME=import_fresh_test
. "$(dirname "$0")/lib.sh"

# import FILE EXPECTED_STDOUT
import() {
    run import --dir "$tmp" "$1"
    status 0 "tend import $1"
    [ "$out" = "$2" ] || fail "tend import $1: expected '$2', got '$out'"
}

# count SEGMENT N: `tend segment` says the segment has N customers.
count() {
    run segment --dir "$tmp" --sample 0 "$1"
    status 0 "tend segment $1"
    case $out in
        "$2 customers "*|"$2 customer "*) ;;
        *) fail "segment $1: expected $2 customers, got '$out'" ;;
    esac
}

cat >segments.lua <<'EOF2'
segment "vip_recent" { where = { tags = has("vip"), last_order_at = after(1750000000) } }
segment "gold_old"   { where = { tags = has("gold"), last_order_at = before(1750000000) } }
segment "vip"        { where = { tags = has("vip") } }
segment "recent"     { where = { last_order_at = after(1750000000) } }
EOF2

# f1 twice: the second row (a later order) is the one that stays.
cat >first.csv <<'EOF2'
id,last_order_at,orders_count,tags
f1,1700000000,1,vip
f2,1700000000,1,vip|gold
f3,,,vip
f1,1765000000,2,vip
EOF2
import first.csv "imported 3, updated 1, rejected 0"
count vip 3
count vip_recent 1
count gold_old 1
count recent 1

# Not a first import any more: rows go through the triggers again.
cat >second.csv <<'EOF2'
id,last_order_at,orders_count,tags
f2,1766000000,2,
f4,1766000000,1,vip
EOF2
import second.csv "imported 1, updated 1, rejected 0"
count vip 4
count vip_recent 3
count gold_old 0
count recent 3

finish
