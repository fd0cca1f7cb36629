local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "delivery_tips.lua" }, start = "2026-03-02T09:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "c1", name = "Fang" }
  return s
end

t.case("one tip per category of the delivered items, each once, in the order of the items", function()
  local s = sim()
  s:event{ type = "order.delivered", customer = "c1", order = "1001", items = {
    { sku = "T1", qty = 1, category = "tea" }, { sku = "B1", qty = 2, category = "coffee" },
    { sku = "B2", qty = 1, category = "coffee" } } }
  local m = s:sent{ template = "delivery_tips" }
  t.eq(#m, 1)
  t.match(m[1].body, "^Fang, your order 1001 has arrived%. Tea: green tea 2 minutes")
  t.match(m[1].body, "at 95%. Coffee: keep the beans airtight and away from light; grind just before brewing%.$")
  local _, n = m[1].body:gsub("Coffee:", "")
  t.eq(n, 1, "two coffee items give one coffee tip")
end)

t.case("the category comes from the catalog when the item has none; unknown categories give nothing", function()
  local s = sim()
  s:product{ sku = "P1", name = "Kibble", category = "pet" }
  s:event{ type = "order.delivered", customer = "c1", order = "1002", items = {
    { sku = "P1", qty = 1 }, { sku = "X9", qty = 1, category = "garden" } } }
  local m = s:sent{ template = "delivery_tips" }
  t.eq(#m, 1)
  t.match(m[1].body, "has arrived%. Pet food: change food over a week")
  t.ok(not m[1].body:find("garden"), "no tip for a category without one")
end)

t.case("a delivery with no known category, or no items, sends nothing", function()
  local s = sim()
  s:event{ type = "order.delivered", customer = "c1", order = "1003", items = { { sku = "X9", category = "garden" } } }
  s:event{ type = "order.delivered", customer = "c1", order = "1004" }
  t.eq(#s:messages{ template = "delivery_tips" }, 0)
  t.eq(#s:instances{ journey = "delivery_tips", state = "done" }, 2)
end)

t.case("tips are transactional: they go out during quiet hours", function()
  local s = sim()
  s:advance(hours(13))   -- 22:00 local
  s:event{ type = "order.delivered", customer = "c1", order = "1005", items = { { sku = "B1", category = "coffee" } } }
  t.eq(#s:sent{ template = "delivery_tips" }, 1)
end)
