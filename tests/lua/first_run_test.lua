-- A journey's first run: the start writes the instance row once, with what
-- the run stopped on (branch start2). What a user sees must be what a row
-- inserted first and updated after would show.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"
local CONFIG = { timezone = "Asia/Shanghai", caps = false }

local function sim(source)
  return t.sim{ source = source, start = START, config = CONFIG }
end

local NOTE = [[
template "note" { category = "transactional", sms = "{{what}}" }
]]

t.case("start() inside a first run gets its own id; both rows hold what their runs did", function()
  local s = sim(NOTE .. [[
    journey "parent" { on = "go", run = function(c)
      local child = start("child", c, { n = 7 })
      send("sms", c, "note", { what = "child " .. tostring(child) })
      wait(days(1))
    end }
    journey "child" { run = function(c, ev) send("sms", c, "note", { what = "n " .. ev.n }) end }
  ]])
  s:customer{ id = "c1" }
  s:customer{ id = "c2" }
  s:event{ type = "go", customer = "c1" }
  s:event{ type = "go", customer = "c2" }
  s:advance(hours(1))
  local parents = s:instances{ journey = "parent" }
  local children = s:instances{ journey = "child" }
  t.eq(#parents, 2)
  t.eq(#children, 2)
  local ids = {}
  for _, i in ipairs(parents) do
    t.eq(i.state, "waiting")
    t.eq(i.steps, 3)   -- start, send, wait
    t.ok(i.wake_at)
    ids[i.id] = true
  end
  for _, i in ipairs(children) do
    t.eq(i.state, "done")
    t.ok(not ids[i.id], "a child took its parent's id")
    ids[i.id] = true
  end
  local bodies = {}
  for _, m in ipairs(s:sent{}) do bodies[#bodies + 1] = m.body end
  table.sort(bodies)
  t.eq(bodies, { "child " .. children[1].id, "child " .. children[2].id, "n 7", "n 7" })
end)

t.case("a first run that fails, exits or ends is stored with its end and wakes no more", function()
  local s = sim(NOTE .. [[
    journey "bad" { on = "go", run = function(c) error("no way") end }
    journey "gone" { on = "go", run = function(c) exit("not today") end }
    journey "quick" { on = "go", goal = { event = "order.paid" }, run = function(c) send("sms", c, "note", { what = "hi" }) end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(days(2))
  local bad = s:instances{ journey = "bad" }[1]
  t.eq(bad.state, "failed")
  t.ok(bad.error:find("no way", 1, true))
  t.ok(bad.ended_at)
  t.ok(not bad.wake_at)
  local gone = s:instances{ journey = "gone" }[1]
  t.eq(gone.state, "exited")
  t.eq(gone.error, "not today")
  local quick = s:instances{ journey = "quick" }[1]
  t.eq(quick.state, "done")
  t.eq(#s:sent{}, 1)
end)
