local t = require "tend.test"

local function sim()
  return t.sim{ scripts = { "half_year_statement.lua" }, start = "2026-06-20T00:00:00Z",
                config = { timezone = "Asia/Shanghai" } }
end

t.case("July 1 at 09:00 in each customer's zone, for customers who ordered", function()
  local s = sim()
  s:customer{ id = "sh", name = "Li" }
  s:customer{ id = "ny", name = "Nora", timezone = "America/New_York" }
  s:customer{ id = "lead" }
  s:event{ type = "order.paid", customer = "sh", total = 120 }
  s:event{ type = "order.paid", customer = "sh", total = 80.5 }
  s:event{ type = "order.paid", customer = "ny", total = 300 }
  s:advance(days(12))
  local sh, ny = s:sent{ customer = "sh" }, s:sent{ customer = "ny" }
  t.eq(#sh, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", sh[1].at), "2026-07-01T01:00")      -- 09:00 +08:00
  t.eq(sh[1].body, "Li, your statement for the first half of 2026: 2 orders, 200.50 spent with us in all. Thank you!")
  t.eq(#ny, 1)
  t.eq(os.date("!%Y-%m-%dT%H:%M", ny[1].at), "2026-07-01T13:00")      -- 09:00 EDT
  t.eq(#s:messages{ customer = "lead" }, 0)
end)

t.case("January 1 covers the second half of the year before; one a half-year", function()
  local s = sim()
  s:customer{ id = "c1", name = "Wu" }
  s:event{ type = "order.paid", customer = "c1", total = 50 }
  s:advance(days(200))                                             -- through 2027-01-06
  local m = s:sent{ customer = "c1" }
  t.eq(#m, 2)
  t.match(m[2].body, "the second half of 2026")
  t.eq(os.date("!%Y-%m-%dT%H:%M", m[2].at), "2027-01-01T01:00")
end)
