-- Segments: every filter operator through s:segment, segments declared in
-- scripts and walked with customers(), relative times that move with the
-- clock, values that look like SQL, and a property test comparing the SQL
-- compiler against a brute-force evaluator written here.
local t = require "tend.test"

local START = "2026-03-01T09:00:00+08:00"
local CONFIG = { timezone = "Asia/Shanghai", synchronous = "normal" }

local function sim(source)
  return t.sim{ source = source or "", start = START, config = CONFIG }
end

-- A small crafted set: a..e (see each row), created at START.
local function crafted()
  local s = sim()
  local now = s:now()
  s:customer{ id = "a", city = "Shanghai", region = "East", total_spent = 1500, orders_count = 5,
              first_order_at = now - days(300), last_order_at = now - days(10),
              tags = { "vip", "gold" }, attrs = { age = 30, baby = { age = 1 } } }
  s:customer{ id = "b", city = "Beijing", region = "North", total_spent = 200, orders_count = 1,
              first_order_at = now - days(100), last_order_at = now - days(100),
              tags = { "vip" }, attrs = { age = "unknown" } }
  s:customer{ id = "c" }   -- nothing known
  s:customer{ id = "d", city = "Shanghai", region = "East", total_spent = 500, orders_count = 2,
              first_order_at = now - days(250), last_order_at = now - days(200),
              tags = { "gold" }, attrs = { age = 18 } }
  s:customer{ id = "e", city = "Guangzhou", total_spent = 100, orders_count = 3, blocked = true,
              first_order_at = now - days(60), last_order_at = now - days(40),
              birthday = "1990-05-01", attrs = { age = 61.5 } }
  return s, now
end

t.case("equality and one_of on text fields; a missing value never equals", function()
  local s = crafted()
  t.eq(s:segment{ city = "Shanghai" }, { "a", "d" })
  t.eq(s:segment{ city = "Chengdu" }, {})
  t.eq(s:segment{ city = one_of("Shanghai", "Beijing") }, { "a", "b", "d" })
  t.eq(s:segment{ city = one_of{ "Beijing", "Guangzhou" } }, { "b", "e" })
  t.eq(s:segment{ region = "East", city = "Shanghai" }, { "a", "d" })
  t.eq(s:segment{ region = "East", total_spent = at_least(1000) }, { "a" })
  t.eq(s:segment{ birthday = "1990-05-01" }, { "e" })
  t.eq(s:segment{ id = "c" }, { "c" })
  s:customer{ id = "c", phone = "13800000000" }
  t.eq(s:segment{ phone = 13800000000 }, { "c" }, "a number written for a text field means its digits")
  t.eq(s:segment{}, { "a", "b", "c", "d", "e" })
end)

t.case("at_least, at_most and between (inclusive) on numbers", function()
  local s = crafted()
  t.eq(s:segment{ total_spent = at_least(500) }, { "a", "d" })
  t.eq(s:segment{ total_spent = at_most(200) }, { "b", "c", "e" })   -- c has spent 0
  t.eq(s:segment{ total_spent = between(100, 500) }, { "b", "d", "e" })
  t.eq(s:segment{ total_spent = between(101, 499) }, { "b" })
  t.eq(s:segment{ total_spent = between(500, 100) }, {})
  t.eq(s:segment{ orders_count = 3 }, { "e" })
  t.eq(s:segment{ orders_count = between(2, 3) }, { "d", "e" })
  t.eq(s:segment{ blocked = true }, { "e" })
  t.eq(s:segment{ blocked = false }, { "a", "b", "c", "d" })
end)

t.case("before and after are strict; a customer with no such time matches neither", function()
  local s, now = crafted()
  t.eq(s:segment{ last_order_at = before(ago(days(90))) }, { "b", "d" })
  t.eq(s:segment{ last_order_at = after(ago(days(50))) }, { "a", "e" })
  t.eq(s:segment{ last_order_at = before(now - days(100)) }, { "d" })       -- b is exactly at it
  t.eq(s:segment{ last_order_at = after(now - days(100)) }, { "a", "e" })
  t.eq(s:segment{ last_order_at = at_most(now - days(100)) }, { "b", "d" })  -- at_most includes it
  t.eq(s:segment{ last_order_at = between(now - days(100), now - days(40)) }, { "b", "e" })
  t.eq(s:segment{ first_order_at = before("2025-07-01T00:00:00+08:00") }, { "a", "d" })
  t.eq(s:segment{ last_order_at = not_(before(ago(days(90)))) }, { "a", "c", "e" })
end)

