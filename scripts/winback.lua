-- Win-back ladder: customers whose last order is 90 days old get escalating
-- offers, chosen by their value: an ordinary customer a 10-off and then a
-- 25-off coupon, a high-value one a personal call by staff. Buying again is
-- the goal: it stops the ladder at once, and the order's total is its value.
-- Each rung is a journey of its own with its own holdout (one in ten gets
-- nothing at that rung), so `tend status` shows the lift of every rung
-- against its own control group: the first offer's, and the second's among
-- those the first did not win back. A day before a coupon runs out,
-- coupon_expiry (coupon_expiry.lua, which must be loaded beside this file)
-- reminds the customer, unless it was used.

segment "lapsed" {
  where = { last_order_at = before(ago(days(90))), lifecycle = not_("dead") },
}

template "winback_first" {
  category = "marketing",
  sms = "{{ name | default: 'Hello' }}, we miss you. Here is 10 off your next order: {{coupon.code}}, until {{coupon.expires}}.",
}
template "winback_second" {
  category = "marketing",
  sms = "{{ name | default: 'Hello' }}, 25 off is waiting for you: {{coupon.code}}, until {{coupon.expires}}.",
}

local HIGH_VALUE = 1000
local STAFF = { "alice", "bob" }

journey "winback" {
  goal = { event = "order.paid", within = days(14), value = "total" },
  reenter_after = days(180),
  run = function(c)
    if holdout(10) then return end
    if (c.total_spent or 0) >= HIGH_VALUE then
      local call = task(c, { kind = "call", assign = STAFF, due = days(2),
                             note = "Call " .. (c.name or c.id) .. ": a high-value customer has not ordered for 90 days" })
      local done = wait_task(call, { timeout = days(7) })
      c:set{ attrs = { winback_call = done and (done.outcome or done.status) or "not reached" } }
      return
    end
    local coupon = coupon_issue(c, { value = 10, valid = days(14), prefix = "WB" })
    send("sms", c, "winback_first", { coupon = coupon })
    start("coupon_expiry", c, { coupon = coupon })
    wait(days(14))
    -- still here: the first offer did not bring an order within 14 days
    start("winback_second", c)
  end,
}

journey "winback_second" {
  goal = { event = "order.paid", within = days(14), value = "total" },
  run = function(c)
    if holdout(10) then return end
    local coupon = coupon_issue(c, { value = 25, valid = days(14), prefix = "WB" })
    send("sms", c, "winback_second", { coupon = coupon })
    start("coupon_expiry", c, { coupon = coupon })
  end,
}

schedule "daily_winback" {
  cron = "0 10 * * *",
  run = function()
    for c in customers("lapsed") do start("winback", c) end
  end,
}
