-- Customers: the fields tend maintains from events (orders, refunds,
-- activity), duplicate events, unknown customers, upsert validation, tags
-- and attrs, and the derived lifecycle and RFM scores as the clock moves.
local t = require "tend.test"

local START = "2026-03-01T09:00:00+08:00"
-- synchronous = "normal": the sims below commit once per simulated day
-- (the lifecycle sweep); full fsyncs would only make the file slow.
local function cfg(extra)
  local c = { timezone = "Asia/Shanghai", synchronous = "normal" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end
local CONFIG = cfg()

local function sim(config)
  return t.sim{ source = "", start = START, config = config or CONFIG }
end

local function sorted(list)
  local copy = {}
  for i, v in ipairs(list) do copy[i] = v end
  table.sort(copy)
  return copy
end

t.case("orders and refunds maintain counts, totals and order times by the event's own time", function()
  local s = sim()
  local t0 = s:now()
  s:customer{ id = "c1", name = "Lingling" }
  local c = s:customer("c1")
  t.eq(c.orders_count, 0)
  t.eq(c.total_spent, 0)
  t.eq(c.first_order_at, nil)
  t.eq(c.last_order_at, nil)

  s:event{ type = "order.paid", customer = "c1", total = 100 }
  c = s:customer("c1")
  t.eq(c.orders_count, 1)
  t.eq(c.total_spent, 100)
  t.eq(c.first_order_at, t0)
  t.eq(c.last_order_at, t0)
  t.eq(c.last_active_at, t0)

  s:advance(days(10))
  local t10 = s:now()
  s:event{ type = "order.paid", customer = "c1", total = 50.5 }
  c = s:customer("c1")
  t.eq(c.orders_count, 2)
  t.near(c.total_spent, 150.5, 1e-9)
  t.eq(c.first_order_at, t0)
  t.eq(c.last_order_at, t10)
  t.eq(c.last_active_at, t10)

  -- a backfilled order from a month before the first: it becomes the first
  -- order, counts, but is not the last order and not the last activity
  local old = t0 - days(30)
  s:event{ type = "order.paid", customer = "c1", total = 20, at = old }
  c = s:customer("c1")
  t.eq(c.orders_count, 3)
  t.near(c.total_spent, 170.5, 1e-9)
  t.eq(c.first_order_at, old)
  t.eq(c.last_order_at, t10)
  t.eq(c.last_active_at, t10)

  -- ISO-8601 times with an offset are accepted for a backfill too
  s:event{ type = "order.paid", customer = "c1", total = 1, at = "2026-02-28T12:00:00+08:00" }
  c = s:customer("c1")
  t.eq(c.orders_count, 4)
  t.eq(c.last_order_at, t10)

  -- a refund subtracts its total; it is not an order
  s:advance(days(1))
  local t11 = s:now()
  s:event{ type = "order.refunded", customer = "c1", total = 30 }
  c = s:customer("c1")
  t.eq(c.orders_count, 4)
  t.near(c.total_spent, 141.5, 1e-9)
  t.eq(c.last_order_at, t10)
  t.eq(c.last_active_at, t11)

  -- any other event is activity only
  s:advance(hours(2))
  s:event{ type = "page.view", customer = "c1", total = 999 }
  c = s:customer("c1")
  t.eq(c.orders_count, 4)
  t.near(c.total_spent, 141.5, 1e-9)
  t.eq(c.last_active_at, t11 + hours(2))
  t.eq(c.name, "Lingling", "events leave the known fields alone")
end)

t.case("configured order types and amount field drive the computed fields", function()
  local s = sim(cfg{ orders = { paid = { "shop.order_paid", "pos.sale" }, refunded = "shop.refund", amount = "amount" } })
  s:customer{ id = "c1" }
  s:event{ type = "shop.order_paid", customer = "c1", amount = 80, total = 1 }
  s:event{ type = "pos.sale", customer = "c1", amount = 20 }
  s:event{ type = "order.paid", customer = "c1", amount = 1000 }   -- not a paid type here
  s:event{ type = "shop.refund", customer = "c1", amount = 15 }
  local c = s:customer("c1")
  t.eq(c.orders_count, 2)
  t.eq(c.total_spent, 85)
end)

t.case("an order whose amount is not a number is refused, naming the field; nothing counts", function()
  local s = sim()
  s:customer{ id = "c1" }
  t.fails(function() s:event{ type = "order.paid", customer = "c1", total = "99.00" } end, "'total'")
  t.fails(function() s:event{ type = "order.refunded", customer = "c1", total = -5 } end, "'total'")
  local c = s:customer("c1")
  t.eq(c.orders_count, 0)
  t.eq(c.total_spent, 0)
  -- an order with no amount still counts as an order
  s:event{ type = "order.paid", customer = "c1" }
  c = s:customer("c1")
  t.eq(c.orders_count, 1)
  t.eq(c.total_spent, 0)
end)

t.case("a repeated event id is ignored: s:event returns false and nothing counts twice", function()
  local s = sim()
  s:customer{ id = "c1" }
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 100, id = "order-1" }, true)
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 100, id = "order-1" }, false)
  -- a retry with a different body is still the same event
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 999, id = "order-1" }, false)
  s:advance(hours(1))
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 100, id = "order-1" }, false)
  local c = s:customer("c1")
  t.eq(c.orders_count, 1)
  t.eq(c.total_spent, 100)
  -- a refund retried by its webhook is subtracted once
  t.eq(s:event{ type = "order.refunded", customer = "c1", total = 40, id = "refund-1" }, true)
  t.eq(s:event{ type = "order.refunded", customer = "c1", total = 40, id = "refund-1" }, false)
  t.eq(s:customer("c1").total_spent, 60)
  -- events without an id are never duplicates
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 1 }, true)
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 1 }, true)
  t.eq(s:customer("c1").orders_count, 3)
  -- ids survive a restart
  s:restart()
  t.eq(s:event{ type = "order.paid", customer = "c1", total = 100, id = "order-1" }, false)
  t.eq(s:customer("c1").orders_count, 3)
