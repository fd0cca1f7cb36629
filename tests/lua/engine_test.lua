-- The durable journey engine: waits, replay, restarts, versions, goals,
-- re-entry, failures. Each case builds a sim from inline script source.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"   -- a Monday, 10:00 in Shanghai
local CONFIG = { timezone = "Asia/Shanghai", caps = false }

local function sim(source, opts)
  opts = opts or {}
  return t.sim{ source = source, start = opts.start or START, config = opts.config or CONFIG }
end

local NOTE = [[
template "note" { category = "transactional", sms = "{{ name | default: 'friend' }}: {{what}}" }
]]

t.case("a wait across many restarts: every customer gets each message once", function()
  local s = sim(NOTE .. [[
    journey "ladder" {
      on = "signup",
      run = function(c)
        send("sms", c, "note", { what = "day 0" })
        wait(days(1))
        send("sms", c, "note", { what = "day 1" })
        wait(hours(36))
        send("sms", c, "note", { what = "day 2.5" })
        wait_until(now() + days(2))
        send("sms", c, "note", { what = "day 4.5" })
      end,
    }
  ]])
  local n = 60
  for i = 1, n do
    s:customer{ id = string.format("c%03d", i), name = "N" .. i }
    s:event{ type = "signup", customer = string.format("c%03d", i) }
    if i % 20 == 0 then s:restart() end
  end
  for _ = 1, 12 do
    s:advance(hours(11))
    s:restart()
  end
  local sent = s:sent{}
  t.eq(#sent, n * 4)
  local seen = {}
  for _, m in ipairs(sent) do
    local key = m.customer .. "|" .. m.body
    t.ok(not seen[key], "sent twice: " .. key)
    seen[key] = true
  end
  for i = 1, n do
    for _, what in ipairs{ "day 0", "day 1", "day 2.5", "day 4.5" } do
      t.ok(seen[string.format("c%03d|N%d: %s", i, i, what)], "missing " .. i .. " " .. what)
    end
  end
  t.eq(#s:instances{ state = "done" }, n)
end)

t.case("sends are recorded steps: replays after the wait do not send again", function()
  local s = sim(NOTE .. [[
    journey "twice" { on = "go", run = function(c)
      send("sms", c, "note", { what = "a" })
      wait(hours(1))
      wait(hours(1))
      send("sms", c, "note", { what = "b" })
    end }
  ]])
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "go", customer = "c1" }
  s:advance(hours(3))
  local m = s:sent{}
  t.eq(#m, 2)
  t.eq(m[1].body, "Ann: a")
  t.eq(m[2].body, "Ann: b")
  t.eq(m[1].key:match("^%d+%-%d+$") ~= nil, true, "idempotency key is instance-step")
  t.ok(m[1].key ~= m[2].key)
end)

t.case("a replay that diverges fails the instance and names the step", function()
  local s = sim(NOTE .. [[
    local runs = 0   -- state outside the run: not replay-safe
    journey "flaky" { on = "go", run = function(c)
      runs = runs + 1
      if runs == 1 then wait(days(1)) else send("sms", c, "note", { what = "x" }) end
    end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(days(2))
  local i = s:instances{ journey = "flaky" }[1]
  t.eq(i.state, "failed")
  t.match(i.error, "diverged from its history at step 1")
  t.match(i.error, "now calls send%(sms, note%)")
  t.match(i.error, "recorded wait%(86400%)")
  t.match(i.error, "source:%d+")
  t.eq(#s:messages{}, 0)
end)

t.case("reads of customer fields are recorded: a replay sees what the first run saw", function()
  local s = sim(NOTE .. [[
    journey "vip" { on = "go", run = function(c)
      local tier = c.city == "Shanghai" and "gold" or "plain"
      wait(days(1))
      send("sms", c, "note", { what = tier .. " " .. c.city })
    end }
  ]])
  s:customer{ id = "c1", city = "Shanghai" }
  s:event{ type = "go", customer = "c1" }
  s:customer{ id = "c1", city = "Beijing" }   -- changes before the replay
  s:advance(days(1))
  -- the branch replays on the recorded Shanghai; the read after the wait is new
  t.eq(s:sent{}[1].body, "friend: gold Beijing")
end)

t.case("wait_for: the awaited event arrives, or the timeout passes", function()
  local s = sim(NOTE .. [[
    journey "ship" { on = "order.paid", run = function(c, ev)
      local d = wait_for("order.delivered", { timeout = days(5),
                         where = function(e) return e.order == ev.order end })
      if d then send("sms", c, "note", { what = "delivered " .. d.order })
      else send("sms", c, "note", { what = "late " .. ev.order }) end
    end }
  ]])
  s:customer{ id = "c1" }
  s:customer{ id = "c2" }
  s:event{ type = "order.paid", customer = "c1", order = "A" }
  s:event{ type = "order.paid", customer = "c2", order = "B" }
  s:advance(days(1))
  s:event{ type = "order.delivered", customer = "c1", order = "other" }   -- where() says no
  t.eq(#s:messages{}, 0)
  s:event{ type = "order.delivered", customer = "c1", order = "A" }
  t.eq(s:sent{ customer = "c1" }[1].body, "friend: delivered A")
  s:restart()
  s:advance(days(4) + 1)
  t.eq(s:sent{ customer = "c2" }[1].body, "friend: late B")
  t.eq(#s:sent{}, 2)
  t.eq(#s:instances{ state = "done" }, 2)
end)

t.case("a goal converts a waiting instance and stops it; conversions count after the end too", function()
  local s = sim(NOTE .. [[
    journey "nudge" {
      on = "cart.abandoned",
      goal = { event = "order.paid", within = days(3) },
      run = function(c) wait(days(1)); send("sms", c, "note", { what = "your cart" }) end,
    }
  ]])
  for _, id in ipairs{ "a", "b", "c" } do s:customer{ id = id } end
  for _, id in ipairs{ "a", "b", "c" } do s:event{ type = "cart.abandoned", customer = id } end
  s:advance(hours(2))
  s:event{ type = "order.paid", customer = "a", total = 10 }       -- before the nudge
  s:advance(days(1))
  s:event{ type = "order.paid", customer = "b", total = 10 }       -- after the nudge, in window
  s:advance(days(3))
  s:event{ type = "order.paid", customer = "c", total = 10 }       -- too late
  t.eq(#s:sent{}, 2)
  local by = {}
  for _, i in ipairs(s:instances{ journey = "nudge" }) do by[i.customer] = i end
  t.eq(by.a.state, "converted")
  t.eq(by.b.state, "done")
  t.ok(by.b.converted_at, "b converted after its message")
  t.eq(by.c.converted_at, nil)
end)

t.case("once and reenter_after", function()
  local s = sim(NOTE .. [[
    journey "welcome" { on = "visit", once = true, run = function(c) send("sms", c, "note", { what = "hi" }) end }
    journey "reminder" { on = "visit", reenter_after = days(7),
                         run = function(c) send("sms", c, "note", { what = "again" }) end }
    journey "every" { on = "visit", run = function(c) end }
  ]])
  s:customer{ id = "c1" }
  for day = 1, 10 do
    s:event{ type = "visit", customer = "c1" }
    s:advance(days(1))
  end
  t.eq(#s:instances{ journey = "welcome" }, 1)
  t.eq(#s:instances{ journey = "reminder" }, 2)   -- day 1 and day 8
  t.eq(#s:instances{ journey = "every" }, 10)
end)

t.case("a runaway instance fails alone; the others carry on", function()
  local s = sim(NOTE .. [[
    journey "loop" { on = "go", run = function(c)
      if c.id == "bad" then while true do end end
      if c.id == "hog" then local x = "x" while true do x = x .. x end end
      wait(hours(1))
      send("sms", c, "note", { what = "ok" })
    end }
  ]], { config = { timezone = "Asia/Shanghai", limits = { instructions = 2000000, memory = 64 * 1024 * 1024 } } })
  for _, id in ipairs{ "a", "bad", "b", "hog", "c" } do
    s:customer{ id = id }
    s:event{ type = "go", customer = id }
  end
  s:advance(hours(2))
  t.eq(#s:sent{}, 3)
  local bad = s:instances{ customer = "bad" }[1]
  t.eq(bad.state, "failed")
  t.match(bad.error, "instruction budget exceeded")
  t.match(bad.error, "source:3")
  local hog = s:instances{ customer = "hog" }[1]
  t.eq(hog.state, "failed")
  t.match(hog.error, "memory limit exceeded")
end)

t.case("a script error fails the instance with file:line", function()
  local s = sim([[
    journey "oops" { on = "go", run = function(c) wait(10); local x = nil; return x.field end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  s:advance(20)
  local i = s:instances{}[1]
  t.eq(i.state, "failed")
  t.match(i.error, "source:1: attempt to index a nil value")
end)

t.case("a changed script: waiting instances finish on their version", function()
  local v1 = NOTE .. [[
    journey "j" { on = "go", run = function(c) wait(days(1)); send("sms", c, "note", { what = "v1" }) end }
  ]]
  local v2 = NOTE .. [[
    journey "j" { on = "go", run = function(c)
      send("sms", c, "note", { what = "v2 early" })
      wait(days(1)); send("sms", c, "note", { what = "v2" })
    end }
  ]]
  local s = sim(v1)
  s:customer{ id = "old" }
  s:customer{ id = "new" }
  s:event{ type = "go", customer = "old" }
  s:deploy{ source = v2 }
  s:event{ type = "go", customer = "new" }
  s:advance(days(1))
  t.eq(s:sent{ customer = "old" }[1].body, "friend: v1")
  t.eq(#s:sent{ customer = "old" }, 1)
  local nw = s:sent{ customer = "new" }
  t.eq(#nw, 2)
  t.eq(nw[2].body, "friend: v2")
  local vo = s:instances{ customer = "old" }[1].version
  local vn = s:instances{ customer = "new" }[1].version
  t.ok(vo ~= vn, "the two instances are on different versions")
end)

-- a journey, and its next version with a migrate
local MIGRATE_V1 = NOTE .. [[
  journey "j" { on = "go", run = function(c) wait(days(1)); send("sms", c, "note", { what = "v1" }) end }
]]
local MIGRATE_V2 = NOTE .. [[
  journey "j" {
    on = "go",
    migrate = function(step, history)
      -- v2 starts with a send the old instances never made: record it as done
      table.insert(history, 1, { kind = "send", result = { status = "skipped" } })
      return history
    end,
    run = function(c)
      send("sms", c, "note", { what = "v2 early" })
      wait(days(1)); send("sms", c, "note", { what = "v2" })
    end,
  }
]]

t.case("a changed script with migrate: waiting instances move to the new version", function()
  local s = sim(MIGRATE_V1)
  s:customer{ id = "old" }
  s:event{ type = "go", customer = "old" }
  s:deploy{ source = MIGRATE_V2 }
  s:advance(days(1))
  local m = s:sent{ customer = "old" }
  t.eq(#m, 1)
  t.eq(m[1].body, "friend: v2")
  t.eq(s:instances{}[1].state, "done")
end)

t.case("one due batch of old and new versions: each old instance migrates, the new ones run as they are", function()
  local s = sim(MIGRATE_V1)
  for _, id in ipairs{ "old1", "old2", "new" } do s:customer{ id = id } end
  s:event{ type = "go", customer = "old1" }
  s:event{ type = "go", customer = "old2" }
  s:deploy{ source = MIGRATE_V2 }
  s:event{ type = "go", customer = "new" }
  s:advance(days(1))   -- the three wake in one batch, the old ones first
  for _, id in ipairs{ "old1", "old2" } do
    local m = s:sent{ customer = id }
    t.eq(#m, 1, id)
    t.eq(m[1].body, "friend: v2", id)
  end
  local m = s:sent{ customer = "new" }
  t.eq(#m, 2)
  t.eq(m[2].body, "friend: v2")
  for _, i in ipairs(s:instances{}) do t.eq(i.state, "done", i.customer) end
end)

t.case("split and holdout are recorded and stable across restarts", function()
  local s = sim(NOTE .. [[
    journey "ab" { on = "go", run = function(c)
      if holdout(20) then return end
      local arm = split{ A = 50, B = 50 }
      wait(hours(1))
      send("sms", c, "note", { what = arm })
    end }
  ]])
  for i = 1, 100 do
    local id = "c" .. i
    s:customer{ id = id }
    s:event{ type = "go", customer = id }
  end
  s:restart()
  s:advance(hours(2))
  local inst = s:instances{}
  local held, a, b = 0, 0, 0
  for _, i in ipairs(inst) do
    if i.holdout then held = held + 1 end
    if i.branch == "A" then a = a + 1 elseif i.branch == "B" then b = b + 1 end
  end
  t.ok(held > 5 and held < 40, "about 20% held out, got " .. held)
  t.eq(#s:sent{}, 100 - held)
  t.eq(a + b, 100 - held)
  for _, m in ipairs(s:sent{}) do
    local i = s:instances{ customer = m.customer }[1]
    t.eq(m.body, "friend: " .. i.branch)
  end
end)

t.case("coupons are unique per customer and journey; tasks are assigned round-robin", function()
  local s = sim([[
    template "gift" { category = "transactional", sms = "{{coupon.code}} {{coupon.value}} {{coupon.expires}}" }
    journey "vipcall" { on = "go", run = function(c)
      local k = coupon_issue(c, { value = 50, valid = days(7), prefix = "VIP" })
      send("sms", c, "gift", { coupon = k })
      task(c, { assign = { "alice", "bob" }, note = "call " .. c.id })
    end }
  ]])
  for i = 1, 4 do s:customer{ id = "c" .. i }; s:event{ type = "go", customer = "c" .. i } end
  local codes = {}
  for _, m in ipairs(s:sent{}) do
    local code = m.body:match("^(VIP%w+) 50 2026%-03%-09$")
    t.ok(code, "body " .. m.body)
    t.ok(not codes[code], "duplicate code")
    codes[code] = true
  end
  local tasks = s:tasks{}
  t.eq(#tasks, 4)
  t.eq({ tasks[1].assignee, tasks[2].assignee, tasks[3].assignee, tasks[4].assignee },
       { "alice", "bob", "alice", "bob" })
  t.eq(tasks[1].note, "call c1")
  t.eq(#s:tasks{ assignee = "bob" }, 2)
end)

t.case("emit starts other journeys; start() respects once; exit(reason) ends an instance", function()
  local s = sim(NOTE .. [[
    journey "first" { on = "go", run = function(c)
      emit{ type = "step.two", customer = c.id, n = 2 }
      start("third", c, { from = "first" })
      start("third", c, { from = "again" })
      exit("enough")
      send("sms", c, "note", { what = "never" })
    end }
    journey "second" { on = "step.two", run = function(c, ev) send("sms", c, "note", { what = "two " .. ev.n }) end }
    journey "third" { once = true, run = function(c, ev) send("sms", c, "note", { what = "three " .. ev.from }) end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  local bodies = {}
  for _, m in ipairs(s:sent{}) do bodies[#bodies + 1] = m.body end
  table.sort(bodies)
  t.eq(bodies, { "friend: three first", "friend: two 2" })
  local first = s:instances{ journey = "first" }[1]
  t.eq(first.state, "exited")
  t.eq(first.error, "enough")
end)

t.case("now() and random() are the same on replay", function()
  local s = sim(NOTE .. [[
    journey "r" { on = "go", run = function(c)
      local t0, r = now(), random(1000000)
      wait(hours(5))
      send("sms", c, "note", { what = t0 .. " " .. r .. " " .. (now() - t0) })
    end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  local t0 = s:now()
  s:restart()
  s:advance(hours(6))
  local body = s:sent{}[1].body
  local a, r, d = body:match("^friend: (%d+) (%d+) (%d+)$")
  t.eq(tonumber(a), t0)
  t.eq(tonumber(d), 5 * 3600)
  t.ok(tonumber(r) >= 1 and tonumber(r) <= 1000000)
end)

t.case("http_get answers from stubs in a sim, and only for allowed hosts", function()
  local s = sim(NOTE .. [[
    journey "w" { on = "go", run = function(c)
      local r = http_get("https://api.weather.test/aqi?city=sh")
      local bad, err = http_get("https://evil.test/x")
      send("sms", c, "note", { what = r.json.aqi .. " " .. tostring(bad) .. " " .. err })
    end }
  ]], { config = { timezone = "Asia/Shanghai", http_allow = { "api.weather.test" } } })
  s:stub_http("https://api.weather.test/aqi?city=sh", { status = 200, body = '{"aqi": 212}' })
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  t.eq(s:sent{}[1].body, "friend: 212 nil host 'evil.test' is not in http_allow (tend.lua)")
end)

t.case("declarations are checked where they are written", function()
  local err = t.fails(function()
    sim([[journey "x" { on = "go", runn = function() end }]])
  end)
  t.match(err, "source:1: journey 'x': unknown key 'runn'")
  err = t.fails(function() sim([[template "t" { sms = "hi" }]]) end)
  t.match(err, "'category' is required")
  err = t.fails(function() sim([[schedule "s" { cron = "61 * * * *", run = function() end }]]) end)
  t.match(err, "schedule 's': cron:")
  err = t.fails(function()
    sim([[journey "d" { run = function() end }
          journey "d" { run = function() end }]])
  end)
  t.match(err, "declared twice %(first at source:1%)")
end)

t.case("primitives outside a run say so", function()
  local s = sim([[
    schedule "s" { every = hours(1), run = function() wait(10) end }
  ]])
  s:advance(hours(1))
  t.match(s:log(), "wait%(%) can only be used inside a journey's run")
end)

t.case("at_local: the next 10:00 in the customer's own zone, the same on replay", function()
  local s = sim(NOTE .. [[
    journey "morning" { on = "go", run = function(c)
      wait_until(at_local(c, "10:00"))
      send("sms", c, "note", { what = os.date("!%Y-%m-%dT%H:%M", now()) })
    end }
  ]], { start = "2026-03-07T20:00:00Z" })   -- Sunday 04:00 in Shanghai, Saturday 15:00 in New York
  s:customer{ id = "sh" }
  s:customer{ id = "ny", timezone = "America/New_York" }
  s:event{ type = "go", customer = "sh" }
  s:event{ type = "go", customer = "ny" }
  s:customer{ id = "ny", timezone = "Asia/Tokyo" }     -- moves: the recorded time stands
  s:restart()
  s:advance(days(2))
  t.eq(s:sent{ customer = "sh" }[1].body, "friend: 2026-03-08T02:00")   -- 10:00 +08:00
  t.eq(s:sent{ customer = "ny" }[1].body, "friend: 2026-03-08T14:00")   -- 10:00 EDT (after the DST change)
end)

t.case("segments by name and start() with when work inside a run", function()
  local s = t.sim{ source = [[
    template "n" { category = "transactional", sms = "{{what}}" }
    segment "vip" { where = { tags = "vip" } }
    journey "a" { on = "go", run = function(c)
      local n = segment_count("vip")
      local ids = {}
      for x in customers("vip") do ids[#ids + 1] = x.id; start("b", x) end
      wait(hours(1))
      send("sms", c, "n", { what = n .. " " .. table.concat(ids, ",") .. " " .. tostring(start("b", c)) })
    end }
    journey "b" { when = function(c) return c.city == "S" end, run = function(c) end }
  ]] }
  s:customer{ id = "a", tags = { "vip" }, city = "S" }
  s:customer{ id = "z", tags = { "vip" }, city = "T" }
  s:event{ type = "go", customer = "a" }
  s:advance(hours(2))
  t.eq(s:instances{ journey = "a" }[1].state, "done")
  t.eq(s:sent{}[1].body, "2 a,z 3")
  t.eq(#s:instances{ journey = "b" }, 2)
end)
