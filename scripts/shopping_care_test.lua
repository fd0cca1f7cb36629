local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "shopping_care.lua" }, start = "2026-03-02T10:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "c1", name = "Mei" }
  return s
end

local function templates(s)
  local out = {}
  for _, m in ipairs(s:sent{ customer = "c1" }) do out[#out + 1] = m.template end
  return out
end

t.case("paid, shipped, delivered, then the survey a week later", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "A1", total = 120 }
  s:advance(days(1))
  s:event{ type = "order.shipped", customer = "c1", order = "A1" }
  s:advance(days(2))
  s:event{ type = "order.delivered", customer = "c1", order = "A1", product = "kettle" }
  t.eq(templates(s), { "care_paid", "care_shipped", "care_delivered" })
  t.match(s:sent{ template = "care_delivered" }[1].body, "Your kettle has arrived")
  s:advance(days(7))
  t.eq(templates(s)[4], "care_survey")
end)

t.case("a split shipment says how many parcels", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "A2" }
  s:event{ type = "order.shipped", customer = "c1", order = "A2", parcels = 3 }
  t.match(s:sent{ template = "care_shipped_split" }[1].body, "ships in 3 parcels")
end)

t.case("an uncollected parcel gets one nudge", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "A3" }
  s:event{ type = "order.shipped", customer = "c1", order = "A3" }
  s:event{ type = "order.delivered", customer = "c1", order = "A3", pickup = "Locker 12" }
  s:advance(days(2))
  t.match(s:sent{ template = "care_uncollected" }[1].body, "waiting for you at Locker 12")
  s:event{ type = "order.collected", customer = "c1", order = "A3" }
  t.eq(#s:sent{ template = "care_delivered" }, 1)
  s:advance(days(10))
  t.eq(#s:sent{ template = "care_uncollected" }, 1)
end)

t.case("two orders run side by side; events of one do not move the other", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "X" }
  s:event{ type = "order.paid", customer = "c1", order = "Y" }
  s:event{ type = "order.shipped", customer = "c1", order = "Y" }
  local shipped = s:sent{ template = "care_shipped" }
  t.eq(#shipped, 1)
  t.match(shipped[1].body, "order Y")
end)

t.case("no shipping within ten days ends the flow quietly", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "Z" }
  s:advance(days(11))
  t.eq(templates(s), { "care_paid" })
  t.eq(s:instances{}[1].state, "done")
end)

t.case("a parcel stuck in transit goes to staff; the call's outcome is kept", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "A7" }
  s:event{ type = "order.shipped", customer = "c1", order = "A7" }
  s:advance(days(5))
  local call = s:tasks{ customer = "c1" }
  t.eq(#call, 1)
  t.eq(call[1].kind, "call")
  t.match(call[1].note, "Order A7: parcel in transit for 5 days. Call Mei.")
  t.eq(call[1].due_at, call[1].at + days(1))
  s:close_task(call[1].id, { status = "done", outcome = "courier found it, arrives tomorrow" })
  t.eq(s:customer("c1").attrs.parcel_A7, "done: courier found it, arrives tomorrow")
  -- the care flow went on waiting: the delivery still gets its message
  s:event{ type = "order.delivered", customer = "c1", order = "A7", product = "kettle" }
  t.eq(#s:sent{ template = "care_delivered" }, 1)
end)

t.case("a parcel left at the pickup point for a week goes to staff too", function()
  local s = sim()
  s:event{ type = "order.paid", customer = "c1", order = "A8" }
  s:event{ type = "order.shipped", customer = "c1", order = "A8" }
  s:event{ type = "order.delivered", customer = "c1", order = "A8", pickup = "Locker 3" }
  s:advance(days(7))
  local call = s:tasks{ customer = "c1" }
  t.eq(#call, 1)
  t.match(call[1].note, "parcel uncollected at Locker 3")
  s:advance(days(3))
  t.eq(s:customer("c1").attrs.parcel_A8, "no call within 3 days")
end)
