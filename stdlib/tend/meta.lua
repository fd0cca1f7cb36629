---@meta
-- tend's Lua API for editors: LuaCATS definitions read by lua-language-server
-- (completion, hover, argument checks). The runtime never runs this file; a
-- test loads it as plain Lua and compares the globals it declares with the
-- ones the sandbox gives scripts (tests/lua/meta_test.lua), so the two
-- cannot drift. Reference: docs/lua-api.md.

---@alias tend.time integer|string    epoch seconds, or ISO-8601 text ("2026-03-01T09:00:00+08:00")
---@alias tend.filter table           a customer filter: { city = "Beijing", orders_count = at_least(2), ... }
---@alias tend.vars table<string, any> template variables (JSON-like values)

-- --- the customer handle ------------------------------------------------------

---A customer, as a journey sees it: fields are read-only; change them with
---`c:set{...}`, `c:tag(...)`, `c:untag(...)`.
---@class tend.Customer
---@field id string
---@field name string?
---@field phone string?
---@field email string?
---@field city string?
---@field region string?
---@field timezone string?
---@field birthday string?
---@field orders_count number
---@field total_spent number
---@field first_seen_at integer?
---@field first_order_at integer?
---@field last_order_at integer?
---@field last_active_at integer?
---@field lifecycle "new"|"repeat"|"active"|"silent"|"churned"|"dead"
---@field r integer RFM recency score 1-5
---@field f integer RFM frequency score 1-5
---@field m integer RFM monetary score 1-5
---@field blocked boolean
---@field attrs table<string, any>
---@field tags table<string, boolean>
local Customer = {}

---Adds a tag (recorded inside a run).
---@param tag string
---@return tend.Customer
function Customer:tag(tag) end

---Removes a tag (recorded inside a run).
---@param tag string
---@return tend.Customer
function Customer:untag(tag) end

---Sets fields: `c:set{ city = "Hangzhou", ["attrs.level"] = 2 }`.
---@param fields table<string, any>
---@return tend.Customer
function Customer:set(fields) end

---@class tend.BoughtSpec
---@field sku (string|integer)? one of sku and category
---@field category string?
---@field within integer? seconds back from now (days(30)); default: ever
---@field at_least integer? (filters only) orders, default 1

---What the customer bought of an sku or category (recorded inside a run):
---how many orders had it, and when it was last bought (nil if never).
---@param spec tend.BoughtSpec
---@return integer count
---@return integer? last_at
function Customer:bought(spec) end

---@class tend.OrderLine
---@field order string
---@field sku string
---@field category string?
---@field name string?
---@field qty number
---@field price number?
---@field at integer

---The customer's order lines bought in [since, before), oldest first
---(recorded inside a run): `c:items{ within = days(182) }`.
---@param spec { since: tend.time?, within: integer?, before: tend.time?, limit: integer? }?
---@return tend.OrderLine[]
function Customer:items(spec) end

-- --- declarations ----------------------------------------------------------------

---@class tend.JourneySpec
---@field run fun(c: tend.Customer, ev: table?) the journey
---@field on (string|tend.DateTrigger)? an event type, or anniversary(...), local_cron(...), holiday(...)
---@field when (fun(c: tend.Customer, ev: table?): boolean)? entry filter for every way in
---@field once boolean? enter at most once per customer
---@field reenter_after integer? seconds before a new entry
---@field goal { event: string, within: integer?, where: (fun(ev: table): boolean)? }?
---@field audience (tend.filter|fun(ev: table): tend.filter)? who enters on a broadcast
---@field priority number?
---@field on_cap ("defer"|"skip")?
---@field migrate (fun(step: table, history: table[]): (table[]|boolean|nil))?
---@field description string?

---Declares a journey: `journey "name" { on = "order.paid", run = function(c, ev) ... end }`.
---@param name string
---@return fun(spec: tend.JourneySpec)
function journey(name) end

---Declares a template: `template "gift" { category = "marketing", sms = "Hi {{ name | default: 'friend' }}" }`.
---Any key other than category/priority/on_cap/sample is the text (Liquid) for the channel of that
---name: a string, or { subject, body, html } for email. `sample` holds example vars for tend check.
---@param name string
---@return fun(spec: table<string, any>)
function template(name) end

---Declares a segment: `segment "lapsed" { where = { last_order_at = before(ago(days(90))) } }`.
---@param name string
---@return fun(spec: { where: tend.filter|fun(): tend.filter, description: string? })
function segment(name) end

