-- After-sales survey with a follow-up: three days after delivery, a survey;
-- an answer of 2 or less out of 5 makes a call task for the care team, due
-- the next day; what the call achieved is recorded on the customer
-- (attrs.survey_followup) and, when the call solved it, tagged. A good
-- score is thanked. The survey answer comes back as the event
-- {type = "survey.answered", customer, order, score}.

template "survey_ask" {
  category = "transactional",
  sms = "How was order {{order}}? Reply 1-5, or tap {{url}} ",
}
template "survey_thanks" {
  category = "transactional",
  sms = "Thank you for the {{score}}/5!",
}

local SURVEY_URL = "https://shop.example/survey/"
local CARE_TEAM = { "alice", "bob" }

journey "survey_followup" {
  on = "order.delivered",
  run = function(c, ev)
    local order = ev.order
    wait(days(3))
    send("sms", c, "survey_ask", { order = order, url = SURVEY_URL .. tostring(order) })
    local answer = wait_for("survey.answered", {
      timeout = days(7),
      where = function(a) return a.order == order end,
    })
    if not answer then return end
    local score = tonumber(answer.score) or 0
    if score > 2 then
      send("sms", c, "survey_thanks", { score = score })
      return
    end
    local call = task(c, { kind = "call", assign = CARE_TEAM, due = days(1),
                           note = string.format("Order %s scored %d/5: call %s", order, score, c.name or c.id) })
    local done = wait_task(call, { timeout = days(5) })
    c:set{ attrs = { survey_followup = done and (done.status .. ": " .. (done.outcome or "")) or "no call within 5 days" } }
    if done and done.status == "done" then c:tag("survey_resolved") end
  end,
}
