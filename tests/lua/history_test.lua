-- Long histories: replay off sealed chunks (history_chunks), and a script
-- migration that rewrites a sealed history.
local t = require "tend.test"

local NOTE = [[
template "note" { category = "transactional", sms = "{{ name | default: 'friend' }}: {{what}}" }
]]

local V1 = NOTE .. [[
  journey "long" { on = "go", run = function(c)
    for i = 1, 120 do wait(hours(1)) end
    send("sms", c, "note", { what = "waited" })
    wait(days(1))
    send("sms", c, "note", { what = "v1 end" })
  end }
]]

t.case("a 120-wait journey replays off its sealed history across restarts and sends each message once", function()
  local s = t.sim{ source = V1, start = "2026-03-02T10:00:00+08:00" }
  s:customer{ id = "a" }
  s:event{ type = "go", customer = "a" }
  for _ = 1, 6 do
    s:advance(hours(20))
    s:restart()
  end
  local i = s:instances{ customer = "a" }[1]
  t.eq(i.state, "waiting")
  t.eq(i.steps, 122)
  s:advance(days(1))
  local m = s:sent{ customer = "a" }
  t.eq(#m, 2)
  t.eq(m[1].body, "friend: waited")
  t.eq(m[2].body, "friend: v1 end")
  t.eq(s:instances{ customer = "a" }[1].state, "done")
end)

t.case("migrate on a sealed history: the instance moves and replays the new history", function()
  local v2 = NOTE .. [[
    journey "long" {
      on = "go",
      migrate = function(step, history)
        -- v2 reads the clock first: the old instances get it recorded as 5
        table.insert(history, 1, { kind = "now", result = 5 })
        return history
      end,
      run = function(c)
        local t0 = now()
        for i = 1, 120 do wait(hours(1)) end
        send("sms", c, "note", { what = "waited" })
        wait(days(1))
        send("sms", c, "note", { what = "v2 end " .. t0 })
        wait(days(1))
        send("sms", c, "note", { what = "v2 last" })
      end,
    }
  ]]
  local s = t.sim{ source = V1, start = "2026-03-02T10:00:00+08:00" }
  s:customer{ id = "b" }
  s:event{ type = "go", customer = "b" }
  s:advance(hours(121))
  t.eq(s:instances{ customer = "b" }[1].steps, 122)
  s:deploy{ source = v2 }
  s:advance(days(1))   -- migrates, replays the moved history, sends, waits again
  s:restart()
  s:advance(days(1))   -- replays what the migrating wake stored
  local m = s:sent{ customer = "b" }
  t.eq(#m, 3)
  t.eq(m[2].body, "friend: v2 end 5")
  t.eq(m[3].body, "friend: v2 last")
  local i = s:instances{ customer = "b" }[1]
  t.eq(i.state, "done")
  t.eq(i.steps, 126)
end)
