-- Policy v2: caps per channel and period (day, week, month, rolling) with
-- per-segment overrides, checked against a brute-force model on random
-- traffic; the v1 form of caps; contact windows deferring sends and tasks;
-- task channels' caps; bad windows, periods and channels refused at load.
local t = require "tend.test"

local START = 1772409600   -- 2026-03-02T00:00:00Z, a Monday

local TEMPLATES = [[
template "promo" { category = "marketing", sms = "offer", email = { subject = "Offer", body = "offer" }, push = "offer" }
template "care"  { category = "transactional", sms = "order", email = { subject = "Order", body = "order" }, push = "order" }
segment "vip" { where = { tags = has("vip") } }
journey "poke" { on = "poke", run = function(c, ev) send(ev.channel, c, ev.template) end }
]]

-- A deterministic generator (the sandbox's math.random is the sim's).
local function lcg(seed)
  local x = seed
  return function(n)
    x = (x * 1103515245 + 12345) % 2147483648
    return x % n + 1
  end
end

local CAPS = { marketing = { day = 2, week = 5 }, sms = { week = 3 }, email = { rolling = { within = days(2), max = 2 } } }
local SEGMENT_CAPS = { vip = { marketing = { week = 8 }, sms = { week = 6 } } }

-- The model: a marketing message passes when every cap that applies has room
-- among the messages that passed before it (all UTC, quiet hours off).
local function model_allows(passed, m, vip)
  local function iso_week(at) return (at - START) // (7 * 86400) end
  local day_n, week_n, sms_week, email_near = 0, 0, 0, 0
  for _, p in ipairs(passed) do
    if p.customer == m.customer then
      if p.at // 86400 == m.at // 86400 then day_n = day_n + 1 end
      if iso_week(p.at) == iso_week(m.at) then
        week_n = week_n + 1
        if p.channel == "sms" then sms_week = sms_week + 1 end
      end
      if p.channel == "email" and math.abs(p.at - m.at) < days(2) then email_near = email_near + 1 end
    end
  end
  if day_n >= 2 then return false end
  if week_n >= (vip and 8 or 5) then return false end
  if m.channel == "sms" and sms_week >= (vip and 6 or 3) then return false end
  if m.channel == "email" and email_near >= 2 then return false end
  return true
end

