-- Schedules: cron slots in a zone as the virtual clock passes, intervals,
-- once-journeys started again and again, restarts around slots, failing runs,
-- and a schedule that starts a journey for every member of a segment.
local t = require "tend.test"

local START = "2026-03-01T09:00:00+08:00"   -- a Sunday, 09:00 in Shanghai
local CONFIG = { timezone = "Asia/Shanghai", synchronous = "normal" }

local function sim(source, opts)
  opts = opts or {}
  return t.sim{ source = source, start = opts.start or START, config = opts.config or CONFIG }
end

-- Epoch seconds of a local wall time at a fixed UTC offset (hours).
local function epoch(y, m, d, hh, mm, offset_hours)
  local yy = m <= 2 and y - 1 or y
  local era = yy // 400
  local yoe = yy - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days_since = era * 146097 + doe - 719468
  return days_since * 86400 + hh * 3600 + mm * 60 - offset_hours * 3600
end

-- A journey the schedules start; it records when it started in a message.
local PING = [[
template "ping" { category = "transactional", sms = "ping {{slot}}" }
journey "ping" { run = function(c, ev) send("sms", c, "ping", { slot = ev and ev.slot or "-" }) end }
]]

local function times(list)
  local out = {}
  for _, m in ipairs(list) do out[#out + 1] = m.at end
  return out
end

t.case("a daily cron runs at 10:00 in its zone on each day the clock passes", function()
  local s = sim(PING .. [[
    schedule "daily" { cron = "0 10 * * *", tz = "Asia/Shanghai",
                       run = function() for c in customers{} do start("ping", c, { slot = now() }) end end }
  ]])
  s:customer{ id = "c1" }
  s:advance(minutes(59))
  t.eq(#s:messages{}, 0, "not before 10:00")
  s:advance(days(3) - minutes(59))   -- to 09:00 on the 4th
  local sent = s:sent{ customer = "c1" }
  t.eq(times(sent), { epoch(2026, 3, 1, 10, 0, 8), epoch(2026, 3, 2, 10, 0, 8), epoch(2026, 3, 3, 10, 0, 8) })
  for _, m in ipairs(sent) do t.eq(m.body, "ping " .. m.at, "the run saw the slot's time as now()") end
  t.eq(#s:instances{ journey = "ping" }, 3)
end)

t.case("cron in another zone follows that zone's wall clock across a DST change", function()
  -- New York moves to summer time on 2026-03-08: 10:00 is 15:00Z, then 14:00Z
  local s = sim(PING .. [[
    schedule "ny" { cron = "0 10 * * *", tz = "America/New_York",
                    run = function() for c in customers{} do start("ping", c) end end }
  ]], { start = "2026-03-06T00:00:00Z", config = { timezone = "UTC", synchronous = "normal" } })
  s:customer{ id = "c1" }
  s:advance(days(4))
  t.eq(times(s:sent{}), {
    epoch(2026, 3, 6, 10, 0, -5), epoch(2026, 3, 7, 10, 0, -5),
    epoch(2026, 3, 8, 10, 0, -4), epoch(2026, 3, 9, 10, 0, -4),
  })
end)

t.case("a cron without tz uses the configured default zone", function()
  local s = sim(PING .. [[
    schedule "weekday_mornings" { cron = "30 8 * * 1-5",
                                  run = function() for c in customers{} do start("ping", c) end end }
  ]])
  s:customer{ id = "c1" }
  s:advance(days(7))   -- Sunday 09:00 to the next Sunday 09:00: Monday..Friday
  local got = times(s:sent{})
  t.eq(#got, 5)
  t.eq(got[1], epoch(2026, 3, 2, 8, 30, 8))
  t.eq(got[5], epoch(2026, 3, 6, 8, 30, 8))
end)

t.case("every = hours(6) runs four times a day, counted from load", function()
  local s = sim(PING .. [[
    schedule "six_hourly" { every = hours(6), run = function() start("ping", "c1") end }
  ]])
  s:customer{ id = "c1" }
  local t0 = s:now()
  s:advance(days(1))
  t.eq(times(s:sent{}), { t0 + hours(6), t0 + hours(12), t0 + hours(18), t0 + hours(24) })
  s:advance(hours(5))
  t.eq(#s:sent{}, 4)
  s:advance(hours(1))
  t.eq(#s:sent{}, 5)
end)

t.case("a schedule starting a once = true journey again and again starts it once per customer", function()
  local s = sim([[
    template "welcome" { category = "transactional", sms = "welcome {{id}}" }
    journey "welcome" { once = true, run = function(c) send("sms", c, "welcome", { id = c.id }) end }
    schedule "sweep" { every = hours(1), run = function()
      for c in customers{ orders_count = at_least(1) } do start("welcome", c) end
    end }
  ]])
  for i = 1, 5 do s:customer{ id = "c" .. i } end
  s:event{ type = "order.paid", customer = "c1", total = 1 }
  s:event{ type = "order.paid", customer = "c2", total = 1 }
  s:advance(hours(5))
  t.eq(#s:instances{ journey = "welcome" }, 2)
  s:event{ type = "order.paid", customer = "c3", total = 1 }
  s:event{ type = "order.paid", customer = "c1", total = 1 }
  s:advance(days(1))
  local inst = s:instances{ journey = "welcome" }
  t.eq(#inst, 3)
  local ids = {}
  for _, m in ipairs(s:sent{ template = "welcome" }) do ids[#ids + 1] = m.customer end
  table.sort(ids)
  t.eq(ids, { "c1", "c2", "c3" })
end)

t.case("restarts around the slots: no slot runs twice and none is skipped", function()
  local s = sim(PING .. [[
    schedule "daily" { cron = "0 10 * * *",
                       run = function() for c in customers{} do start("ping", c, { slot = now() }) end end }
  ]])
  s:customer{ id = "c1" }
  s:advance(hours(1))       -- exactly 10:00: the first slot runs
  t.eq(#s:sent{}, 1)
  s:restart()               -- a restart at the slot's own second
  t.eq(#s:sent{}, 1)
  s:advance(minutes(1))
  s:restart()
  t.eq(#s:sent{}, 1)
  for _ = 1, 12 do          -- two days in four-hour steps, restarting after each
    s:advance(hours(4))
    s:restart()
  end
  s:advance(hours(1))
  local got = times(s:sent{})
  t.eq(got, { epoch(2026, 3, 1, 10, 0, 8), epoch(2026, 3, 2, 10, 0, 8), epoch(2026, 3, 3, 10, 0, 8) })
  t.eq(#s:instances{ journey = "ping" }, 3)
end)

t.case("a changed schedule spec re-plans it from now; a removed schedule stops", function()
  local v1 = PING .. [[
    schedule "s" { cron = "0 10 * * *", run = function() start("ping", "c1") end }
  ]]
  local v2 = PING .. [[
    schedule "s" { cron = "0 12 * * *", run = function() start("ping", "c1") end }
  ]]
  local s = sim(v1)
  s:customer{ id = "c1" }
  s:advance(days(1))                     -- Mar 1 10:00
  s:deploy{ source = v2 }
  s:advance(days(1))                     -- Mar 2 12:00
  t.eq(times(s:sent{}), { epoch(2026, 3, 1, 10, 0, 8), epoch(2026, 3, 2, 12, 0, 8) })
  s:deploy{ source = PING }
  s:advance(days(3))
  t.eq(#s:sent{}, 2)
end)

t.case("a failing run is logged, starts nothing, and the next slot runs again", function()
  local s = sim(PING .. [[
    schedule "fragile" { cron = "0 10 * * *", run = function()
      for c in customers{} do start("ping", c) end
      if segment_count{ city = "Broken" } > 0 then error("bad data in the city list") end
    end }
  ]])
  s:customer{ id = "c1", city = "Shanghai" }
  s:customer{ id = "c2", city = "Broken" }
  s:advance(hours(2))   -- the 10:00 run fails
  t.match(s:log(), "schedule 'fragile' failed")
  t.match(s:log(), "source:5: bad data in the city list")
  t.eq(#s:instances{}, 0, "what the failed run started is rolled back")
  t.eq(#s:messages{}, 0)
  s:advance(hours(2))
  t.eq(#s:instances{}, 0, "not retried before the next slot")
  s:customer{ id = "c2", city = "Chengdu" }
  s:advance(days(1))    -- the next day's 10:00 runs
  t.eq(#s:instances{}, 2)
  t.eq(#s:sent{}, 2)
  for _, m in ipairs(s:sent{}) do t.eq(m.at, epoch(2026, 3, 2, 10, 0, 8)) end
end)

t.case("a schedule starts a journey for each of 50 segment members", function()
  local s = sim([[
    template "club" { category = "transactional", sms = "club news for {{name}}" }
    segment "club" { where = { tags = "club", blocked = false } }
    journey "club_news" { run = function(c) send("sms", c, "club") end }
    schedule "monthly" { cron = "0 10 1 * *", run = function()
      for c in customers("club") do start("club_news", c) end
    end }
  ]], { start = "2026-02-27T09:00:00+08:00" })
  for i = 1, 70 do
    local member = i <= 52
    s:customer{ id = string.format("m%03d", i), name = "M" .. i, tags = member and { "club" } or nil,
                blocked = i == 51 or i == 52 }
  end
  t.eq(#s:segment("club"), 50)
  s:advance(days(3))   -- to Mar 2: the 1st's slot ran once
  local inst = s:instances{ journey = "club_news" }
  t.eq(#inst, 50)
  local seen = {}
  for _, i in ipairs(inst) do
    t.ok(not seen[i.customer], "twice: " .. i.customer)
    seen[i.customer] = true
  end
  t.eq(#s:sent{ template = "club" }, 50)
  t.eq(s:sent{ customer = "m001" }[1].body, "club news for M1")
  t.eq(#s:messages{ customer = "m051" }, 0)
  t.eq(#s:messages{ customer = "m060" }, 0)
end)

t.case("a declared schedule with a bad zone or both cron and every is refused at load", function()
  t.fails(function() sim([[schedule "s" { cron = "0 10 * * *", tz = "Moon/Base", run = function() end }]]) end,
          "tz 'Moon/Base'")
  t.fails(function() sim([[schedule "s" { cron = "0 10 * * *", every = 60, run = function() end }]]) end,
          "exactly one of 'cron' or 'every'")
  t.fails(function() sim([[schedule "s" { every = 10, run = function() end }]]) end, "minutes%(1%)")
end)
