-- Closing the loop, end to end in a sim: staff tasks closed and waited for,
-- coupons redeemed (and refused for every reason), receipts that come back
-- and are waited for, unsubscribes by receipt, conversion values, and the
-- lift of a seeded 10,000-customer experiment against a computation by hand.
local t = require "tend.test"

local START = "2026-03-02T09:00:00+08:00"

local CARE = [[
template "ask" { category = "transactional", sms = "How was your parcel, {{name}}?" }
template "promo" { category = "marketing", sms = "A treat for you, {{name}}." }

journey "followup" {
  on = "order.delivered",
  run = function(c, ev)
    local task = task(c, { kind = "call", assign = "alice", note = "call " .. c.id, due = days(2) })
    local done = wait_task(task, { timeout = days(7) })
    if done then
      c:set{ attrs = { call_outcome = done.status .. ":" .. (done.outcome or "") } }
    else
      c:tag("call_missed")
    end
  end,
}

journey "on_task" {
  on = "task.failed",
  run = function(c, ev) c:tag("task_failed_" .. ev.kind) end,
}
]]

t.case("a closed task wakes its journey with the outcome, and task.<status> starts journeys", function()
  local sim = t.sim{ source = CARE, start = START }
  sim:customer{ id = "c1", name = "Wei" }
  sim:customer{ id = "c2", name = "Ann" }
  sim:event{ type = "order.delivered", customer = "c1" }
  sim:event{ type = "order.delivered", customer = "c2" }
  local tasks = sim:tasks{ status = "open" }
  t.eq(#tasks, 2)
  t.eq(tasks[1].due_at, sim:now() + days(2))
  sim:advance(hours(3))
  sim:close_task(tasks[1].id, { status = "done", outcome = "happy, ordered again" })
  t.eq(sim:customer("c1").attrs.call_outcome, "done:happy, ordered again")
  t.eq(sim:tasks{ customer = "c1" }[1].status, "done")
  t.eq(sim:tasks{ customer = "c1" }[1].outcome, "happy, ordered again")
  t.eq(sim:tasks{ customer = "c1" }[1].done_at, sim:now())
  t.eq(sim:instances{ journey = "followup", customer = "c1" }[1].state, "done")
  -- the other is failed by staff: task.failed starts on_task
  sim:close_task(tasks[2].id, { status = "failed", outcome = "no answer" })
  t.ok(sim:customer("c2").tags[1] == "task_failed_call", t.show(sim:customer("c2").tags))
  -- closed tasks cannot close again; unknown ones are named
  t.fails(function() sim:close_task(tasks[1].id, { status = "done" }) end, "is done already")
  t.fails(function() sim:close_task(999, { status = "done" }) end, "no task 999")
  t.fails(function() sim:close_task(tasks[1].id, { status = "finished" }) end, "must be \"done\", \"failed\" or \"cancelled\"")
end)

t.case("a task nobody closes times out the wait, and survives a restart", function()
  local sim = t.sim{ source = CARE, start = START }
  sim:customer{ id = "c1" }
  sim:event{ type = "order.delivered", customer = "c1" }
  sim:advance(days(3))
  sim:restart()
  t.eq(sim:instances{ customer = "c1" }[1].state, "waiting")
  sim:advance(days(4))
  t.eq(sim:customer("c1").tags[1], "call_missed")
  -- closing it late changes the task but the journey has moved on
  sim:close_task(sim:tasks{}[1].id, { status = "done", outcome = "late" })
  t.eq(sim:instances{ customer = "c1" }[1].state, "done")
end)

local COUPONS = [[
journey "gift" {
  on = "signup",
  run = function(c, ev)
    local cp = coupon_issue(c, { value = 20, valid = days(10), min_spend = ev.min or 0,
                                 starts = ev.starts, prefix = "G" })
    c:set{ attrs = { code = cp.code } }
    local r = wait_for("coupon.redeemed", { timeout = days(30) })
    if r then c:set{ attrs = { redeemed_on = r.order, redeemed_value = r.value } } end
  end,
}
]]

local function code_of(sim, id) return sim:customer(id).attrs.code end

t.case("an order with the customer's own code redeems it once; every refusal is logged with its reason", function()
  local sim = t.sim{ source = COUPONS, start = START }
  for _, id in ipairs{ "a", "b", "c", "d", "e" } do sim:customer{ id = id } end
  sim:event{ type = "signup", customer = "a" }
  sim:event{ type = "signup", customer = "b" }
  sim:event{ type = "signup", customer = "c", min = 100 }
  sim:event{ type = "signup", customer = "d", starts = "2026-03-05T00:00:00+08:00" }
  sim:event{ type = "signup", customer = "e" }
  -- a: redeemed, and the journey sees coupon.redeemed with the order
  sim:event{ type = "order.paid", customer = "a", order = "A1", total = 50, coupon = code_of(sim, "a") }
  t.eq(sim:customer("a").attrs.redeemed_on, "A1")
  t.eq(sim:customer("a").attrs.redeemed_value, 20)
  -- used again: refused
  sim:event{ type = "order.paid", customer = "a", order = "A2", total = 50, coupon = code_of(sim, "a") }
  -- b tries a's code: another customer's
  sim:event{ type = "order.paid", customer = "b", order = "B1", total = 50, coupons = { code_of(sim, "a") } }
  -- c is below the minimum spend
  sim:event{ type = "order.paid", customer = "c", order = "C1", total = 99.5, coupon = code_of(sim, "c") }
  -- d is too early
  sim:event{ type = "order.paid", customer = "d", order = "D1", total = 10, coupon = code_of(sim, "d") }
  -- e waits past the validity
  sim:advance(days(11))
  sim:event{ type = "order.paid", customer = "e", order = "E1", total = 10, coupon = code_of(sim, "e") }
  sim:event{ type = "order.paid", customer = "e", order = "E2", total = 10, coupon = "NOSUCH" }
  local log = sim:log()
  t.match(log, "order A2 of customer a: coupon " .. code_of(sim, "a") .. " not redeemed: already redeemed on order A1")
  t.match(log, "order B1 of customer b: coupon " .. code_of(sim, "a") .. " not redeemed: the code belongs to another customer")
  t.match(log, "order C1 of customer c: coupon .- not redeemed: the order's total 99.50 is below the minimum spend 100.00")
  t.match(log, "order D1 of customer d: coupon .- not redeemed: not valid yet")
  t.match(log, "order E1 of customer e: coupon .- not redeemed: expired")
  t.match(log, "order E2 of customer e: coupon NOSUCH not redeemed: no such code")
  for _, id in ipairs{ "b", "c", "d", "e" } do t.eq(sim:customer(id).attrs.redeemed_on, nil, id) end
  local report = sim:report("gift")
  t.eq(report.coupons.issued, 5)
  t.eq(report.coupons.redeemed, 1)
  t.near(report.coupons.redemption_rate, 0.2, 1e-9)
end)

local RECEIPTS = [[
template "hello" { category = "marketing", sms = "Hello {{name}}" }
journey "hello" {
  on = "signup",
  run = function(c)
    local r = send("sms", c, "hello")
    local d = wait_receipt(r, "delivered", { timeout = hours(2) })
    c:set{ attrs = { delivered = d and d.channel or "no" } }
    if d then
      local o = wait_receipt(r, "opened", { timeout = days(1) })
      c:set{ attrs = { opened = o ~= nil } }
    end
  end,
}
]]

t.case("receipts update the message, wake wait_receipt, and an unsubscribe suppresses the channel", function()
  local sim = t.sim{ source = RECEIPTS, start = START, config = { quiet_hours = false } }
  sim:customer{ id = "c1", name = "Wei" }
  sim:customer{ id = "c2", name = "Ann" }
  sim:event{ type = "signup", customer = "c1" }
  sim:event{ type = "signup", customer = "c2" }
  local m1 = sim:messages{ customer = "c1" }[1]
  local m2 = sim:messages{ customer = "c2" }[1]
  t.ok(sim:receipt{ message = m1.id, status = "delivered" })
  t.eq(sim:receipt{ message = m1.id, status = "delivered" }, false)   -- a repeat is a duplicate
  t.eq(sim:customer("c1").attrs.delivered, "sms")
  t.ok(sim:receipt{ key = m1.key, status = "opened", id = "prov-77" })
  t.eq(sim:customer("c1").attrs.opened, true)
  -- c2's receipt never comes: the wait times out
  sim:advance(hours(2))
  t.eq(sim:customer("c2").attrs.delivered, "no")
  -- an unsubscribe by receipt: the next marketing sms is suppressed
  t.ok(sim:receipt{ message = m2.id, status = "unsubscribed", reason = "STOP" })
  sim:event{ type = "signup", customer = "c2" }
  local after = sim:messages{ customer = "c2" }
  t.eq(after[#after].status, "suppressed")
  -- bad receipts are refused, naming the field or the message
  t.fails(function() sim:receipt{ message = 424242, status = "delivered" } end, "no message 424242")
  t.fails(function() sim:receipt{ message = m1.id, status = "bounced" } end, "field 'status'")
  t.fails(function() sim:receipt{ message = m1.id, key = m1.key, status = "opened" } end, "not both")
  t.fails(function() sim:receipt{ message = m1.id, status = "opened", colour = "red" } end, "unknown field 'colour'")
end)

-- A delivered or failed receipt nobody listens for is stored but not
-- routed (receipt.c / event.c skip that work); these are the listeners that
-- must still hear it: a journey started by the type, a wildcard wait_for,
-- a goal on the type; and the event's fields, a reason with quotes and a
-- line break in it included, arrive as they were given.
local HEARD = [[
template "hi" { category = "transactional", sms = "Hi {{name}}" }
journey "sender" {
  on = "signup",
  goal = { event = "message.failed" },
  run = function(c)
    send("sms", c, "hi")
    local ev = wait_for("message.*", { timeout = days(1) })
    c:set{ attrs = { heard = ev and ev.type or "none" } }
    wait(days(2))
  end,
}
journey "on_delivered" {
  on = "message.delivered",
  run = function(c, ev)
    c:set{ attrs = { started_by = ev.type, key = ev.key, channel = ev.channel, template = ev.template,
                     journey = ev.journey, message = ev.message, reason = ev.reason or "none" } }
  end,
}
]]

t.case("message.* receipts reach the journeys they start, wildcard waits and goals, fields intact", function()
  local sim = t.sim{ source = HEARD, start = START, config = { quiet_hours = false } }
  sim:customer{ id = "c1", name = "Wei" }
  sim:customer{ id = "c2", name = "Ann" }
  sim:event{ type = "signup", customer = "c1" }
  local m1 = sim:messages{ customer = "c1" }[1]
  local why = 'provider said "ok"\nsecond line \\ done'
  t.ok(sim:receipt{ key = m1.key, status = "delivered", reason = why, id = "p-1" })
  local c1 = sim:customer("c1")
  t.eq(c1.attrs.heard, "message.delivered")
  t.eq(c1.attrs.started_by, "message.delivered")
  t.eq(c1.attrs.key, m1.key)
  t.eq(c1.attrs.channel, "sms")
  t.eq(c1.attrs.template, "hi")
  t.eq(c1.attrs.journey, "sender")
  t.eq(c1.attrs.message, m1.id)
  t.eq(c1.attrs.reason, why)
  -- a failed receipt: the goal converts the waiting instance
  sim:event{ type = "signup", customer = "c2" }
  local m2 = sim:messages{ customer = "c2" }[1]
  t.ok(sim:receipt{ message = m2.id, status = "failed" })
  t.eq(sim:customer("c2").attrs.heard, nil)
  local inst = sim:instances{ customer = "c2", journey = "sender" }
  t.eq(inst[1].state, "converted")
  -- a receipt id of two lines is refused, naming the field
  t.fails(function() sim:receipt{ message = m2.id, status = "opened", id = "a\nb" } end, "field 'id'")
end)

-- Newcombe's hybrid score interval (method 10), computed here from the raw
-- counts as a reader would by hand, to hold the report's figures against.
local Z = 1.959963984540054
local function wilson(x, n)
  local p = x / n
  local centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
  local half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
  return math.max(0, centre - half), math.min(1, centre + half)
end
local function newcombe(x1, n1, x2, n2)
  local p1, p2 = x1 / n1, x2 / n2
  local l1, u1 = wilson(x1, n1)
  local l2, u2 = wilson(x2, n2)
  local d = p1 - p2
  return d, d - math.sqrt((p1 - l1) ^ 2 + (u2 - p2) ^ 2), d + math.sqrt((u1 - p1) ^ 2 + (p2 - l2) ^ 2)
end

local EXPERIMENT = [[
template "offer" { category = "transactional", sms = "An offer" }
journey "exp" {
  on = "lapsed",
  goal = { event = "order.paid", within = days(30), value = "total" },
  run = function(c)
    if holdout(10) then return end
    local arm = split{ A = 50, B = 50 }
    send("sms", c, "offer")
    wait(days(30))
  end,
}
journey "nogoal" { on = "lapsed", run = function(c) end }
]]

t.case("lift of a seeded 10,000-customer split against the holdout, by hand", function()
  local sim = t.sim{ source = EXPERIMENT, start = START, config = { quiet_hours = false,
                     channels = { sms = { type = "capture", price = 0.05 } } } }
  local N = 10000
  for i = 1, N do sim:customer{ id = string.format("c%05d", i) } end
  for i = 1, N do sim:event{ type = "lapsed", customer = string.format("c%05d", i) } end
  -- who buys: a fixed rule over the ids, heavier in arm A than in B, and some
  -- of the holdout too; each order's total is its value
  local groups = { holdout = { n = 0, x = 0, v = 0 }, treatment = { n = 0, x = 0, v = 0 },
                   A = { n = 0, x = 0, v = 0 }, B = { n = 0, x = 0, v = 0 } }
  for _, inst in ipairs(sim:instances{ journey = "exp" }) do
    local i = tonumber(inst.customer:sub(2))
    local name = inst.holdout and "holdout" or "treatment"
    local buys = (inst.holdout and i % 10 == 0) or (inst.branch == "A" and i % 4 == 0) or
                 (inst.branch == "B" and i % 6 == 0)
    for _, g in ipairs{ name, inst.branch } do
      if g then
        groups[g].n = groups[g].n + 1
        if buys then groups[g].x = groups[g].x + 1; groups[g].v = groups[g].v + (i % 100) end
      end
    end
    if buys then sim:event{ type = "order.paid", customer = inst.customer, total = i % 100 } end
  end
  local r = sim:report("exp")
  local ex = r.experiment
  t.eq(ex.all.entered, N)
  t.ok(groups.holdout.n > 800 and groups.holdout.n < 1200, "about one in ten held out: " .. groups.holdout.n)
  for _, g in ipairs{ "holdout", "treatment" } do
    t.eq(ex[g].entered, groups[g].n, g .. " entered")
    t.eq(ex[g].converted, groups[g].x, g .. " converted")
    t.near(ex[g].rate, groups[g].x / groups[g].n, 1e-12, g .. " rate")
    t.near(ex[g].revenue, groups[g].v, 1e-9, g .. " revenue")
    t.near(ex[g].revenue_per_entrant, groups[g].v / groups[g].n, 1e-9, g .. " revenue per entrant")
  end
  for _, arm in ipairs{ "A", "B" } do
    local got = ex.arms[arm]
    t.eq(got.entered, groups[arm].n, arm .. " entered")
    t.eq(got.converted, groups[arm].x, arm .. " converted")
    local d, lo, hi = newcombe(groups[arm].x, groups[arm].n, groups.holdout.x, groups.holdout.n)
    t.near(got.lift.difference, d, 1e-12, arm .. " lift")
    t.near(got.lift.low, lo, 1e-12, arm .. " lift low")
    t.near(got.lift.high, hi, 1e-12, arm .. " lift high")
    -- the cost: every treatment instance sent one sms at 0.05
    t.near(got.cost, 0.05 * groups[arm].n, 1e-6, arm .. " cost")
  end
  t.eq(ex.holdout.cost, 0)
  -- arm A (1 in 4) beats the holdout (1 in 10) clearly; B (1 in 6) too, less
  t.ok(ex.arms.A.lift.low > 0 and ex.arms.A.lift.difference > ex.arms.B.lift.difference)
  -- a journey without a goal shows no conversion figures
  local ng = sim:report("nogoal")
  t.eq(ng.conversions, nil)
  t.eq(ng.experiment.all.converted, nil)
  t.eq(ng.experiment.all.entered, N)
end)

local FALLBACK = [[
channel "wechat" { type = "http", url = "http://127.0.0.1:9/wechat", address = "attrs.openid" }
channel "sms" { type = "http", url = "http://127.0.0.1:9/sms", address = "phone" }
template "notice" { category = "transactional", wechat = "WeChat notice for {{name}}", sms = "SMS notice for {{name}}" }
template "sms_only" { category = "transactional", sms = "only sms" }
journey "notify" {
  on = "notify",
  run = function(c, ev)
    local r = send({ "wechat", "sms" }, c, ev.template or "notice", {}, { fallback_after = hours(1) })
    c:set{ attrs = { took = r.channel or r.status } }
  end,
}
]]

local function fallback_sim()
  local sim = t.sim{ source = FALLBACK, start = START, config = { quiet_hours = false } }
  sim:customer{ id = "both", name = "Both", phone = "+8613800000001", attrs = { openid = "o-1" } }
  sim:customer{ id = "nowx", name = "Nowx", phone = "+8613800000002" }
  sim:customer{ id = "nothing", name = "Nothing" }
  return sim
end

t.case("fallback: the first channel that can reach the customer takes the message", function()
  local sim = fallback_sim()
  sim:event{ type = "notify", customer = "nowx" }   -- no openid: straight to sms
  local m = sim:messages{ customer = "nowx" }
  t.eq(#m, 1)
  t.eq(m[1].channel, "sms")
  t.eq(sim:customer("nowx").attrs.took, "sms")
  sim:event{ type = "notify", customer = "both", template = "sms_only" }   -- no wechat text
  t.eq(sim:messages{ customer = "both" }[1].channel, "sms")
  sim:event{ type = "notify", customer = "nothing" }   -- nobody can reach them
  t.eq(#sim:messages{ customer = "nothing" }, 0)
  t.eq(sim:customer("nothing").attrs.took, "unreachable")
end)

t.case("fallback: delivered in time stays; no receipt in time or a failure passes to sms", function()
  local sim = fallback_sim()
  sim:customer{ id = "b2", name = "B2", phone = "+8613800000003", attrs = { openid = "o-2" } }
  sim:customer{ id = "b3", name = "B3", phone = "+8613800000004", attrs = { openid = "o-3" } }
  sim:event{ type = "notify", customer = "both" }
  sim:event{ type = "notify", customer = "b2" }
  sim:event{ type = "notify", customer = "b3" }
  local w1 = sim:messages{ customer = "both" }[1]
  t.eq(w1.channel, "wechat")
  sim:receipt{ message = w1.id, status = "delivered" }
  sim:receipt{ message = sim:messages{ customer = "b3" }[1].id, status = "failed", reason = "user blocked the account" }
  t.eq(sim:customer("b3").attrs.took, "sms")   -- failed: at once
  sim:advance(hours(1))
  t.eq(sim:customer("both").attrs.took, "wechat")
  t.eq(#sim:messages{ customer = "both" }, 1)
  t.eq(sim:customer("b2").attrs.took, "sms")   -- an hour without a word
  local b2 = sim:messages{ customer = "b2" }
  t.eq(#b2, 2)
  t.eq(b2[1].channel, "wechat")
  t.eq(b2[2].channel, "sms")
  -- each attempt counts its own cost and is in the timeline
  t.eq(sim:instances{ customer = "b2" }[1].state, "done")
end)

t.case("fallback: a channel the customer unsubscribed from is skipped", function()
  local sim = fallback_sim()
  sim:event{ type = "unsubscribe", customer = "both", channel = "wechat" }
  -- transactional mail still skips an unsubscribed channel only if marketing; use a marketing template
  sim:deploy{ source = FALLBACK .. [[
template "promo2" { category = "marketing", wechat = "promo wx", sms = "promo sms" }
journey "promo" { on = "promo", run = function(c) local r = send({ "wechat", "sms" }, c, "promo2") c:set{ attrs = { promo = r.channel } } end }
]] }
  sim:event{ type = "promo", customer = "both" }
  t.eq(sim:customer("both").attrs.promo, "sms")
end)

t.case("a provider's own callback is mapped to receipts by the channel's receipt function", function()
  local sim = t.sim{ source = [[
channel "sms" { type = "capture", receipt = function(reports)
  local out = {}
  for _, r in ipairs(reports) do
    out[#out + 1] = { key = r.out_id, status = r.success and "delivered" or "failed", reason = r.err_code }
  end
  return out
end }
channel "bad" { type = "capture", receipt = function(body) return 42 end }
template "hi" { category = "transactional", sms = "hi" }
journey "hi" { on = "signup", run = function(c)
  local r = send("sms", c, "hi")
  local d = wait_receipt(r, "failed", { timeout = hours(1) })
  c:set{ attrs = { failed = d and d.reason or "no" } }
end }
]], start = START }
  sim:customer{ id = "c1" }
  sim:customer{ id = "c2" }
  sim:event{ type = "signup", customer = "c1" }
  sim:event{ type = "signup", customer = "c2" }
  local k1, k2 = sim:messages{ customer = "c1" }[1].key, sim:messages{ customer = "c2" }[1].key
  local stored = sim:callback("sms", string.format(
    '[{"out_id":"%s","success":true,"err_code":"DELIVERED"},{"out_id":"%s","success":false,"err_code":"MOBILE_NOT_ON_SERVICE"}]', k1, k2))
  t.eq(stored, 2)
  t.eq(sim:customer("c2").attrs.failed, "MOBILE_NOT_ON_SERVICE")
  t.fails(function() sim:callback("bad", "{}") end, "receipt must return a receipt table, a list of them, or nil")
  t.fails(function() sim:callback("nosuch", "{}") end, "no channel 'nosuch'")
end)
