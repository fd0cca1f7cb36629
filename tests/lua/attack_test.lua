-- The sandbox attack suite: hostile journeys, each run inside a t.sim (its
-- own runtime), next to an honest journey on the same event. For every case:
-- the hostile instance fails (or finishes) with a clear error naming
-- source:line and the limit, nothing it did after failing acted, the honest
-- journey still ran, and a restart does not run the hostile work again.
-- The cases that are refused without tripping a limit also run directly in
-- this file's own sandbox (the "direct" cases at the end).
-- tests/cli/attack_test.sh runs a selection under `tend run` with wall times.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"
-- A small budget: every trip costs a fraction of a second.
local CONFIG = { caps = false, quiet_hours = false, limits = { instructions = 20000000 } }

local HEAD = [[
template "note" { category = "transactional", sms = "note {{what}}" }
journey "good" { on = "go", run = function(c) send("sms", c, "note", { what = "good" }) end }
]]

-- The hostile journey "evil" runs `body` as its run(c, ev), on event "go".
local function attack(body, extra)
  local src = HEAD .. 'journey "evil" { on = "go", run = function(c, ev)\n' .. body .. "\nend }\n" .. (extra or "")
  local s = t.sim{ source = src, start = START, config = CONFIG }
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "go", customer = "c1" }
  s:advance(60)
  return s
end

local function notes(s, what)
  local n = 0
  for _, m in ipairs(s:sent{ template = "note" }) do
    if not what or (m.body or ""):find(what, 1, true) then n = n + 1 end
  end
  return n
end

local function count(text, needle)
  local n, i = 0, 1
  while true do
    local j = text:find(needle, i, true)
    if not j then return n end
    n, i = n + 1, j + #needle
  end
end

