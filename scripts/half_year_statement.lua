-- Half-year statement: on 1 January and 1 July at 09:00 in each customer's
-- own zone, every customer who ordered in the half year just ended gets an
-- email: how many orders, what they spent, and the items bought (up to 20
-- lines, the rest counted). Marketing: quiet hours, caps and unsubscribes
-- apply.
--
-- The half years run from local midnight to local midnight in the
-- customer's zone (in a zone with daylight saving time the older boundary
-- may be an hour off). Orders and spend are counted from their lines
-- (order events with items).

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

local LISTED = 20

-- The half year that ended at local midnight `to`, from the slot's date
-- ("2026-07-01T09:00"): [from, to).
local function last_half(c, slot)
  local year, month = slot:match("^(%d+)-(%d+)")
  year = tonumber(year)
  local to = at_local(c, "00:00") - days(1)      -- today's local midnight
  local function first(y, m) return os.time{ year = y, month = m, day = 1, hour = 0 } end
  local span = month == "07" and first(year, 7) - first(year, 1) or first(year, 1) - first(year - 1, 7)
  return to - span, to
end

journey "half_year_statement" {
  on = local_cron("0 9 1 1,7 *", { audience = { last_order_at = after(ago(days(185))) } }),
  run = function(c, ev)
    local from, to = last_half(c, ev.slot)
    local lines = c:items{ since = from, before = to }
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
      from = from, to = to - 1, orders = orders, spend = spend, items = items,
      more = math.max(0, #items - LISTED),
    })
  end,
}