---Declares a schedule: `schedule "daily" { cron = "0 10 * * *", run = function() ... end }`.
---@param name string
---@return fun(spec: { run: fun(), cron: string?, every: integer?, tz: string?, description: string? })
function schedule(name) end

---Declares a channel: `channel "sms" { type = "http", url = "https://...", price = 0.05 }`.
---@param name string
---@return fun(spec: table<string, any>)
function channel(name) end

---@class tend.DateTrigger

---A date trigger for `on`: fires on the yearly return of a date field.
---@param field string birthday, first_seen_at, first_order_at, last_order_at, last_active_at or attrs.<path>
---@param opts { at: string?, offset_days: integer?, offset: integer?, late: integer? }?
---@return tend.DateTrigger
function anniversary(field, opts) end

---A trigger for `on`: fires for every customer of the audience at a cron time in the customer's own zone.
---@param expr string five cron fields, e.g. "0 9 1 1,7 *"
---@param opts { audience: tend.filter? }?
---@return tend.DateTrigger
function local_cron(expr, opts) end

---A trigger for `on`: fires on a named date (built in, or `holidays` in tend.lua) at a local time.
---@param name string spring_festival, mid_autumn, qingming, mothers_day, ...
---@param opts { at: string?, offset_days: integer?, audience: tend.filter? }?
---@return tend.DateTrigger
function holiday(name, opts) end

---The date of a named holiday in a year, "YYYY-MM-DD" (nil outside 1900-2100 for lunar dates).
---@param name string
---@param year integer
---@return string?
function holiday_date(name, year) end

---Whether `time` falls on the named holiday in the customer's zone (the configured one without c).
---@param name string
---@param time integer|string
---@param c tend.Customer?
---@return boolean
function is_holiday(name, time, c) end

-- --- primitives inside run ----------------------------------------------------------

---Suspends the journey for `seconds` (recorded; durable across restarts).
---@param seconds number
function wait(seconds) end

---Suspends the journey until `time`.
---@param time tend.time
function wait_until(time) end

---Waits for the customer's next event of `type`; nil on timeout.
---@param type string
---@param opts { timeout: number?, where: (fun(ev: table): boolean)? }? a timeout under 1 s times out at once
---@return table? event
function wait_for(type, opts) end

---@class tend.SendResult
---@field status "queued"|"deferred"|"capped"|"suppressed"|"failed"|"unreachable"
---@field id integer
---@field channel string? the channel that took the message
---@field error string?
---@field skipped table<string, string>? with a list of channels: why each was skipped

---Queues a message: `send("sms", c, "gift", { coupon = coupon.code })`, or on the
---first of several channels that can reach the customer:
---`send({ "wechat", "sms" }, c, "notice", vars, { fallback_after = minutes(10) })`.
---@param channel string|string[]
---@param c tend.Customer|string the customer, or its id (c.id)
---@param template string
---@param vars tend.vars?
---@param opts { fallback_after: integer? }?
---@return tend.SendResult
function send(channel, c, template, vars, opts) end

---Waits for a receipt of the message `r` (what send returned, or its id); nil on timeout.
---@param r tend.SendResult|integer
---@param status "delivered"|"failed"|"opened"|"clicked"|"replied"|"unsubscribed"
---@param opts { timeout: integer? }?
---@return table? event the message.<status> event (message, key, channel, template, journey, reason)
function wait_receipt(r, status, opts) end

---Waits until staff close the task `t` (what task returned, or its id); nil on timeout.
---@param t { id: integer }|integer
---@param opts { timeout: integer? }?
---@return { id: integer, status: "done"|"failed"|"cancelled", outcome: string?, note: string?, kind: string?, assignee: string?, done_at: integer }?
function wait_task(t, opts) end

---@class tend.Coupon
---@field code string
---@field value number
---@field expires string "YYYY-MM-DD" in the customer's zone
---@field expires_at integer
---@field starts_at integer
---@field min_spend number

---Issues a unique coupon code.
---@param c tend.Customer|string
---@param spec { value: number?, valid: integer?, starts: tend.time?, min_spend: number?, prefix: string? }?
---@return tend.Coupon
function coupon_issue(c, spec) end

