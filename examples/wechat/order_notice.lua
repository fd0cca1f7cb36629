-- Order notices on WeChat first, SMS as the fallback: a customer without an
-- openid gets the SMS at once; one whose WeChat message is not delivered
-- within 10 minutes (or fails) gets the SMS then. Caps count the notice once.

template "shipped_notice" {
  category = "transactional",
  wechat = "Your order {{order}} has shipped.",
  sms = "Your order {{order}} has shipped.",
}

journey "shipped_notice" {
  on = "order.shipped",
  run = function(c, ev)
    local r = send({ "wechat", "sms" }, c, "shipped_notice", { order = ev.order }, { fallback_after = minutes(10) })
    log("order " .. tostring(ev.order) .. ": notice " .. (r.channel or r.status))
  end,
}
