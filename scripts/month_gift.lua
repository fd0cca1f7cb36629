-- New-customer month gift: 30 days after a customer's first paid order, a
-- coupon by SMS. A second order inside those 30 days is the goal: the
-- customer came back on their own, so the gift is not needed.

-- Chinese by default; English for customers whose attrs.lang is "en".
template "month_gift" {
  category = "marketing",
  sms = [[
{%- if attrs.lang == "en" -%}
{{ name | default: "Hi there" }}, thank you for your first month with us: {{ coupon.code }} takes {{ coupon.value | money }} off, until {{ coupon.expires | date: "%B %-d" }}.
{%- else -%}
{{ name | default: "亲爱的顾客" }}，感谢您陪伴我们的第一个月：优惠码 {{ coupon.code }} 立减 {{ coupon.value | money }}，{{ coupon.expires | date: "%-m月%-d日" }}前有效。
{%- endif -%}
]],
  sample = { name = "王小明", coupon = { code = "GIFT8K2M", value = 20, expires = "2026-04-14" } },
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
