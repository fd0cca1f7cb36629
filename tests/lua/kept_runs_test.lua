-- Long runs kept between wakes (instance.c): a journey woken hour after
-- hour in one process resumes its kept coroutine instead of replaying
-- from the top. What it does must be what a replay does: the same
-- random() draws, the customer's fields as they are now, each message
-- once. The same journey restarted before every wake (always a replay) is
-- the reference. Last, the rows of instances a due pass ends, which are
-- written together at the end of the pass.
local t = require "tend.test"

local SOURCE = [[
template "note" { category = "transactional", sms = "{{what}}" }
journey "long" { on = "go", run = function(c)
  local first = c.name
  for i = 1, 30 do wait(hours(1)) end
  local a = random(1000000)
  wait(hours(1))
  local b = random(1000000)
  for i = 1, 3 do wait(hours(1)) end
  c:tag("hourly")
  wait(hours(1))
  send("sms", c, "note", { what = first .. " " .. c.name .. " " .. a .. " " .. b })
  wait(hours(1))
  send("sms", c, "note", { what = "then " .. c.name .. " " .. random(1000000) })
end }
]]

local function run(restart_each_hour)
  local s = t.sim{ source = SOURCE, start = "2026-03-02T10:00:00+08:00" }
  s:customer{ id = "a", name = "Ann" }
  s:event{ type = "go", customer = "a" }
  for h = 1, 40 do
    if h == 33 then s:customer{ id = "a", name = "Bea" } end   -- changed while the run is kept
    if h == 36 then s:customer{ id = "a", name = "Cy" } end
    s:advance(hours(1))
    if restart_each_hour then s:restart() end
  end
  local bodies = {}
  for _, m in ipairs(s:sent{ customer = "a" }) do bodies[#bodies + 1] = m.body end
  return bodies, s:instances{ customer = "a" }[1], s:customer("a")
end

t.case("a long journey kept between wakes draws, reads and sends as its replay does", function()
  local kept, ki, kc = run(false)
  local replayed, ri = run(true)
  t.eq(#kept, 2)
  t.eq(kept, replayed)
  -- the fields read after a change are the new ones, in both
  t.match(kept[1], "^Ann Bea %d+ %d+$")
  t.match(kept[2], "^then Cy %d+$")
  t.eq(ki.state, "done")
  t.eq(ki.steps, ri.steps)
  t.eq(kc.tags, { "hourly" })
end)

local LONG = [[
template "note" { category = "transactional", sms = "{{what}}" }
journey "long" { on = "go", run = function(c)
  local drawn = {}
  for i = 1, 150 do
    wait(hours(1))
    if i % 50 == 0 then drawn[#drawn + 1] = random(1000) end
  end
  send("sms", c, "note", { what = table.concat(drawn, " ") })
  wait(hours(1))
end }
]]

t.case("a kept run whose history is sealed into chunks as it goes stores what the replay stores", function()
  local function go(restart_each_hour)
    local s = t.sim{ source = LONG, start = "2026-03-02T10:00:00+08:00" }
    s:customer{ id = "a" }
    s:event{ type = "go", customer = "a" }
    for h = 1, 152 do
      s:advance(hours(1))
      -- the kept side restarts once, before its last wake: that replay
      -- reads the whole history the kept runs wrote, chunks and row
      if restart_each_hour or h == 150 then s:restart() end
    end
    local bodies = {}
    for _, m in ipairs(s:sent{ customer = "a" }) do bodies[#bodies + 1] = m.body end
    return bodies, s:instances{ customer = "a" }[1]
  end
  local kept, ki = go(false)
  local replayed, ri = go(true)
  t.eq(#kept, 1)
  t.match(kept[1], "^%d+ %d+ %d+$")
  t.eq(kept, replayed)
  t.eq(ki, ri)
  t.eq(ki.state, "done")
end)

t.case("instances that a due pass ends together (more than a page of 64) are each stored ended", function()
  local s = t.sim{ source = [[
    journey "short" { on = "go", run = function(c)
      wait(hours(1))
      if c.id == "c7" then error("c7 fails") end
    end }
  ]], start = "2026-03-02T10:00:00+08:00" }
  for i = 1, 70 do
    s:customer{ id = "c" .. i }
    s:event{ type = "go", customer = "c" .. i }
  end
  s:advance(hours(2))
  local states = {}
  for i = 1, 70 do
    local inst = s:instances{ customer = "c" .. i }[1]
    states[inst.state] = (states[inst.state] or 0) + 1
    t.eq(inst.steps, 1)
    t.eq(inst.wake_at, nil)
  end
  t.eq(states, { done = 69, failed = 1 })
  t.match(s:instances{ customer = "c7" }[1].error, "c7 fails")
end)

-- Kept runs live in the sandbox's memory, under the same cap as the runs
-- that work. A cache must never be why a script runs out of memory: with
-- a 4 MiB cap, twelve runs that each hold about 400 KB across their waits
-- would need 4.8 MB kept at once; they are let go instead, and every run
-- ends as it would without the cache.
t.case("kept runs are let go before they fill the sandbox's memory cap", function()
  local s = t.sim{ source = [[
    template "note" { category = "transactional", sms = "{{what}}" }
    journey "big" { on = "go", run = function(c)
      local hold = {}
      for i = 1, 20 do
        hold[i] = string.rep(string.char(65 + i % 26), 20000) .. i
        wait(hours(1))
      end
      send("sms", c, "note", { what = c.id .. " " .. #hold })
    end }
  ]], start = "2026-03-02T10:00:00+08:00", config = { limits = { memory = 4 * 1024 * 1024 } } }
  for i = 1, 12 do
    s:customer{ id = "c" .. i }
    s:event{ type = "go", customer = "c" .. i }
  end
  s:advance(hours(21))
  for i = 1, 12 do
    local inst = s:instances{ customer = "c" .. i }[1]
    t.eq(inst.state, "done", inst.error)
    t.eq(#s:sent{ customer = "c" .. i }, 1)
  end
end)
