-- Calendars: the built-in Chinese calendar against a published table, nth-weekday
-- rules, holidays from tend.lua, and the local-time triggers local_cron() and
-- holiday() firing at a local time in each customer's own zone (DST included).
local t = require "tend.test"

-- Spring Festival (lunar 1-1) and Mid-Autumn (lunar 8-15), 1990-2030: the
-- table written out from python3-lunardate (an implementation independent of
-- liblunar-date), its familiar entries matching the dates published every
-- year (Spring Festival 2024-02-10, 2025-01-29, 2026-02-17; Mid-Autumn
-- 2024-09-17, 2025-10-06). tests/cli/calendar_test.sh compares every lunar
-- holiday of 1902-2099 with python3-lunardate.
local LUNAR = {
  [1990] = { "1990-01-27", "1990-10-03" },
  [1991] = { "1991-02-15", "1991-09-22" },
  [1992] = { "1992-02-04", "1992-09-11" },
  [1993] = { "1993-01-23", "1993-09-30" },
  [1994] = { "1994-02-10", "1994-09-20" },
  [1995] = { "1995-01-31", "1995-09-09" },
  [1996] = { "1996-02-19", "1996-09-27" },
  [1997] = { "1997-02-07", "1997-09-16" },
  [1998] = { "1998-01-28", "1998-10-05" },
  [1999] = { "1999-02-16", "1999-09-24" },
  [2000] = { "2000-02-05", "2000-09-12" },
  [2001] = { "2001-01-24", "2001-10-01" },
  [2002] = { "2002-02-12", "2002-09-21" },
  [2003] = { "2003-02-01", "2003-09-11" },
  [2004] = { "2004-01-22", "2004-09-28" },
  [2005] = { "2005-02-09", "2005-09-18" },
  [2006] = { "2006-01-29", "2006-10-06" },
  [2007] = { "2007-02-18", "2007-09-25" },
  [2008] = { "2008-02-07", "2008-09-14" },
  [2009] = { "2009-01-26", "2009-10-03" },
  [2010] = { "2010-02-14", "2010-09-22" },
  [2011] = { "2011-02-03", "2011-09-12" },
  [2012] = { "2012-01-23", "2012-09-30" },
  [2013] = { "2013-02-10", "2013-09-19" },
  [2014] = { "2014-01-31", "2014-09-08" },
  [2015] = { "2015-02-19", "2015-09-27" },
  [2016] = { "2016-02-08", "2016-09-15" },
  [2017] = { "2017-01-28", "2017-10-04" },
  [2018] = { "2018-02-16", "2018-09-24" },
  [2019] = { "2019-02-05", "2019-09-13" },
  [2020] = { "2020-01-25", "2020-10-01" },
  [2021] = { "2021-02-12", "2021-09-21" },
  [2022] = { "2022-02-01", "2022-09-10" },
  [2023] = { "2023-01-22", "2023-09-29" },
  [2024] = { "2024-02-10", "2024-09-17" },
  [2025] = { "2025-01-29", "2025-10-06" },
  [2026] = { "2026-02-17", "2026-09-25" },
  [2027] = { "2027-02-06", "2027-09-15" },
  [2028] = { "2028-01-26", "2028-10-03" },
  [2029] = { "2029-02-13", "2029-09-22" },
  [2030] = { "2030-02-03", "2030-09-12" },
}

-- Qingming (solar longitude 15 degrees, Beijing time), 1990-2040: April 4 or 5,
-- cross-checked with Meeus' solar position (Astronomical Algorithms, ch. 25).
local QINGMING = {
  [1990] = 5,
  [1991] = 5,
  [1992] = 4,
  [1993] = 5,
  [1994] = 5,
  [1995] = 5,
  [1996] = 4,
  [1997] = 5,
  [1998] = 5,
  [1999] = 5,
  [2000] = 4,
  [2001] = 5,
  [2002] = 5,
  [2003] = 5,
  [2004] = 4,
  [2005] = 5,
  [2006] = 5,
  [2007] = 5,
  [2008] = 4,
  [2009] = 4,
  [2010] = 5,
  [2011] = 5,
  [2012] = 4,
  [2013] = 4,
  [2014] = 5,
  [2015] = 5,
  [2016] = 4,
  [2017] = 4,
  [2018] = 5,
  [2019] = 5,
  [2020] = 4,
  [2021] = 4,
  [2022] = 5,
  [2023] = 5,
  [2024] = 4,
  [2025] = 4,
  [2026] = 5,
  [2027] = 5,
  [2028] = 4,
  [2029] = 4,
  [2030] = 5,
  [2031] = 5,
  [2032] = 4,
  [2033] = 4,
  [2034] = 5,
  [2035] = 5,
  [2036] = 4,
  [2037] = 4,
  [2038] = 5,
  [2039] = 5,
  [2040] = 4,
}

