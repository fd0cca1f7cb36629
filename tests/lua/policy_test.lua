-- Policy: quiet hours by the customer's zone (DST included), caps across
-- journeys, priorities, suppression and the opt-out race, SMS segments and
-- cost, template defaults and render failures.
local t = require "tend.test"

-- Instants used below, as epoch seconds (checked against ISO-8601 by hand):
local MON_2300_SH = 1772463600   -- 2026-03-02T23:00:00+08:00 (a Monday) = 16:00 in Berlin
local TUE_0830_SH = 1772497800   -- 2026-03-03T08:30:00+08:00
local MON_1000_SH = 1772416800   -- 2026-03-02T10:00:00+08:00
local NY_SPRING_EVE = 1772938800 -- 2026-03-07T22:00:00-05:00 (EST), the evening before spring-forward
local NY_SPRING_0830 = 1772973000 -- 2026-03-08T08:30:00-04:00 (EDT) = 12:30Z
local NY_FALL_EVE = 1793498400   -- 2026-10-31T22:00:00-04:00 (EDT), the evening before fall-back
local NY_FALL_0830 = 1793539800  -- 2026-11-01T08:30:00-05:00 (EST) = 13:30Z

local QUIET = { from = "21:30", to = "08:30" }

local TEMPLATES = [[
template "promo" { category = "marketing", sms = "{{ name | default: 'friend' }}, a spring offer", email = { subject = "Offer", body = "{{ name | default: 'friend' }}, a spring offer" } }
template "care"  { category = "transactional", sms = "{{ name | default: 'friend' }}, your order is on its way", email = { subject = "Order", body = "{{ name | default: 'friend' }}, your order" } }
]]

local function sim(source, opts)
  opts = opts or {}
  local config = {
    timezone = opts.timezone or "Asia/Shanghai",
    quiet_hours = opts.quiet_hours == nil and QUIET or opts.quiet_hours,
    caps = false,
  }
  if opts.caps ~= nil then config.caps = opts.caps end
  if opts.channels then config.channels = opts.channels end
  return t.sim{ source = TEMPLATES .. source, start = opts.start or MON_1000_SH, config = config }
end

local PROMO = [[
journey "promo" { on = "promo", run = function(c) send("sms", c, "promo") end }
journey "care"  { on = "care",  run = function(c) send("sms", c, "care") end }
]]

-- --- quiet hours ------------------------------------------------------------

