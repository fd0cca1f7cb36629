-- http_get in a sim: one recorded step, answered by stubs at once, durable
-- across restarts, and refused before any request for a URL or host the
-- guard does not allow.
local t = require "tend.test"

local START = "2026-03-02T10:00:00+08:00"
local NOTE = [[
template "note" { category = "transactional", sms = "{{what}}" }
]]

local function sim(source, allow)
  return t.sim{ source = NOTE .. source, start = START,
                config = { timezone = "Asia/Shanghai", caps = false, http_allow = allow or { "api.weather.test" } } }
end

local AQI = "https://api.weather.test/aqi?city=sh"

t.case("the answer is recorded: a replay after a restart returns it, not a new one", function()
  local s = sim([[
    journey "w" { on = "go", run = function(c)
      local r = http_get("https://api.weather.test/aqi?city=sh")
      wait(hours(1))
      send("sms", c, "note", { what = "aqi " .. r.json.aqi .. " status " .. r.status })
    end }
  ]])
  s:stub_http(AQI, { status = 200, body = '{"aqi": 212}' })
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  t.eq(s:instances{}[1].state, "waiting")
  s:stub_http(AQI, { status = 200, body = '{"aqi": 5}' })   -- the world changed since
  s:restart()
  s:advance(hours(1))
  t.eq(#s:sent{}, 1)
  t.eq(s:sent{}[1].body, "aqi 212 status 200")
end)

t.case("several http_get in a row each wait for their answer and replay in order", function()
  local s = sim([[
    journey "w" { on = "go", run = function(c)
      local a = http_get("https://api.weather.test/a")
      local b = http_get("https://api.weather.test/b")
      send("sms", c, "note", { what = a.body .. "+" .. b.body })
    end }
  ]])
  s:stub_http("https://api.weather.test/a", "A")
  s:stub_http("https://api.weather.test/b", "B")
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  t.eq(s:sent{}[1].body, "A+B")
  t.eq(s:instances{}[1].state, "done")
end)

t.case("refused at the call: not http(s), host not allowed, not a URL; an unstubbed URL says so", function()
  local s = sim([[
    journey "w" { on = "go", run = function(c)
      local out = {}
      for _, u in ipairs({ "ftp://api.weather.test/x", "http://localhost/x", "not a url",
                           "https://api.weather.test/none" }) do
        local r, err = http_get(u)
        out[#out + 1] = tostring(r) .. " " .. err
      end
      send("sms", c, "note", { what = table.concat(out, " | ") })
    end }
  ]])
  s:customer{ id = "c1" }
  s:event{ type = "go", customer = "c1" }
  t.eq(s:sent{}[1].body, "nil 'ftp://api.weather.test/x': only http and https are allowed"
       .. " | nil host 'localhost' is not in http_allow (tend.lua)"
       .. " | nil 'not a url' is not a URL"
       .. " | nil no stub for https://api.weather.test/none (use sim:stub_http)")
end)
