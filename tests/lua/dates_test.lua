-- Date care: anniversary() triggers fire once a year at a local time in each
-- customer's own zone, with the age in ev.years; Feb 29 dates; dates from
-- first_order_at and attrs; a changed date re-plans; quiet hours.
local t = require "tend.test"

local CONFIG = { timezone = "Asia/Shanghai", synchronous = "normal" }

local function sim(source, start, config)
  return t.sim{ source = source, start = start or "2026-03-01T09:00:00+08:00", config = config or CONFIG }
end

-- Epoch seconds of a local wall time at a fixed UTC offset (hours).
local function epoch(y, m, d, hh, mm, offset_hours)
  local yy = m <= 2 and y - 1 or y
  local era = yy // 400
  local yoe = yy - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return (era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 - offset_hours * 3600
end

local BIRTHDAY = [[
template "birthday_eve" { category = "transactional", sms = "{{ name | default: 'friend' }}, tomorrow you turn {{years}}!" }
journey "birthday" {
  on  = anniversary("birthday", { at = "10:00", offset = -days(1) }),
  run = function(c, ev) send("sms", c, "birthday_eve", { years = ev.years }) end,
}
]]

local function times_of(s, id)
  local out = {}
  for _, m in ipairs(s:sent{ customer = id }) do out[#out + 1] = m.at end
  return out
end

local function advance_by(s, total, step)
  step = step or days(30)
  while total > 0 do
    local d = math.min(step, total)
    s:advance(d)
    total = total - d
  end
end

t.case("a birthday greeting the day before at 10:00 in each customer's own zone", function()
  local s = sim(BIRTHDAY)
  s:customer{ id = "sh", name = "Lingling", birthday = "1990-03-10", timezone = "Asia/Shanghai" }
  s:customer{ id = "ny", name = "Jane", birthday = "1985-03-10", timezone = "America/New_York" }
  s:customer{ id = "dflt", name = "Wei", birthday = "2000-03-10" }   -- the configured zone
  s:customer{ id = "none", name = "No date" }
  s:advance(days(7))   -- to Mar 8 09:00 Shanghai: nothing yet
  t.eq(#s:messages{}, 0)
  s:advance(days(3))
  local sh = s:sent{ customer = "sh" }
  t.eq(#sh, 1)
  t.eq(sh[1].at, epoch(2026, 3, 9, 10, 0, 8))
  t.eq(sh[1].body, "Lingling, tomorrow you turn 36!")
  local ny = s:sent{ customer = "ny" }
  t.eq(#ny, 1)
  t.eq(ny[1].at, epoch(2026, 3, 9, 10, 0, -4), "10:00 in New York (summer time since Mar 8)")
  t.eq(ny[1].body, "Jane, tomorrow you turn 41!")
  local d = s:sent{ customer = "dflt" }
  t.eq(d[1].at, epoch(2026, 3, 9, 10, 0, 8))
  t.eq(d[1].body, "Wei, tomorrow you turn 26!")
  t.eq(#s:messages{ customer = "none" }, 0)
  -- once a year: nothing more until next March
  advance_by(s, days(300))
  t.eq(#s:sent{}, 3)
  advance_by(s, days(70))
  t.eq(#s:sent{ customer = "sh" }, 2)
  t.eq(s:sent{ customer = "sh" }[2].at, epoch(2027, 3, 9, 10, 0, 8))
  t.eq(s:sent{ customer = "sh" }[2].body, "Lingling, tomorrow you turn 37!")
  t.eq(s:sent{ customer = "ny" }[2].at, epoch(2027, 3, 9, 10, 0, -5), "winter time: DST starts Mar 14 in 2027")
end)

t.case("a birthday later today in the customer's zone still fires today", function()
  -- 09:00 in Shanghai is 20:00 the day before in New York
  local s = sim([[
    template "bd" { category = "transactional", sms = "happy {{years}}" }
    journey "bd" { on = anniversary("birthday", { at = "10:00" }),
                   run = function(c, ev) send("sms", c, "bd", { years = ev.years }) end }
  ]])
  s:customer{ id = "sh", birthday = "1990-03-01", timezone = "Asia/Shanghai" }   -- in an hour
  s:customer{ id = "ny", birthday = "1990-03-01", timezone = "America/New_York" }
  s:advance(days(1))
  t.eq(times_of(s, "sh"), { epoch(2026, 3, 1, 10, 0, 8) })
  t.eq(times_of(s, "ny"), { epoch(2026, 3, 1, 10, 0, -5) })
end)

t.case("a Feb 29 birthday is greeted on Feb 28 in common years and on Feb 29 in 2028", function()
  local s = sim([[
    template "bd" { category = "transactional", sms = "happy {{years}} {{date}}" }
    journey "leap" { on = anniversary("birthday", { at = "10:00" }),
                     run = function(c, ev) send("sms", c, "bd", { years = ev.years, date = ev.date }) end }
  ]], "2026-01-01T00:00:00+08:00")
  s:customer{ id = "leap", birthday = "2000-02-29" }
  advance_by(s, days(365 * 2 + 70))   -- into March 2028
  local m = s:sent{ customer = "leap" }
  t.eq(#m, 3)
  t.eq(m[1].at, epoch(2026, 2, 28, 10, 0, 8))
  t.eq(m[2].at, epoch(2027, 2, 28, 10, 0, 8))
  t.eq(m[3].at, epoch(2028, 2, 29, 10, 0, 8))
  t.match(m[1].body, "^happy 26 ")
  t.match(m[2].body, "^happy 27 ")
  t.match(m[3].body, "^happy 28 2028%-02%-29$")
end)

t.case("ev carries years, date and field", function()
  local s = sim([[
    template "x" { category = "transactional", sms = "{{field}} {{date}} {{years}}" }
    journey "x" { on = anniversary("birthday", { at = "09:30", offset = -days(2) }),
                  run = function(c, ev) send("sms", c, "x", { field = ev.field, date = ev.date, years = ev.years }) end }
  ]])
  s:customer{ id = "c1", birthday = "1996-03-20" }
  s:advance(days(20))
  local m = s:sent{}
  t.eq(#m, 1)
  t.eq(m[1].at, epoch(2026, 3, 18, 9, 30, 8))
  t.eq(m[1].body, "birthday 2026-03-20 30")
end)

t.case("an anniversary of the first order: a thank-you a year later", function()
  local s = sim([[
    template "anniv" { category = "transactional", sms = "{{years}} year(s) with us" }
    journey "first_order_anniversary" {
      on  = anniversary("first_order_at", { at = "11:00" }),
      run = function(c, ev) send("sms", c, "anniv", { years = ev.years }) end,
    }
  ]])
  -- an imported customer whose first order was on 2025-03-05 (Shanghai time)
  s:customer{ id = "imported", orders_count = 4, total_spent = 400,
              first_order_at = "2025-03-05T15:00:00+08:00", last_order_at = "2026-02-01T12:00:00+08:00" }
  -- a customer who orders now, during the sim
  s:event{ type = "order.paid", customer = "fresh", total = 50 }
  s:advance(days(5))
  local m = s:sent{ customer = "imported" }
  t.eq(#m, 1)
  t.eq(m[1].at, epoch(2025 + 1, 3, 5, 11, 0, 8))
  t.eq(m[1].body, "1 year(s) with us")
  t.eq(#s:messages{ customer = "fresh" }, 0, "no zero-year anniversary")
  -- a later order does not move the first-order date
  s:event{ type = "order.paid", customer = "fresh", total = 50 }
  advance_by(s, days(361))   -- Mar 1 2027 09:00 + a day
  local f = s:sent{ customer = "fresh" }
  t.eq(#f, 1)
  t.eq(f[1].at, epoch(2027, 3, 1, 11, 0, 8))
  t.eq(f[1].body, "1 year(s) with us")
end)

t.case("a baby's first birthday from attrs.baby_birthday: years == 1", function()
  local s = sim([[
    template "baby1" { category = "transactional", sms = "happy first birthday to your little one, {{name}}!" }
    journey "baby_first_birthday" {
      on   = anniversary("attrs.baby_birthday", { at = "10:00" }),
      when = function(c, ev) return ev.years == 1 end,
      run  = function(c, ev) send("sms", c, "baby1") end,
    }
  ]])
  s:customer{ id = "mom1", name = "Fang", attrs = { baby_birthday = "2025-03-04" } }
  s:customer{ id = "mom2", name = "Li", attrs = { baby_birthday = "2024-03-06" } }   -- turns 2
  s:customer{ id = "mom3", name = "Xu", attrs = { baby_birthday = "2026-01-15" } }   -- turns 1 next year
  s:advance(days(10))
  local m = s:sent{}
  t.eq(#m, 1)
  t.eq(m[1].customer, "mom1")
  t.eq(m[1].at, epoch(2026, 3, 4, 10, 0, 8))
  t.eq(m[1].body, "happy first birthday to your little one, Fang!")
  advance_by(s, days(330))   -- to Jan 2027
  t.eq(#s:sent{ customer = "mom3" }, 1)
  t.eq(s:sent{ customer = "mom3" }[1].at, epoch(2027, 1, 15, 10, 0, 8))
  t.eq(#s:messages{ customer = "mom2" }, 0)
end)

t.case("an offset that crosses the new year: the eve of a Jan 1 birthday is Dec 31, with next year's age", function()
  local s = sim(BIRTHDAY, "2026-12-01T09:00:00+08:00")
  s:customer{ id = "ny1", name = "Yuan", birthday = "1990-01-01" }
  s:advance(days(31))
  local m = s:sent{ customer = "ny1" }
  t.eq(#m, 1)
  t.eq(m[1].at, epoch(2026, 12, 31, 10, 0, 8))
  t.eq(m[1].body, "Yuan, tomorrow you turn 37!")
end)

t.case("a positive offset: a week after the date", function()
  local s = sim([[
    template "after" { category = "transactional", sms = "{{date}} +7" }
    journey "week_after" { on = anniversary("attrs.wedding", { at = "12:00", offset = days(7) }),
                           run = function(c, ev) send("sms", c, "after", { date = ev.date }) end }
  ]])
  s:customer{ id = "c1", attrs = { wedding = "2020-02-25" } }   -- Mar 3 this year
  s:customer{ id = "c2", attrs = { wedding = "2020-02-20" } }   -- Feb 27: already passed
  s:advance(days(10))
  local m = s:sent{}
  t.eq(#m, 1)
  t.eq(m[1].customer, "c1")
  t.eq(m[1].at, epoch(2026, 3, 4, 12, 0, 8))
  t.eq(m[1].body, "2026-02-25 +7")
end)

t.case("a dated journey deployed after the customers exist plans every one of them", function()
  local s = sim([[ journey "other" { on = "x", run = function(c) end } ]])
  s:customer{ id = "c1", name = "A", birthday = "1990-03-05" }
  s:customer{ id = "c2", name = "B", birthday = "1991-03-06" }
  s:advance(days(1))
  s:deploy{ source = BIRTHDAY }
  s:advance(days(6))
  t.eq(times_of(s, "c1"), { epoch(2026, 3, 4, 10, 0, 8) })
  t.eq(times_of(s, "c2"), { epoch(2026, 3, 5, 10, 0, 8) })
  -- a release where the journey is no longer date-triggered stops the greetings
  s:deploy{ source = [[
    template "birthday_eve" { category = "transactional", sms = "x" }
    journey "birthday" { on = "x", run = function(c) end }
    journey "other" { on = "x", run = function(c) end }
  ]] }
  advance_by(s, days(365))
  t.eq(#s:sent{}, 2)
end)

t.case("a changed birthday or zone re-plans the greeting", function()
  local s = sim(BIRTHDAY)
  s:customer{ id = "c1", name = "A", birthday = "1990-03-20" }
  s:customer{ id = "c2", name = "B", birthday = "1990-03-20" }
  s:advance(days(1))
  s:customer{ id = "c1", birthday = "1990-03-05" }     -- corrected: earlier
  s:customer{ id = "c2", timezone = "America/Los_Angeles" }
  s:advance(days(25))
  local m1 = s:sent{ customer = "c1" }
  t.eq(#m1, 1, "greeted on the corrected date only")
  t.eq(m1[1].at, epoch(2026, 3, 4, 10, 0, 8))
  local m2 = s:sent{ customer = "c2" }
  t.eq(#m2, 1)
  t.eq(m2[1].at, epoch(2026, 3, 19, 10, 0, -7), "10:00 in Los Angeles")
  -- a birthday moved to a date already passed this year waits for next year
  s:customer{ id = "c3", name = "C", birthday = "1990-04-01" }
  s:customer{ id = "c3", birthday = "1990-01-01" }
  s:advance(days(20))
  t.eq(#s:messages{ customer = "c3" }, 0)
end)

t.case("a birthday set from a journey with c:set is planned too", function()
  local s = sim(BIRTHDAY .. [[
    journey "profile" { on = "profile.updated", run = function(c, ev) c:set{ birthday = ev.birthday } end }
  ]])
  s:customer{ id = "c1", name = "Mei" }
  s:event{ type = "profile.updated", customer = "c1", birthday = "1999-03-04" }
  t.eq(s:customer("c1").birthday, "1999-03-04")
  s:advance(days(5))
  local m = s:sent{ customer = "c1" }
  t.eq(#m, 1)
  t.eq(m[1].at, epoch(2026, 3, 3, 10, 0, 8))
  t.eq(m[1].body, "Mei, tomorrow you turn 27!")
end)

t.case("date triggers survive restarts and fire once", function()
  local s = sim(BIRTHDAY)
  for i = 1, 20 do
    s:customer{ id = string.format("c%02d", i), birthday = string.format("19%02d-03-%02d", 70 + i, i + 2) }
  end
  for _ = 1, 8 do
    s:advance(days(3))
    s:restart()
  end
  local sent = s:sent{}
  t.eq(#sent, 20)
  local seen = {}
  for _, m in ipairs(sent) do
    t.ok(not seen[m.customer], "twice: " .. m.customer)
    seen[m.customer] = true
  end
end)

t.case("quiet hours: a transactional greeting at 22:00 goes at once; a marketing one waits for morning", function()
  local src = [[
    template "late_tx" { category = "transactional", sms = "tx" }
    template "late_mk" { category = "marketing", sms = "mk" }
    journey "late_tx" { on = anniversary("birthday", { at = "22:00" }), run = function(c) send("sms", c, "late_tx") end }
    journey "late_mk" { on = anniversary("birthday", { at = "22:00" }), run = function(c) send("sms", c, "late_mk") end }
  ]]
  local s = sim(src)
  s:customer{ id = "c1", birthday = "1990-03-02" }
  s:advance(days(3))
  local tx = s:sent{ template = "late_tx" }
  t.eq(#tx, 1)
  t.eq(tx[1].at, epoch(2026, 3, 2, 22, 0, 8))
  t.eq(tx[1].status, "sent")
  local mk = s:sent{ template = "late_mk" }
  t.eq(#mk, 1)
  t.eq(mk[1].at, epoch(2026, 3, 3, 8, 30, 8), "held until quiet hours end at 08:30")

  -- with quiet hours off, the marketing greeting goes at 22:00 too
  s = sim(src, nil, { timezone = "Asia/Shanghai", synchronous = "normal", quiet_hours = false })
  s:customer{ id = "c1", birthday = "1990-03-02" }
  s:advance(days(3))
  t.eq(s:sent{ template = "late_mk" }[1].at, epoch(2026, 3, 2, 22, 0, 8))
end)

-- Kept last: at the time of writing this case aborts the whole `tend test`
-- process (dates_sync pops the Lua stack once too often when a journey with
-- date_triggers rows is gone from the scripts; runtime/dates.c, the "gone"
-- loop of dates_sync).
t.case("a release that removes a dated journey entirely stops its greetings", function()
  local s = sim(BIRTHDAY)
  s:customer{ id = "c1", name = "A", birthday = "1990-03-05" }
  s:deploy{ source = [[ journey "other" { on = "x", run = function(c) end } ]] }
  advance_by(s, days(365))
  t.eq(#s:messages{}, 0)
  s:restart()
  t.eq(#s:messages{}, 0)
end)