t.case("tags: a tag, has (every listed tag), one_of (any), not_", function()
  local s = crafted()
  t.eq(s:segment{ tags = "vip" }, { "a", "b" })
  t.eq(s:segment{ tags = has("vip") }, { "a", "b" })
  t.eq(s:segment{ tags = has("vip", "gold") }, { "a" })
  t.eq(s:segment{ tags = one_of("vip", "gold") }, { "a", "b", "d" })
  t.eq(s:segment{ tags = not_("vip") }, { "c", "d", "e" })
  t.eq(s:segment{ tags = not_(has("vip", "gold")) }, { "b", "c", "d", "e" })
  t.eq(s:segment{ tags = "nobody" }, {})
end)

t.case("not_ on a field matches a missing value too", function()
  local s = crafted()
  t.eq(s:segment{ city = not_("Shanghai") }, { "b", "c", "e" })
  t.eq(s:segment{ city = not_(one_of("Shanghai", "Beijing")) }, { "c", "e" })
  t.eq(s:segment{ region = not_("East") }, { "b", "c", "e" })
  t.eq(s:segment{ total_spent = not_(at_least(200)) }, { "c", "e" })
end)

t.case("any, all and not_ combine whole filters, nested", function()
  local s = crafted()
  t.eq(s:segment{ any{ { city = "Beijing" }, { total_spent = at_least(1000) } } }, { "a", "b" })
  t.eq(s:segment{ all{ { city = "Shanghai" }, { tags = "gold" }, { total_spent = at_most(600) } } }, { "d" })
  t.eq(s:segment{ not_{ city = "Shanghai" } }, { "b", "c", "e" })
  t.eq(s:segment{ city = "Shanghai", not_{ tags = "vip" } }, { "d" })
  t.eq(s:segment{ any{ { tags = "vip" }, all{ { city = "Guangzhou" }, { blocked = true } } } }, { "a", "b", "e" })
  t.eq(s:segment{ not_(any{ { city = "Shanghai" }, { city = "Beijing" } }) }, { "c", "e" })
  t.eq(s:segment{ any{ { city = "Nowhere" } } }, {})
  t.eq(s:segment{ { city = "Shanghai" }, { tags = "vip" } }, { "a" })   -- list items: all hold
end)

t.case("attrs by dotted path; ordering operators skip non-numbers", function()
  local s = crafted()
  t.eq(s:segment{ ["attrs.age"] = at_least(18) }, { "a", "d", "e" })   -- b's "unknown" is no age
  t.eq(s:segment{ ["attrs.age"] = between(18, 30) }, { "a", "d" })
  t.eq(s:segment{ ["attrs.age"] = at_most(20) }, { "d" })
  t.eq(s:segment{ ["attrs.age"] = 30 }, { "a" })
  t.eq(s:segment{ ["attrs.age"] = "unknown" }, { "b" })
  t.eq(s:segment{ ["attrs.baby.age"] = 1 }, { "a" })
  t.eq(s:segment{ ["attrs.baby.age"] = not_(1) }, { "b", "c", "d", "e" })
  t.eq(s:segment{ ["attrs.pet"] = "cat" }, {})
end)

t.case("derived fields: lifecycle and RFM scores are filterable", function()
  local s = crafted()
  t.eq(s:segment{ lifecycle = "active" }, { "a", "e" })
  t.eq(s:segment{ lifecycle = "silent" }, { "b" })
  t.eq(s:segment{ lifecycle = "churned" }, { "d" })
  t.eq(s:segment{ lifecycle = "new" }, { "c" })
  t.eq(s:segment{ lifecycle = not_(one_of("churned", "dead")) }, { "a", "b", "c", "e" })
  t.eq(s:segment{ r = at_least(4) }, { "a", "e" })
  t.eq(s:segment{ m = 4 }, { "a" })
end)

t.case("mistakes in a filter are errors naming the field or operator", function()
  local s = crafted()
  t.fails(function() s:segment{ citi = "Shanghai" } end, "field 'citi' is not a customer field")
  t.fails(function() s:segment{ total_spent = "lots" } end, "total_spent")
  t.fails(function() s:segment{ city = before(0) } end, "before%(%) compares times")
  t.fails(function() s:segment{ city = has("a") } end, "has%(%) applies to tags")
  t.fails(function() s:segment{ tags = at_least(1) } end, "does not apply to tags")
  t.fails(function() s:segment{ city = { "A", "B" } } end, "one_of")
  t.fails(function() s:segment{ ["attrs.a b"] = 1 } end, "not a valid attribute path")
  t.fails(function() s:segment("no_such_segment") end, "no segment named 'no_such_segment'")
end)

