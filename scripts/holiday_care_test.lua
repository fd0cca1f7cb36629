local t = require "tend.test"

local function sim()
  return t.sim{ scripts = { "holiday_care.lua" }, start = "2026-09-01T00:00:00Z",
                config = { timezone = "Asia/Shanghai", synchronous = "normal" } }
end

local function paid(s, id, total)
  s:event{ type = "order.paid", customer = id, total = total }
end

local function setup(s)
  s:customer{ id = "ord", name = "Lin" }
  paid(s, "ord", 120)
  s:customer{ id = "high", name = "Wang", timezone = "America/New_York" }
  paid(s, "high", 3500)
  s:customer{ id = "top", name = "Zhao", attrs = { manager = "mei" } }
  paid(s, "top", 25000)
  s:customer{ id = "tagged", name = "Qian", tags = { "top_tier" } }
  paid(s, "tagged", 500)
  s:customer{ id = "lead", name = "Sun" }                         -- never ordered: not a member
end

t.case("Mid-Autumn eve at 10:00 local: a gift by tier", function()
  local s = sim()
  setup(s)
  s:advance(days(30))                                             -- Mid-Autumn 2026 is Sept 25
  local ord = s:sent{ customer = "ord", template = "mid_autumn_coupon" }
  t.eq(#ord, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", ord[1].at), "2026-09-24T02:00")     -- 10:00 in Shanghai
  t.match(ord[1].body, "^Lin, wishing you a bright full moon and a happy reunion! Our gift: FEST%w+, 20 off until 2026%-10%-08%.$")

  local high = s:sent{ customer = "high" }
  t.eq(#high, 1)
  t.eq(high[1].template, "mid_autumn_card")
  t.eq(os.date("!%Y-%m-%dT%H:%M", high[1].at), "2026-09-24T14:00")    -- 10:00 EDT
  local gifts = s:tasks{ customer = "high" }
  t.eq(#gifts, 1)
  t.eq(gifts[1].assignee, "gifts")
  t.match(gifts[1].note, "Mid%-Autumn gift box")

  for _, id in ipairs({ "top", "tagged" }) do
    local m = s:sent{ customer = id }
    t.eq(#m, 1, id)
    t.eq(m[1].template, "mid_autumn_greeting", id)
    local visits = s:tasks{ customer = id }
    t.eq(#visits, 1, id)
    t.match(visits[1].note, "Mid%-Autumn visit with a gift box %(2026%-09%-25%)")
  end
  t.eq(s:tasks{ customer = "top" }[1].assignee, "mei")
  t.match(s:sent{ customer = "top" }[1].body, "mei will call on you")
  t.eq(s:tasks{ customer = "tagged" }[1].assignee, "key_accounts")

  t.eq(#s:messages{ customer = "lead" }, 0)
  t.eq(#s:messages{ template = "mid_autumn_coupon" }, 1)              -- once each
end)

t.case("Spring Festival eve, the next year, for each tier again", function()
  local s = sim()
  setup(s)
  s:advance(days(160))                                            -- Spring Festival 2027 is Feb 6
  local m = s:sent{ template = "spring_festival_coupon" }
  t.eq(#m, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", m[1].at), "2027-02-05T02:00")
  t.match(m[1].body, "health and good fortune in the new year")
  t.eq(#s:sent{ template = "spring_festival_card" }, 1)
  t.eq(#s:sent{ template = "spring_festival_greeting" }, 2)
  t.eq(#s:tasks{ customer = "top" }, 2)                           -- Mid-Autumn and Spring Festival visits
end)
