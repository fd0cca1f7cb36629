-- Half-year statements: on January 1 and July 1 at 09:00 in each customer's
-- own time zone, every customer who has ordered gets a short statement of
-- their orders and spending so far. One trigger covers every zone: Shanghai
-- gets it at 09:00 Shanghai time, New York at 09:00 New York time.

template "half_year_statement" {
  category = "transactional",
  sms = "{{who}}, your statement for {{period}}: {{orders}} orders, {{spent}} spent with us in all. Thank you!",
}

journey "half_year_statement" {
  on = local_cron("0 9 1 1,7 *", { audience = { orders_count = at_least(1) } }),
  run = function(c, ev)
    -- ev.slot is the local time of the run: "2026-07-01T09:00"
    local year, month = ev.slot:match("^(%d+)-(%d+)")
    local period = month == "01" and ("the second half of " .. (tonumber(year) - 1))
                                  or ("the first half of " .. year)
    send("sms", c, "half_year_statement", {
      who = c.name or "Dear customer", period = period,
      orders = c.orders_count, spent = string.format("%.2f", c.total_spent),
    })
  end,
}
