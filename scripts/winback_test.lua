local t = require "tend.test"

local function sim()
  return t.sim{ scripts = { "winback.lua", "coupon_expiry.lua" }, start = "2026-03-02T09:00:00+08:00",
                config = { timezone = "Asia/Shanghai" } }
end

t.case("a lapsed ordinary customer gets the ladder; a high-value one a call", function()
  local s = sim()
  s:customer{ id = "ord", name = "Li", orders_count = 2, total_spent = 200, last_order_at = ago(days(100)) }
  s:customer{ id = "vip", name = "Zhao", orders_count = 9, total_spent = 5000, last_order_at = ago(days(120)) }
  s:customer{ id = "fresh", orders_count = 1, total_spent = 50, last_order_at = ago(days(10)) }
  s:advance(hours(2))          -- 10:00: the daily run
  local first = s:sent{ template = "winback_first" }
  local calls = s:tasks{}
  -- one of the two could be in the holdout; the instance ids decide, and they are fixed
  local entered = s:instances{ journey = "winback" }
  t.eq(#entered, 2)
  for _, i in ipairs(entered) do
    if not i.holdout then
      if i.customer == "ord" then t.eq(#first, 1); t.match(first[1].body, "Li, we miss you") end
      if i.customer == "vip" then t.eq(#calls, 1); t.match(calls[1].note, "Call Zhao") end
    end
  end
  s:advance(days(14))
  -- the second rung is a journey of its own, with its own holdout draw
  local second = s:instances{ journey = "winback_second", customer = "ord" }
  t.eq(#second, #first)
  if second[1] and not second[1].holdout then
    t.eq(#s:sent{ template = "winback_second", customer = "ord" }, 1)
  end
end)

t.case("a high-value customer's call records what staff achieved", function()
  local s = sim()
  s:customer{ id = "vip", name = "Zhao", orders_count = 9, total_spent = 5000, last_order_at = ago(days(120)) }
  s:advance(hours(2))
  local inst = s:instances{ journey = "winback" }[1]
  if inst.holdout then return end   -- fixed by the instance id: this one is not held out
  local call = s:tasks{ customer = "vip" }[1]
  t.eq(call.kind, "call")
  t.eq(call.due_at, call.at + days(2))
  s:close_task(call.id, { status = "done", outcome = "will order for the new season" })
  t.eq(s:customer("vip").attrs.winback_call, "will order for the new season")
end)

t.case("lift per rung: each rung reports its treatment against its own holdout", function()
  local s = sim()
  for i = 1, 200 do
    s:customer{ id = string.format("c%03d", i), orders_count = 1, total_spent = 80, last_order_at = ago(days(91)) }
  end
  s:advance(hours(2))
  -- one in five of those offered 10 off buys within the week, at 50
  for _, i in ipairs(s:instances{ journey = "winback" }) do
    if not i.holdout and tonumber(i.customer:sub(2)) % 5 == 0 then
      s:event{ type = "order.paid", customer = i.customer, total = 50 }
    end
  end
  s:advance(days(15))
  local first, second = s:report("winback").experiment, s:report("winback_second").experiment
  t.eq(first.all.entered, 200)
  t.ok(first.treatment.converted > 0 and first.holdout.converted == 0)
  t.near(first.treatment.revenue, 50 * first.treatment.converted, 1e-9)
  t.ok(first.treatment.lift.difference > 0, t.show(first.treatment.lift))
  -- the second rung saw only the first rung's treatment that did not buy
  t.eq(second.all.entered, first.treatment.entered - first.treatment.converted)
  t.ok(second.treatment and second.holdout, "the second rung has its own groups")
  t.ok(second.treatment.lift, "and its own lift")
end)

t.case("an order stops the ladder and counts as a conversion", function()
  local s = sim()
  s:customer{ id = "c1", name = "Fang", orders_count = 1, total_spent = 90, last_order_at = ago(days(95)) }
  s:advance(hours(2))
  s:advance(days(3))
  s:event{ type = "order.paid", customer = "c1", total = 60 }
  s:advance(days(20))
  t.eq(#s:messages{ template = "winback_second" }, 0)
  t.ok(s:instances{ journey = "winback" }[1].converted_at)
end)

t.case("the daily run does not start a customer twice within 180 days", function()
  local s = sim()
  s:customer{ id = "c1", orders_count = 1, total_spent = 90, last_order_at = ago(days(95)) }
  s:advance(days(30))
  t.eq(#s:instances{ journey = "winback" }, 1)
end)

t.case("about one in ten is held out and gets nothing", function()
  local s = sim()
  for i = 1, 200 do
    s:customer{ id = string.format("c%03d", i), orders_count = 1, total_spent = 80, last_order_at = ago(days(91)) }
  end
  s:advance(hours(2))
  local held = 0
  for _, i in ipairs(s:instances{ journey = "winback" }) do
    if i.holdout then held = held + 1 end
  end
  t.ok(held >= 8 and held <= 40, "held out: " .. held)
  t.eq(#s:sent{ template = "winback_first" }, 200 - held)
end)