-- The hostile instance failed with `pattern` in its error, at source:line;
-- the honest one sent; nothing leaked; a restart runs nothing again.
local function expect_failed(s, pattern, needle)
  local evil = s:instances{ journey = "evil" }
  t.eq(#evil, 1, "one hostile instance")
  t.eq(evil[1].state, "failed")
  t.match(evil[1].error, pattern)
  t.match(evil[1].error, "source:%d+:", "the error names file:line")
  t.ok(#evil[1].error < 8192, "the stored error is cut")
  t.eq(notes(s, "good"), 1, "the honest journey still ran")
  t.eq(notes(s, "leak"), 0, "nothing the failed instance did after failing was sent")
  local before = count(s:log(), needle or "failed")
  s:restart()
  s:advance(3600)
  t.eq(count(s:log(), needle or "failed"), before, "a restart does not run the failed work again")
  t.eq(#s:instances{ journey = "evil" }, 1)
  -- and the runtime still works: a new event runs both journeys again
  s:event{ type = "go", customer = "c1" }
  s:advance(60)
  t.eq(notes(s, "good"), 2, "the next event runs the honest journey")
end

-- --- error objects ------------------------------------------------------------

t.case("an error object whose __tostring loops: described by type, no hang", function()
  local s = attack([[error(setmetatable({}, { __tostring = function() while true do end end }))]])
  expect_failed(s, "%(error object: table%)")
end)

t.case("an error object whose __tostring sends: nothing is sent", function()
  local s = attack([[error(setmetatable({}, { __tostring = function()
    send("sms", c, "note", { what = "leak" }) return "x" end }))]])
  expect_failed(s, "%(error object: table%)")
end)

t.case("an error object with __name and __index tricks: described by type", function()
  local s = attack([[error(setmetatable({}, { __name = "pwned", __index = function() while true do end end,
    __tostring = function() return "pwned" end }))]])
  expect_failed(s, "%(error object: table%)")
  t.ok(not s:instances{ journey = "evil" }[1].error:find("pwned"))
end)

t.case("a __close handler cannot act after the budget trips", function()
  local s = attack([[pcall(function()
    local x <close> = setmetatable({}, { __close = function() send("sms", c, "note", { what = "leak" }) end })
    while true do end
  end)
  send("sms", c, "note", { what = "leak" })]])
  expect_failed(s, "instruction budget exceeded", "budget exceeded")
end)

t.case("pcall, xpcall and coroutines cannot swallow a trip and act", function()
  local s = attack([[
    pcall(function() while true do end end)
    xpcall(function() while true do end end, function(m) send("sms", c, "note", { what = "leak" }) return m end)
    local co = coroutine.wrap(function() while true do end end)
    pcall(co)
    send("sms", c, "note", { what = "leak" })]])
  expect_failed(s, "instruction budget exceeded", "budget exceeded")
end)

t.case("an error of 100 MiB is stored and logged cut to 4 KiB", function()
  local s = attack([[error(("x"):rep(100 * 1024 * 1024))]])
  expect_failed(s, "%[cut: %d+ bytes more%]")
  t.ok(#s:log() < 20000, "the log holds the cut message, not the whole")
end)

t.case("a log() line of 50 MB is cut to 4 KiB", function()
  local s = attack([[log(("y"):rep(50 * 1000 * 1000)) send("sms", c, "note", { what = "after" })]])
  t.eq(s:instances{ journey = "evil" }[1].state, "done")
  t.ok(#s:log() < 10000, "log size " .. #s:log())
  t.match(s:log(), "%[cut: %d+ bytes more%]")
  t.eq(notes(s, "after"), 1)
end)

-- --- CPU inside C calls -----------------------------------------------------------

t.case("string.rep('', 2^31) returns at once; rep past the cap is refused before allocating", function()
  local s = attack([[
    local e = string.rep("", 2^31)
    send("sms", c, "note", { what = "empty " .. #e })
    local big = string.rep("x", 2^31)]])
  t.eq(notes(s, "empty 0"), 1)
  expect_failed(s, "resulting string too large")
  s = attack([[local big = string.rep("x", 2^30)]])
  expect_failed(s, "memory limit exceeded", "memory limit")
end)

t.case("table.move over 3e8 slots trips the budget before it starts", function()
  expect_failed(attack([[table.move({}, 1, 3e8, 1)]]), "instruction budget exceeded", "budget exceeded")
end)

t.case("a backtracking find trips the budget", function()
  expect_failed(attack([[(("a"):rep(300)):find(".-.-.-b")]]), "instruction budget exceeded", "budget exceeded")
end)

t.case("a backtracking gsub trips the budget", function()
  expect_failed(attack([[(("a"):rep(2000)):gsub("a*a*a*a*b", "")]]), "instruction budget exceeded",
                "budget exceeded")
end)

t.case("plain find is linear; repeating it is paid for", function()
  local s = attack([[
    local hay, needle = ("a"):rep(2e6), ("a"):rep(2e4 - 1) .. "b"
    send("sms", c, "note", { what = "plain " .. tostring(hay:find(needle, 1, true)) })
    while true do hay:find(needle, 1, true) end]])
  t.eq(notes(s, "plain nil"), 1)
  expect_failed(s, "instruction budget exceeded", "budget exceeded")
end)

t.case("sort and front inserts of long tables are paid for", function()
  expect_failed(attack([[local t = {} for i = 1, 1e5 do t[i] = -i end
    while true do table.sort(t) end]]), "instruction budget exceeded", "budget exceeded")
  expect_failed(attack([[local t = {} for i = 1, 1e5 do t[i] = i end
    while true do table.insert(t, 1, 0) end]]), "budget exceeded", "budget exceeded")
end)

t.case("load of a 20 MB chunk is refused by size", function()
  expect_failed(attack([[load(("x = 1\n"):rep(4e6))]]), "load limit %(1048576 bytes, limits.load%)")
end)

t.case("the budget holds across patterns, memory and loops (v1 cases)", function()
  expect_failed(attack([[local x = "x" while true do x = x .. x end]]), "memory limit exceeded", "memory limit")
  local s = attack([[local function f() return 1 + f() end f()]])
  local e = s:instances{ journey = "evil" }[1].error
  t.ok(e:find("stack overflow") or e:find("memory limit exceeded"), e:sub(1, 200))
  expect_failed(s, "source:%d+:", "failed")
  expect_failed(attack([[setmetatable({}, { __gc = function() end })]]), "__gc metamethods are not allowed")
  expect_failed(attack([[local t = {} for i = 1, 1e9 do t[i] = i end]]), "exceeded", "exceeded")
  expect_failed(attack([[while true do pcall(coroutine.resume, coroutine.create(function() while true do end end)) end]]),
                "instruction budget exceeded", "budget exceeded")
end)

t.case("memory attacks and deep recursions under a small cap, again and again: the runtime lives", function()
  -- a stack overflow left the coroutine with no room, and its traceback was
  -- written past the stack: the heap broke some allocations later
  local s = t.sim{ source = HEAD .. [[
    journey "grow" { on = "go", run = function(c) local x = "x" while true do x = x .. x end end }
    journey "deep" { on = "go", run = function(c) local function f() return 1 + f() end f() end }
  ]], start = START, config = { caps = false, quiet_hours = false,
                                limits = { instructions = 20000000, memory = 64 * 1024 * 1024 } } }
  s:customer{ id = "c1" }
  for _ = 1, 3 do s:event{ type = "go", customer = "c1" } end
  s:restart()
  s:advance(60)
  t.eq(#s:instances{ journey = "grow", state = "failed" }, 3)
  t.eq(#s:instances{ journey = "deep", state = "failed" }, 3)
  t.eq(notes(s, "good"), 3)
end)

-- --- fan-out -----------------------------------------------------------------------

t.case("more than 100 sends in one run is refused, naming the limit", function()
  local s = attack([[for i = 1, 1000 do send("sms", c, "note", { what = "many" .. i }) end]])
  t.eq(notes(s, "many"), 100)
  expect_failed(s, "more than 100 sends in one run of journey 'evil' %(limits.sends%)")
end)

t.case("emit x 1e5 in one run stops at the limit", function()
  local s = attack([[for i = 1, 1e5 do emit{ type = "noise", customer = c.id, n = i } end]])
  expect_failed(s, "more than 100 emits in one run of journey 'evil' %(limits.emits%)")
end)

t.case("more than 100 starts in one run is refused", function()
  local s = attack([[for i = 1, 1000 do start("other", c, { n = i }) end]],
                   [[journey "other" { on = "never", run = function() end }]])
  t.eq(#s:instances{ journey = "other" }, 100)
  expect_failed(s, "more than 100 starts in one run of journey 'evil' %(limits.starts%)")
end)

t.case("a journey that starts itself stops at the chain limit", function()
  local s = t.sim{ source = HEAD .. [[
    journey "self" { on = "go", run = function(c) start("self", c) end }
  ]], start = START, config = { caps = false, quiet_hours = false, limits = { chain = 5 } } }
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(3600)
  local all = s:instances{ journey = "self" }
  t.eq(#all, 6, "the event's instance and 5 links")
  local failed = s:instances{ journey = "self", state = "failed" }
  t.eq(#failed, 1)
  t.match(failed[1].error, "start: chain limit reached: journey 'self' is 5 starts/emits away")
  t.match(failed[1].error, "limits.chain = 5")
  t.eq(notes(s, "good"), 1)
end)

t.case("a journey that emits the event that starts it stops at the chain limit", function()
  local s = t.sim{ source = HEAD .. [[
    journey "ping" { on = "ping", run = function(c) emit{ type = "ping", customer = c.id } end }
  ]], start = START, config = { caps = false, quiet_hours = false } }
  s:customer{ id = "c1" }
  s:event{ type = "ping", customer = "c1" }
  s:advance(3600)
  t.eq(#s:instances{ journey = "ping" }, 21)
  local failed = s:instances{ journey = "ping", state = "failed" }
  t.eq(#failed, 1)
  t.match(failed[1].error, "emit: chain limit reached.*limits.chain = 20")
end)

t.case("fan-out limits are settings", function()
  local s = t.sim{ source = HEAD .. [[
    journey "few" { on = "go", run = function(c) for i = 1, 3 do send("sms", c, "note", { what = "f" .. i }) end end }
  ]], start = START, config = { caps = false, quiet_hours = false, limits = { sends = 2 } } }
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(60)
  t.match(s:instances{ journey = "few" }[1].error, "more than 2 sends")
  t.fails(function()
    t.sim{ source = HEAD, start = START, config = { limits = { sends = 0 } } }
  end, "limits.sends")
end)

-- --- primitives cannot be replaced -----------------------------------------------

t.case("rawset(_ENV, 'send', nil) in one journey does not break send for the others", function()
  local s = attack([[
    pcall(rawset, _ENV, "send", nil)
    pcall(function() send = function() end end)
    pcall(rawset, _G, "wait", nil)
    _ENV = setmetatable({}, { __index = function() error("pwned") end })]])
  t.eq(s:instances{ journey = "evil" }[1].state, "done")
  -- the same file's journey, run after it, sends (fresh _ENV, real send)
  s:event{ type = "go", customer = "c1" }
  s:advance(60)
  t.eq(notes(s, "good"), 2)
  t.eq(#s:instances{ journey = "good", state = "failed" }, 0)
end)

t.case("assigning tend's globals is refused with a clear error", function()
  local s = attack([[send = nil]])
  expect_failed(s, "cannot assign to 'send': it is tend's")
end)

-- --- poison work -----------------------------------------------------------------

t.case("a wake that trips fails once; restarts never replay it", function()
  local s = t.sim{ source = HEAD .. [[
    journey "later" { on = "go", run = function(c) wait(hours(1)) while true do end end }
  ]], start = START, config = CONFIG }
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(hours(2))
  t.eq(s:instances{ journey = "later" }[1].state, "failed")
  for _ = 1, 3 do s:restart() s:advance(hours(1)) end
  t.eq(count(s:log(), "budget exceeded"), 1)
end)

t.case("a schedule that trips is recorded and the next one runs", function()
  local s = t.sim{ source = HEAD .. [[
    schedule "spin" { every = hours(1), run = function() while true do end end }
  ]], start = START, config = CONFIG }
  s:advance(hours(3))
  local trips = count(s:log(), "budget exceeded")
  t.ok(trips >= 2 and trips <= 4, "one trip per slot, got " .. trips)
  s:restart()
  t.eq(count(s:log(), "budget exceeded"), trips, "a restart does not run the tripped slot again")
end)

-- --- direct: in this file's own sandbox ----------------------------------------------

t.case("direct: refusals that need no trip", function()
  t.fails(function() string.rep("x", 2^31) end, "resulting string too large")
  t.fails(function() load(("x = 1\n"):rep(4e5)) end, "load limit")
  t.fails(function() rawset(_ENV, "string", nil) end, "cannot assign to 'string'")
  t.fails(function() days = nil end, "cannot assign to 'days'")
  t.eq(type(rawget(_G, "days")), "function", "rawget still sees tend's globals")
  t.eq(string.rep("", 2^31), "")
  t.eq(string.rep("ab", 3, ","), "ab,ab,ab")
  t.eq(select("#", ("a"):rep(2e5):find("b", 1, true)), 1)
  local ok, e = pcall(error, setmetatable({}, { __tostring = function() return "x" end }))
  t.ok(not ok and type(e) == "table", "pcall still hands the script its own error object")
end)

t.case("direct: the budgeted matcher agrees with Lua's patterns", function()
  t.eq({ ("key=val; k2=v2"):match("(%w+)=(%w+)") }, { "key", "val" })
  t.eq({ ("  trim me  "):match("^%s*(.-)%s*$") }, { "trim me" })
  t.eq({ ("f(a(b)c) x"):find("%b()") }, { 2, 8 })
  t.eq({ ("THE (quick) fox"):find("%f[%a]%a+", 5) }, { 6, 10 })
  t.eq({ ("hello"):find("()ll()") }, { 3, 4, 3, 5 })
  t.eq({ ("abc"):gsub("%w", "<%0>") }, { "<a><b><c>", 3 })
  t.eq({ ("hello world"):gsub("o", { o = "0" }) }, { "hell0 w0rld", 2 })
  t.eq({ ("abc"):gsub("", "-") }, { "-a-b-c-", 4 })
  t.eq({ ("x = 1, y = 2"):gsub("(%w+) = (%w+)", "%2 = %1") }, { "1 = x, 2 = y", 2 })
  local words = {}
  for w in ("one two  three"):gmatch("%a+") do words[#words + 1] = w end
  t.eq(words, { "one", "two", "three" })
  t.fails(function() ("x"):find("%") end, "malformed pattern %(ends with '%%'%)")
  t.fails(function() ("x"):find("[a") end, "malformed pattern %(missing ']'%)")
  t.fails(function() ("x"):gsub("x", "%2") end, "invalid capture index %%2")
end)
