-- luacheck configuration for tend scripts (journeys, their tests, tend.lua):
-- exactly the globals tend's sandbox gives a script (docs/lua-api.md, "The
-- sandbox"). tests/cli/editor_test.sh checks this list against the runtime.
-- The same file is .luacheckrc at the project root and in examples/.
local tend = {
  "after", "ago", "all", "anniversary", "any", "at_least", "at_local", "at_most", "before", "best_time",
  "between", "bought", "channel", "coupon_issue", "customers", "days", "emit", "exit", "has", "holdout",
  "holiday", "holiday_date", "hours", "http_get", "is_holiday", "journey", "local_cron", "log", "minutes",
  "not_", "now", "one_of", "product", "random", "runs_out_at", "schedule", "segment", "segment_count", "send",
  "split", "start", "task", "template", "wait", "wait_for", "wait_receipt", "wait_task", "wait_until",
}
local lua = {
  "_G", "_VERSION", "assert", "error", "getmetatable", "ipairs", "load", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawlen", "rawset", "require", "select", "setmetatable", "tonumber", "tostring",
  "type", "xpcall",
}
local read_globals = {
  coroutine = { fields = { "close", "create", "isyieldable", "resume", "running", "status", "wrap", "yield" } },
  math = { fields = { "abs", "acos", "asin", "atan", "ceil", "cos", "deg", "exp", "floor", "fmod", "huge", "log",
                      "max", "maxinteger", "min", "mininteger", "modf", "pi", "rad", "random", "sin", "sqrt",
                      "tan", "tointeger", "type", "ult" } },
  os = { fields = { "date", "difftime", "time" } },
  string = { fields = { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "pack",
                        "packsize", "rep", "reverse", "sub", "unpack", "upper" } },
  table = { fields = { "concat", "insert", "move", "pack", "remove", "sort", "unpack" } },
  utf8 = { fields = { "char", "charpattern", "codepoint", "codes", "len", "offset" } },
}
for _, list in ipairs({ tend, lua }) do
  for _, name in ipairs(list) do read_globals[#read_globals + 1] = name end
end

stds.tend = { read_globals = read_globals }
std = "tend"
-- run(c, ev), where(ev), migrate(step, history): callbacks keep their
-- documented parameters even when a script does not use them all
unused_args = false
max_line_length = false   -- long template texts read better on one line
