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

t.case("a broadcast page of first runs (kept back and written 64 at a time) stores every row, timer and entry", function()
  local s = sim(NOTE .. [[
    journey "storm" {
      on = "weather.alert",
      audience = function(ev) return { city = ev.city } end,
      run = function(c, ev)
        if c.id:sub(-1) == "7" then start("child", c, { from = c.id }) end
        wait(hours(1))
        send("sms", c, "note", { what = "storm " .. c.id })
      end,
    }
    journey "child" { run = function(c, ev) send("sms", c, "note", { what = "child " .. ev.from }) end }
  ]])
  local n = 150
  for i = 1, n do s:customer{ id = string.format("c%03d", i), city = "Shanghai" } end
  s:event{ type = "weather.alert", city = "Shanghai" }
  local storms = s:instances{ journey = "storm" }
  t.eq(#storms, n)
  local ids, customers = {}, {}
  for _, i in ipairs(storms) do
    t.eq(i.state, "waiting")
    t.ok(i.wake_at, "no wake time for " .. i.customer)
    t.ok(not ids[i.id], "id twice: " .. i.id)
    t.ok(not customers[i.customer], "started twice: " .. i.customer)
    ids[i.id], customers[i.customer] = true, true
  end
  for _, i in ipairs(s:instances{ journey = "child" }) do
    t.ok(not ids[i.id], "a child took a kept row's id: " .. i.id)
    ids[i.id] = true
  end
  t.eq(#s:instances{ journey = "child" }, 15)
  s:advance(hours(2))
  local sent = {}
  for _, m in ipairs(s:sent{}) do
    t.ok(not sent[m.body], "sent twice: " .. m.body)
    sent[m.body] = true
  end
  for i = 1, n do t.ok(sent[string.format("storm c%03d", i)], "missing storm " .. i) end
  t.eq(#s:sent{}, n + 15)
  t.eq(#s:instances{ journey = "storm", state = "done" }, n)
  -- the same event again (a re-delivery) starts nobody twice
  s:event{ type = "weather.alert", city = "Shanghai" }
  t.eq(#s:instances{ journey = "storm" }, 2 * n)   -- a new event, a new slot: each once more
end)

t.case("a broadcast page's first runs each get their own ev: what one run changes in it no other run sees", function()
  -- the page's trigger is read once and copied for each run (branch hol3)
  local s = sim(NOTE .. [[
    journey "storm" {
      on = "weather.alert",
      audience = function(ev) return { city = ev.city } end,
      run = function(c, ev)
        local seen = string.format("%s %s %d %d %s", c.id, tostring(ev.mine), ev.info.level, #ev.info.tags,
                                   ev.info.tags[2])
        ev.mine = c.id
        ev.info.level = ev.info.level + 1
        ev.info.tags[#ev.info.tags + 1] = c.id
        ev.city = nil
        send("sms", c, "note", { what = seen })
        wait(hours(1))
        send("sms", c, "note", { what = string.format("%s later %s %d", c.id, ev.city, ev.info.level) })
      end,
    }
  ]])
  local n = 70
  for i = 1, n do s:customer{ id = string.format("c%03d", i), city = "Shanghai" } end
  s:event{ type = "weather.alert", city = "Shanghai", info = { level = 3, tags = { "wind", "rain" } } }
  s:advance(hours(2))
  local sent = {}
  for _, m in ipairs(s:sent{}) do sent[m.body] = true end
  for i = 1, n do
    local id = string.format("c%03d", i)
    t.ok(sent[id .. " nil 3 2 rain"], "run of " .. id .. " saw another run's changes")
    -- a wake replays from the top with ev read from the event again
    t.ok(sent[id .. " later nil 4"], "the wake of " .. id .. " did not replay its ev from the event")
  end
  t.eq(#s:sent{}, 2 * n)
end)

t.case("ev reaches a run that declares it, or takes varargs, at the start and at every wake; function(c) runs without it", function()
  local s = sim(NOTE .. [[
    journey "named" { on = "go", run = function(c, ev)
      send("sms", c, "note", { what = "named " .. ev.n })
      wait(hours(1))
      send("sms", c, "note", { what = "named again " .. ev.n })
    end }
    journey "varargs" { on = "go", run = function(...)
      local c, ev = ...
      send("sms", c, "note", { what = "varargs " .. ev.n .. " " .. select("#", ...) })
      wait(hours(1))
      send("sms", c, "note", { what = "varargs again " .. ev.n })
    end }
    journey "tail" { on = "go", run = function(c, ...)
      local ev = ...
      send("sms", c, "note", { what = "tail " .. ev.n })
    end }
    journey "bare" { on = "go", run = function(c)
      wait(hours(1))
      send("sms", c, "note", { what = "bare" })
    end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1", n = 5 }
  s:advance(hours(2))
  local bodies = {}
  for _, m in ipairs(s:sent{}) do bodies[#bodies + 1] = m.body end
  table.sort(bodies)
  t.eq(bodies, { "bare", "named 5", "named again 5", "tail 5", "varargs 5 2", "varargs again 5" })
end)

t.case("ev.at of a body without one is the event's time, at the start and in the stored trigger a wake reads", function()
  local s = sim(NOTE .. [[
    journey "when" { on = "go", run = function(c, ev)
      send("sms", c, "note", { what = "start " .. ev.at .. " " .. ev.id })
      wait(hours(1))
      send("sms", c, "note", { what = "wake " .. ev.at .. " " .. ev.id })
    end }
  ]])
  s:customer{ id = "c1" }
  local at = s:now() - 7
  s:event{ type = "go", customer = "c1", id = "g1", at = at }
  local now = s:now()
  s:event{ type = "go", customer = "c1", id = "g2" }
  s:restart()   -- the wakes replay from the stored rows
  s:advance(hours(2))
  local bodies = {}
  for _, m in ipairs(s:sent{}) do bodies[#bodies + 1] = m.body end
  table.sort(bodies)
  t.eq(bodies, { "start " .. at .. " g1", "start " .. now .. " g2", "wake " .. at .. " g1", "wake " .. now .. " g2" })
  t.eq(#s:instances{ state = "done" }, 2)
end)
