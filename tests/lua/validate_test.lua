-- Input from scripts is held to the same rules as the HTTP API and imports:
-- emit() and c:set{} (and sim:customer / sim:event) refuse times outside
-- 1970..9999, NUL bytes, invalid UTF-8, CR/LF in one-line fields and emails
-- that are not addresses, with the field in the message; nothing of a
-- refused change is stored.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"
local CONFIG = { timezone = "Asia/Shanghai", caps = false }

-- A journey that runs `body` (Lua source of a function(c)) on event "go".
local function attempt(body)
  local s = t.sim{ source = [[
    journey "try" { on = "go", run = ]] .. body .. [[ }
    journey "seen" { on = "ping", run = function(c) end }
  ]], start = START, config = CONFIG }
  s:customer{ id = "c1", name = "Bo", email = "bo@shop.example" }
  s:event{ type = "go", customer = "c1" }
  s:advance(10)
  return s, s:instances{ journey = "try" }[1]
end

local function refused(body, pattern)
  local s, i = attempt(body)
  t.eq(i.state, "failed", body)
  t.match(i.error, pattern)
  return s
end

t.case("emit() refuses a time outside 1970..9999", function()
  local s = refused([[function(c) emit{ type = "ping", customer = c.id, at = 1e300 } end]],
    "emit: field 'at': time 1e%+300 is outside 1970%-01%-01T00:00:00Z..9999%-12%-31T23:59:59Z")
  t.eq(#s:instances{ journey = "seen" }, 0)
  refused([[function(c) emit{ type = "ping", customer = c.id, at = -99999999999 } end]],
    "field 'at': time %-99999999999 is outside")
  refused([[function(c) emit{ type = "ping", customer = c.id, at = "10000-01-01T00:00:00Z" } end]],
    "field 'at': must be epoch seconds or ISO%-8601")
end)

t.case("emit() refuses a NUL byte or invalid UTF-8 instead of cutting the text", function()
  refused([[function(c) emit{ type = "ping", customer = "c1\0x" } end]], "customer: contains a NUL byte")
  refused([[function(c) emit{ type = "ping", customer = c.id, note = "a\255b" } end]],
    "note: invalid UTF%-8 at byte 2")
  refused([[function(c) emit{ type = "ping", customer = c.id, ["k\0"] = 1 } end]], "a key contains a NUL byte")
end)

t.case("emit() in range is accepted", function()
  local s, i = attempt([[function(c) emit{ type = "ping", customer = c.id, at = "9999-12-31T23:59:59Z" } end]])
  t.eq(i.state, "done")
  s:advance(10)
  t.eq(#s:instances{ journey = "seen" }, 1)
end)

t.case("c:set{} refuses CR/LF in a name, a bad email, a bad time; nothing is stored", function()
  local s = refused([[function(c) c:set{ name = "Eve\r\nBcc: evil@attacker.example" } end]],
    "c:set: field 'name': contains a line break")
  t.eq(s:customer("c1").name, "Bo")
  s = refused([[function(c) c:set{ email = "bo@shop.example\r\nBcc: evil@attacker.example" } end]],
    "c:set: field 'email': is not an email address: contains a line break")
  t.eq(s:customer("c1").email, "bo@shop.example")
  refused([[function(c) c:set{ email = "not-an-email" } end]], "field 'email': 'not%-an%-email' is not an email address")
  refused([[function(c) c:set{ email = "a@b@shop.example" } end]], "one '@'")
  refused([[function(c) c:set{ first_seen_at = 1e300 } end]], "field 'first_seen_at': time 1e%+300 is outside")
  refused([[function(c) c:set{ ["attrs.note"] = "a\0b" } end]], "attrs.note: contains a NUL byte")
  refused([[function(c) c:tag("vip\nBcc") end]], "contains a line break")
end)

t.case("c:set{} with a good address and a plain name is stored", function()
  local s, i = attempt([[function(c) c:set{ email = "ling.ling+care@shop.example.cn", name = "玲玲" } end]])
  t.eq(i.state, "done")
  t.eq(s:customer("c1").email, "ling.ling+care@shop.example.cn")
  t.eq(s:customer("c1").name, "玲玲")
end)

t.case("sim:customer and sim:event use the same rules", function()
  local s = t.sim{ source = "", start = START, config = CONFIG }
  t.fails(function() s:customer{ id = "c1", email = "nobody" } end, "field 'email'")
  t.fails(function() s:customer{ id = "c1", name = "a\nb" } end, "field 'name': contains a line break")
  t.fails(function() s:customer{ id = "c\0" } end, "contains a NUL byte")
  t.fails(function() s:event{ type = "go", customer = "c1", at = 1e300 } end, "field 'at'")
end)

t.case("times in filters and waits have the same range", function()
  t.fails(function() return before(1e300) end, "time 1e%+300 is outside")
  t.fails(function() return after(-1) end, "is outside 1970")
  t.fails(function() return before("10000-01-01T00:00:00Z") end, "must be epoch seconds")
  t.ok(before("9999-12-31T23:59:59Z"))
  refused([[function(c) wait_until(1e400) end]], "wait_until.*must be a finite number")
end)

t.case("an empty email clears the address instead of failing the customer", function()
  local s = t.sim{ source = "", start = START, config = CONFIG }
  s:customer{ id = "c1", email = "bo@shop.example" }
  s:customer{ id = "c1", email = "" }
  t.eq(s:customer("c1").email, nil)
end)

t.case("durations: ago() is bounded, days() of a huge integer does not overflow", function()
  t.fails(function() return ago(0/0) end, "a duration of finite seconds")
  t.fails(function() return ago(1e300) end, "at most 9999 years")
  t.eq(math.type(days(math.maxinteger)), "float")
  t.eq(days(2), 172800)
end)
