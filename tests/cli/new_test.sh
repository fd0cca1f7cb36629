#!/bin/sh
# tend new journey NAME: the skeleton journey and its test pass `tend test`
# and `tend check` as written (and luacheck with the shipped .luacheckrc);
# an existing file is never overwritten; a bad name is misuse.
#   TEND=bin/tend sh tests/cli/new_test.sh
NAME=new_test
. "$(dirname "$0")/lib.sh"

mkdir shop
out=$("$TEND" new journey thanks --dir shop 2>&1) || fail "tend new journey: exit $?: $out"
[ -f shop/thanks.lua ] && [ -f shop/thanks_test.lua ] || fail "tend new journey did not write both files: $out"
case $out in *"wrote shop/thanks.lua"*"wrote shop/thanks_test.lua"*) ;; *) fail "tend new says what it wrote: $out" ;; esac

out=$("$TEND" test shop 2>&1) || fail "the new journey's test does not pass: $out"
case $out in *"2 passed, 0 failed"*) ;; *) fail "the new test: expected 2 passing cases: $out" ;; esac
out=$("$TEND" check shop 2>&1) || fail "the new journey does not pass tend check: $out"
case $out in *"shop: 0 errors, 0 warnings"*) ;; *) fail "tend check on the new journey: $out" ;; esac
if command -v luacheck >/dev/null 2>&1; then
  out=$(luacheck --no-color --config "$ROOT/.luacheckrc" shop 2>&1) || fail "luacheck on the new journey: $out"
fi
grep -q '^-- ' shop/thanks.lua || fail "the skeleton is commented"

# the test it wrote tests something: break the journey, the test fails
sed 's/wait(days(1))/wait(days(3))/' shop/thanks.lua >shop/thanks.lua.new && mv shop/thanks.lua.new shop/thanks.lua
"$TEND" test shop >/dev/null 2>&1 && fail "the skeleton's test passes a journey that waits 3 days"

# never overwrite
cp shop/thanks.lua before.lua
out=$("$TEND" new journey thanks --dir shop 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "tend new over an existing journey: expected exit 1, got $rc"
case $out in *"shop/thanks.lua: exists already"*) ;; *) fail "tend new over an existing journey: $out" ;; esac
cmp -s before.lua shop/thanks.lua || fail "tend new changed an existing file"

out=$("$TEND" new journey "9 lives" --dir shop 2>&1)
rc=$?
[ "$rc" = 2 ] || fail "tend new with a bad name: expected exit 2, got $rc"
case $out in *"'9 lives' is not a journey name"*) ;; *) fail "tend new with a bad name: $out" ;; esac
"$TEND" new thing x >/dev/null 2>&1
[ $? = 2 ] || fail "tend new thing: expected exit 2"

finish