---Creates a task for a person: `task(c, { kind = "call", note = "...", assign = {"ann", "bo"} })`.
---@param c tend.Customer|string
---@param spec { kind: string?, note: string?, due: integer?, assign: (string|string[]|fun(c: tend.Customer): string)? }?
---@return { id: integer, assignee: string?, due_at: integer? }
function task(c, spec) end

---Emits a new event (deduplicated by step).
---@param event table
---@return integer seq
function emit(event) end

---Starts another journey for a customer; false when entry is refused.
---@param journey string
---@param c tend.Customer|string
---@param payload any?
---@return integer|false
function start(journey, c, payload) end

---A/B split: `split{ A = 50, B = 50 }` returns the chosen name.
---@param weights table<string, number>
---@return string
function split(weights) end

---True for the control group (percent of customers).
---@param percent number
---@return boolean
function holdout(percent) end

---The current time, epoch seconds (recorded inside a run).
---@return integer
function now() end

---The next instant the customer's local time is HH:MM.
---@param c tend.Customer|string
---@param hhmm string
---@return integer
function at_local(c, hhmm) end

---The next instant at the customer's most active local hour (from their events), else at opts.default.
---@param c tend.Customer|string
---@param opts { default: string? }?
---@return integer
function best_time(c, opts) end

---A replay-safe random number, as math.random.
---@param m integer?
---@param n integer?
---@return number
function random(m, n) end

---@class tend.HttpResponse
---@field status integer
---@field body string
---@field json any?

---GET to a host in tend.lua's http_allow (recorded).
---@param url string
---@return tend.HttpResponse?
---@return string? error
function http_get(url) end

---Ends the instance with state "exited".
---@param reason string?
function exit(reason) end

---The customers of a segment name or filter, in id order.
---@param segment string|tend.filter
---@return fun(): tend.Customer?
function customers(segment) end

---How many customers match a segment name or filter.
---@param segment string|tend.filter
---@return integer
function segment_count(segment) end

---@class tend.Product
---@field sku string
---@field name string?
---@field category string?
---@field price number?
---@field usage_days number? how many days one unit lasts
---@field related string[] skus to suggest with it
---@field updated_at integer?

---The catalog row of an sku, or nil (recorded inside a run).
---@param sku string
---@return tend.Product?
function product(sku) end

---When the customer's supply of sku ends, from the quantities bought and
---the product's usage_days; nil if unknown (recorded inside a run).
---@param c tend.Customer|string
---@param sku string
---@return integer?
function runs_out_at(c, sku) end

-- --- helpers ------------------------------------------------------------------

---@param n number
---@return integer seconds
function days(n) end

---@param n number
---@return integer seconds
function hours(n) end

---@param n number
---@return integer seconds
function minutes(n) end

---now() - seconds (relative inside a declaration).
---@param seconds number
---@return integer
function ago(seconds) end

---To the runtime log: values joined by spaces.
---@param ... any
function log(...) end

-- --- filter nodes -----------------------------------------------------------------

---@class tend.FilterNode

---@param v any
---@return tend.FilterNode
function at_least(v) end

---@param v any
---@return tend.FilterNode
function at_most(v) end

---@param a any
---@param b any
---@return tend.FilterNode
function between(a, b) end

---@param t tend.time
---@return tend.FilterNode
function before(t) end

---@param t tend.time
---@return tend.FilterNode
function after(t) end

---@param ... any values, or one list
---@return tend.FilterNode
function one_of(...) end

---@param ... string tags
---@return tend.FilterNode
function has(...) end

---@param v any a value, or a filter table
---@return tend.FilterNode
function not_(v) end

---@param filters tend.filter[]
---@return tend.FilterNode
function any(filters) end

---@param filters tend.filter[]
---@return tend.FilterNode
function all(filters) end

---A condition on what was bought, for a filter's list: `{ not_(bought{ sku = "B1" }) }`.
---@param spec tend.BoughtSpec
---@return tend.FilterNode
function bought(spec) end

-- --- tend.test and the sim ------------------------------------------------------------

---@class tend.Message
---@field id integer
---@field channel string
---@field customer string
---@field template string
---@field body string?
---@field subject string?
---@field status "queued"|"deferred"|"capped"|"suppressed"|"failed"|"dead"|"sent"
---@field at integer
---@field category string
---@field journey string?
---@field error string?
---@field cost number
---@field segments integer?
---@field attempts integer?
---@field key string?

