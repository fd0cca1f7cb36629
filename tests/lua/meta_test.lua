-- The editor definitions (stdlib/tend/meta.lua) against the runtime: the
-- file loads as plain Lua in the sandbox, and the globals it declares are
-- exactly the ones a journey script sees (Lua's own excepted: editors know
-- those). A global added to the sandbox without a definition, or a
-- definition of a global that is gone, fails here by name.
local t = require "tend.test"

-- Lua's standard globals: lua-language-server and luacheck know them.
local LUA = {}
for name in ([[_G _VERSION assert collectgarbage coroutine debug dofile error getmetatable io ipairs
  load loadfile math next os package pairs pcall print rawequal rawget rawlen rawset require select
  setmetatable string table tonumber tostring type utf8 warn xpcall]]):gmatch("%S+") do
  LUA[name] = true
end

-- Runs meta.lua with an environment that records what it assigns.
local function declared()
  local src = t.source_of("tend.meta")
  t.ok(src, "tend.meta is built into the binary")
  local names, order = {}, {}
  local env = setmetatable({}, {
    __newindex = function(e, k, v)
      if not names[k] then order[#order + 1] = k end
      names[k] = true
      rawset(e, k, v)
    end,
  })
  local chunk, err = load(src, "=stdlib/tend/meta.lua", "t", env)
  t.ok(chunk, err)
  chunk()
  return names, order
end

local function missing(want, have)
  local out = {}
  for _, name in ipairs(want) do
    if not have[name] then out[#out + 1] = name end
  end
  return out
end

t.case("meta.lua declares every global the runtime gives a journey script", function()
  local names = declared()
  local runtime = {}
  for _, name in ipairs(t.sim{}:globals()) do
    if not LUA[name] then runtime[#runtime + 1] = name end
  end
  t.ok(#runtime > 30, "the runtime lists its globals")
  t.eq(missing(runtime, names), {}, "globals the runtime registers but stdlib/tend/meta.lua does not declare")
end)

t.case("meta.lua declares no global the runtime does not have", function()
  local _, order = declared()
  local have = {}
  for _, name in ipairs(t.sim{}:globals()) do have[name] = true end
  t.eq(missing(order, have), {}, "globals stdlib/tend/meta.lua declares but the runtime does not register")
end)

t.case("meta.lua documents every function of tend.test and every sim method", function()
  local src = t.source_of("tend.meta")
  local undocumented = {}
  for name, v in pairs(t) do
    if type(v) == "function" and not src:find("---@field " .. name .. " fun(", 1, true) then
      undocumented[#undocumented + 1] = "t." .. name
    end
  end
  local s = t.sim{}
  for _, method in ipairs({ "customer", "event", "advance", "now", "sent", "messages", "tasks", "instances",
                            "segment", "stub_http", "restart", "deploy", "log", "globals", "close" }) do
    t.eq(type(s[method]), "function", "sim:" .. method .. " exists")
    if not src:find("function Sim:" .. method .. "(", 1, true) then
      undocumented[#undocumented + 1] = "sim:" .. method
    end
  end
  table.sort(undocumented)
  t.eq(undocumented, {}, "undocumented in stdlib/tend/meta.lua")
end)

t.case("meta.lua is a LuaCATS definitions file", function()
  local src = t.source_of("tend.meta")
  t.match(src, "^%-%-%-@meta\n", "starts with ---@meta")
  for _, class in ipairs({ "tend.Customer", "tend.Sim", "tend.test" }) do
    t.ok(src:find("---@class " .. class .. "\n", 1, true), "declares ---@class " .. class)
  end
  t.ok(src:find("---@param", 1, true) and src:find("---@return", 1, true), "uses ---@param and ---@return")
end)
