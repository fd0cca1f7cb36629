-- Shopping-flow care: a message at payment, at shipping (warning when the
-- order ships in several parcels), at delivery (how to use and care for the
-- product), a nudge when a parcel sits uncollected at a pickup point, and an
-- after-sales survey a week after delivery. Every step waits for the event
-- of the same order, so a customer with two orders gets two separate flows.
-- A parcel stuck in transit for five days, or left at the pickup point a week,
-- goes to staff: parcel_escalation makes a call task, waits for what the call
-- achieved and records it on the customer, while the care flow goes on
-- waiting for the parcel.

template "care_paid" {
  category = "transactional",
  sms = "{{ name | default: 'Hello' }}, we have your order {{order}}. We will tell you when it ships.",
}
template "care_shipped" {
  category = "transactional",
  sms = "Your order {{order}} is on its way.",
}
template "care_shipped_split" {
  category = "transactional",
  sms = "Your order {{order}} ships in {{parcels}} parcels; they may arrive on different days.",
}
template "care_delivered" {
  category = "transactional",
  sms = "Your {{ product | default: 'order' }} has arrived. How to use and care for it: {{care_url}} ",
}
template "care_uncollected" {
  category = "transactional",
  sms = "Your parcel for order {{order}} is waiting for you at {{pickup}}.",
}
template "care_survey" {
  category = "marketing",
  sms = "How was order {{order}}? Tell us in one tap: {{survey_url}} ",
}

local CARE_URL = "https://shop.example/care"
local CARE_TEAM = { "alice", "bob" }
local SURVEY_URL = "https://shop.example/survey"

local function same_order(order)
  return function(e) return e.order == order end
end

journey "shopping_care" {
  on = "order.paid",
  run = function(c, ev)
    local order = ev.order
    send("sms", c, "care_paid", { order = order })

    local shipped = wait_for("order.shipped", { timeout = days(10), where = same_order(order) })
    if not shipped then return end
    if (shipped.parcels or 1) > 1 then
      send("sms", c, "care_shipped_split", { order = order, parcels = shipped.parcels })
    else
      send("sms", c, "care_shipped", { order = order })
    end

    local delivered = wait_for("order.delivered", { timeout = days(5), where = same_order(order) })
    if not delivered then
      start("parcel_escalation", c, { order = order, problem = "in transit for 5 days" })
      delivered = wait_for("order.delivered", { timeout = days(15), where = same_order(order) })
      if not delivered then return end
    end
    if delivered.pickup then
      -- at a pickup point: nudge once if it is still there two days later
      local collected = wait_for("order.collected", { timeout = days(2), where = same_order(order) })
      if not collected then
        send("sms", c, "care_uncollected", { order = order, pickup = delivered.pickup })
        collected = wait_for("order.collected", { timeout = days(5), where = same_order(order) })
        if not collected then
          start("parcel_escalation", c, { order = order, problem = "uncollected at " .. delivered.pickup })
          return
        end
      end
    end
    send("sms", c, "care_delivered", { product = delivered.product, care_url = CARE_URL .. "/" .. order })

    wait(days(7))
    send("sms", c, "care_survey", { order = order, survey_url = SURVEY_URL .. "/" .. order })
  end,
}

-- A parcel in trouble: a call by the care team, due within a day; what it
-- achieved (or that nobody called within three days) is kept on the customer
-- as attrs.parcel_<order>.
journey "parcel_escalation" {
  run = function(c, p)
    local call = task(c, { kind = "call", assign = CARE_TEAM, due = days(1),
                           note = string.format("Order %s: parcel %s. Call %s.", p.order, p.problem, c.name or c.id) })
    local done = wait_task(call, { timeout = days(3) })
    c:set{ attrs = { ["parcel_" .. p.order] = done and (done.status .. ": " .. (done.outcome or "")) or "no call within 3 days" } }
  end,
}
