-- wait_for with a timeout of nothing times out at once (as wait(0) returns at
-- once), replayed the same; a goal's where(event) decides which events count.
local t = require "tend.test"

local SOURCE = [[
template "note" { category = "transactional", push = "{{what}}" }
journey "ask" { on = "ask", run = function(c, ev)
  local got = wait_for("answer", { timeout = ev.timeout })
  send("push", c, "note", { what = got and "answered" or "timed out" })
  wait(days(1))
  send("push", c, "note", { what = "later" })
end }
journey "buy" { on = "lead", goal = { event = "order.paid", within = days(30), where = function(ev) return ev.total >= 100 end },
                run = function(c) wait(days(40)) end }
]]

local function sim()
  return t.sim{ source = SOURCE, start = "2026-03-02T10:00:00+08:00", config = { timezone = "Asia/Shanghai" } }
end

t.case("wait_for with timeout 0, negative or under a second times out at once", function()
  local s = sim()
  for i, timeout in ipairs({ 0, -5, 0.5 }) do
    local id = "c" .. i
    s:customer{ id = id }
    s:event{ type = "ask", customer = id, timeout = timeout }
    local m = s:sent{ customer = id }
    t.eq(#m, 1, id)
    t.eq(m[1].body, "timed out", id)
    t.eq(s:instances{ customer = id }[1].state, "waiting", id)
  end
  s:restart()                                 -- the replay takes the recorded timeout
  s:advance(days(2))
  for i = 1, 3 do
    local m = s:sent{ customer = "c" .. i }
    t.eq(#m, 2)
    t.eq(m[2].body, "later")
  end
  t.eq(#s:instances{ state = "failed" }, 0)
end)

t.case("wait_for with a timeout of a second or more still waits", function()
  local s = sim()
  s:customer{ id = "c1" }
  s:event{ type = "ask", customer = "c1", timeout = 60 }
  t.eq(#s:sent{}, 0)
  s:event{ type = "answer", customer = "c1" }
  t.eq(s:sent{}[1].body, "answered")
end)

t.case("a goal's where(event) picks the events that convert", function()
  local s = sim()
  s:customer{ id = "c1" }
  s:event{ type = "lead", customer = "c1" }
  s:event{ type = "order.paid", customer = "c1", total = 50 }
  t.eq(s:instances{ customer = "c1" }[1].state, "waiting")     -- too small: still going
  s:event{ type = "order.paid", customer = "c1", total = 120 }
  t.eq(s:instances{ customer = "c1" }[1].state, "converted")
end)
