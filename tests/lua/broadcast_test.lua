-- Broadcasts: events with no customer reach journeys through their audience,
-- one instance per matching customer, once per event, in pages, across
-- restarts.
local t = require "tend.test"

local START = "2026-07-10T09:00:00+08:00"
local CONFIG = { timezone = "Asia/Shanghai", synchronous = "normal" }

local WEATHER = [[
template "weather_storm" { category = "transactional", sms = "{{ name | default: 'friend' }}, a storm is coming to {{city}}: stay safe." }
template "weather_heat"  { category = "transactional", sms = "{{ name | default: 'friend' }}, it will be hot in {{city}}: drink water." }
journey "weather_care" {
  on       = "weather.alert",
  audience = function(ev) return { city = ev.city } end,
  run      = function(c, ev) send("sms", c, "weather_" .. ev.kind, { city = c.city }) end,
}
]]

local function sim(source)
  return t.sim{ source = source or WEATHER, start = START, config = CONFIG }
end

local function customers_of(list)
  local ids = {}
  for _, x in ipairs(list) do ids[#ids + 1] = x.customer end
  table.sort(ids)
  return ids
end

local function town(s)
  s:customer{ id = "sh1", name = "Ann", city = "Shanghai" }
  s:customer{ id = "sh2", name = "Bo", city = "Shanghai" }
  s:customer{ id = "sh3", city = "Shanghai" }
  s:customer{ id = "bj1", name = "Chen", city = "Beijing" }
  s:customer{ id = "bj2", city = "Beijing" }
  s:customer{ id = "nowhere" }
end

t.case("a weather alert reaches each customer in the city once, and nobody else", function()
  local s = sim()
  town(s)
  t.eq(s:event{ type = "weather.alert", city = "Shanghai", kind = "storm", id = "cma-2026-0710-sh" }, true)
  local inst = s:instances{ journey = "weather_care" }
  t.eq(customers_of(inst), { "sh1", "sh2", "sh3" })
  for _, i in ipairs(inst) do t.eq(i.state, "done") end
  local sent = s:sent{ template = "weather_storm" }
  t.eq(customers_of(sent), { "sh1", "sh2", "sh3" })
  for _, m in ipairs(sent) do
    t.match(m.body, "a storm is coming to Shanghai")
    t.eq(m.at, s:now())
  end
  t.eq(s:sent{ customer = "sh1" }[1].body, "Ann, a storm is coming to Shanghai: stay safe.")
  t.eq(#s:messages{ customer = "bj1" }, 0)
  t.eq(#s:messages{ customer = "nowhere" }, 0)
  -- the broadcast created no customer and changed no one's activity
  t.eq(s:customer("sh1").last_active_at, nil)
end)

t.case("the same alert id sent again reaches nobody twice; a new alert reaches them again", function()
  local s = sim()
  town(s)
  t.eq(s:event{ type = "weather.alert", city = "Beijing", kind = "heat", id = "w-1" }, true)
  t.eq(s:event{ type = "weather.alert", city = "Beijing", kind = "heat", id = "w-1" }, false)
  s:advance(minutes(5))
  t.eq(s:event{ type = "weather.alert", city = "Beijing", kind = "heat", id = "w-1" }, false)
  t.eq(customers_of(s:instances{ journey = "weather_care" }), { "bj1", "bj2" })
  t.eq(#s:sent{}, 2)
  s:restart()
  t.eq(s:event{ type = "weather.alert", city = "Beijing", kind = "heat", id = "w-1" }, false)
  t.eq(#s:sent{}, 2)
  t.eq(s:event{ type = "weather.alert", city = "Beijing", kind = "heat", id = "w-2" }, true)
  t.eq(#s:sent{}, 4)
  t.eq(#s:sent{ customer = "bj1" }, 2)
end)

t.case("an alert for a city with no customers starts nothing", function()
  local s = sim()
  town(s)
  s:event{ type = "weather.alert", city = "Harbin", kind = "storm" }
  t.eq(#s:instances{}, 0)
  t.eq(#s:messages{}, 0)
end)

t.case("a when filter applies on top of the audience", function()
  local s = sim([[
    template "smog" { category = "transactional", sms = "wear a mask in {{city}}" }
    journey "smog_care" {
      on       = "weather.alert",
      audience = function(ev) return { city = ev.city } end,
      when     = function(c, ev) return c.total_spent >= 100 and ev.kind == "smog" end,
      run      = function(c, ev) send("sms", c, "smog", { city = c.city }) end,
    }
  ]])
  s:customer{ id = "rich_sh", city = "Shanghai", total_spent = 500 }
  s:customer{ id = "edge_sh", city = "Shanghai", total_spent = 100 }
  s:customer{ id = "poor_sh", city = "Shanghai", total_spent = 20 }
  s:customer{ id = "rich_bj", city = "Beijing", total_spent = 900 }
  s:event{ type = "weather.alert", city = "Shanghai", kind = "smog" }
  t.eq(customers_of(s:instances{}), { "edge_sh", "rich_sh" })
  s:event{ type = "weather.alert", city = "Shanghai", kind = "rain" }   -- when() says no
  t.eq(#s:instances{}, 2)
  t.eq(#s:sent{}, 2)
end)

t.case("an audience combining operators: tags and a segment-style filter", function()
  local s = sim([[
    template "note" { category = "transactional", sms = "heat in {{city}}" }
    journey "vip_heat" {
      on       = "weather.alert",
      audience = function(ev) return { city = one_of(table.unpack(ev.cities)), tags = "vip" } end,
      run      = function(c, ev) send("sms", c, "note", { city = c.city }) end,
    }
  ]])
  s:customer{ id = "a", city = "Wuhan", tags = { "vip" } }
  s:customer{ id = "b", city = "Chongqing", tags = { "vip" } }
  s:customer{ id = "c", city = "Wuhan" }
  s:customer{ id = "d", city = "Nanjing", tags = { "vip" } }
  s:event{ type = "weather.alert", cities = { "Wuhan", "Chongqing" }, kind = "heat" }
  t.eq(customers_of(s:sent{}), { "a", "b" })
end)

t.case("an audience may be a fixed filter table", function()
  local s = sim([[
    template "note" { category = "transactional", sms = "notice" }
    journey "vip_notice" { on = "store.notice", audience = { tags = "vip" },
                           run = function(c) send("sms", c, "note") end }
  ]])
  s:customer{ id = "a", tags = { "vip" } }
  s:customer{ id = "b" }
  s:event{ type = "store.notice" }
  t.eq(customers_of(s:sent{}), { "a" })
end)

t.case("a broken audience is logged and reaches nobody; later events still flow", function()
  local s = sim([[
    template "note" { category = "transactional", sms = "hi" }
    journey "bad" { on = "weather.alert", audience = function(ev) return { citi = ev.city } end,
                    run = function(c) send("sms", c, "note") end }
    journey "good" { on = "order.paid", run = function(c) send("sms", c, "note") end }
  ]])
  s:customer{ id = "a", city = "Wuhan" }
  s:event{ type = "weather.alert", city = "Wuhan" }
  t.eq(#s:instances{ journey = "bad" }, 0)
  t.match(s:log(), "journey 'bad': audience: segment: field 'citi' is not a customer field")
  s:event{ type = "order.paid", customer = "a", total = 1 }
  t.eq(#s:sent{ journey = "good" }, 1)
end)

t.case("a fan-out over more than two pages starts exactly one instance per customer", function()
  local s = sim(WEATHER:gsub("send%(", "wait(hours(2)); send("))
  local n = 1200
  for i = 1, n do
    s:customer{ id = string.format("c%05d", i), city = "Chengdu" }
  end
  for i = 1, 30 do
    s:customer{ id = string.format("o%05d", i), city = "Chongqing" }
  end
  t.eq(s:event{ type = "weather.alert", city = "Chengdu", kind = "storm", id = "storm-cd-1" }, true)
  local inst = s:instances{ journey = "weather_care" }
  t.eq(#inst, n)
  local seen = {}
  for _, i in ipairs(inst) do
    t.ok(not seen[i.customer], "two instances for " .. i.customer)
    t.ok(i.customer:sub(1, 1) == "c", "only Chengdu: " .. i.customer)
    seen[i.customer] = true
    t.eq(i.state, "waiting")
  end
  -- a restart while every instance waits, and the webhook retried after it
  s:restart()
  t.eq(s:event{ type = "weather.alert", city = "Chengdu", kind = "storm", id = "storm-cd-1" }, false)
  t.eq(#s:instances{ journey = "weather_care" }, n)
  s:advance(hours(1))
  s:restart()
  s:advance(hours(1))
  local sent = s:sent{}
  t.eq(#sent, n)
  local got = {}
  for _, m in ipairs(sent) do
    t.ok(not got[m.customer], "two messages for " .. m.customer)
    got[m.customer] = true
  end
  t.eq(#s:instances{ journey = "weather_care", state = "done" }, n)
end)

t.case("a second alert while the first one's instances wait: each customer gets one per alert", function()
  local s = sim(WEATHER:gsub("send%(", "wait(hours(1)); send("))
  for i = 1, 1100 do
    s:customer{ id = string.format("c%05d", i), city = "Chengdu" }
  end
  s:event{ type = "weather.alert", city = "Chengdu", kind = "storm", id = "a1" }
  s:restart()
  s:event{ type = "weather.alert", city = "Chengdu", kind = "heat", id = "a2" }
  s:restart()
  s:advance(hours(1))
  t.eq(#s:sent{ template = "weather_storm" }, 1100)
  t.eq(#s:sent{ template = "weather_heat" }, 1100)
  t.eq(#s:sent{ customer = "c00777" }, 2)
end)

t.case("a broadcast to a journey with no audience is skipped with a warning", function()
  local s = sim([[
    journey "needs_customer" { on = "weather.alert", run = function(c) end }
  ]])
  s:customer{ id = "a", city = "Wuhan" }
  s:event{ type = "weather.alert", city = "Wuhan" }
  t.eq(#s:instances{}, 0)
  t.match(s:log(), "needs_customer")
  t.match(s:log(), "no audience")
end)
