-- Retention (tend.lua `retention`): finished instances and processed events
-- older than their limits are deleted by the engine's sweep, on the virtual
-- clock; waiting instances, unprocessed events and recent rows stay; an
-- event id is deduplicated for as long as its event is kept.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"

local SOURCE = [[
template "note" { category = "transactional", sms = "{{what}}" }
journey "quick" { on = "go", run = function(c) end }
journey "slow" { on = "hold", run = function(c)
  wait(days(365))
  send("sms", c, "note", { what = "a year on" })
end }
]]

local function sim(retention)
  return t.sim{ source = SOURCE, start = START,
                config = { timezone = "Asia/Shanghai", caps = false, quiet_hours = false, retention = retention } }
end

local function count(s, journey)
  return #s:instances{ journey = journey }
end

t.case("finished instances go after their limit, events after theirs; then an old event id is new again", function()
  local s = sim{ instances = days(90), events = days(180) }
  s:customer{ id = "c1" }
  s:customer{ id = "c2" }
  t.ok(s:event{ id = "e1", type = "go", customer = "c1" })
  t.ok(s:event{ id = "e2", type = "hold", customer = "c2" })
  t.eq(count(s, "quick"), 1)
  s:advance(days(89))
  t.eq(count(s, "quick"), 1, "a finished instance younger than the limit stays")
  s:advance(days(2))
  t.eq(count(s, "quick"), 0, "the finished instance is gone after 90 days")
  t.eq(count(s, "slow"), 1, "the waiting instance stays, however old")
  t.eq(s:event{ id = "e1", type = "go", customer = "c1" }, false, "the event is kept: its id is still a duplicate")
  s:advance(days(90))
  -- e1 and e2 are 181 days old now: deleted, so their ids are new again
  t.eq(s:event{ id = "e1", type = "go", customer = "c1" }, true, "a re-sent id of a deleted event is accepted")
  t.eq(count(s, "quick"), 1, "and processed as a new event")
  s:restart()
  s:advance(days(185))
  t.eq(#s:sent{ customer = "c2" }, 1, "the waiting instance outlived its trigger event and still ran")
  t.eq(count(s, "slow"), 1, "finished just now: kept")
end)

t.case("without retention nothing is deleted", function()
  local s = sim(nil)
  s:customer{ id = "c1" }
  t.ok(s:event{ id = "e1", type = "go", customer = "c1" })
  s:advance(days(400))
  t.eq(count(s, "quick"), 1)
  t.eq(s:event{ id = "e1", type = "go", customer = "c1" }, false, "the id stays a duplicate")
end)

t.case("a version with a waiting instance survives the sweep and a restart; a retention under a day is refused", function()
  local v1 = [[
template "note" { category = "transactional", sms = "{{what}}" }
journey "j" { on = "go", run = function(c) wait(days(3)); send("sms", c, "note", { what = "v1" }) end }
]]
  local s = t.sim{ source = v1, start = START,
                   config = { caps = false, quiet_hours = false, retention = { instances = days(1) } } }
  s:customer{ id = "old" }
  s:event{ type = "go", customer = "old" }
  s:deploy{ source = (v1:gsub('"v1"', '"v2"')) }
  s:advance(days(2))        -- sweeps passed over the waiting v1 instance
  s:restart()               -- v1 must come back from the store
  s:advance(days(2))
  t.eq(s:sent{ customer = "old" }[1].body, "v1")
  t.fails(function()
    t.sim{ source = v1, start = START, config = { retention = { events = hours(2) } } }
  end, "retention.events' must be at least days%(1%)")
  t.fails(function()
    t.sim{ source = v1, start = START, config = { retention = { instance = days(9) } } }
  end, "instance")
end)
