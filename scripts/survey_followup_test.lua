local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "survey_followup.lua" }, start = "2026-03-02T10:00:00+08:00",
                   config = { timezone = "Asia/Shanghai", quiet_hours = false } }
  s:customer{ id = "c1", name = "Mei" }
  s:event{ type = "order.delivered", customer = "c1", order = "A1" }
  s:advance(days(3))
  return s
end

t.case("the survey goes three days after delivery", function()
  local s = sim()
  local m = s:sent{ template = "survey_ask" }
  t.eq(#m, 1)
  t.match(m[1].body, "How was order A1%?")
end)

t.case("a good score is thanked and makes no task", function()
  local s = sim()
  s:event{ type = "survey.answered", customer = "c1", order = "A1", score = 5 }
  t.match(s:sent{ template = "survey_thanks" }[1].body, "5/5")
  t.eq(#s:tasks{}, 0)
end)

t.case("a bad score makes a call task; its outcome is recorded", function()
  local s = sim()
  s:event{ type = "survey.answered", customer = "c1", order = "A1", score = 1 }
  local call = s:tasks{ customer = "c1" }
  t.eq(#call, 1)
  t.eq(call[1].kind, "call")
  t.match(call[1].note, "Order A1 scored 1/5: call Mei")
  t.eq(call[1].due_at, s:now() + days(1))
  s:advance(hours(5))
  s:close_task(call[1].id, { status = "done", outcome = "refund agreed" })
  t.eq(s:customer("c1").attrs.survey_followup, "done: refund agreed")
  t.eq(s:customer("c1").tags[1], "survey_resolved")
end)

t.case("an answer about another order is not this survey's", function()
  local s = sim()
  s:event{ type = "survey.answered", customer = "c1", order = "Z9", score = 1 }
  t.eq(#s:tasks{}, 0)
  t.eq(s:instances{}[1].state, "waiting")
end)

t.case("a call nobody makes within five days is recorded as such", function()
  local s = sim()
  s:event{ type = "survey.answered", customer = "c1", order = "A1", score = 2 }
  s:advance(days(5))
  t.eq(s:customer("c1").attrs.survey_followup, "no call within 5 days")
  t.eq(s:tasks{}[1].status, "open")
end)