end)

t.case("an event for an unknown customer creates it, first seen at the event's time", function()
  local s = sim()
  t.eq(s:customer("ghost"), nil)
  local at = s:now() - hours(5)
  s:event{ type = "page.view", customer = "ghost", at = at }
  local c = s:customer("ghost")
  t.ok(c, "the customer exists now")
  t.eq(c.id, "ghost")
  t.eq(c.first_seen_at, at)
  t.eq(c.last_active_at, at)
  t.eq(c.orders_count, 0)
  t.eq(c.lifecycle, "new")
  -- an even older event moves first_seen_at back
  s:event{ type = "page.view", customer = "ghost", at = at - days(2) }
  t.eq(s:customer("ghost").first_seen_at, at - days(2))
  t.eq(s:customer("ghost").last_active_at, at)
  -- first sight by an order
  s:event{ type = "order.paid", customer = "buyer", total = 42 }
  c = s:customer("buyer")
  t.eq(c.orders_count, 1)
  t.eq(c.total_spent, 42)
  t.eq(c.first_seen_at, s:now())
  t.eq(c.first_order_at, s:now())
end)

t.case("a customer an event creates is the row an event on a bare customer makes, and segments find it", function()
  local s = sim()
  local at = s:now() - hours(3)
  -- "bare" exists with nothing known but its first sight; "fresh" does not
  s:event{ type = "page.view", customer = "bare", at = at }
  s:event{ type = "order.paid", customer = "bare", total = 42, at = at }
  s:event{ type = "order.paid", customer = "fresh", total = 42, at = at }
  s:event{ type = "order.refunded", customer = "refunded", total = 10, at = at }
  local bare, fresh = s:customer("bare"), s:customer("fresh")
  for _, k in ipairs{ "first_seen_at", "last_active_at", "first_order_at", "last_order_at", "orders_count",
                      "total_spent", "lifecycle", "r", "f", "m", "blocked" } do
    t.eq(fresh[k], bare[k], k)
  end
  t.eq(fresh.last_order_at, at)
  t.eq(fresh.city, nil)
  local refunded = s:customer("refunded")
  t.eq(refunded.total_spent, 0)
  t.eq(refunded.orders_count, 0)
  t.eq(refunded.last_order_at, nil)
  t.eq(refunded.first_seen_at, at)
  -- no city, region or order: matched by the negations, not by the values
  t.eq(s:segment{ last_order_at = after(at - 1) }, { "bare", "fresh" })
  t.eq(s:segment{ last_order_at = not_(after(at - 1)) }, { "refunded" })
  t.eq(s:segment{ city = not_("Shanghai") }, { "bare", "fresh", "refunded" })
  t.eq(s:segment{ region = not_("East") }, { "bare", "fresh", "refunded" })
  t.eq(s:segment{ city = "Shanghai" }, {})
  s:customer{ id = "fresh", city = "Shanghai", region = "East" }
  t.eq(s:segment{ city = "Shanghai", last_order_at = after(at - 1) }, { "fresh" })
  t.eq(s:segment{ region = "East" }, { "fresh" })
  t.eq(s:segment{ city = not_("Shanghai") }, { "bare", "refunded" })
end)

