-- Half-year statement: on 1 January and 1 July at 10:00, every customer who
-- ordered in the half year just ended gets an email: how many orders, what
-- they spent, and the items bought (up to 20 lines, the rest counted).
-- Marketing: quiet hours, caps and unsubscribes apply.
--
-- The half years begin at midnight in the shop's zone (SHOP_TZ and its
-- offset SHOP_UTC_OFFSET below: China has no daylight saving time). Orders
-- are counted from their lines (order.paid events with items).

template "half_year_statement" {
  category = "marketing",
  email = {
    subject = "Your half year with us: {{ orders }} {{ orders | plural: 'order', 'orders' }}, {{ spend | money }}",
    body = [[
{{ name | default: 'Hello' }},

from {{ from | date: '%Y-%m-%d' }} to {{ to | date: '%Y-%m-%d' }} you placed {{ orders }} {{ orders | plural: 'order', 'orders' }} for {{ spend | money }}:
{% for it in items limit: 20 %}
- {{ it.name }} x {{ it.qty }}: {{ it.amount | money }}{% endfor %}
{% if more > 0 %}... and {{ more }} more {{ more | plural: 'item', 'items' }}.
{% endif %}
Thank you for shopping with us.]],
  },
}

local SHOP_TZ = "Asia/Shanghai"
local SHOP_UTC_OFFSET = hours(8)
local LISTED = 20

-- The half year that ended last, as [from, to) epoch seconds.
local function last_half(t)
  local d = os.date("!*t", t + SHOP_UTC_OFFSET)
  local function midnight(y, m) return os.time{ year = y, month = m, day = 1, hour = 0 } - SHOP_UTC_OFFSET end
  if d.month >= 7 then return midnight(d.year, 1), midnight(d.year, 7) end
  return midnight(d.year - 1, 7), midnight(d.year, 1)
end

journey "half_year_statement" {
  run = function(c, p)
    local lines = c:items{ since = p.from, before = p.to }
    if #lines == 0 then return end
    local by_sku, items, orders, seen, spend = {}, {}, 0, {}, 0
    for _, l in ipairs(lines) do
      if not seen[l.order] then seen[l.order], orders = true, orders + 1 end
      local amount = (l.price or 0) * l.qty
      spend = spend + amount
      local it = by_sku[l.sku]
      if not it then
        local known = product(l.sku)
        it = { sku = l.sku, name = l.name or (known and known.name) or l.sku, qty = 0, amount = 0 }
        by_sku[l.sku] = it
        items[#items + 1] = it
      end
      it.qty, it.amount = it.qty + l.qty, it.amount + amount
    end
    table.sort(items, function(a, b) return a.amount > b.amount or (a.amount == b.amount and a.sku < b.sku) end)
    send("email", c, "half_year_statement", {
      from = p.from, to = p.to - 1, orders = orders, spend = spend, items = items,
      more = math.max(0, #items - LISTED),
    })
  end,
}

schedule "half_year_statement" {
  cron = "0 10 1 1,7 *",
  tz = SHOP_TZ,
  run = function()
    local from, to = last_half(now())
    for c in customers{ last_order_at = after(from) } do
      start("half_year_statement", c, { from = from, to = to })
    end
  end,
}