t.case("Spring Festival and Mid-Autumn 1990-2030 match the published table", function()
  local n = 0
  for year, want in pairs(LUNAR) do
    t.eq(holiday_date("spring_festival", year), want[1], "spring_festival " .. year)
    t.eq(holiday_date("mid_autumn", year), want[2], "mid_autumn " .. year)
    n = n + 1
  end
  t.eq(n, 41)
end)

t.case("Qingming follows the solar term, 1990-2040", function()
  for year, day in pairs(QINGMING) do
    t.eq(holiday_date("qingming", year), string.format("%d-04-%02d", year, day), "qingming " .. year)
  end
end)

t.case("the other built-in dates of 2026", function()
  local want = {
    new_year = "2026-01-01", lantern = "2026-03-03", labour_day = "2026-05-01",
    dragon_boat = "2026-06-19", qixi = "2026-08-19", double_ninth = "2026-10-18",
    national_day = "2026-10-01", laba = "2026-01-26", womens_day = "2026-03-08",
    childrens_day = "2026-06-01", teachers_day = "2026-09-10", mothers_day = "2026-05-10",
    fathers_day = "2026-06-21", valentines = "2026-02-14", ["520"] = "2026-05-20",
    ["618"] = "2026-06-18", double11 = "2026-11-11", double12 = "2026-12-12", christmas = "2026-12-25",
  }
  for name, date in pairs(want) do t.eq(holiday_date(name, 2026), date, name) end
  -- Laba of lunar year 2024 falls in January 2025; lunar dates end with 2100
  t.eq(holiday_date("laba", 2025), "2025-01-07")
  t.eq(holiday_date("spring_festival", 1900), "1900-01-31")
  t.eq(holiday_date("mid_autumn", 2100), "2100-09-18")
  t.eq(holiday_date("spring_festival", 2101), nil)
  t.eq(holiday_date("mothers_day", 2027), "2027-05-09")
  t.eq(holiday_date("fathers_day", 2027), "2027-06-20")
  t.fails(function() holiday_date("mid_autum", 2026) end, "unknown holiday 'mid_autum'")
end)

t.case("is_holiday looks at the local date of the time in the customer's zone", function()
  -- 2026-09-25 is Mid-Autumn; 2026-09-24T18:00Z is already the 25th in Shanghai
  t.eq(is_holiday("mid_autumn", "2026-09-24T18:00:00Z", { timezone = "Asia/Shanghai" }), true)
  t.eq(is_holiday("mid_autumn", "2026-09-24T18:00:00Z", { timezone = "America/New_York" }), false)
  t.eq(is_holiday("mid_autumn", "2026-09-25T12:00:00Z"), true)     -- the configured zone (UTC here)
end)

local GREET = [[
template "hi" { category = "transactional", sms = "hi" }
]]