---@class tend.Instance
---@field id integer
---@field journey string
---@field customer string
---@field state "waiting"|"done"|"failed"|"converted"|"exited"
---@field step string where it waits: "wait 2592000 (gift.lua:12)"
---@field steps integer
---@field error string?
---@field converted_at integer?
---@field holdout boolean?
---@field branch string?
---@field version string
---@field started_at integer
---@field ended_at integer?
---@field wake_at integer?

---@class tend.Task
---@field id integer
---@field customer string
---@field journey string
---@field assignee string?
---@field note string?
---@field status string
---@field at integer
---@field kind string?

---A whole runtime on a virtual clock (`t.sim{...}`).
---@class tend.Sim
local Sim = {}

---Creates or updates a customer (sim:customer{...}), or returns one (sim:customer("c1")).
---@param fields table|string
---@return table?
function Sim:customer(fields) end

---Accepts an event at the sim's now and processes it; false for a duplicate id.
---@param event table
---@return boolean
function Sim:event(event) end

---Moves the clock forward, running everything due on the way.
---@param seconds number
function Sim:advance(seconds) end

---@return integer
function Sim:now() end

---The messages that left (status "sent").
---@param filter { channel: string?, customer: string?, template: string?, status: "sent"?, journey: string?, category: string? }?
---@return tend.Message[]
function Sim:sent(filter) end

---Every outbox row, held back or not, with its status.
---@param filter { channel: string?, customer: string?, template: string?, status: string?, journey: string?, category: string? }?
---@return tend.Message[]
function Sim:messages(filter) end

---@param filter { customer: string?, journey: string?, assignee: string?, status: string?, kind: string? }?
---@return tend.Task[]
function Sim:tasks(filter) end

---@param filter { journey: string?, customer: string?, state: string? }?
---@return tend.Instance[]
function Sim:instances(filter) end

---The matching customer ids, in id order.
---@param segment string|tend.filter
---@return string[]
function Sim:segment(segment) end

---What http_get(url) answers in this sim.
---@param url string
---@param response string|{ status: integer?, body: string?, json: any? }
function Sim:stub_http(url, response) end

---Closes the runtime and reopens it on the same store, as after kill -9.
function Sim:restart() end

---A provider's receipt: `s:receipt{ message = m.id, status = "delivered" }`; false for a duplicate.
---@param receipt { message: integer?, key: string?, status: string, at: tend.time?, reason: string?, id: string? }
---@return boolean
function Sim:receipt(receipt) end

---A provider's own callback body, mapped by the channel's receipt function.
---@param channel string
---@param body string
---@return integer stored
function Sim:callback(channel, body) end

---What staff do with PATCH /v1/tasks/{id}.
---@param id integer
---@param close { status: "done"|"failed"|"cancelled"?, outcome: string?, note: string? }?
function Sim:close_task(id, close) end

---The report (GET /v1/journeys), or one journey's part with its experiment groups and lift.
---@param journey string?
---@return table?
function Sim:report(journey) end

---A new release of the scripts (paths relative to the test file).
---@param scripts { scripts: (string|string[])?, source: string? }
function Sim:deploy(scripts) end

---Everything the runtime logged, one "level: message" line each.
---@return string
function Sim:log() end

---The globals a journey script sees, sorted.
---@return string[]
function Sim:globals() end

function Sim:close() end

---@class tend.SimOptions
---@field scripts (string|string[])? paths relative to the test file
---@field source string? Lua text, loaded as the file "source"
---@field start tend.time? default "2026-01-01T00:00:00Z"
---@field config table? settings as in tend.lua (data only)

---The test library: `local t = require "tend.test"`.
---@class tend.test
---@field case fun(name: string, fn: fun()) runs fn now and reports ok / not ok
---@field skip fun(name: string, fn: fun()) reports the case as skipped without running it
---@field eq fun(actual: any, expected: any, message: string?) equal; tables compared deeply
---@field ok fun(value: any, message: string?) neither nil nor false
---@field match fun(text: string, pattern: string, message: string?) a Lua pattern found in text
---@field near fun(actual: number, expected: number, tolerance: number?, message: string?)
---@field fails fun(fn: fun(), pattern: string?, message: string?): string the function raises
---@field show fun(value: any): string a readable rendering
---@field sim fun(opts: tend.SimOptions): tend.Sim a runtime on a virtual clock
---@field source_of fun(module: string): string? the text of an embedded module ("tend.meta")