t.case("quiet hours: marketing at 23:00 Shanghai waits for 08:30 there; Berlin (16:00) goes at once", function()
  local s = sim(PROMO, { start = "2026-03-02T23:00:00+08:00" })
  t.eq(s:now(), MON_2300_SH)
  s:customer{ id = "sh", name = "Li", timezone = "Asia/Shanghai" }
  s:customer{ id = "be", name = "Jonas", timezone = "Europe/Berlin" }
  s:event{ type = "promo", customer = "sh" }
  s:event{ type = "promo", customer = "be" }

  local sh = s:messages{ customer = "sh" }
  t.eq(#sh, 1)
  t.eq(sh[1].status, "deferred")
  t.eq(sh[1].at, TUE_0830_SH, "due at 08:30 Shanghai the next morning")

  local be = s:messages{ customer = "be" }
  t.eq(#be, 1)
  t.eq(be[1].status, "sent")
  t.eq(be[1].at, MON_2300_SH)

  s:advance(hours(9) + minutes(29))      -- 08:29: still waiting
  t.eq(s:messages{ customer = "sh" }[1].status, "deferred")
  s:advance(minutes(2))                  -- 08:31
  sh = s:messages{ customer = "sh" }
  t.eq(sh[1].status, "sent")
  t.eq(sh[1].at, TUE_0830_SH)
  t.eq(sh[1].body, "Li, a spring offer")
end)

t.case("quiet hours: a transactional message at 23:00 goes at once", function()
  local s = sim(PROMO, { start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "sh", timezone = "Asia/Shanghai" }
  s:event{ type = "care", customer = "sh" }
  local m = s:messages{ customer = "sh" }
  t.eq(#m, 1)
  t.eq(m[1].status, "sent")
  t.eq(m[1].at, MON_2300_SH)
  t.eq(m[1].category, "transactional")
end)

t.case("quiet hours: DST in New York, spring-forward night -> 08:30 EDT (12:30Z)", function()
  local s = sim(PROMO, { start = "2026-03-07T22:00:00-05:00" })
  t.eq(s:now(), NY_SPRING_EVE)
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:event{ type = "promo", customer = "ny" }
  local m = s:messages{ customer = "ny" }
  t.eq(m[1].status, "deferred")
  t.eq(m[1].at, NY_SPRING_0830, "08:30 EDT on 2026-03-08 is 12:30Z")
  s:advance(hours(14))
  m = s:messages{ customer = "ny" }
  t.eq(m[1].status, "sent")
  t.eq(m[1].at, NY_SPRING_0830)
end)

t.case("quiet hours: DST in New York, fall-back night -> 08:30 EST (13:30Z)", function()
  local s = sim(PROMO, { start = "2026-10-31T22:00:00-04:00" })
  t.eq(s:now(), NY_FALL_EVE)
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:event{ type = "promo", customer = "ny" }
  local m = s:messages{ customer = "ny" }
  t.eq(m[1].status, "deferred")
  t.eq(m[1].at, NY_FALL_0830, "08:30 EST on 2026-11-01 is 13:30Z")
  s:advance(hours(16))
  m = s:messages{ customer = "ny" }
  t.eq(m[1].status, "sent")
  t.eq(m[1].at, NY_FALL_0830)
end)

t.case("quiet hours: a customer with no zone uses the configured default, never 'send anyway'", function()
  local s = sim(PROMO, { start = "2026-03-02T23:00:00+08:00", timezone = "Asia/Shanghai" })
  s:customer{ id = "nozone", name = "Wu" }
  s:event{ type = "promo", customer = "nozone" }
  local m = s:messages{ customer = "nozone" }
  t.eq(#m, 1)
  t.eq(m[1].status, "deferred")
  t.eq(m[1].at, TUE_0830_SH)
end)

-- --- caps -------------------------------------------------------------------

t.case("caps: two marketing journeys the same day -> the second is capped (on_cap skip by default)", function()
  local s = sim([[
    journey "first"  { on = "a", run = function(c) send("sms", c, "promo") end }
    journey "second" { on = "b", run = function(c)
      local r = send("sms", c, "promo")
      send("sms", c, "care", { })   -- the journey goes on after a capped send
      c:set{ ["attrs.second_status"] = r.status }
    end }
  ]], { caps = { day = 1, week = 3 } })
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "a", customer = "c1" }
  s:advance(hours(4))
  s:event{ type = "b", customer = "c1" }
  local first = s:messages{ journey = "first" }
  local second = s:messages{ journey = "second", template = "promo" }
  t.eq(first[1].status, "sent")
  t.eq(#second, 1)
  t.eq(second[1].status, "capped")
  t.match(second[1].error or "", "cap")
  t.eq(s:customer("c1").attrs.second_status, "capped", "send() returned capped")
  t.eq(s:messages{ journey = "second", template = "care" }[1].status, "sent")
  s:advance(days(2))
  t.eq(#s:messages{ template = "promo", status = "sent" }, 1, "a capped message is never sent later")
end)

t.case("caps: on_cap = \"defer\" moves the second message to the next local day", function()
  local s = sim([[
    journey "first"  { on = "a", run = function(c) send("sms", c, "promo") end }
    journey "second" { on = "b", on_cap = "defer", run = function(c) send("sms", c, "promo") end }
  ]], { caps = { day = 1, week = 3 } })
  s:customer{ id = "c1" }
  s:event{ type = "a", customer = "c1" }
  s:advance(hours(4))   -- 14:00 Monday
  s:event{ type = "b", customer = "c1" }
  local m = s:messages{ journey = "second" }
  t.eq(#m, 1)
  t.eq(m[1].status, "deferred")
  -- the next local day starts at midnight, inside quiet hours: 08:30 Tuesday
  t.eq(m[1].at, TUE_0830_SH)
  s:advance(days(1))
  m = s:messages{ journey = "second" }
  t.eq(m[1].status, "sent")
  t.eq(m[1].at, TUE_0830_SH)
end)

t.case("caps: a template's on_cap = \"defer\" works as well", function()
  local s = sim([[
    template "promo2" { category = "marketing", on_cap = "defer", sms = "another offer" }
    journey "first"  { on = "a", run = function(c) send("sms", c, "promo") end }
    journey "second" { on = "b", run = function(c) send("sms", c, "promo2") end }
  ]], { caps = { day = 1, week = 3 } })
  s:customer{ id = "c1" }
  s:event{ type = "a", customer = "c1" }
  s:event{ type = "b", customer = "c1" }
  local m = s:messages{ template = "promo2" }
  t.eq(m[1].status, "deferred")
  t.eq(m[1].at, TUE_0830_SH)
end)

t.case("caps: at most 3 marketing messages a week per customer; transactional never capped", function()
  local s = sim(PROMO, { caps = { day = 1, week = 3 } })
  s:customer{ id = "c1" }
  -- Monday 10:00 .. Sunday 10:00, one promo and three order messages a day
  for day = 1, 7 do
    s:event{ type = "promo", customer = "c1" }
    for _ = 1, 3 do s:event{ type = "care", customer = "c1" } end
    s:advance(days(1))
  end
  local promo = s:messages{ template = "promo" }
  t.eq(#promo, 7)
  local statuses = {}
  for i, m in ipairs(promo) do statuses[i] = m.status end
  t.eq(statuses, { "sent", "sent", "sent", "capped", "capped", "capped", "capped" })
  t.match(promo[4].error or "", "week")
  t.eq(#s:messages{ template = "care" }, 21)
  t.eq(#s:messages{ template = "care", status = "sent" }, 21, "transactional messages are never capped")
  -- the next ISO week (Monday 2026-03-09) has room again
  s:event{ type = "promo", customer = "c1" }
  t.eq(s:messages{ template = "promo" }[8].status, "sent")
end)

t.case("caps are per customer: another customer's messages do not count", function()
  local s = sim(PROMO, { caps = { day = 1, week = 3 } })
  s:customer{ id = "c1" }
  s:customer{ id = "c2" }
  s:event{ type = "promo", customer = "c1" }
  s:event{ type = "promo", customer = "c2" }
  t.eq(#s:messages{ template = "promo", status = "sent" }, 2)
end)

-- --- priorities ---------------------------------------------------------------

t.case("priorities: a higher-priority message takes the slot of a lower one waiting for 08:30", function()
  local s = sim([[
    journey "low"  { on = "low",  priority = 1, run = function(c) send("sms", c, "promo") end }
    journey "high" { on = "high", priority = 5, run = function(c) send("sms", c, "promo") end }
  ]], { caps = { day = 1, week = 3 }, start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "c1" }
  s:event{ type = "low", customer = "c1" }
  t.eq(s:messages{ journey = "low" }[1].status, "deferred")
  t.eq(s:messages{ journey = "low" }[1].at, TUE_0830_SH)
  s:advance(minutes(30))
  s:event{ type = "high", customer = "c1" }
  t.eq(s:messages{ journey = "low" }[1].status, "capped", "the lower one is displaced")
  local high = s:messages{ journey = "high" }
  t.eq(high[1].status, "deferred")
  t.eq(high[1].at, TUE_0830_SH)
  s:advance(hours(10))
  t.eq(s:messages{ journey = "high" }[1].status, "sent")
  t.eq(s:messages{ journey = "low" }[1].status, "capped")
  t.eq(#s:messages{ status = "sent" }, 1)
end)

t.case("priorities: an equal or lower priority does not displace; it is capped itself", function()
  local s = sim([[
    journey "mid"   { on = "mid",   priority = 3, run = function(c) send("sms", c, "promo") end }
    journey "same"  { on = "same",  priority = 3, run = function(c) send("sms", c, "promo") end }
    journey "lower" { on = "lower", priority = 1, run = function(c) send("sms", c, "promo") end }
  ]], { caps = { day = 1, week = 3 }, start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "c1" }
  s:event{ type = "mid", customer = "c1" }
  s:event{ type = "same", customer = "c1" }
  s:event{ type = "lower", customer = "c1" }
  t.eq(s:messages{ journey = "mid" }[1].status, "deferred")
  t.eq(s:messages{ journey = "same" }[1].status, "capped")
  t.eq(s:messages{ journey = "lower" }[1].status, "capped")
  s:advance(hours(10))
  t.eq(s:messages{ journey = "mid" }[1].status, "sent")
end)

t.case("priorities: a template's priority overrides the journey's", function()
  local s = sim([[
    template "urgent" { category = "marketing", priority = 9, sms = "last chance" }
    journey "low"  { on = "low",  priority = 1, run = function(c) send("sms", c, "promo") end }
    journey "tpl"  { on = "tpl",  run = function(c) send("sms", c, "urgent") end }
  ]], { caps = { day = 1, week = 3 }, start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "c1" }
  s:event{ type = "low", customer = "c1" }
  s:event{ type = "tpl", customer = "c1" }
  t.eq(s:messages{ journey = "low" }[1].status, "capped")
  t.eq(s:messages{ journey = "tpl" }[1].status, "deferred")
end)

-- --- suppression --------------------------------------------------------------

local BOTH = [[
journey "promo" { on = "promo", run = function(c) send("sms", c, "promo"); send("email", c, "promo") end }
journey "care"  { on = "care",  run = function(c) send("sms", c, "care");  send("email", c, "care")  end }
]]

local function statuses(s, template)
  local out = {}
  for _, m in ipairs(s:messages{ template = template }) do out[#out + 1] = m.channel .. ":" .. m.status end
  return out
end

t.case("suppression: unsubscribe from sms stops marketing sms only", function()
  local s = sim(BOTH)
  s:customer{ id = "c1", email = "c1@example.com" }
  s:event{ type = "unsubscribe", customer = "c1", channel = "sms" }
  s:event{ type = "promo", customer = "c1" }
  s:event{ type = "care", customer = "c1" }
  t.eq(statuses(s, "promo"), { "sms:suppressed", "email:sent" })
  t.eq(statuses(s, "care"), { "sms:sent", "email:sent" })
  t.match(s:messages{ template = "promo", channel = "sms" }[1].error or "", "unsubscribed")
end)

t.case("suppression: unsubscribe with no channel stops all marketing; resubscribe restores", function()
  local s = sim(BOTH)
  s:customer{ id = "c1" }
  s:event{ type = "unsubscribe", customer = "c1" }
  s:event{ type = "promo", customer = "c1" }
  s:event{ type = "care", customer = "c1" }
  t.eq(statuses(s, "promo"), { "sms:suppressed", "email:suppressed" })
  t.eq(statuses(s, "care"), { "sms:sent", "email:sent" })
  s:advance(days(1))
  s:event{ type = "resubscribe", customer = "c1" }
  s:event{ type = "promo", customer = "c1" }
  t.eq(statuses(s, "promo"), { "sms:suppressed", "email:suppressed", "sms:sent", "email:sent" })
end)

t.case("suppression: resubscribe to one channel restores that channel", function()
  local s = sim(BOTH)
  s:customer{ id = "c1" }
  s:event{ type = "unsubscribe", customer = "c1", channel = "sms" }
  s:event{ type = "unsubscribe", customer = "c1", channel = "email" }
  s:event{ type = "resubscribe", customer = "c1", channel = "sms" }
  s:event{ type = "promo", customer = "c1" }
  t.eq(statuses(s, "promo"), { "sms:sent", "email:suppressed" })
end)

t.case("suppression: a blocked customer gets nothing at all, not even transactional", function()
  local s = sim(BOTH)
  s:customer{ id = "c1" }
  s:customer{ id = "c2" }
  s:event{ type = "block", customer = "c1" }
  s:event{ type = "promo", customer = "c1" }
  s:event{ type = "care", customer = "c1" }
  s:event{ type = "care", customer = "c2" }
  t.eq(statuses(s, "promo"), { "sms:suppressed", "email:suppressed" })
  t.eq(#s:messages{ customer = "c1", status = "sent" }, 0)
  t.match(s:messages{ customer = "c1", template = "care" }[1].error or "", "blocked")
  t.eq(#s:messages{ customer = "c2", status = "sent" }, 2)
  s:event{ type = "unblock", customer = "c1" }
  s:event{ type = "care", customer = "c1" }
  t.eq(#s:messages{ customer = "c1", status = "sent" }, 2)
end)

t.case("opt-out race: deferred to 08:30, unsubscribed at 07:00 -> suppressed, never sent", function()
  local s = sim(PROMO, { start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "c1" }
  s:event{ type = "promo", customer = "c1" }
  t.eq(s:messages{}[1].status, "deferred")
  s:advance(hours(8))   -- 07:00 Tuesday
  s:event{ type = "unsubscribe", customer = "c1", channel = "sms" }
  s:advance(hours(3))
  local m = s:messages{}
  t.eq(#m, 1)
  t.eq(m[1].status, "suppressed")
  s:restart()
  s:advance(days(1))
  t.eq(#s:messages{ status = "sent" }, 0)
end)

t.case("opt-out race: a customer blocked while a message waits for 08:30 gets nothing", function()
  local s = sim(PROMO, { start = "2026-03-02T23:00:00+08:00" })
  s:customer{ id = "c1" }
  s:event{ type = "promo", customer = "c1" }
  s:advance(hours(1))
  s:event{ type = "block", customer = "c1" }
  s:advance(hours(10))
  t.eq(s:messages{}[1].status, "suppressed")
end)

-- --- SMS segments and cost ------------------------------------------------------

local RAW = [[
template "raw" { category = "transactional", sms = "{{text}}", push = "{{text}}" }
journey "raw" { on = "raw", run = function(c, ev) send(ev.channel or "sms", c, "raw", { text = ev.text }) end }
]]

local CHANNELS = {
  sms = { type = "capture", price = 0.05, per = "segment" },
  push = { type = "capture", price = 0.02 },
}

local function measure(text, channel)
  local s = sim(RAW, { channels = CHANNELS })
  s:customer{ id = "c1" }
  s:event{ type = "raw", customer = "c1", text = text, channel = channel }
  local m = s:messages{}
  t.eq(#m, 1)
  t.eq(m[1].body, text)
  return m[1]
end

t.case("segments: 70 Chinese characters are 1 segment, 71 are 2", function()
  local m = measure(string.rep("春", 70))
  t.eq(m.segments, 1)
  t.near(m.cost, 0.05, 1e-9)
  m = measure(string.rep("春", 71))
  t.eq(m.segments, 2)
  t.near(m.cost, 0.10, 1e-9)
  m = measure(string.rep("春", 134))   -- 2 × 67
  t.eq(m.segments, 2)
  m = measure(string.rep("春", 135))
  t.eq(m.segments, 3)
  t.near(m.cost, 0.15, 1e-9)
end)

t.case("segments: 160 ASCII characters are 1 segment, 161 are 2", function()
  local m = measure(string.rep("a", 160))
  t.eq(m.segments, 1)
  t.near(m.cost, 0.05, 1e-9)
  m = measure(string.rep("a", 161))
  t.eq(m.segments, 2)
  t.near(m.cost, 0.10, 1e-9)
  m = measure(string.rep("a", 306))   -- 2 × 153
  t.eq(m.segments, 2)
  m = measure(string.rep("a", 307))
  t.eq(m.segments, 3)
end)

t.case("segments: one Chinese character in 100 ASCII makes the whole text UCS-2", function()
  local m = measure(string.rep("a", 50) .. "好" .. string.rep("a", 50))
  t.eq(m.segments, 2)
  t.near(m.cost, 0.10, 1e-9)
end)

t.case("segments: an emoji counts as 2 UTF-16 units", function()
  local m = measure(string.rep("春", 68) .. "😀")   -- 70 units
  t.eq(m.segments, 1)
  m = measure(string.rep("春", 69) .. "😀")          -- 71 units
  t.eq(m.segments, 2)
  t.near(m.cost, 0.10, 1e-9)
end)

t.case("segments: GSM extension characters count twice", function()
  local m = measure(string.rep("a", 158) .. "€")   -- 160 septets
  t.eq(m.segments, 1)
  m = measure(string.rep("a", 159) .. "€")          -- 161 septets
  t.eq(m.segments, 2)
end)

t.case("cost: a channel priced per message costs its price whatever the length", function()
  local m = measure(string.rep("春", 200), "push")
  t.near(m.cost, 0.02, 1e-9)
  m = measure("hi", "push")
  t.near(m.cost, 0.02, 1e-9)
end)

-- --- templates ------------------------------------------------------------------

t.case("templates: {{ name | default: 'friend' }} uses the default when the name is missing or empty", function()
  local s = sim(PROMO)
  s:customer{ id = "named", name = "Mei" }
  s:customer{ id = "anon" }
  s:customer{ id = "empty", name = "" }
  for _, id in ipairs{ "named", "anon", "empty" } do s:event{ type = "care", customer = id } end
  t.eq(s:messages{ customer = "named" }[1].body, "Mei, your order is on its way")
  t.eq(s:messages{ customer = "anon" }[1].body, "friend, your order is on its way")
  t.eq(s:messages{ customer = "empty" }[1].body, "friend, your order is on its way")
end)

t.case("templates: a missing variable fails that send, names the variable; the journey goes on", function()
  local s = sim([[
    template "gift" { category = "transactional", sms = "Your code: {{coupon.code}}" }
    template "note" { category = "transactional", sms = "{{ name | default: 'friend' }}: {{what}}" }
    journey "j" { on = "go", run = function(c)
      local r = send("sms", c, "gift", { })
      send("sms", c, "note", { what = "after " .. r.status })
    end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  local gift = s:messages{ template = "gift" }
  t.eq(#gift, 1)
  t.eq(gift[1].status, "failed")
  t.match(gift[1].error or "", "coupon%.code")
  local note = s:messages{ template = "note" }
  t.eq(#note, 1)
  t.eq(note[1].status, "sent")
  t.eq(note[1].body, "friend: after failed")
  t.eq(s:instances{ journey = "j" }[1].state, "done")
  s:advance(days(1))
  t.eq(s:messages{ template = "gift" }[1].status, "failed", "a failed render is not retried")
end)

t.case("templates: an email has its subject and body rendered", function()
  local s = sim([[
    journey "mail" { on = "go", run = function(c) send("email", c, "care") end }
  ]])
  s:customer{ id = "c1", name = "Bo", email = "bo@example.com" }
  s:event{ type = "go", customer = "c1" }
  local m = s:messages{ channel = "email" }[1]
  t.eq(m.subject, "Order")
  t.eq(m.body, "Bo, your order")
  t.eq(m.status, "sent")
end)
