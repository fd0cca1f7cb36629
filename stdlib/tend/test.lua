-- tend.test — the test library for journey scripts (run by `tend test`).
--
--   local t = require "tend.test"
--   t.case("name", function() t.eq(1 + 1, 2) end)
--
-- Assertions raise an error located at the caller's line, so a failure
-- prints the file:line of the failing assertion with expected and actual.
-- `__tend_report`, `__tend_sim` and `__tend_source` are host hooks only the
-- stdlib can see. Editor definitions: stdlib/tend/meta.lua (class tend.test).

local report, sim_new = __tend_report, rawget(_ENV, "__tend_sim")
local module_source = rawget(_ENV, "__tend_source")

---@type tend.test
local t = {}

-- A readable, deterministic rendering of a value for failure messages.
local function show(v, depth, seen)
  depth, seen = depth or 0, seen or {}
  local ty = type(v)
  if ty == "string" then return string.format("%q", v) end
  if ty ~= "table" then return tostring(v) end
  if seen[v] then return "<cycle>" end
  if depth > 3 then return "{...}" end
  seen[v] = true
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i = 1, n do parts[#parts + 1] = show(v[i], depth + 1, seen) end
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. show(k) .. "]"
    parts[#parts + 1] = key .. " = " .. show(v[k], depth + 1, seen)
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end
t.show = show

local function deep_eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_eq(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, extra)
  if extra then msg = msg .. " (" .. tostring(extra) .. ")" end
  error(msg, 3)   -- 3: the line of the test that called the assertion
end

-- t.eq(actual, expected [, message]): equal values, tables compared deeply.
function t.eq(actual, expected, message)
  if not deep_eq(actual, expected) then
    fail("expected " .. show(expected) .. ", got " .. show(actual), message)
  end
end

-- t.ok(value [, message]): value is neither nil nor false.
function t.ok(value, message)
  if not value then fail("expected a true value, got " .. show(value), message) end
end

-- t.match(text, pattern [, message]): a Lua pattern found in text.
function t.match(text, pattern, message)
  if type(text) ~= "string" then
    fail("expected a string matching " .. show(pattern) .. ", got " .. show(text), message)
  end
  if not text:find(pattern) then
    fail("expected " .. show(text) .. " to match " .. show(pattern), message)
  end
end

-- t.near(actual, expected, tolerance [, message]): numbers within tolerance.
function t.near(actual, expected, tolerance, message)
  tolerance = tolerance or 1e-9
  if type(actual) ~= "number" or math.abs(actual - expected) > tolerance then
    fail("expected " .. show(expected) .. " ± " .. show(tolerance) .. ", got " .. show(actual), message)
  end
end

-- t.fails(fn [, pattern]): fn raises an error (matching pattern, if given).
-- Returns the error message.
function t.fails(fn, pattern, message)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, but the function succeeded", message) end
  local text = type(err) == "string" and err or show(err)
  if pattern and not text:find(pattern) then
    fail("expected an error matching " .. show(pattern) .. ", got " .. show(text), message)
  end
  return text
end

-- t.case(name, fn): runs fn now and reports ok / not ok.
function t.case(name, fn)
  if type(name) ~= "string" then error("t.case: the first argument must be a name", 2) end
  if type(fn) ~= "function" then error("t.case: the second argument must be a function", 2) end
  report(name, fn)
end

-- t.source_of(module): the text of a module built into tend ("tend.meta",
-- the editor definitions), or nil.
function t.source_of(module)
  return module_source and module_source(module) or nil
end

-- t.skip(name, fn): reports the case as skipped without running it.
function t.skip(name, fn)
  if type(name) ~= "string" then error("t.skip: the first argument must be a name", 2) end
  if type(fn) ~= "function" then error("t.skip: the second argument must be a function", 2) end
  report(name, fn, true)
end

-- t.sim{scripts = {...}, source = "...", start = time, config = {...}}:
-- a whole runtime on a virtual clock (see docs/lua-api.md, "Testing journeys").
-- Script paths are relative to the test file.
function t.sim(opts)
  if not sim_new then error("t.sim is not available in this build", 2) end
  local ok, sim = pcall(sim_new, opts or {})
  if not ok then error(sim, 2) end   -- reported at the test's line
  return sim
end

return t
