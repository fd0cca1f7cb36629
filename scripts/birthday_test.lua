local t = require "tend.test"

local function sim(start)
  return t.sim{ scripts = { "birthday.lua" }, start = start or "2026-01-01T00:00:00Z",
                config = { timezone = "Asia/Shanghai" } }
end

t.case("the day before the birthday at 10:00 in the customer's zone", function()
  local s = sim()
  s:customer{ id = "sh", name = "Hua", birthday = "1990-03-15" }
  s:customer{ id = "ny", name = "Nora", birthday = "1985-03-15", timezone = "America/New_York",
              attrs = { lang = "en" } }
  s:advance(days(80))
  local sh = s:sent{ customer = "sh" }[1]
  local ny = s:sent{ customer = "ny" }[1]
  t.eq(sh.at, os.time{ year = 2026, month = 3, day = 14, hour = 2 })        -- 10:00 +08:00
  t.eq(ny.at, os.time{ year = 2026, month = 3, day = 14, hour = 14 })       -- 10:00 EDT
  t.match(sh.body, "^Hua，明天是您的生日，提前祝您生日快乐！送您一份小礼物：优惠码 BDAY%w+ 立减 ¥15%.00，3月28日前有效。$")
  -- Nora's coupon ends 14 days later in her own zone: March 28 in New York.
  t.match(ny.body, "^Nora, happy birthday for tomorrow! A small gift from us: BDAY%w+ takes ¥15%.00 off, until March 28%.$")
end)

t.case("a Feb 29 birthday is greeted on Feb 27 in common years, Feb 28 in leap years", function()
  local s = sim()
  s:customer{ id = "leap", birthday = "2000-02-29" }
  s:advance(days(365) * 2 + days(90))    -- through 2026, 2027 and into 2028
  local at = {}
  for _, m in ipairs(s:sent{ customer = "leap" }) do at[#at + 1] = os.date("!%Y-%m-%d", m.at) end
  t.eq(at, { "2026-02-27", "2027-02-27", "2028-02-28" })
end)

t.case("a baby's first birthday, once", function()
  local s = sim()
  s:customer{ id = "p1", name = "Ping", attrs = { baby_birthday = "2025-06-10" } }
  s:advance(days(365) + days(200))
  local m = s:sent{ template = "baby_first_birthday" }
  t.eq(#m, 1)
  t.eq(os.date("!%Y-%m-%d %H:%M", m[1].at), "2026-06-10 02:00")
end)

t.case("a changed birthday moves the greeting", function()
  local s = sim()
  s:customer{ id = "c1", birthday = "1990-05-01" }
  s:customer{ id = "c1", birthday = "1990-02-01" }
  s:advance(days(40))
  t.eq(os.date("!%Y-%m-%d", s:sent{ customer = "c1" }[1].at), "2026-01-31")
end)

t.case("the eve keeps 10:00 when the day before the birthday is across a DST change", function()
  local s = sim()
  s:customer{ id = "ny", birthday = "1985-03-08", timezone = "America/New_York" }  -- DST begins Mar 8
  s:advance(days(70))
  t.eq(os.date("!%Y-%m-%dT%H:%M", s:sent{ customer = "ny" }[1].at), "2026-03-07T15:00")  -- 10:00 EST
end)