t.case("caps per channel, period and segment agree with a brute-force model on random traffic", function()
  local s = t.sim{ source = TEMPLATES, start = START,
                   config = { timezone = "UTC", quiet_hours = false, caps = CAPS, segment_caps = SEGMENT_CAPS,
                              synchronous = "normal" } }
  local rnd = lcg(20260302)
  local vip = {}
  for i = 1, 12 do
    local id = "c" .. i
    vip[id] = i % 3 == 0
    s:customer{ id = id, tags = vip[id] and { "vip" } or {} }
  end
  local channels, sent, passed, capped = { "sms", "email", "push" }, {}, {}, 0
  local at = START
  for _ = 1, 600 do
    at = at + rnd(6 * 3600)                        -- about 75 days: 4 messages a week a customer
    local m = { customer = "c" .. rnd(12), channel = channels[rnd(3)],
                template = rnd(4) == 1 and "care" or "promo", at = at }
    s:advance(at - s:now())
    s:event{ type = "poke", customer = m.customer, channel = m.channel, template = m.template }
    sent[#sent + 1] = m
  end
  local rows = s:messages{}
  t.eq(#rows, #sent)
  for i, m in ipairs(sent) do
    local row = rows[i]
    t.eq(row.customer .. row.channel .. row.template, m.customer .. m.channel .. m.template, "message " .. i)
    local want = m.template == "care" or model_allows(passed, m, vip[m.customer])
    if want then passed[#passed + 1] = m else capped = capped + 1 end
    t.eq(row.status ~= "capped", want, string.format("message %d (%s %s %s at %s)", i, m.customer, m.channel,
         m.template, os.date("!%Y-%m-%dT%H:%M", m.at)))
  end
  t.ok(capped > 50 and capped < 450, "the traffic tests the caps: " .. capped .. " capped")
end)

t.case("the v1 form caps = {day, week} still means marketing", function()
  local s = t.sim{ source = TEMPLATES, start = START + 10 * 3600,
                   config = { timezone = "UTC", quiet_hours = false, caps = { day = 1, week = 3 } } }
  s:customer{ id = "c1" }
  s:event{ type = "poke", customer = "c1", channel = "sms", template = "promo" }
  s:event{ type = "poke", customer = "c1", channel = "email", template = "promo" }
  s:event{ type = "poke", customer = "c1", channel = "push", template = "care" }
  local st = {}
  for _, m in ipairs(s:messages{}) do st[#st + 1] = m.status end
  t.eq(st, { "sent", "capped", "sent" })
end)

t.case("a channel's window defers a send of any category to the next opening in the customer's zone", function()
  local s = t.sim{ source = TEMPLATES, start = "2026-03-07T09:00:00+08:00",      -- a Saturday in Shanghai
                   config = { timezone = "Asia/Shanghai", quiet_hours = false, caps = false,
                              channels = { sms = { type = "capture", window = { "10:00-11:30", "14:00-17:00" },
                                                   days = "mon-fri" } } } }
  s:customer{ id = "sh" }
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:event{ type = "poke", customer = "sh", channel = "sms", template = "care" }
  s:event{ type = "poke", customer = "ny", channel = "sms", template = "care" }  -- Friday 20:00 in New York
  local sh, ny = s:messages{ customer = "sh" }[1], s:messages{ customer = "ny" }[1]
  t.eq(sh.status, "deferred")
  t.eq(os.date("!%Y-%m-%dT%H:%M", sh.at), "2026-03-09T02:00")    -- Monday 10:00 +08:00
  t.eq(os.date("!%Y-%m-%dT%H:%M", ny.at), "2026-03-09T14:00")    -- Monday 10:00 EDT (after the DST change)
  s:advance(days(2) + hours(4))                                  -- Monday 13:00 in Shanghai
  t.eq(s:messages{ customer = "sh" }[1].status, "sent")
  s:event{ type = "poke", customer = "sh", channel = "sms", template = "promo" }  -- between the spans
  t.eq(os.date("!%Y-%m-%dT%H:%M", s:messages{ customer = "sh" }[2].at), "2026-03-09T06:00")  -- 14:00 +08:00
  s:event{ type = "poke", customer = "sh", channel = "email", template = "care" } -- no window: at once
  t.eq(s:messages{ customer = "sh", channel = "email" }[1].status, "sent")
end)

t.case("a task channel: its window sets when the task is due, its caps count the task", function()
  local s = t.sim{ source = TEMPLATES .. [[
journey "call" { on = "call", run = function(c)
  local r = task(c, { kind = "call", note = "say thanks" })
  c:set{ attrs = { due = r.due_at, status = r.status } }
end }
]], start = "2026-03-07T09:00:00+08:00",
    config = { timezone = "Asia/Shanghai", quiet_hours = false,
               caps = { call = { month = 1 } },
               channels = { call = { type = "task", window = "09:00-18:00", days = "mon-fri" } } } }
  s:customer{ id = "c1" }
  s:event{ type = "call", customer = "c1" }
  local tasks = s:tasks{}
  t.eq(#tasks, 1)
  local i = s:instances{ customer = "c1" }
  t.eq(#i, 1)
  s:event{ type = "call", customer = "c1" }                      -- the same month: over the cap
  t.eq(#s:tasks{}, 1)
  s:advance(days(30))
  s:event{ type = "call", customer = "c1" }                      -- April: room again
  t.eq(#s:tasks{}, 2)
end)

t.case("a task's due time is the window's next opening", function()
  local s = t.sim{ source = TEMPLATES .. [[
template "due" { category = "transactional", push = "{{due}} {{status}}" }
journey "call" { on = "call", run = function(c)
  local r = task(c, { kind = "call" })
  send("push", c, "due", { due = os.date("!%Y-%m-%dT%H:%M", r.due_at), status = r.status })
end }
]], start = "2026-03-07T09:00:00+08:00",
    config = { timezone = "Asia/Shanghai", quiet_hours = false, caps = false,
               channels = { call = { type = "task", window = "09:00-18:00", days = "mon-fri" } } } }
  s:customer{ id = "c1" }
  s:event{ type = "call", customer = "c1" }
  t.eq(s:sent{}[1].body, "2026-03-09T01:00 deferred")            -- Monday 09:00 +08:00
end)

t.case("bad windows, days, periods and channels are errors at load naming the value", function()
  local function load(config, source)
    return function() t.sim{ source = TEMPLATES .. (source or ""), config = config } end
  end
  t.fails(load({ channels = { sms = { type = "capture", window = "25:00-26:00" } } }), "window '25:00%-26:00'")
  t.fails(load({ channels = { sms = { type = "capture", window = { "11:00-10:00" } } } }), "window '11:00%-10:00'")
  t.fails(load({ channels = { sms = { type = "capture", days = "mon-frd" } } }), "days 'mon%-frd'")
  t.fails(load({ caps = { sms = { fortnight = 1 } } }), "caps.sms.fortnight")
  t.fails(load({ caps = { sms = { rolling = 3 } } }), "caps.sms.rolling")
  t.fails(load({ caps = { fax = { day = 1 } } }), "'fax' is neither a channel")
  t.fails(load({ segment_caps = { gold = { marketing = { week = 1 } } } }), "'gold' is not a declared segment")
  t.fails(load({}, 'channel "x" { type = "capture", window = "9-5" }'), "window '9%-5'")
end)

t.case("best_time: the next local time at the customer's most active hour, else the default", function()
  local s = t.sim{ source = TEMPLATES .. [[
journey "later" { on = "later", run = function(c)
  wait_until(best_time(c, { default = "11:00" }))
  send("push", c, "care")
end }
]], start = "2026-03-02T00:00:00Z", config = { timezone = "Asia/Shanghai", quiet_hours = false, caps = false } }
  s:customer{ id = "owl", timezone = "Europe/Berlin" }
  s:customer{ id = "new" }
  -- the owl is active at 21:00 Berlin time (20:00Z in winter), once at 09:00
  for d = 0, 3 do
    s:advance(days(1))
    s:event{ type = "view", customer = "owl", at = os.time{ year = 2026, month = 3, day = 3 + d, hour = 20 } }
  end
  s:event{ type = "view", customer = "owl", at = os.time{ year = 2026, month = 3, day = 6, hour = 8 } }
  s:event{ type = "later", customer = "owl" }
  s:event{ type = "later", customer = "new" }
  s:advance(days(1))
  t.eq(os.date("!%Y-%m-%dT%H:%M", s:sent{ customer = "owl" }[1].at), "2026-03-06T20:00")   -- 21:00 Berlin
  t.eq(os.date("!%Y-%m-%dT%H:%M", s:sent{ customer = "new" }[1].at), "2026-03-06T03:00")   -- 11:00 Shanghai
  -- recorded: a replay after a restart waits for the same instant
  s:restart()
  t.eq(#s:instances{ state = "failed" }, 0)
end)

t.case("best_time: a bad default or a misspelt option fails the run naming it", function()
  local s = t.sim{ source = TEMPLATES .. [[
journey "late" { on = "late", run = function(c) wait_until(best_time(c, { default = "25:00" })) end }
journey "typo" { on = "typo", run = function(c) wait_until(best_time(c, { defualt = "10:00" })) end }
]], start = "2026-03-02T00:00:00Z" }
  s:customer{ id = "c1" }
  s:event{ type = "late", customer = "c1" }
  s:event{ type = "typo", customer = "c1" }
  t.match(s:instances{ journey = "late" }[1].error, "'default' must be a local time \"HH:MM\", not '25:00'")
  t.match(s:instances{ journey = "typo" }[1].error, "unknown option 'defualt' %(default%)")
end)

t.case("on_cap = defer and priorities work with channel caps and windows together", function()
  local s = t.sim{ source = [[
template "promo" { category = "marketing", on_cap = "defer", sms = "offer" }
template "vip_offer" { category = "marketing", priority = 5, sms = "vip" }
journey "poke" { on = "poke", run = function(c, ev) send("sms", c, ev.template) end }
]], start = "2026-03-02T01:00:00Z",                              -- Monday 09:00 in Shanghai
    config = { timezone = "Asia/Shanghai", quiet_hours = false, caps = { sms = { day = 1 } },
               channels = { sms = { type = "capture", window = "10:00-11:30" } } } }
  s:customer{ id = "c1" }
  s:event{ type = "poke", customer = "c1", template = "promo" }    -- waits for 10:00
  s:event{ type = "poke", customer = "c1", template = "promo" }    -- over the day's cap: tomorrow 10:00
  local m = s:messages{}
  t.eq(m[1].status, "deferred")
  t.eq(os.date("!%Y-%m-%dT%H:%M", m[1].at), "2026-03-02T02:00")
  t.eq(m[2].status, "deferred")
  t.eq(os.date("!%Y-%m-%dT%H:%M", m[2].at), "2026-03-03T02:00")
  -- a higher-priority message takes today's slot; the one it displaces is capped
  s:event{ type = "poke", customer = "c1", template = "vip_offer" }
  m = s:messages{}
  t.eq(m[1].status, "capped")
  t.eq(m[3].status, "deferred")
  t.eq(os.date("!%Y-%m-%dT%H:%M", m[3].at), "2026-03-02T02:00")
  s:advance(days(2))
  t.eq(#s:sent{}, 2)
end)