t.case("unknown_customers = 'reject' refuses events for customers not on file, naming them", function()
  local s = sim(cfg{ unknown_customers = "reject" })
  s:customer{ id = "known" }
  t.eq(s:event{ type = "order.paid", customer = "known", total = 5 }, true)
  t.fails(function() s:event{ type = "order.paid", customer = "stranger-42", total = 5 } end,
          "stranger%-42")
  t.eq(s:customer("stranger-42"), nil, "nothing was created")
  t.eq(s:customer("known").orders_count, 1)
  -- broadcasts have no customer and are not affected
  t.eq(s:event{ type = "weather.alert", city = "Shanghai" }, true)
end)

t.case("customer upsert refuses bad values and names the field; nothing is written", function()
  local s = sim()
  local err = t.fails(function() s:customer{ id = "c1", timezone = "Mars/Olympus_Mons" } end)
  t.match(err, "timezone")
  t.match(err, "Mars/Olympus_Mons")
  t.eq(s:customer("c1"), nil)

  err = t.fails(function() s:customer{ id = "c1", birthday = "2026-02-30" } end)
  t.match(err, "birthday")
  t.eq(s:customer("c1"), nil)
  t.fails(function() s:customer{ id = "c1", birthday = "30/01/1990" } end, "birthday")

  err = t.fails(function() s:customer{ id = "c1", favourite_colour = "teal" } end)
  t.match(err, "favourite_colour")
  t.match(err, "attrs")

  err = t.fails(function() s:customer{ id = "c1", lifecycle = "active" } end)
  t.match(err, "lifecycle")
  t.match(err, "computed")
  for _, f in ipairs{ "r", "f", "m" } do
    t.fails(function() s:customer{ id = "c1", [f] = 5 } end, "'" .. f .. "'")
  end
  t.fails(function() s:customer{ id = "c1", orders_count = -1 } end, "orders_count")
  t.fails(function() s:customer{ id = "c1", orders_count = 1.5 } end, "orders_count")
  t.fails(function() s:customer{ id = "c1", total_spent = "lots" } end, "total_spent")
  t.fails(function() s:customer{ id = "c1", last_order_at = "yesterday" } end, "last_order_at")
  t.fails(function() s:customer{ id = "c1", tags = { "vip", "" } } end, "tags")
  t.fails(function() s:customer{ name = "no id" } end, "'id'")
  t.eq(s:customer("c1"), nil)

  -- an existing customer is left as it was by a refused update
  s:customer{ id = "c1", city = "Shanghai", timezone = "Asia/Shanghai", birthday = "1990-05-01" }
  t.fails(function() s:customer{ id = "c1", city = "Beijing", birthday = "1990-02-30" } end, "birthday")
  local c = s:customer("c1")
  t.eq(c.city, "Shanghai")
  t.eq(c.birthday, "1990-05-01")
  -- valid values are accepted, a Feb 29 in a leap year included
  s:customer{ id = "c1", timezone = "America/New_York", birthday = "2000-02-29" }
  c = s:customer("c1")
  t.eq(c.timezone, "America/New_York")
  t.eq(c.birthday, "2000-02-29")
end)

