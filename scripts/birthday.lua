-- Date care: a birthday greeting with a small gift the day before, at 10:00
-- in the customer's own time zone, and a card for a baby's first birthday
-- (a date the shop keeps in attrs.baby_birthday). A Feb 29 birthday is
-- celebrated on Feb 28 in common years.

-- Chinese by default; English for customers whose attrs.lang is "en".
template "birthday_eve" {
  category = "marketing",
  sms = [[
{%- if attrs.lang == "en" -%}
{{ name | default: "Hello" }}, happy birthday for tomorrow! A small gift from us: {{ coupon.code }} takes {{ coupon.value | money }} off, until {{ coupon.expires | date: "%B %-d" }}.
{%- else -%}
{{ name | default: "亲爱的顾客" }}，明天是您的生日，提前祝您生日快乐！送您一份小礼物：优惠码 {{ coupon.code }} 立减 {{ coupon.value | money }}，{{ coupon.expires | date: "%-m月%-d日" }}前有效。
{%- endif -%}
]],
  sample = { name = "王小明", coupon = { code = "BDAY4Q7Z", value = 15, expires = "2026-03-28" } },
}
template "baby_first_birthday" {
  category = "marketing",
  sms = [[
{%- if attrs.lang == "en" -%}
{{ name | default: "Hello" }}, your little one turns one today. Congratulations from all of us!
{%- else -%}
{{ name | default: "亲爱的顾客" }}，宝宝今天一周岁啦！我们全体同事祝宝宝健康快乐地长大。
{%- endif -%}
]],
  sample = { name = "王小明" },
}

journey "birthday" {
  on = anniversary("birthday", { at = "10:00", offset_days = -1 }),
  run = function(c, ev)
    local gift = coupon_issue(c, { value = 15, valid = days(14), prefix = "BDAY" })
    send("sms", c, "birthday_eve", { coupon = gift, years = ev.years })
  end,
}

journey "baby_first_birthday" {
  on = anniversary("attrs.baby_birthday", { at = "10:00" }),
  when = function(c, ev) return ev.years == 1 end,
  run = function(c, ev) send("sms", c, "baby_first_birthday") end,
}
