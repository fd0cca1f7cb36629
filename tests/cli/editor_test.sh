#!/bin/sh
# Editor support shipped with tend: the luacheck configuration (.luacheckrc,
# the same at the project root and in examples/) knows exactly the globals the
# runtime gives a script, and flags a typo; the lua-language-server settings
# (.luarc.json) are JSON whose library holds the definitions (tend/meta.lua).
#   TEND=bin/tend TEND_ROOT=. sh tests/cli/editor_test.sh
NAME=editor_test
. "$(dirname "$0")/lib.sh"

cmp -s "$ROOT/.luacheckrc" "$ROOT/examples/.luacheckrc" ||
  fail "examples/.luacheckrc differs from the project's .luacheckrc"

# the runtime's globals, as a journey script sees them
cat >"$tmp/globals_test.lua" <<'EOF'
local t = require "tend.test"
t.case("globals", function() print("GLOBALS " .. table.concat(t.sim{}:globals(), " ")) end)
EOF
globals=$("$TEND" test "$tmp/globals_test.lua" 2>&1 | sed -n 's/.*GLOBALS //p')
[ -n "$globals" ] || fail "could not list the runtime's globals"

# a script reading every one of them: luacheck must accept it
{
  echo "local seen = {}"
  for g in $globals; do echo "seen[#seen + 1] = $g"; done
  echo "return seen"
} >"$tmp/every_global.lua"
if command -v luacheck >/dev/null 2>&1; then
  out=$(cd "$ROOT" && luacheck --no-color --config .luacheckrc "$tmp/every_global.lua" 2>&1) ||
    fail ".luacheckrc does not know every runtime global:
$out"
  printf 'journey "j" { on = "x", run = function(c) coupon_isue(c) end }\n' >"$tmp/typo.lua"
  out=$(cd "$ROOT" && luacheck --no-color --config .luacheckrc "$tmp/typo.lua" 2>&1) &&
    fail "luacheck accepted a typo"
  case $out in *"accessing undefined variable 'coupon_isue'"*) ;; *) fail "luacheck on a typo: $out" ;; esac
  # a name the sandbox does not give (io) is flagged too
  printf 'io.write("x")\n' >"$tmp/io.lua"
  (cd "$ROOT" && luacheck --no-color --config .luacheckrc "$tmp/io.lua" >/dev/null 2>&1) &&
    fail ".luacheckrc allows io, which the sandbox does not give"
else
  fail "luacheck is not installed (Debian lua-check)"
fi

for rc in "$ROOT/.luarc.json" "$ROOT/examples/.luarc.json"; do
  /usr/bin/python3 - "$rc" <<'EOF' || fail "$rc: not valid, or its library lacks tend/meta.lua"
import json, os, sys
path = sys.argv[1]
conf = json.load(open(path))
assert conf["runtime.version"] == "Lua 5.4", conf
libs = conf["workspace.library"]
assert any(os.path.isfile(os.path.join(os.path.dirname(path), lib, "tend", "meta.lua")) for lib in libs), libs
EOF
done

finish
