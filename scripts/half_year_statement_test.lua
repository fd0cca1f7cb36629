local t = require "tend.test"

-- 2026-06-20 09:00 in Shanghai: the first statement goes out on 1 July.
local function sim()
  local s = t.sim{ scripts = { "half_year_statement.lua" }, start = "2026-06-20T09:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "c1", name = "Lingling", email = "ling@example.com" }
  s:product{ sku = "B1", name = "House beans" }
  return s
end


t.case("orders, spend and items of the half year just ended, money formatted, items listed", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "o1", at = "2026-02-03T12:00:00+08:00", total = 1318,
           items = { { sku = "B1", qty = 2, price = 59 }, { sku = "K9", name = "Kettle", qty = 1, price = 1200 } } }
  s:event{ type = "order.paid", customer = "c1", order = "o2", at = "2026-06-30T23:30:00+08:00", total = 59,
           items = { { sku = "B1", qty = 1, price = 59 } } }
  -- outside the half year: before it, and after it ended
  s:event{ type = "order.paid", customer = "c1", order = "o0", at = "2025-12-31T23:30:00+08:00", total = 5,
           items = { { sku = "OLD", qty = 1, price = 5 } } }
  s:advance(days(11) + hours(1))          -- 1 July 10:00
  s:event{ type = "order.paid", customer = "c1", order = "o3", total = 7, items = { { sku = "NEW", qty = 1, price = 7 } } }
  local m = s:sent{ template = "half_year_statement" }
  t.eq(#m, 1)
  t.eq(m[1].subject, "Your half year with us: 2 orders, ¥1,377.00")
  t.match(m[1].body, "^Lingling,\n\nfrom 2026%-01%-01 to 2026%-06%-30 you placed 2 orders for ¥1,377%.00:\n")
  t.match(m[1].body, "\n%- Kettle x 1: ¥1,200%.00\n%- House beans x 3: ¥177%.00\n")
  t.ok(not m[1].body:find("OLD") and not m[1].body:find("NEW"), "only the half year's items")
  t.ok(not m[1].body:find("more"), "no 'more' line for 2 items")
  t.match(m[1].body, "Thank you for shopping with us%.$")
end)

t.case("a long list shows 20 lines and counts the rest; customers without orders get nothing", function()
  local s = sim()
  s:customer{ id = "c2", email = "quiet@example.com" }
  local items = {}
  for i = 1, 23 do items[i] = { sku = string.format("S%02d", i), name = "Item " .. i, qty = 1, price = 100 - i } end
  s:event{ type = "order.paid", customer = "c1", order = "o1", at = "2026-03-01T10:00:00+08:00", total = 1, items = items }
  s:advance(days(11) + hours(1))
  local m = s:sent{ template = "half_year_statement" }
  t.eq(#m, 1, "c2 ordered nothing")
  t.eq(m[1].customer, "c1")
  local _, lines = m[1].body:gsub("\n%- ", "")
  t.eq(lines, 20)
  t.match(m[1].body, "%.%.%. and 3 more items%.")
  t.match(m[1].body, "1 order for ¥2,024%.00")
end)

t.case("marketing policy applies: an unsubscribed customer's statement is suppressed", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "o1", at = "2026-03-01T10:00:00+08:00", total = 10,
           items = { { sku = "B1", qty = 1, price = 10 } } }
  s:event{ type = "unsubscribe", customer = "c1", channel = "email" }
  s:advance(days(11) + hours(1))
  t.eq(#s:sent{ template = "half_year_statement" }, 0)
  local all = s:messages{ template = "half_year_statement" }
  t.eq(#all, 1)
  t.eq(all[1].status, "suppressed")
end)

t.case("the second half: on 1 January, July to December of the year before", function()
  local s = t.sim{ scripts = { "half_year_statement.lua" }, start = "2026-12-30T09:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:event{ type = "order.paid", customer = "c1", order = "o1", at = "2026-07-01T00:10:00+08:00", total = 10,
           items = { { sku = "B1", qty = 1, price = 10 } } }
  s:advance(days(2) + hours(2))
  local m = s:sent{ template = "half_year_statement" }
  t.eq(#m, 1)
  t.match(m[1].body, "from 2026%-07%-01 to 2026%-12%-31 you placed 1 order for ¥10%.00")
end)

t.case("09:00 on 1 July in each customer's own zone, the half year in that zone", function()
  local s = sim()
  s:customer{ id = "ny", name = "Nora", timezone = "America/New_York" }
  s:event{ type = "order.paid", customer = "c1", order = "s1", at = "2026-06-30T23:30:00+08:00", total = 10,
           items = { { sku = "B1", qty = 1, price = 10 } } }
  -- 23:30 on 30 June in New York is 1 July in Shanghai: still the first half there
  s:event{ type = "order.paid", customer = "ny", order = "n1", at = "2026-06-30T23:30:00-04:00", total = 20,
           items = { { sku = "B1", qty = 2, price = 10 } } }
  s:advance(days(12))
  local sh, ny = s:sent{ customer = "c1" }, s:sent{ customer = "ny" }
  t.eq(#sh, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", sh[1].at), "2026-07-01T01:00")      -- 09:00 +08:00
  t.eq(#ny, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", ny[1].at), "2026-07-01T13:00")      -- 09:00 EDT
  t.match(ny[1].body, "you placed 1 order for ¥20%.00")
end)