t.case("a declared segment walked by customers() in a schedule starts a journey for each member", function()
  local s = sim([[
    template "thanks" { category = "transactional", sms = "thank you {{name}}" }
    segment "big_spenders" { where = { total_spent = at_least(1000), blocked = false } }
    journey "thanks" { run = function(c) send("sms", c, "thanks") end }
    schedule "daily_thanks" {
      cron = "0 10 * * *",
      run = function()
        log("members", segment_count("big_spenders"))
        local n = 0
        for c in customers("big_spenders") do start("thanks", c); n = n + 1 end
        log("started", n)
      end,
    }
  ]])
  local expect = {}
  for i = 1, 40 do
    local id = string.format("c%02d", i)
    local spent = (i % 3 == 0) and 1000 + i or 999
    local blocked = i == 9
    s:customer{ id = id, name = "N" .. i, total_spent = spent, blocked = blocked }
    if spent >= 1000 and not blocked then expect[#expect + 1] = id end
  end
  t.eq(#expect, 12)
  t.eq(s:segment("big_spenders"), expect)
  t.eq(#s:instances{ journey = "thanks" }, 0)
  s:advance(hours(1))   -- 10:00 in Shanghai
  local started = {}
  for _, i in ipairs(s:instances{ journey = "thanks" }) do started[#started + 1] = i.customer end
  table.sort(started)
  t.eq(started, expect)
  t.eq(#s:sent{ template = "thanks" }, 12)
  t.match(s:log(), "members 12")
  t.match(s:log(), "started 12")
end)

t.case("customers() with a filter table and more than one page of members", function()
  local s = sim([[
    journey "tagged" { run = function(c) end }
    schedule "s" { every = hours(1), run = function()
      for c in customers{ city = "Xi'an", tags = not_("done") } do
        c:tag("done")
        start("tagged", c)
      end
    end }
  ]])
  for i = 1, 600 do
    s:customer{ id = string.format("x%04d", i), city = (i % 5 == 0) and "Lhasa" or "Xi'an" }
  end
  s:advance(hours(1))
  t.eq(#s:instances{ journey = "tagged" }, 480)
  t.eq(#s:segment{ tags = "done" }, 480)
  s:advance(hours(1))   -- all tagged now: nobody new
  t.eq(#s:instances{ journey = "tagged" }, 480)
end)

t.case("a relative time in a declaration moves with the clock: 90 days after the last order a customer enters", function()
  local s = sim([[
    segment "lapsed" { where = { last_order_at = before(ago(days(90))) } }
  ]])
  s:customer{ id = "early" }
  s:customer{ id = "late" }
  s:event{ type = "order.paid", customer = "early", total = 10 }
  s:advance(days(5))
  s:event{ type = "order.paid", customer = "late", total = 10 }
  t.eq(s:segment("lapsed"), {})
  s:advance(days(85) - 1)          -- 1 second before 90 days since early's order
  t.eq(s:segment("lapsed"), {})
  s:advance(1)                     -- exactly 90 days: before() is strict
  t.eq(s:segment("lapsed"), {})
  s:advance(1)
  t.eq(s:segment("lapsed"), { "early" })
  s:advance(days(5))
  t.eq(s:segment("lapsed"), { "early", "late" })
  -- an order takes the customer out again
  s:event{ type = "order.paid", customer = "early", total = 10 }
  t.eq(s:segment("lapsed"), { "late" })
  -- the same in a restarted runtime
  s:restart()
  t.eq(s:segment("lapsed"), { "late" })
end)

t.case("a tag + last-order segment follows orders, tags set later and tags removed (list and count)", function()
  local s = sim([[
    segment "vip_lapsed" { where = { tags = has("vip"), last_order_at = before(ago(days(30))) } }
  ]])
  local function lapsed()
    local ids, n = s:segment("vip_lapsed")
    t.eq(n, #ids, "the count agrees with the members")
    return ids
  end
  s:customer{ id = "a", tags = { "vip" } }
  s:customer{ id = "b" }
  s:customer{ id = "c", tags = { "vip", "gold" } }
  s:event{ type = "order.paid", customer = "a", total = 10 }
  s:event{ type = "order.paid", customer = "b", total = 10 }
  s:event{ type = "order.paid", customer = "c", total = 10 }
  s:advance(days(31))
  t.eq(lapsed(), { "a", "c" }, "only the tagged ones, their order time read through the tag")
  s:customer{ id = "b", tags = { "vip" } }          -- tagged after the order
  t.eq(lapsed(), { "a", "b", "c" })
  s:event{ type = "order.paid", customer = "a", total = 10 }   -- a new order takes a out
  t.eq(lapsed(), { "b", "c" })
  s:customer{ id = "c", tags = { "gold" } }         -- the tag removed
  t.eq(lapsed(), { "b" })
  t.eq(s:segment{ tags = has("vip", "gold"), last_order_at = before(s:now()) }, {})
  t.eq(s:segment{ tags = "vip", city = not_("Nowhere"), last_order_at = before(s:now() + 1) }, { "a", "b" },
       "a field the tag row does not carry reads the customer")
  s:restart()
  t.eq(lapsed(), { "b" })
end)

t.case("a segment whose where is a function is evaluated each time", function()
  local s = sim([[
    segment "recent" { where = function() return { last_active_at = after(now() - days(7)) } end }
  ]])
  s:event{ type = "visit", customer = "v1" }
  t.eq(s:segment("recent"), { "v1" })
  s:advance(days(8))
  t.eq(s:segment("recent"), {})
end)

t.case("a value that looks like SQL stays a value; SQL in a field name is an error", function()
  local s = sim()
  local evil = "x' OR 1=1 --"
  s:customer{ id = "plain", city = "x" }
  s:customer{ id = "quoted", city = evil }
  s:customer{ id = "other", city = "Shanghai", tags = { "vip" } }
  t.eq(s:segment{ city = evil }, { "quoted" })
  t.eq(s:segment{ city = "x\" OR \"1\"=\"1" }, {})
  t.eq(s:segment{ city = one_of(evil, "') OR ('a'='a") }, { "quoted" })
  t.eq(s:segment{ tags = "vip') OR 1=1 --" }, {})
  t.eq(s:segment{ ["attrs.k"] = "1' OR '1'='1" }, {})
  t.eq(s:segment{ id = "plain'; DROP TABLE customers; --" }, {})
  t.eq(#s:segment{}, 3, "the table is still there")
  t.fails(function() s:segment{ ["city = city OR 1=1 --"] = "x" } end, "is not a customer field")
  t.fails(function() s:segment{ ["city) OR (1=1"] = "x" } end, "is not a customer field")
  t.fails(function() s:segment{ ["attrs.a') OR 1=1 --"] = "x" } end, "not a valid attribute path")
  t.fails(function() s:segment{ ["attrs.a\".\"b"] = "x" } end, "not a valid attribute path")
  t.eq(#s:segment{}, 3)
end)

-- --- the property test ------------------------------------------------------

-- A fixed-seed linear congruential generator (glibc's constants): the same
-- customers and filters on every run.
local function lcg(seed)
  local state = seed
  local r = {}
  function r.next()
    state = (state * 1103515245 + 12345) % 2147483648
    return state
  end
  function r.int(lo, hi) return lo + (r.next() >> 8) % (hi - lo + 1) end
  function r.chance(p) return r.int(1, 1000) <= p * 1000 end
  function r.pick(list) return list[r.int(1, #list)] end
  return r
end

local CITIES = { "Shanghai", "Beijing", "Chengdu", "Wuhan", "Xi'an" }
local REGIONS = { "East", "North", "West" }

-- Default lifecycle and RFM rules (customer.h, config.c), for the derived
-- fields of customers created at `now` from their imported history.
local function derive(c, now)
  local ref = (c.orders_count > 0 and c.last_order_at) or c.first_seen_at
  local age = now - ref
  if age >= days(365) then c.lifecycle = "dead"
  elseif age >= days(180) then c.lifecycle = "churned"
  elseif age >= days(90) then c.lifecycle = "silent"
  elseif c.orders_count >= 3 then c.lifecycle = "active"
  elseif c.orders_count >= 2 then c.lifecycle = "repeat"
  else c.lifecycle = "new" end
  c.r = 1
  if c.orders_count > 0 and c.last_order_at then
    local d = (now - c.last_order_at) / 86400
    for i, lim in ipairs{ 30, 60, 90, 180 } do
      if d <= lim then c.r = 6 - i; break end
    end
  end
end

local function gen_customers(rng, n, now)
  local list = {}
  for i = 1, n do
    local c = { id = string.format("p%03d", i), first_seen_at = now, tags = {}, attrs = {} }
    if not rng.chance(0.2) then c.city = rng.pick(CITIES) end
    if rng.chance(0.6) then c.region = rng.pick(REGIONS) end
    c.orders_count = rng.chance(0.25) and 0 or rng.int(1, 12)
    c.total_spent = c.orders_count == 0 and 0 or rng.int(1, 4000) + (rng.chance(0.3) and 0.5 or 0)
    if c.orders_count > 0 then
      c.last_order_at = now - rng.int(0, 400) * 86400 - rng.int(0, 86399)
      c.first_order_at = c.last_order_at - rng.int(0, 300) * 86400
    end
    if rng.chance(0.4) then c.tags[#c.tags + 1] = "vip" end
    if rng.chance(0.4) then c.tags[#c.tags + 1] = "gold" end
    if rng.chance(0.6) then c.attrs.age = rng.int(12, 80)
    elseif rng.chance(0.2) then c.attrs.age = "n/a" end
    derive(c, now)
    list[i] = c
  end
  return list
end

local function has_tag(c, tag)
  for _, x in ipairs(c.tags) do if x == tag then return true end end
  return false
end

-- Random filters, each built twice: the filter table for s:segment, and a
-- predicate over our own customer rows with the semantics of segment.h.
local function gen_filter(rng, now)
  local function num_cond(get, lo, hi)
    local k = rng.int(1, 5)
    if k == 1 then
      local x = rng.int(lo, hi)
      return at_least(x), function(c) local v = get(c); return type(v) == "number" and v >= x end
    elseif k == 2 then
      local x = rng.int(lo, hi)
      return at_most(x), function(c) local v = get(c); return type(v) == "number" and v <= x end
    elseif k == 3 then
      local a, b = rng.int(lo, hi), rng.int(lo, hi)
      if rng.chance(0.85) and a > b then a, b = b, a end
      return between(a, b), function(c) local v = get(c); return type(v) == "number" and v >= a and v <= b end
    elseif k == 4 then
      local x = rng.int(lo, hi)
      return x, function(c) return get(c) == x end
    else
      local x = rng.int(lo, hi)
      return not_(at_least(x)), function(c) local v = get(c); return not (type(v) == "number" and v >= x) end
    end
  end

  local function text_cond(get, values)
    local k = rng.int(1, 4)
    if k == 1 then
      local v = rng.pick(values)
      return v, function(c) return get(c) == v end
    elseif k == 2 then
      local a, b = rng.pick(values), rng.pick(values)
      return one_of(a, b), function(c) local x = get(c); return x ~= nil and (x == a or x == b) end
    elseif k == 3 then
      local v = rng.pick(values)
      return not_(v), function(c) return get(c) ~= v end
    else
      local a, b = rng.pick(values), rng.pick(values)
      return not_(one_of(a, b)), function(c) local x = get(c); return not (x == a or x == b) end
    end
  end

  local conds = {
    city = function()
      local values = { table.unpack(CITIES) }
      values[#values + 1] = "Harbin"   -- nobody lives there
      return text_cond(function(c) return c.city end, values)
    end,
    region = function() return text_cond(function(c) return c.region end, REGIONS) end,
    lifecycle = function()
      return text_cond(function(c) return c.lifecycle end,
                       { "new", "repeat", "active", "silent", "churned", "dead" })
    end,
    total_spent = function() return num_cond(function(c) return c.total_spent end, 0, 4000) end,
    orders_count = function() return num_cond(function(c) return c.orders_count end, 0, 12) end,
    r = function() return num_cond(function(c) return c.r end, 1, 5) end,
    ["attrs.age"] = function() return num_cond(function(c) return c.attrs.age end, 10, 85) end,
    last_order_at = function()
      local x = now - rng.int(0, 420) * 86400
      local k = rng.int(1, 3)
      if k == 1 then
        return before(x), function(c) return c.last_order_at ~= nil and c.last_order_at < x end
      elseif k == 2 then
        return after(x), function(c) return c.last_order_at ~= nil and c.last_order_at > x end
      else
        local d = rng.int(0, 420)
        return before(ago(days(d))), function(c)
          return c.last_order_at ~= nil and c.last_order_at < now - days(d)
        end
      end
    end,
    tags = function()
      local k = rng.int(1, 6)
      if k == 6 then
        return not_(one_of("vip", "gold")), function(c) return not (has_tag(c, "vip") or has_tag(c, "gold")) end
      elseif k == 1 then
        local tag = rng.pick{ "vip", "gold" }
        return tag, function(c) return has_tag(c, tag) end
      elseif k == 2 then
        return has("vip", "gold"), function(c) return has_tag(c, "vip") and has_tag(c, "gold") end
      elseif k == 3 then
        return one_of("vip", "gold"), function(c) return has_tag(c, "vip") or has_tag(c, "gold") end
      elseif k == 4 then
        local tag = rng.pick{ "vip", "gold" }
        return not_(tag), function(c) return not has_tag(c, tag) end
      else
        return not_(has("vip", "gold")), function(c) return not (has_tag(c, "vip") and has_tag(c, "gold")) end
      end
    end,
  }
  local names = {}
  for k in pairs(conds) do names[#names + 1] = k end
  table.sort(names)   -- pairs order varies between runs; the generator must not

  local filter
  -- a plain table: 1..3 distinct fields, and sometimes nested list items
  local function plain(depth)
    local f, preds = {}, {}
    local nfields = rng.int(depth > 0 and 1 or 0, 3)
    for _ = 1, nfields do
      local name = rng.pick(names)
      if f[name] == nil then
        local v, p = conds[name]()
        f[name] = v
        preds[#preds + 1] = p
      end
    end
    if depth < 3 and (nfields == 0 or rng.chance(0.35)) then
      for _ = 1, rng.int(1, 2) do
        local v, p = filter(depth + 1)
        f[#f + 1] = v
        preds[#preds + 1] = p
      end
    end
    return f, function(c)
      for _, p in ipairs(preds) do if not p(c) then return false end end
      return true
    end
  end
  filter = function(depth)
    local k = depth >= 3 and 1 or rng.int(1, 6)
    if k <= 3 then return plain(depth) end
    if k == 4 or k == 5 then
      local items, preds = {}, {}
      for i = 1, rng.int(1, 3) do items[i], preds[i] = filter(depth + 1) end
      if k == 4 then
        return any(items), function(c)
          for _, p in ipairs(preds) do if p(c) then return true end end
          return false
        end
      end
      return all(items), function(c)
        for _, p in ipairs(preds) do if not p(c) then return false end end
        return true
      end
    end
    local inner, p = filter(depth + 1)
    return not_(inner), function(c) return not p(c) end
  end
  return filter(0)
end

t.case("property: 150 random filters over 300 random customers match a brute-force evaluation", function()
  local s = sim()
  local now = s:now()
  local rng = lcg(20260301)
  local people = gen_customers(rng, 300, now)
  for _, c in ipairs(people) do
    s:customer{ id = c.id, city = c.city, region = c.region, orders_count = c.orders_count,
                total_spent = c.total_spent, first_order_at = c.first_order_at,
                last_order_at = c.last_order_at, tags = #c.tags > 0 and c.tags or nil, attrs = c.attrs }
  end
  -- the derived fields we evaluate against are the ones the runtime computed
  for _, c in ipairs(people) do
    local row = s:customer(c.id)
    t.eq({ row.lifecycle, row.r }, { c.lifecycle, c.r }, "derived fields of " .. c.id)
  end
  local partial, nfilters = 0, 150
  for i = 1, nfilters do
    local f, pred = gen_filter(rng, now)
    local want = {}
    for _, c in ipairs(people) do
      if pred(c) then want[#want + 1] = c.id end
    end
    local got = s:segment(f)
    if #got ~= #want or table.concat(got, ",") ~= table.concat(want, ",") then
      -- show the smallest difference
      local in_got, in_want = {}, {}
      for _, id in ipairs(got) do in_got[id] = true end
      for _, id in ipairs(want) do in_want[id] = true end
      local extra, missing = {}, {}
      for _, id in ipairs(got) do if not in_want[id] then extra[#extra + 1] = id end end
      for _, id in ipairs(want) do if not in_got[id] then missing[#missing + 1] = id end end
      local sample = extra[1] or missing[1]
      local row
      for _, c in ipairs(people) do if c.id == sample then row = c end end
      t.eq({ extra = extra, missing = missing }, { extra = {}, missing = {} },
           string.format("filter %d %s; e.g. %s", i, t.show(f), t.show(row)))
    end
    if #want > 0 and #want < #people then partial = partial + 1 end
  end
  t.ok(partial >= 50, "at least a third of the filters match some but not all customers (got " .. partial .. ")")
end)
