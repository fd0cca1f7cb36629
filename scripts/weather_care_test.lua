local t = require "tend.test"

local function sim()
  local s = t.sim{ scripts = { "weather_care.lua" }, start = "2026-07-01T11:00:00+08:00",
                   config = { timezone = "Asia/Shanghai" } }
  s:customer{ id = "a", name = "An", city = "Shanghai" }
  s:customer{ id = "b", name = "Bo", city = "Shanghai" }
  s:customer{ id = "c", name = "Cai", city = "Beijing" }
  return s
end

t.case("an alert reaches the customers of that city only", function()
  local s = sim()
  s:event{ type = "weather.alert", id = "w1", city = "Shanghai", kind = "storm" }
  local m = s:sent{ template = "weather_storm" }
  t.eq(#m, 2)
  t.match(m[1].body, "a storm is coming to Shanghai")
  t.eq(#s:messages{ customer = "c" }, 0)
end)

t.case("the same alert delivered twice greets once; an unknown kind greets nobody", function()
  local s = sim()
  s:event{ type = "weather.alert", id = "w1", city = "Beijing", kind = "heat" }
  s:event{ type = "weather.alert", id = "w1", city = "Beijing", kind = "heat" }
  s:event{ type = "weather.alert", id = "w2", city = "Beijing", kind = "meteor" }
  t.eq(#s:sent{}, 1)
end)

t.case("a second alert within two days does not greet again", function()
  local s = sim()
  s:event{ type = "weather.alert", id = "w1", city = "Shanghai", kind = "smog" }
  s:advance(days(1))
  s:event{ type = "weather.alert", id = "w2", city = "Shanghai", kind = "heat" }
  t.eq(#s:sent{ customer = "a" }, 1)
  s:advance(days(2))
  s:event{ type = "weather.alert", id = "w3", city = "Shanghai", kind = "heat" }
  t.eq(#s:sent{ customer = "a" }, 2)
end)