t.case("present fields overwrite, absent ones stay; attrs merge key by key; tags replace the set", function()
  local s = sim()
  s:customer{ id = "c1", name = "Ann", city = "Shanghai", tags = { "vip", "gold" },
              attrs = { age = 30, skin = "dry", baby = { name = "Bo" } } }
  local c = s:customer("c1")
  t.eq(sorted(c.tags), { "gold", "vip" })
  t.eq(c.attrs, { age = 30, skin = "dry", baby = { name = "Bo" } })

  s:customer{ id = "c1", city = "Beijing", attrs = { skin = "oily", pets = 2 } }
  c = s:customer("c1")
  t.eq(c.name, "Ann", "absent field kept")
  t.eq(c.city, "Beijing")
  t.eq(sorted(c.tags), { "gold", "vip" }, "tags untouched when absent")
  t.eq(c.attrs.age, 30)
  t.eq(c.attrs.skin, "oily")
  t.eq(c.attrs.pets, 2)
  t.eq(c.attrs.baby, { name = "Bo" })

  s:customer{ id = "c1", tags = { "new" } }
  t.eq(s:customer("c1").tags, { "new" })
  t.eq(s:customer("c1").attrs.skin, "oily", "attrs untouched when absent")
end)

t.case("tags = {} clears every tag (an empty Lua table is the empty set)", function()
  local s = sim()
  s:customer{ id = "c1", tags = { "vip", "gold" } }
  s:customer{ id = "c1", tags = {} }
  t.eq(s:customer("c1").tags, {})
end)

