local t = require "tend.test"

local START = "2026-03-02T09:00:00+08:00"

local function sim()
  local s = t.sim{ scripts = { "replenish.lua" }, start = START,
                   config = { timezone = "Asia/Shanghai", quiet_hours = false } }
  s:product{ sku = "BEANS", name = "House beans", category = "coffee", usage_days = 10, related = { "FILTER" } }
  s:product{ sku = "FILTER", name = "Paper filters", category = "coffee", usage_days = 60 }
  s:product{ sku = "MUG", name = "Mug" }   -- not a consumable: no usage_days
  s:customer{ id = "c1", name = "Lingling" }
  return s
end

local function order(s, id, items)
  s:event{ type = "order.paid", customer = "c1", order = id, total = 100, items = items }
end

t.case("a reminder 7 days before the supply bought runs out, with a related product", function()
  local s = sim()
  order(s, "o1", { { sku = "BEANS", qty = 3, price = 59 }, { sku = "MUG", qty = 1, price = 30 } })
  -- 3 units x 10 days = 30 days of supply: the reminder on day 23
  s:advance(days(23) - hours(1))
  t.eq(#s:sent{ template = "replenish" }, 0)
  s:advance(hours(2))
  local m = s:sent{ template = "replenish" }
  t.eq(#m, 1)
  t.match(m[1].body, "^Lingling, your House beans runs out around Apr 01%. Reorder: https://shop.example/reorder/BEANS")
  t.match(m[1].body, "Also for you: Paper filters%.")
  t.eq(#s:instances{ journey = "replenish_sku" }, 1, "none for the mug, which has no usage_days")
end)

t.case("a reorder of the sku cancels the reminder and starts a new one from the new supply", function()
  local s = sim()
  order(s, "o1", { { sku = "BEANS", qty = 1 } })       -- runs out on day 10: reminder on day 3
  s:advance(days(2))
  order(s, "o2", { { sku = "BEANS", qty = 2 } })       -- 1 + 2 units: runs out on day 30, reminder on day 23
  s:advance(days(2))
  t.eq(#s:sent{ template = "replenish" }, 0, "the first reminder was cancelled by the reorder")
  local done = s:instances{ journey = "replenish_sku", state = "done" }
  t.eq(#done, 1)
  s:advance(days(18))
  t.eq(#s:sent{ template = "replenish" }, 0, "not yet on day 22")
  s:advance(days(1) + hours(1))
  local m = s:sent{ template = "replenish" }
  t.eq(#m, 1, "one reminder, for the new supply")
  t.match(m[1].body, "runs out around Apr 01")
end)

t.case("an order of another sku does not cancel the reminder", function()
  local s = sim()
  order(s, "o1", { { sku = "BEANS", qty = 1 } })
  s:advance(days(1))
  order(s, "o2", { { sku = "FILTER", qty = 1 } })
  s:advance(days(2) + hours(1))
  local m = s:sent{ template = "replenish" }
  t.eq(#m, 1)
  t.match(m[1].body, "House beans")
end)

t.case("a supply shorter than a week is reminded a day after the order; unknown products wait for nothing", function()
  local s = sim()
  s:product{ sku = "MILK", name = "Milk", usage_days = 2 }
  order(s, "o1", { { sku = "MILK", qty = 1 }, { sku = "GHOST", qty = 1 } })
  s:advance(days(1) + hours(1))
  local m = s:sent{ template = "replenish" }
  t.eq(#m, 1)
  t.match(m[1].body, "your Milk runs out around Mar 04")
  t.eq(#s:instances{ journey = "replenish_sku" }, 1, "no instance for an sku the catalog does not know")
end)

t.case("marketing policy applies: an unsubscribed customer gets no reminder", function()
  local s = sim()
  s:event{ type = "unsubscribe", customer = "c1" }
  order(s, "o1", { { sku = "BEANS", qty = 1 } })
  s:advance(days(4))
  t.eq(#s:sent{ template = "replenish" }, 0)
  local all = s:messages{ template = "replenish" }
  t.eq(#all, 1)
  t.eq(all[1].status, "suppressed")
end)
