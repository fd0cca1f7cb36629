-- Coupon expiry reminder: the day before a coupon runs out, at 10:00 in the
-- customer's zone, a short reminder — and nothing at all if the coupon was
-- used (its coupon.redeemed event ends the wait). Other journeys start it
-- right after they issue a coupon:
--   local coupon = coupon_issue(c, { value = 10, valid = days(14) })
--   start("coupon_expiry", c, { coupon = coupon })

template "coupon_expiry" {
  category = "marketing",
  sms = "{{name}}, your coupon {{code}} runs out tomorrow ({{expires}}). Use it before then!",
}

journey "coupon_expiry" {
  run = function(c, payload)
    local coupon = payload and payload.coupon
    if not coupon or not coupon.code or not coupon.expires_at then
      log("coupon_expiry: started without a coupon; nothing to remind")
      return
    end
    local remind_at = coupon.expires_at - days(1)
    local redeemed = wait_for("coupon.redeemed", {
      timeout = math.max(remind_at - now(), 1),
      where = function(ev) return ev.code == coupon.code end,
    })
    if redeemed then return end
    send("sms", c, "coupon_expiry", { name = c.name or "Hello", code = coupon.code, expires = coupon.expires })
  end,
}
