-- New-customer month gift: 30 days after a customer's first paid order, a
-- coupon by SMS. A second order inside those 30 days is the goal: the
-- customer came back on their own, so the gift is not needed.

template "month_gift" {
  category = "marketing",
  sms = "{{ name | default: 'friend' }}, thank you for your first month with us: {{coupon.code}} takes 20 off, until {{coupon.expires}}.",
}

journey "month_gift" {
  on   = "order.paid",
  when = function(c, ev) return c.orders_count == 1 end,
  once = true,
  goal = { event = "order.paid", within = days(30) },
  run  = function(c, ev)
    wait(days(30))
    local coupon = coupon_issue(c, { value = 20, valid = days(14), prefix = "GIFT" })
    send("sms", c, "month_gift", { coupon = coupon })
  end,
}
