local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "order_notice.lua" }, start = "2026-03-02T10:00:00+08:00",
                   config = { channels = {
                     wechat = { type = "capture", address = "attrs.openid" },
                     sms = { type = "capture", address = "phone" } } } }
  s:customer{ id = "wx", name = "Wei", phone = "+8613800000001", attrs = { openid = "oXy-1" } }
  s:customer{ id = "sms", name = "Li", phone = "+8613800000002" }
  return s
end

t.case("no openid: the SMS goes at once", function()
  local s = sim()
  s:event{ type = "order.shipped", customer = "sms", order = "A1" }
  local m = s:messages{ customer = "sms" }
  t.eq(#m, 1)
  t.eq(m[1].channel, "sms")
end)

t.case("WeChat delivered in time: no SMS", function()
  local s = sim()
  s:event{ type = "order.shipped", customer = "wx", order = "A2" }
  local wx = s:messages{ customer = "wx" }[1]
  t.eq(wx.channel, "wechat")
  s:receipt{ key = wx.key, status = "delivered" }
  s:advance(minutes(10))
  t.eq(#s:messages{ customer = "wx" }, 1)
end)

t.case("WeChat silent for 10 minutes: the SMS follows", function()
  local s = sim()
  s:event{ type = "order.shipped", customer = "wx", order = "A3" }
  s:advance(minutes(10))
  local m = s:messages{ customer = "wx" }
  t.eq(#m, 2)
  t.eq(m[2].channel, "sms")
end)