local function sends(s, filter)
  local out = {}
  for _, m in ipairs(s:sent(filter or {})) do
    out[#out + 1] = m.customer .. "@" .. os.date("!%Y-%m-%dT%H:%MZ", m.at)
  end
  table.sort(out)
  return out
end

t.case("holidays in tend.lua: a month-day and the 2nd Tuesday of every month", function()
  local s = t.sim{ source = GREET .. [[
journey "shop" { on = holiday("shop_day", { at = "10:00" }), run = function(c) send("sms", c, "hi") end }
journey "members" { on = holiday("members_day", { at = "09:30" }), run = function(c) send("sms", c, "hi") end }
]], start = "2026-08-01T00:00:00Z",
    config = { timezone = "Asia/Shanghai", synchronous = "normal", holidays = { shop_day = "09-15", members_day = "2nd tue" } } }
  s:customer{ id = "c1" }
  s:advance(days(92))
  t.eq(sends(s), { "c1@2026-08-11T01:30Z", "c1@2026-09-08T01:30Z", "c1@2026-09-15T02:00Z",
                   "c1@2026-10-13T01:30Z" })
end)

t.case("a bad holiday name, cron field, time or rule is an error at load naming the value", function()
  t.fails(function() t.sim{ source = GREET .. 'journey "j" { on = holiday("mid_autum"), run = function() end }' } end,
          "unknown holiday 'mid_autum'")
  t.fails(function() t.sim{ source = GREET .. 'journey "j" { on = local_cron("0 9 1 13 *"), run = function() end }' } end,
          'cron "0 9 1 13 %*"')
  t.fails(function() t.sim{ source = GREET .. 'journey "j" { on = holiday("qixi", { at = "25:00" }), run = function() end }' } end,
          "'25:00'")
  t.fails(function() t.sim{ source = "", config = { holidays = { x = "13-45" } } } end, "holiday 'x': '13%-45'")
  t.fails(function() t.sim{ source = "", config = { holidays = { x = "2nd tuesdayz" } } } end, "holiday 'x'")
end)

t.case("load errors name the file and line", function()
  t.fails(function() t.sim{ source = GREET .. '\n\njourney "j" { on = holiday("nope"), run = function() end }' } end,
          ":4:")
  t.fails(function() t.sim{ source = GREET .. '\njourney "j" { on = local_cron("0 9 * * 8"), run = function() end }' } end,
          ':3: bad argument #1 to \'local_cron\' %(cron "0 9 %* %* 8"')
  t.fails(function() t.sim{ source = GREET .. '\n\n\nchannel "x" { type = "capture", window = "25:00-26:00" }' } end,
          ":5: channel 'x': window '25:00%-26:00'")
end)

t.case("local_cron at 09:00 across the DST change in four zones", function()
  local s = t.sim{ source = GREET .. [[
journey "daily" { on = local_cron("0 9 * * *"), run = function(c) send("sms", c, "hi") end }
]], start = "2026-03-06T00:00:00Z", config = { timezone = "Asia/Shanghai", synchronous = "normal" } }
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:customer{ id = "be", timezone = "Europe/Berlin" }
  s:customer{ id = "sy", timezone = "Australia/Sydney" }
  s:customer{ id = "sh" }                                   -- the configured zone
  s:advance(days(35))
  local function days_of(id, from, to)
    local out = {}
    for _, x in ipairs(sends(s, { customer = id })) do
      local at = x:sub(#id + 2)
      if at >= from and at <= to then out[#out + 1] = at end
    end
    return out
  end
  t.eq(days_of("ny", "2026-03-06", "2026-03-10T23"),
       { "2026-03-06T14:00Z", "2026-03-07T14:00Z", "2026-03-08T13:00Z", "2026-03-09T13:00Z", "2026-03-10T13:00Z" })
  t.eq(days_of("be", "2026-03-27", "2026-03-31T23"),
       { "2026-03-27T08:00Z", "2026-03-28T08:00Z", "2026-03-29T07:00Z", "2026-03-30T07:00Z", "2026-03-31T07:00Z" })
  t.eq(days_of("sy", "2026-04-02T12", "2026-04-06T23:59"),
       { "2026-04-02T22:00Z", "2026-04-03T22:00Z", "2026-04-04T23:00Z", "2026-04-05T23:00Z", "2026-04-06T23:00Z" })
  t.eq(days_of("sh", "2026-04-03", "2026-04-07T23"),
       { "2026-04-03T01:00Z", "2026-04-04T01:00Z", "2026-04-05T01:00Z", "2026-04-06T01:00Z", "2026-04-07T01:00Z" })
  t.eq(#s:sent{ customer = "ny" }, 35)                       -- once a day, never twice
end)

t.case("local_cron in a DST gap fires at the shifted instant, once", function()
  local s = t.sim{ source = GREET .. [[
journey "night" { on = local_cron("30 2 * * *"), run = function(c) send("sms", c, "hi") end }
]], start = "2026-03-07T12:00:00Z", config = { timezone = "America/New_York", synchronous = "normal" } }
  s:customer{ id = "ny" }
  s:advance(days(2))
  t.eq(sends(s), { "ny@2026-03-08T07:30Z", "ny@2026-03-09T06:30Z" })  -- 03:30 EDT, then 02:30 EDT
end)

t.case("holiday with offset_days fires at the local time on the day before, across DST", function()
  local s = t.sim{ source = GREET .. [[
journey "ny" { on = holiday("ny_day", { at = "10:00", offset_days = -1, audience = { timezone = "America/New_York" } }),
               run = function(c, ev) send("sms", c, "hi") end }
journey "be" { on = holiday("be_day", { at = "10:00", offset_days = -1, audience = { timezone = "Europe/Berlin" } }),
               run = function(c, ev) send("sms", c, "hi") end }
journey "sy" { on = holiday("sy_day", { at = "10:00", offset_days = -1, audience = { timezone = "Australia/Sydney" } }),
               run = function(c, ev) send("sms", c, "hi") end }
journey "sh" { on = holiday("qingming", { at = "10:00", offset_days = 0, audience = { city = "Shanghai" } }),
               run = function(c, ev) send("sms", c, "hi") c:set{ attrs = { slot = ev.slot, date = ev.date, name = ev.name } } end }
]], start = "2026-03-01T00:00:00Z",
    config = { timezone = "Asia/Shanghai", synchronous = "normal", holidays = { ny_day = "03-08", be_day = "03-29", sy_day = "04-05" } } }
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:customer{ id = "be", timezone = "Europe/Berlin" }
  s:customer{ id = "sy", timezone = "Australia/Sydney" }
  s:customer{ id = "sh", city = "Shanghai" }
  s:advance(days(40))
  -- the day before is on the other side of the change: 10:00 there, not 10:00 +/- an hour
  t.eq(sends(s), { "be@2026-03-28T09:00Z", "ny@2026-03-07T15:00Z", "sh@2026-04-05T02:00Z", "sy@2026-04-03T23:00Z" })
end)

t.case("anniversary offset_days = -1 keeps the local hour when the day before is across DST", function()
  local s = t.sim{ source = GREET .. [[
journey "eve" { on = anniversary("birthday", { at = "10:00", offset_days = -1 }),
                run = function(c, ev) send("sms", c, "hi") end }
]], start = "2026-03-01T00:00:00Z", config = { timezone = "Asia/Shanghai", synchronous = "normal" } }
  s:customer{ id = "ny", birthday = "1990-03-08", timezone = "America/New_York" }   -- DST from Mar 8
  s:customer{ id = "be", birthday = "1990-03-29", timezone = "Europe/Berlin" }      -- DST from Mar 29
  s:customer{ id = "sy", birthday = "1990-04-05", timezone = "Australia/Sydney" }   -- DST until Apr 5
  s:customer{ id = "sh", birthday = "1990-04-06" }
  s:advance(days(40))
  -- the day before is on the other side of the change: 10:00 there, not 10:00 +/- an hour
  t.eq(sends(s), { "be@2026-03-28T09:00Z", "ny@2026-03-07T15:00Z", "sh@2026-04-05T02:00Z", "sy@2026-04-03T23:00Z" })
end)

t.case("anniversary: a customer imported after the hour waits a year, unless late allows it", function()
  local src = GREET .. [[
journey "bday" { on = anniversary("birthday", { at = "10:00" }), run = function(c) send("sms", c, "hi") end }
journey "bday_late" { on = anniversary("birthday", { at = "10:00", late = hours(6) }),
                      run = function(c) send("sms", c, "hi") end }
]]
  local s = t.sim{ source = src, start = "2026-05-01T05:00:00Z", config = { timezone = "Asia/Shanghai", synchronous = "normal" } }  -- 13:00 local
  s:customer{ id = "c1", birthday = "1990-05-01" }
  s:advance(hours(1))
  t.eq(#s:instances{ journey = "bday" }, 0)
  t.eq(#s:instances{ journey = "bday_late" }, 1)
  -- another change of the customer the same day does not fire it again
  s:customer{ id = "c1", name = "Lin" }
  s:event{ type = "page.view", customer = "c1" }
  s:advance(hours(1))
  t.eq(#s:instances{ journey = "bday_late" }, 1)
  s:advance(days(365))
  t.eq(#s:instances{ journey = "bday" }, 1)
  t.eq(#s:instances{ journey = "bday_late" }, 2)
end)

t.case("a malformed date attribute is logged, not silently skipped", function()
  local s = t.sim{ source = GREET .. [[
journey "baby" { on = anniversary("attrs.baby_birthday"), run = function(c) send("sms", c, "hi") end }
]], start = "2026-05-01T05:00:00Z" }
  s:customer{ id = "c1", attrs = { baby_birthday = "next may" } }
  t.match(s:log(), "warn: journey 'baby': customer 'c1': attrs.baby_birthday = 'next may' is not a date", nil)
end)

t.case("a slot fires once per customer, also after a restart", function()
  local s = t.sim{ source = GREET .. [[
journey "m" { on = local_cron("0 9 1 * *"), run = function(c) send("sms", c, "hi") end }
]], start = "2026-01-01T00:00:00Z", config = { timezone = "Asia/Shanghai", synchronous = "normal" } }
  for i = 1, 30 do s:customer{ id = string.format("c%02d", i) } end
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:advance(hours(2))                                       -- 2026-01-01 09:00 +08 has fired
  t.eq(#s:sent{}, 30)
  s:restart()
  s:advance(days(1))                                        -- New York's 09:00 on Jan 1
  t.eq(#s:sent{}, 31)
  s:restart()
  s:advance(days(31))
  t.eq(#s:sent{}, 62)
  t.eq(#s:sent{ customer = "ny" }, 2)
end)

-- UTC offsets (minutes) at 09:00 on the 1st of each month of 2026, from
-- Python's zoneinfo.
local OFFSETS = {
  { "Asia/Shanghai", { 480, 480, 480, 480, 480, 480, 480, 480, 480, 480, 480, 480 } },
  { "Asia/Tokyo", { 540, 540, 540, 540, 540, 540, 540, 540, 540, 540, 540, 540 } },
  { "Asia/Kolkata", { 330, 330, 330, 330, 330, 330, 330, 330, 330, 330, 330, 330 } },
  { "Asia/Dubai", { 240, 240, 240, 240, 240, 240, 240, 240, 240, 240, 240, 240 } },
  { "Africa/Cairo", { 120, 120, 120, 120, 180, 180, 180, 180, 180, 180, 120, 120 } },
  { "Europe/Berlin", { 60, 60, 60, 120, 120, 120, 120, 120, 120, 120, 60, 60 } },
  { "Europe/London", { 0, 0, 0, 60, 60, 60, 60, 60, 60, 60, 0, 0 } },
  { "America/Sao_Paulo", { -180, -180, -180, -180, -180, -180, -180, -180, -180, -180, -180, -180 } },
  { "America/New_York", { -300, -300, -300, -240, -240, -240, -240, -240, -240, -240, -300, -300 } },
  { "America/Los_Angeles", { -480, -480, -480, -420, -420, -420, -420, -420, -420, -420, -480, -480 } },
  { "Australia/Sydney", { 660, 660, 660, 660, 600, 600, 600, 600, 600, 600, 660, 660 } },
  { "Pacific/Auckland", { 780, 780, 780, 780, 720, 720, 720, 720, 720, 780, 780, 780 } },
}

t.case("a year of local_cron over 1,000 customers in 12 zones: every firing at 09:00 local", function()
  local s = t.sim{ source = GREET .. [[
journey "monthly" { on = local_cron("0 9 1 * *", { audience = { tags = has("member") } }),
                    run = function(c) send("sms", c, "hi") end }
]], start = "2025-12-31T00:00:00Z", config = { timezone = "Asia/Shanghai", synchronous = "normal" } }
  local zone_of = {}
  for i = 1, 1000 do
    local z = OFFSETS[(i % 12) + 1]
    local id = string.format("c%04d", i)
    zone_of[id] = z
    s:customer{ id = id, timezone = z[1], tags = { "member" } }
  end
  s:customer{ id = "guest", timezone = "Asia/Tokyo" }        -- not in the audience
  s:advance(days(365))                                      -- to 2026-12-31T00:00Z
  local by = {}
  for _, m in ipairs(s:sent{}) do
    by[m.customer] = by[m.customer] or {}
    table.insert(by[m.customer], m.at)
  end
  t.eq(by.guest, nil)
  local checked = 0
  for id, z in pairs(zone_of) do
    local got = by[id] or {}
    table.sort(got)
    t.eq(#got, 12, id)
    for month = 1, 12 do
      local want = os.time{ year = 2026, month = month, day = 1, hour = 9 } - z[2][month] * 60
      if got[month] ~= want then t.eq(os.date("!%Y-%m-%dT%H:%M", got[month]), os.date("!%Y-%m-%dT%H:%M", want), id) end
      checked = checked + 1
    end
  end
  t.eq(checked, 12000)
end)
