-- Liquid templates through send: the customer's zone for dates, the config's
-- currency for money, loops over the send's items, HTML parts, and render
-- failures that leave no half-written message.
local t = require "tend.test"

local source = [==[
template "order" { category = "transactional",
  sms = [[
{%- for i in items -%}
{{ i.name }}×{{ i.qty }} {{ i.price | times: i.qty | money }}{% unless_not_here %}
{%- endfor -%}
]] }
]==]

local good = [==[
template "order" { category = "transactional",
  sms = "{% for i in items limit: 2 %}{{ forloop.index }}.{{ i.name }}×{{ i.qty }} {{ i.price | times: i.qty | money }}{% if forloop.last %}{% else %}; {% endif %}{% endfor %}, at {{ at | date: '%H:%M %d/%m' }}",
  email = { subject = "{{ items | size }} {{ items | size | plural: 'item', 'items' }}",
            body = "Hi {{ name | default: 'there' }}", html = "<p>Hi {{ name }}</p>" } }
template "bad_loop" { category = "transactional", sms = "{% for i in n %}{{ i }}{% endfor %} end" }
template "bad_math" { category = "transactional",
  email = { subject = "ok {{ name }}", body = "{{ name | plus: 1 }}" } }
journey "order" {
  on = "order.paid",
  run = function(c, ev) send("sms", c, "order", { items = ev.items, at = ev.at }) end,
}
journey "mail" {
  on = "mail",
  run = function(c, ev) send("email", c, "order", { items = ev.items, at = ev.at }) end,
}
journey "bad" {
  on = "bad",
  run = function(c, ev)
    local r = send("sms", c, "bad_loop", { n = 5 })
    local m = send("email", c, "bad_math")
    c:set{ ["attrs.r1"] = r.status, ["attrs.e1"] = r.error, ["attrs.r2"] = m.status, ["attrs.e2"] = m.error }
  end,
}
]==]

local items = { { sku = "SH-1", name = "洗发水", qty = 2, price = 59 }, { sku = "CO-1", name = "护发素", qty = 1, price = 1234.5 },
                { sku = "CB-1", name = "梳子", qty = 1, price = 9 } }

t.case("a loop over the order's items, money in the config's currency, a date in the customer's zone", function()
  local s = t.sim{ source = good, start = "2026-03-01T09:00:00+08:00",
                   config = { timezone = "Asia/Shanghai", currency = "CNY" } }
  s:customer{ id = "sh", name = "Hua" }
  s:customer{ id = "ny", name = "Nora", timezone = "America/New_York" }
  local at = os.time{ year = 2026, month = 3, day = 1, hour = 1, min = 30 }   -- 01:30Z
  s:event{ type = "order.paid", customer = "sh", items = items, at = at }
  s:event{ type = "order.paid", customer = "ny", items = items, at = at }
  t.eq(s:sent{ customer = "sh" }[1].body, "1.洗发水×2 ¥118.00; 2.护发素×1 ¥1,234.50, at 09:30 01/03")
  t.eq(s:sent{ customer = "ny" }[1].body, "1.洗发水×2 ¥118.00; 2.护发素×1 ¥1,234.50, at 20:30 28/02")
end)

t.case("another currency from the config", function()
  local s = t.sim{ source = good, config = { currency = "USD" } }
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "order.paid", customer = "c1", items = { items[2] }, at = 0 }
  t.match(s:sent{}[1].body, "^1%.护发素×1 %$1,234%.50, at ")
end)

t.case("an email's subject, text and escaped html are rendered together", function()
  local s = t.sim{ source = good }
  s:customer{ id = "c1", name = "<Ann & Bo>", email = "ann@example.test" }
  s:event{ type = "mail", customer = "c1", items = items, at = 0 }
  local m = s:sent{ channel = "email" }[1]
  t.eq(m.subject, "3 items")
  t.eq(m.body, "Hi <Ann & Bo>")
end)

t.case("a type problem at render time fails the send with the reason, nothing half-written", function()
  local s = t.sim{ source = good }
  s:customer{ id = "c1", name = "Ann", email = "ann@example.test" }
  s:event{ type = "bad", customer = "c1" }
  local c = s:customer("c1")
  t.eq(c.attrs.r1, "failed")
  t.match(c.attrs.e1, "template 'bad_loop': line 1: cannot loop over 'n': it is a number")
  t.eq(c.attrs.r2, "failed")
  t.match(c.attrs.e2, "filter 'plus': 'Ann' is not a number")
  t.eq(#s:sent{ status = "sent" }, 0)
end)

t.case("a malformed template fails the load with file:line and where in the text", function()
  local err = t.fails(function() t.sim{ source = source } end)
  t.match(err, "template 'order' %(sms%): line 2, column %d+ %(byte %d+%): unknown tag 'unless_not_here'")
  err = t.fails(function()
    t.sim{ source = [[template "x" { category = "marketing", sms = "Hi {{name|friend}}" }]] }
  end)
  t.match(err, 'write {{ name | default: "friend" }}')
end)
