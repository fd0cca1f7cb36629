local t = require "tend.test"

local GIFT = [[
journey "gift" {
  on = "signup",
  run = function(c, ev)
    local coupon = coupon_issue(c, { value = 5, valid = days(10), prefix = "GF" })
    c:set{ attrs = { code = coupon.code } }
    start("coupon_expiry", c, { coupon = coupon })
  end,
}
journey "bare" { on = "bare", run = function(c) start("coupon_expiry", c) end }
]]

local function sim()
  local s = t.sim{ scripts = { "coupon_expiry.lua" }, source = GIFT, start = "2026-03-02T10:00:00+08:00",
                   config = { timezone = "Asia/Shanghai", quiet_hours = false } }
  s:customer{ id = "c1", name = "Mei" }
  return s
end

t.case("an unused coupon gets a reminder the day before it runs out", function()
  local s = sim()
  s:event{ type = "signup", customer = "c1" }
  s:advance(days(9) - 60)
  t.eq(#s:messages{ template = "coupon_expiry" }, 0)
  s:advance(60)
  local m = s:sent{ template = "coupon_expiry" }
  t.eq(#m, 1)
  t.match(m[1].body, "your coupon " .. s:customer("c1").attrs.code .. " runs out tomorrow %(2026%-03%-12%)")
end)

t.case("a coupon used in time gets no reminder", function()
  local s = sim()
  s:event{ type = "signup", customer = "c1" }
  s:advance(days(3))
  s:event{ type = "order.paid", customer = "c1", order = "A1", total = 20, coupon = s:customer("c1").attrs.code }
  s:advance(days(10))
  t.eq(#s:messages{ template = "coupon_expiry" }, 0)
  t.eq(s:instances{ journey = "coupon_expiry" }[1].state, "done")
end)

t.case("someone else's use of the code does not stop the reminder", function()
  local s = sim()
  s:customer{ id = "c2" }
  s:event{ type = "signup", customer = "c1" }
  s:event{ type = "order.paid", customer = "c2", order = "B1", total = 20, coupon = s:customer("c1").attrs.code }
  s:advance(days(9))
  t.eq(#s:sent{ template = "coupon_expiry" }, 1)
end)

t.case("started without a coupon: a log line, nothing sent", function()
  local s = sim()
  s:event{ type = "bare", customer = "c1" }
  t.match(s:log(), "started without a coupon")
  t.eq(#s:messages{}, 0)
end)
