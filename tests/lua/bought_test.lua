-- What was bought: order lines from events, the bought filter against a
-- brute-force evaluation over 10,000 random customers, c:bought (and its
-- replay), runs_out_at, product(), and the validation of items.
local t = require "tend.test"

local START = "2026-03-01T09:00:00+08:00"
local CONFIG = { timezone = "Asia/Shanghai", synchronous = "normal", quiet_hours = false }

local function sim(source)
  return t.sim{ source = source or "", start = START, config = CONFIG }
end

local function lcg(seed)
  local x = seed
  local r = {}
  function r.int(lo, hi)
    x = (x * 1103515245 + 12345) % 2147483648
    return lo + x % (hi - lo + 1)
  end
  return r
end

local SKUS, CATS = {}, { "coffee", "tea", "baby", "pet", "care" }
for i = 1, 20 do SKUS[i] = { sku = string.format("S%02d", i), category = CATS[(i - 1) % 5 + 1] } end

t.case("property: bought filters over 10,000 random customers match a brute-force count", function()
  local s = sim()
  local now = s:now()
  local rng = lcg(20261201)
  local people, N, events = {}, 10000, {}
  for i = 1, N do
    local id = string.format("c%05d", i)
    local p = { id = id, city = rng.int(1, 2) == 1 and "Shanghai" or "Beijing", orders = {} }
    people[i] = p
    s:customer{ id = id, city = p.city }
    -- a third never order; the others 1..4 orders in the last 120 days
    local n = rng.int(1, 3) == 1 and 0 or rng.int(1, 4)
    for o = 1, n do
      local at = now - rng.int(0, 120 * 86400)
      local items, order = {}, { at = at, skus = {}, cats = {} }
      for k = 1, rng.int(1, 3) do
        local sk = SKUS[rng.int(1, #SKUS)]
        items[k] = { sku = sk.sku, category = sk.category, qty = rng.int(1, 3), price = 10 }
        order.skus[sk.sku], order.cats[sk.category] = true, true
      end
      p.orders[o] = order
      events[#events + 1] = { type = "order.paid", customer = id, order = id .. "-" .. o, at = at,
                              total = 10 * #items, items = items }
    end
  end
  s:events(events)
  -- the brute force: orders that had the key in the window
  local function count(p, spec)
    local since = spec.within and now - spec.within or nil
    local n = 0
    for _, o in ipairs(p.orders) do
      local has = spec.sku and o.skus[spec.sku] or spec.category and o.cats[spec.category]
      if has and (not since or o.at >= since) then n = n + 1 end
    end
    return n
  end
  local specs = {}
  for i = 1, 24 do
    local spec = {}
    if rng.int(1, 2) == 1 then spec.sku = SKUS[rng.int(1, #SKUS)].sku else spec.category = CATS[rng.int(1, #CATS)] end
    if rng.int(1, 3) > 1 then spec.within = rng.int(1, 100) * 86400 end
    if rng.int(1, 3) == 1 then spec.at_least = rng.int(2, 3) end
    specs[i] = spec
  end
  local partial = 0
  for i, spec in ipairs(specs) do
    local negate, with_city = i % 4 == 0, i % 3 == 0
    local want = {}
    for _, p in ipairs(people) do
      local m = count(p, spec) >= (spec.at_least or 1)
      if negate then m = not m end
      if with_city and p.city ~= "Shanghai" then m = false end
      if m then want[#want + 1] = p.id end
    end
    local f
    if negate then f = { not_(bought(spec)) } else f = { bought = spec } end
    if with_city then f.city = "Shanghai" end
    local got, counted = s:segment(f)
    t.eq(#got, #want, "members counted of " .. t.show(f))
    t.eq(counted, #want, "segment_count of " .. t.show(f))
    t.eq(table.concat(got, ","), table.concat(want, ","), "members of " .. t.show(f))
    if #want > 0 and #want < N then partial = partial + 1 end
  end
  t.ok(partial >= 20, "most filters match some but not all customers (got " .. partial .. ")")
end)

t.case("an order's lines count once: shipped and delivered events of the same order add nothing", function()
  local s = sim()
  local items = { { sku = "B1", qty = 2, price = 5, category = "coffee" }, { sku = "B1", qty = 1, category = "coffee" } }
  s:event{ type = "order.paid", customer = "c1", order = "o1", total = 15, items = items }
  s:event{ type = "order.delivered", customer = "c1", order = "o1", items = items }
  s:event{ type = "order.paid", customer = "c1", order = 2, total = 5, items = { { sku = "B2", category = "coffee" } } }
  t.eq(s:segment{ bought = { sku = "B1" } }, { "c1" })
  t.eq(s:segment{ bought = { sku = "B1", at_least = 2 } }, {}, "two lines of B1 in one order are one order")
  t.eq(s:segment{ bought = { category = "coffee", at_least = 2 } }, { "c1" })
  t.eq(s:segment{ bought = { category = "coffee", at_least = 3 } }, {})
  -- a refund carrying items is not a purchase
  s:event{ type = "order.refunded", customer = "c2", order = "o9", total = 5, items = { { sku = "B1" } } }
  t.eq(s:segment{ bought = { sku = "B1" } }, { "c1" })
end)

t.case("orders stored in several batches, out of time order: at_least in a window and counts as if stored at once", function()
  local s = sim()
  local now = s:now()
  local function paid(customer, order, ago, sku, category)
    return { type = "order.paid", customer = customer, order = order, at = now - days(ago),
             items = { { sku = sku, category = category } } }
  end
  -- c1's coffee orders 5, 50 and 80 days ago, each its own event (merged
  -- into the stored facts one by one); c2 one coffee order; c3 tea only;
  -- c4 one order 60 days ago, then two newer ones in one batch
  s:event(paid("c1", "a1", 5, "B1", "coffee"))
  s:event(paid("c1", "a2", 50, "B2", "coffee"))
  s:event(paid("c1", "a3", 80, "B3", "coffee"))
  s:event(paid("c2", "b1", 1, "B1", "coffee"))
  s:event(paid("c3", "c1", 1, "T1", "tea"))
  s:event(paid("c4", "d1", 60, "B4", "coffee"))
  s:events{ paid("c4", "d2", 10, "B4", "coffee"), paid("c4", "d3", 3, "B4", "coffee") }
  local function seg(spec)
    local got, counted = s:segment{ bought = spec }
    t.eq(counted, #got, "segment_count agrees with the members of " .. t.show(spec))
    return got
  end
  t.eq(seg{ category = "coffee", at_least = 2, within = days(4) }, {}, "one order within 4 days")
  t.eq(seg{ category = "coffee", at_least = 2, within = days(10) }, { "c4" }, "c4: 3 and 10 days ago")
  t.eq(seg{ category = "coffee", at_least = 2, within = days(50) }, { "c1", "c4" }, "c1: 5 and 50 days ago")
  t.eq(seg{ category = "coffee", at_least = 2, within = days(49) }, { "c4" }, "c1's second latest is 50 days ago")
  t.eq(seg{ sku = "B4", at_least = 3, within = days(60) }, { "c4" })
  t.eq(seg{ sku = "B4", at_least = 3, within = days(59) }, {})
  t.eq(seg{ category = "coffee", at_least = 3, within = days(80) }, { "c1", "c4" })
  t.eq(seg{ category = "coffee", at_least = 3, within = days(79) }, { "c4" })
  t.eq(seg{ category = "coffee", at_least = 3 }, { "c1", "c4" })
  t.eq(seg{ category = "coffee", at_least = 4 }, {})
  t.eq(seg{ category = "coffee", at_least = 2 }, { "c1", "c4" })
  t.eq(seg{ category = "coffee" }, { "c1", "c2", "c4" })
  t.eq(seg{ sku = "B1" }, { "c1", "c2" })
  t.eq(seg{ category = "tea" }, { "c3" })
  t.eq(seg{ sku = "NONE" }, {})
  local got, counted = s:segment{ not_(bought{ category = "coffee" }) }
  t.eq(got, { "c3" })
  t.eq(counted, 1)
  -- an order seen again adds nothing; a later one moves the window
  s:event{ type = "order.delivered", customer = "c2", order = "b1", items = { { sku = "B1", category = "coffee" } } }
  t.eq(seg{ category = "coffee", at_least = 2 }, { "c1", "c4" })
  s:event(paid("c2", "b2", 2, "B9", "coffee"))
  t.eq(seg{ category = "coffee", at_least = 2, within = days(2) }, { "c2" })
  t.eq(seg{ category = "coffee", at_least = 2 }, { "c1", "c2", "c4" })
end)

t.case("a bad item rejects the whole event, naming the event and the item; nothing is stored", function()
  local s = sim()
  s:customer{ id = "c1" }
  local function bad(items, pattern)
    t.fails(function()
      s:event{ type = "order.paid", customer = "c1", id = "ev-7", order = "o7", total = 1, items = items }
    end, pattern)
  end
  bad({ { sku = "B1", qty = 1 }, { qty = 2 } }, "event 'ev%-7': item 2: field 'sku' is required")
  bad({ { sku = "B1", qty = "two" } }, "item 1 %(sku B1%): field 'qty' must be a number above 0")
  bad({ { sku = "B1", qty = 0 } }, "field 'qty' must be a number above 0")
  bad({ { sku = "B1", price = "9.9" } }, "item 1 %(sku B1%): field 'price' must be a non%-negative number")
  bad({ { sku = "B1", price = -1 } }, "field 'price'")
  bad({ { sku = "" } }, "item 1: field 'sku' must be a string")
  bad({ { sku = "B1", category = 7 } }, "field 'category' must be a string")
  bad({ "B1" }, "item 1: must be an object")
  bad("B1", "field 'items' must be a list")
  t.eq(s:customer("c1").orders_count, 0, "no rejected order was counted")
  t.eq(s:segment{ bought = { sku = "B1" } }, {})
  -- without an event id, the message still names the item
  t.fails(function() s:event{ type = "order.paid", customer = "c1", items = { {} } } end, "^[^']*item 1: field 'sku'")
  -- items on other events are their own business
  s:event{ type = "cart.updated", customer = "c1", items = { { qty = "many" } } }
end)

t.case("bought filter errors name what is wrong", function()
  local s = sim()
  t.fails(function() s:segment{ bought = {} } end, "bought needs sku = ... or category = ...")
  t.fails(function() s:segment{ bought = { sku = "a", category = "b" } } end, "not both")
  t.fails(function() s:segment{ bought = { sku = "a", since = 1 } } end, "unknown key 'since'")
  t.fails(function() s:segment{ bought = { sku = "a", within = -5 } } end, "'within' must be a whole number")
  t.fails(function() s:segment{ bought = { sku = "a", at_least = 0 } } end, "'at_least' must be a whole number of at least 1")
  t.fails(function() s:segment{ bought = "a" } end, "bought needs")
  t.fails(function() s:segment{ bought = at_least(1) } end, "does not apply to bought")
  t.fails(function() s:segment{ city = bought{ sku = "a" } } end, "bought is a condition of its own")
  t.eq(s:segment{ bought = not_{ sku = "a" } }, {})
end)

t.case("c:bought gives count and last_at, in a window too", function()
  local s = sim()
  local now = s:now()
  s:event{ type = "order.paid", customer = "c1", order = "a", at = now - days(40), items = { { sku = "B1", qty = 2, category = "coffee" } } }
  s:event{ type = "order.paid", customer = "c1", order = "b", at = now - days(5), items = { { sku = "B1", qty = 1, category = "coffee" } } }
  s:event{ type = "order.paid", customer = "c1", order = "c", at = now - days(2), items = { { sku = "T1", category = "tea" } } }
  local s2 = t.sim{ start = START, config = CONFIG, source = [[
    schedule "probe" { every = days(1), run = function()
      for c in customers{ id = "c1" } do
        local n, last = c:bought{ sku = "B1" }
        local w, wl = c:bought{ category = "coffee", within = days(10) }
        local z, zl = c:bought{ sku = "NONE" }
        log(string.format("B1 %d %d coffee10 %d %d none %d %s", n, last, w, wl, z, tostring(zl)))
      end
    end }
  ]] }
  s2:event{ type = "order.paid", customer = "c1", order = "a", at = s2:now() - days(40), items = { { sku = "B1", qty = 2, category = "coffee" } } }
  s2:event{ type = "order.paid", customer = "c1", order = "b", at = s2:now() - days(5), items = { { sku = "B1", qty = 1, category = "coffee" } } }
  s2:advance(days(1))
  local start = s2:now() - days(1)
  t.match(s2:log(), string.format("B1 2 %d coffee10 1 %d none 0 nil", start - days(5), start - days(5)))
  t.eq(s:segment{ bought = { sku = "B1", within = days(10) } }, { "c1" })
  t.eq(s:segment{ bought = { sku = "B1", within = days(3) } }, {})
end)

t.case("c:bought inside a run is recorded: a replay sees what the first run saw", function()
  local s = sim([[
    template "counts" { category = "transactional", sms = "before {{a}} after {{b}}" }
    journey "probe" {
      on = "signup",
      run = function(c)
        local a = c:bought{ sku = "B1" }
        wait(days(1))
        local b = c:bought{ sku = "B1" }
        send("sms", c, "counts", { a = a, b = b })
      end,
    }
  ]])
  s:event{ type = "order.paid", customer = "c1", order = "o1", items = { { sku = "B1" } } }
  s:event{ type = "signup", customer = "c1" }
  s:event{ type = "order.paid", customer = "c1", order = "o2", items = { { sku = "B1" } } }
  s:restart()
  s:advance(days(1))
  local m = s:sent{ template = "counts" }
  t.eq(#m, 1)
  t.match(m[1].body, "before 1 after 2")
  t.eq(s:instances{ journey = "probe" }[1].state, "done")
end)

t.case("events processed in one batch: a journey sees the lines of every order before its event", function()
  -- order lines of a batch are written together at its end, unless
  -- something that may read them runs first (a journey started, a wait)
  local s = sim([[
    template "seen" { category = "transactional", sms = "{{what}} B1 {{n}} coffee {{k}}" }
    journey "on_order" {
      on = "order.paid",
      run = function(c, ev)
        if ev.order == "o3" then
          send("sms", c, "seen", { what = "order", n = c:bought{ sku = "B1" }, k = c:bought{ category = "coffee" } })
        end
      end,
    }
    journey "on_visit" {
      on = "visit",
      run = function(c)
        send("sms", c, "seen", { what = "visit", n = c:bought{ sku = "B1" }, k = c:bought{ category = "coffee" } })
      end,
    }
  ]])
  s:customer{ id = "c2", phone = "+8613800000002" }
  s:customer{ id = "c3", phone = "+8613800000003" }
  local B1 = { { sku = "B1", category = "coffee" } }
  s:events{
    { type = "order.paid", customer = "c2", order = "o1", items = B1 },
    { type = "order.paid", customer = "c2", order = "o1", items = B1 },   -- the same order again
    { type = "order.paid", customer = "c2", order = "o2", items = { { sku = "T1", category = "coffee" } } },
    { type = "visit", customer = "c2" },
    { type = "order.paid", customer = "c3", order = "o9", items = B1 },
    { type = "order.paid", customer = "c3", order = "o3", items = B1 },
  }
  local m = s:sent{ template = "seen" }
  local bodies = {}
  for i, x in ipairs(m) do bodies[i] = x.body end
  table.sort(bodies)
  t.eq(bodies, { "order B1 2 coffee 2", "visit B1 1 coffee 2" })
end)

t.case("runs_out_at: supply from the quantities bought and the product's usage_days", function()
  local s = sim([[
    schedule "probe" { every = days(1), run = function()
      for c in customers{} do
        log(c.id, tostring(runs_out_at(c, "B1")), tostring(runs_out_at(c, "NOUSE")), tostring(runs_out_at(c, "GHOST")))
      end
    end }
  ]])
  local now = s:now()
  s:product{ sku = "B1", usage_days = 10 }
  s:product{ sku = "NOUSE", name = "no usage_days" }
  -- a: one purchase of 2 units 5 days ago → 20 days of supply from then
  s:event{ type = "order.paid", customer = "a", order = "a1", at = now - days(5), items = { { sku = "B1", qty = 2 }, { sku = "NOUSE" }, { sku = "GHOST" } } }
  -- b: bought 1 unit 30 days ago (ran out 20 days ago), then 1 unit 3 days ago: starts again from then
  s:event{ type = "order.paid", customer = "b", order = "b1", at = now - days(30), items = { { sku = "B1" } } }
  s:event{ type = "order.paid", customer = "b", order = "b2", at = now - days(3), items = { { sku = "B1" } } }
  -- c: bought again before running out: the new units add to the end
  s:event{ type = "order.paid", customer = "c", order = "c1", at = now - days(8), items = { { sku = "B1" } } }
  s:event{ type = "order.paid", customer = "c", order = "c2", at = now - days(4), items = { { sku = "B1", qty = 1.5 } } }
  -- d: never bought B1
  s:event{ type = "order.paid", customer = "d", order = "d1", at = now - days(1), items = { { sku = "T1" } } }
  s:advance(days(1))
  local log = s:log()
  t.match(log, "a " .. (now - days(5) + days(20)) .. " nil nil")
  t.match(log, "b " .. (now - days(3) + days(10)) .. " nil nil")
  t.match(log, "c " .. (now - days(8) + days(10) + days(15)) .. " nil nil")
  t.match(log, "d nil nil nil")
end)

t.case("product(sku) returns the catalog row or nil; sim:product updates fields it gives", function()
  local s = sim([[
    schedule "probe" { every = days(1), run = function()
      local p = product("B1")
      log("product", p.name, p.category, p.price, p.usage_days, table.concat(p.related, "+"), tostring(product("NO")))
    end }
  ]])
  s:product{ sku = "B1", name = "Beans", category = "coffee", price = 59, usage_days = 10, related = { "F1", "F2" } }
  s:product{ sku = "B1", price = 49 }
  s:advance(days(1))
  t.match(s:log(), "product Beans coffee 49 10 F1%+F2 nil")
  t.eq(s:product("B1").price, 49)
  t.eq(s:product("none"), nil)
  t.fails(function() s:product{ sku = "X", usage_days = 0 } end, "field 'usage_days' must be a positive number")
  t.fails(function() s:product{ name = "x" } end, "field 'sku' is required")
  t.fails(function() s:product{ sku = "X", colour = "red" } end, "unknown field 'colour'")
  t.fails(function() s:product{ sku = "X", related = { 1 } } end, "field 'related' must be a list of skus")
end)
