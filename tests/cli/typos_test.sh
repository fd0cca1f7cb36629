#!/bin/sh
# tend check on a set of scripts with typos: each unknown global used inside
# a function is reported at its file:line with the closest known name; the
# literal arguments of send, wait and task are checked; a clean script that
# uses locals, parameters, loop variables, fields, methods, upvalues and
# its own globals gives no finding at all.
#   TEND=bin/tend sh tests/cli/typos_test.sh
NAME=typos_test
. "$(dirname "$0")/lib.sh"

# typo NAME < script: checks a directory holding just that script; it must fail.
typo() {
  mkdir -p "$tmp/$1"
  cat >"$tmp/$1/j.lua"
  run check "$tmp/$1"
  status 1 "$1"
}
finds() { has "$out" "$1" "$2"; }

typo coupon <<'LUA'
template "gift" { category = "marketing", sms = "{{ name | default: 'friend' }}: {{coupon}}" }
journey "gift" { on = "order.paid", run = function(c)
  wait(days(30))
  local coupon = coupon_isue(c, { value = 20 })
  send("sms", c, "gift", { coupon = coupon })
end }
LUA
finds "j.lua:4: error: unknown global 'coupon_isue' (did you mean 'coupon_issue'?)" "a misspelt primitive"

typo transposed <<'LUA'
template "t" { category = "marketing", sms = "hi" }
journey "j" { on = "x", run = function(c) sned("sms", c, "t") end }
LUA
finds "j.lua:2: error: unknown global 'sned' (did you mean 'send'?)" "two letters swapped"

typo nested <<'LUA'
template "t" { category = "marketing", sms = "hi {{n}}" }
local function pick(list)
  local best
  for _, v in ipairs(list) do
    if v > (best or 0) then best = v end
  end
  return best or mathh.huge
end
journey "j" { on = "x", run = function(c, ev) send("sms", c, "t", { n = pick(ev.items) }) end }
LUA
finds "j.lua:7: error: unknown global 'mathh' (did you mean 'math'?)" "in a local function, a library name"

typo helper <<'LUA'
template "t" { category = "marketing", sms = "hi" }
journey "j" { on = "x", run = function(c)
  if is_vip(c) then send("sms", c, "t") end
end }
LUA
finds "j.lua:3: error: unknown global 'is_vip'" "a helper nobody defined"
hasnt "$out" "did you mean" "no suggestion when nothing is close"

# A function holding more than 255 constants: the globals past them are
# compiled another way, and are still checked.
mkdir -p "$tmp/wide"
{
  printf 'template "t" { category = "marketing", sms = "hi {{n}}" }\n'
  printf 'journey "j" { on = "x", run = function(c)\n'
  printf '  local words = {\n'
  i=0; while [ $i -lt 300 ]; do printf '"w%d",' $i; i=$((i + 1)); done
  printf '\n}\n'
  printf '  send("sms", c, "t", { n = tostrng(#words) })\n'
  printf 'end }\n'
} >"$tmp/wide/j.lua"
run check "$tmp/wide"
status 1 "wide"
finds "j.lua:6: error: unknown global 'tostrng' (did you mean 'tostring'?)" "a typo past 255 constants"

typo customer_arg <<'LUA'
template "t" { category = "marketing", sms = "hi" }
journey "j" { on = "x", run = function(c) send("sms", c.name, "t") end }
LUA
finds "j.lua:2: error: send() to c.name: the second argument is the customer (c) or its id (c.id), not its name" "send to c.name"

typo wait_text <<'LUA'
journey "j" { on = "x", run = function(c) wait("3 days") end }
LUA
finds "j.lua:1: error: wait(\"3 days\"): wait takes seconds" "wait with text"

typo wait_negative <<'LUA'
journey "j" { on = "x", run = function(c) wait(-5) end }
LUA
finds "j.lua:1: error: wait(-5): seconds must not be negative" "wait with a negative literal"

typo task_key <<'LUA'
journey "j" { on = "x", run = function(c) task(c, { kind = "call", asign = "ann" }) end }
LUA
finds "j.lua:1: error: task: unknown field 'asign' (kind, note, assign, due)" "task with a misspelt key"

# --- no false findings ------------------------------------------------------------
mkdir clean
cat >clean/j.lua <<'LUA'
template "t" { category = "marketing", sms = "{{ name | default: 'friend' }} {{n}}" }
local LIMIT <const> = 3
counter_total = 0                        -- a global this file defines
function helper(x) return x * 2 end      -- and a global function
local shop = { fee = 1 }
function shop:total(items)               -- a method: self is a parameter
  local sum = 0
  for i = 1, #items do sum = sum + items[i].price end
  for _, item in ipairs(items) do sum = sum + (item.extra or 0) end
  return sum + self.fee
end
journey "j" {
  on = "order.paid",
  run = function(c, ev)
    local n = helper(#ev.items)
    counter_total = counter_total + 1
    repeat n = n - 1 until n < LIMIT
    local ok, err = pcall(function() return shop:total(ev.items) end)
    if not ok then log(err) end
    send("sms", c, "t", { n = n })
    send("sms", c.id, "t", { n = n })
    wait(days(1))
    task(c, { kind = "call", note = "hi", assign = "ann" })
  end,
}
LUA
run check clean
status 0 "a clean script"
[ "$out" = "clean: 0 errors, 0 warnings" ] || fail "a clean script: expected no finding; got:
$out"

finish
