-- Win-back ladder: customers whose last order is 90 days old get escalating
-- offers, chosen by their value: an ordinary customer a 10-off and then a
-- 25-off coupon, a high-value one a personal call by staff. Buying again is
-- the goal: it stops the ladder at once. One in ten is held out (gets
-- nothing), so `tend status` can compare their conversions with the rest.

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
  goal = { event = "order.paid", within = days(45) },
  reenter_after = days(180),
  run = function(c)
    if holdout(10) then return end
    if (c.total_spent or 0) >= HIGH_VALUE then
      task(c, { assign = STAFF, note = "Call " .. (c.name or c.id) .. ": a high-value customer has not ordered for 90 days" })
      return
    end
    send("sms", c, "winback_first", { coupon = coupon_issue(c, { value = 10, valid = days(14), prefix = "WB" }) })
    wait(days(14))
    send("sms", c, "winback_second", { coupon = coupon_issue(c, { value = 25, valid = days(14), prefix = "WB" }) })
  end,
}

schedule "daily_winback" {
  cron = "0 10 * * *",
  run = function()
    for c in customers("lapsed") do start("winback", c) end
  end,
}
