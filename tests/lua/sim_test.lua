-- The sim's view of the outbox (sent{} = what left, messages{} = every row)
-- and how t.sim finds its scripts.
local t = require "tend.test"

local QUIET = { timezone = "Asia/Shanghai", quiet_hours = { from = "21:30", to = "08:30" }, caps = false }

t.case("sent{} lists only messages that left; messages{} lists every row with its status", function()
  local s = t.sim{ scripts = { "fixtures/hello.lua" }, start = "2026-03-02T23:00:00+08:00", config = QUIET }
  s:customer{ id = "c1", name = "Ann", timezone = "Asia/Shanghai" }
  s:event{ type = "promo", customer = "c1" }
  t.eq(#s:sent{}, 0, "deferred by quiet hours: nothing left yet")
  local all = s:messages{ customer = "c1" }
  t.eq(#all, 1)
  t.eq(all[1].status, "deferred")
  t.eq(#s:messages{ status = "deferred" }, 1)
  s:advance(hours(10))
  local sent = s:sent{ customer = "c1" }
  t.eq(#sent, 1)
  t.eq(sent[1].status, "sent")
  t.eq(sent[1].body, "Ann, an offer")
  t.eq(#s:sent{ status = "sent" }, 1, "status = \"sent\" is allowed")
end)

t.case("sent{} with another status points at messages{}", function()
  local s = t.sim{ scripts = { "fixtures/hello.lua" } }
  t.fails(function() s:sent{ status = "capped" } end, 'use sim:messages{status = "capped"}')
end)

t.case("script paths are relative to the test file", function()
  local s = t.sim{ scripts = "fixtures/hello.lua" }
  s:customer{ id = "c1" }
  s:event{ type = "signup", customer = "c1" }
  t.eq(s:sent{}[1].body, "hello friend")
  t.fails(function() t.sim{ scripts = { "hello.lua" } } end, "hello.lua: cannot read")
end)

t.case("scripts and source together load both", function()
  local s = t.sim{ scripts = { "fixtures/hello.lua" }, source = [[
    journey "bye" { on = "leave", run = function(c) send("sms", c, "hello", { }) end }
  ]] }
  s:customer{ id = "c1", name = "Bo" }
  s:event{ type = "signup", customer = "c1" }
  s:event{ type = "leave", customer = "c1" }
  local journeys = {}
  for _, m in ipairs(s:sent{ customer = "c1" }) do journeys[#journeys + 1] = m.journey end
  t.eq(journeys, { "hello", "bye" })
end)

t.case("deploy takes script paths from the test file too", function()
  local s = t.sim{ source = [[ journey "x" { on = "x", run = function() end } ]] }
  s:deploy{ scripts = { "fixtures/hello.lua" } }
  s:customer{ id = "c1" }
  s:event{ type = "signup", customer = "c1" }
  t.eq(#s:sent{}, 1)
end)

t.case("send to an id that is no customer raises instead of sending", function()
  local s = t.sim{ scripts = { "fixtures/hello.lua" }, source = [[
    journey "by_name" { on = "named", run = function(c) send("sms", c.name, "hello") end }
  ]] }
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "named", customer = "c1" }
  t.eq(#s:messages{}, 0, "nothing queued")
  local i = s:instances{ journey = "by_name" }[1]
  t.eq(i.state, "failed")
  t.match(i.error, "source:1: bad argument #2 to 'send' %(no customer has the id 'Ann' %(pass c or c%.id%)%)")
end)

t.case("sim:globals() lists what a journey script sees, sorted", function()
  local names = t.sim{}:globals()
  local sorted = {}
  for i, name in ipairs(names) do sorted[i] = name end
  table.sort(sorted)
  t.eq(names, sorted)
  local set = {}
  for _, name in ipairs(names) do set[name] = true end
  t.ok(set.send and set.journey and set.wait and set.coupon_issue, "the primitives and declarations")
  t.ok(not set.__tend_sim and not set.io, "neither host hooks nor what the sandbox withholds")
end)