-- A key whose value is JSON null is removed from attrs (customer.h: "null
-- deletes a key"). A Lua table cannot hold nil, and json_from_lua has no null
-- sentinel, so the only way a script can ask for the removal is a journey's
-- c:set, whose field map is JSON as well. This case records what a script can
-- and cannot do: it must at least be able to overwrite the value.
t.case("attrs values can be overwritten from a journey with c:set", function()
  local s = t.sim{ source = [[
    journey "upd" { on = "go", run = function(c) c:set{ ["attrs.skin"] = "normal", city = "Hangzhou" } end }
  ]], start = START, config = CONFIG }
  s:customer{ id = "c1", attrs = { skin = "dry", age = 30 } }
  s:event{ type = "go", customer = "c1" }
  local c = s:customer("c1")
  t.eq(c.attrs, { skin = "normal", age = 30 })
  t.eq(c.city, "Hangzhou")
end)

t.case("lifecycle: new, repeat, active with orders; then silent, churned, dead as months pass with no event", function()
  local s = sim()   -- defaults: silent 90 days, churned 180, dead 365, active at 3 orders
  s:customer{ id = "c1" }
  t.eq(s:customer("c1").lifecycle, "new")
  s:event{ type = "order.paid", customer = "c1", total = 10 }
  local c = s:customer("c1")
  t.eq(c.lifecycle, "new")
  t.eq(c.r, 5)
  s:advance(days(3))
  s:event{ type = "order.paid", customer = "c1", total = 10 }
  t.eq(s:customer("c1").lifecycle, "repeat")
  s:advance(days(3))
  s:event{ type = "order.paid", customer = "c1", total = 10 }
  c = s:customer("c1")
  t.eq(c.lifecycle, "active")
  t.eq(c.r, 5)
  t.eq(c.f, 3)   -- 3 orders: at least rfm.f[3] = 3

  -- from here no event at all: only the daily sweep can move these
  local seen = {}
  local function at_day(d, lifecycle, r)
    local target = d * 86400
    local elapsed = s:now() - c.last_order_at
    s:advance(target - elapsed)
    local now = s:customer("c1")
    t.eq(now.lifecycle, lifecycle, "lifecycle on day " .. d)
    t.eq(now.r, r, "r on day " .. d)
    seen[#seen + 1] = now.lifecycle
  end
  at_day(29, "active", 5)
  at_day(32, "active", 4)     -- more than 30 days: r 4
  at_day(62, "active", 3)     -- more than 60 days: r 3
  at_day(89, "active", 3)
  at_day(91, "silent", 2)     -- 90 days: silent; more than 90: r 2
  at_day(150, "silent", 2)
  at_day(181, "churned", 1)   -- 180 days: churned; more than 180: r 1
  at_day(300, "churned", 1)
  at_day(366, "dead", 1)
  at_day(400, "dead", 1)
  t.eq(s:customer("c1").orders_count, 3, "no order was invented")

  -- an order brings the customer back at once
  s:event{ type = "order.paid", customer = "c1", total = 10 }
  c = s:customer("c1")
  t.eq(c.lifecycle, "active")
  t.eq(c.r, 5)
end)

t.case("lifecycle and r survive restarts: the sweep picks up where it left off", function()
  local s = sim()
  s:customer{ id = "c1" }
  s:event{ type = "order.paid", customer = "c1", total = 10 }
  for _ = 1, 10 do
    s:advance(days(10))
    s:restart()
  end
  -- 100 days after the only order
  local c = s:customer("c1")
  t.eq(c.lifecycle, "silent")
  t.eq(c.r, 2)
end)

t.case("a customer who never ordered ages by first_seen_at: silent after 90 days, dead after 365", function()
  local s = sim()
  s:customer{ id = "browser" }
  s:event{ type = "page.view", customer = "walker" }
  t.eq(s:customer("browser").lifecycle, "new")
  s:advance(days(91))
  t.eq(s:customer("browser").lifecycle, "silent", "no order in 91 days since first seen")
  t.eq(s:customer("walker").lifecycle, "silent")
  s:advance(days(90))
  t.eq(s:customer("browser").lifecycle, "churned")
  s:advance(days(185))
  t.eq(s:customer("browser").lifecycle, "dead")
  t.eq(s:customer("browser").r, 1)
end)

t.case("RFM scores for given recency, orders and totals follow the default thresholds", function()
  -- r: days since the last order at most 30/60/90/180 -> 5/4/3/2, else 1
  -- f: at least 10/5/3/2 orders -> 5/4/3/2, else 1
  -- m: at least 3000/1000/300/100 spent -> 5/4/3/2, else 1
  local s = sim()
  local now = s:now()
  local rows = {
    { "a", 10, 3000,    30, 5, 5, 5 },
    { "b", 9,  2999.99, 31, 4, 4, 4 },
    { "c", 5,  1000,    60, 4, 4, 4 },
    { "d", 4,  999,     61, 3, 3, 3 },
    { "e", 3,  300,     90, 3, 3, 3 },
    { "f", 2,  299.5,   91, 2, 2, 2 },
    { "g", 2,  100,    180, 2, 2, 2 },
    { "h", 1,  99,     181, 1, 1, 1 },
    { "i", 12, 50000,    0, 5, 5, 5 },
  }
  for _, row in ipairs(rows) do
    s:customer{ id = row[1], orders_count = row[2], total_spent = row[3],
                first_order_at = now - days(400), last_order_at = now - days(row[4]) }
  end
  s:customer{ id = "none" }
  for _, row in ipairs(rows) do
    local c = s:customer(row[1])
    t.eq({ c.r, c.f, c.m }, { row[5], row[6], row[7] }, "customer " .. row[1])
  end
  local c = s:customer("none")
  t.eq({ c.r, c.f, c.m }, { 1, 1, 1 }, "no orders")
  -- imported history sets the lifecycle too
  t.eq(s:customer("a").lifecycle, "active")
  t.eq(s:customer("f").lifecycle, "silent")
  t.eq(s:customer("h").lifecycle, "churned")
  t.eq(s:customer("none").lifecycle, "new")
  -- an update of the maintained fields re-derives the scores
  s:customer{ id = "h", orders_count = 10, total_spent = 3000, last_order_at = now }
  c = s:customer("h")
  t.eq({ c.r, c.f, c.m, c.lifecycle }, { 5, 5, 5, "active" })
  -- orders move f and m
  s:event{ type = "order.paid", customer = "none", total = 150 }
  s:event{ type = "order.paid", customer = "none", total = 150 }
  c = s:customer("none")
  t.eq({ c.r, c.f, c.m, c.lifecycle }, { 5, 2, 3, "repeat" })
end)

t.case("custom lifecycle and RFM thresholds from the config", function()
  local s = sim(cfg{
    lifecycle = { silent = days(30), churned = days(60), dead = days(90), active_orders = 2 },
    rfm = { r = { 7, 14, 21, 28 }, f = { 4, 3, 2, 1 }, m = { 400, 300, 200, 100 } } })
  s:customer{ id = "c1" }
  s:event{ type = "order.paid", customer = "c1", total = 150 }
  local c = s:customer("c1")
  t.eq(c.lifecycle, "new")
  t.eq({ c.r, c.f, c.m }, { 5, 2, 2 })
  s:event{ type = "order.paid", customer = "c1", total = 150 }
  c = s:customer("c1")
  t.eq(c.lifecycle, "active", "2 orders are active with active_orders = 2")
  t.eq({ c.r, c.f, c.m }, { 5, 3, 4 })
  s:advance(days(8))
  t.eq(s:customer("c1").r, 4)
  s:advance(days(7))     -- day 15
  t.eq(s:customer("c1").r, 3)
  s:advance(days(14))    -- day 29
  c = s:customer("c1")
  t.eq(c.lifecycle, "active")
  t.eq(c.r, 1)
  s:advance(days(2))     -- day 31
  t.eq(s:customer("c1").lifecycle, "silent")
  s:advance(days(30))    -- day 61
  t.eq(s:customer("c1").lifecycle, "churned")
  s:advance(days(30))    -- day 91
  t.eq(s:customer("c1").lifecycle, "dead")
end)

t.case("a misspelt lifecycle setting is refused, naming it", function()
  t.fails(function()
    sim(cfg{ lifecycle = { silent = days(30), churn = days(60) } })
  end, "lifecycle%.churn")
  t.fails(function()
    sim(cfg{ lifecycle = { silent = days(100), churned = days(60), dead = days(90) } })
  end, "silent < churned < dead")
end)

t.case("c:set with a dotted attrs path writes the nested attribute that segments read", function()
  local s = t.sim{ source = [[
    journey "j" { on = "go", run = function(c) c:set{ ["attrs.baby.age"] = 2, ["attrs.baby.name"] = "Dou" } end }
  ]], config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "c1", attrs = { baby = { age = 1, born = "2024-05-01" } } }
  s:event{ type = "go", customer = "c1" }
  local attrs = s:customer("c1").attrs
  t.eq(attrs.baby, { age = 2, name = "Dou", born = "2024-05-01" })
  t.eq(s:segment{ ["attrs.baby.age"] = 2 }, { "c1" })
end)
