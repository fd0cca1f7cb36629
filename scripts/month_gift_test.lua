local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "month_gift.lua" }, start = "2026-03-01T09:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "c1", name = "Lingling", phone = "+8613800000001" }
  return s
end

t.case("gift 30 days after the first order", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", total = 99 }
  s:advance(days(29))
  t.eq(#s:messages{ template = "month_gift" }, 0)
  s:advance(days(1))
  local m = s:sent{ template = "month_gift" }
  t.eq(#m, 1)
  t.match(m[1].body, "Lingling，感谢您陪伴我们的第一个月：优惠码 GIFT%w+ 立减 ¥20%.00，4月14日前有效。")
  t.eq(m[1].status, "sent")
end)

t.case("in English for a customer who reads English", function()
  local s = sim()
  s:customer{ id = "c1", attrs = { lang = "en" } }
  s:event{ type = "order.paid", customer = "c1", total = 99 }
  s:advance(days(30))
  local m = s:sent{ template = "month_gift" }
  t.eq(#m, 1)
  t.match(m[1].body, "^Lingling, thank you for your first month with us: GIFT%w+ takes ¥20%.00 off, until April 14%.")
  t.ok(not m[1].body:find("感谢"), "no Chinese text in the English message")
end)

t.case("no name: the Chinese greeting stands in", function()
  local s = sim()
  s:customer{ id = "c3" }
  s:event{ type = "order.paid", customer = "c3", total = 99 }
  s:advance(days(30))
  t.match(s:sent{ template = "month_gift" }[1].body, "^亲爱的顾客，感谢")
end)

t.case("a second order within 30 days converts: no gift", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", total = 99 }
  s:advance(days(10))
  s:event{ type = "order.paid", customer = "c1", total = 50 }
  s:advance(days(25))
  t.eq(#s:messages{ template = "month_gift" }, 0)
  local i = s:instances{ journey = "month_gift" }
  t.eq(#i, 1)
  t.eq(i[1].state, "converted")
end)

t.case("only the first order starts the journey, once", function()
  local s = sim()
  s:customer{ id = "c2", name = "Wei", orders_count = 3 }
  s:event{ type = "order.paid", customer = "c2", total = 10 }
  t.eq(#s:instances{ journey = "month_gift" }, 0)
end)

t.case("the wait survives a restart", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", total = 99 }
  s:advance(days(15))
  s:restart()
  s:advance(days(15))
  t.eq(#s:sent{ template = "month_gift" }, 1)
end)
