-- Date care: a birthday greeting with a small gift the day before, at 10:00
-- in the customer's own time zone, and a card for a baby's first birthday
-- (a date the shop keeps in attrs.baby_birthday). A Feb 29 birthday is
-- celebrated on Feb 28 in common years.

template "birthday_eve" {
  category = "marketing",
  sms = "{{ name | default: 'Hello' }}, happy birthday for tomorrow! A small gift from us: {{coupon.code}}, until {{coupon.expires}}.",
}
template "baby_first_birthday" {
  category = "marketing",
  sms = "{{ name | default: 'Hello' }}, your little one turns one today. Congratulations from all of us!",
}

journey "birthday" {
  on = anniversary("birthday", { at = "10:00", offset = -days(1) }),
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
