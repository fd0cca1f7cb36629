-- Replenishment: a reminder 7 days before a consumable runs out, per sku.
-- When it runs out comes from the catalog's usage_days (how long one unit
-- lasts) and the quantities the customer bought (runs_out_at). A reorder
-- of that sku before the reminder cancels it, and the reorder starts a new
-- one from the new supply; the reminder suggests the product's first
-- related product when the catalog has one.
--
-- Needs products with usage_days (tend import --products, PUT
-- /v1/products/{sku}) and order.paid events with items.

template "replenish" {
  category = "marketing",
  sms = "{{ name | default: 'Hi' }}, your {{ item }} runs out around {{ out | date: '%b %d' }}. "
     .. "Reorder: {{ url }}{% if also %} Also for you: {{ also }}.{% endif %}",
  sample = { name = "Lingling", item = "House beans", out = 1775001600,
             url = "https://shop.example/reorder/BEANS", also = "Paper filters" },
}

local SHOP_URL = "https://shop.example/reorder/"
local REMIND_BEFORE = days(7)

local function has_sku(ev, sku)
  for _, it in ipairs(ev.items or {}) do
    if tostring(it.sku) == sku then return true end
  end
  return false
end

-- One instance per customer and sku: it waits for the reminder time, or
-- for a reorder of its sku, whichever comes first.
journey "replenish_sku" {
  run = function(c, p)
    local sku = p.sku
    local item = product(sku)
    local out = runs_out_at(c, sku)
    if not item or not out then return end
    -- a supply shorter than a week: remind a day after the order instead
    local remind_at = math.max(out - REMIND_BEFORE, now() + days(1))
    local reorder = wait_for("order.paid", { timeout = remind_at - now(),
                                             where = function(ev) return has_sku(ev, sku) end })
    if reorder then return end      -- the reorder's own instance takes over
    local first = item.related and item.related[1]
    local related = first and product(first)
    send("sms", c, "replenish", { item = item.name or sku, out = out, url = SHOP_URL .. sku,
                                  also = first and (related and related.name or first) })
  end,
}

journey "replenish" {
  on = "order.paid",
  run = function(c, ev)
    local seen = {}
    for _, it in ipairs(ev.items or {}) do
      local sku = tostring(it.sku)
      if not seen[sku] then
        seen[sku] = true
        local p = product(sku)
        if p and p.usage_days then start("replenish_sku", c, { sku = sku }) end
      end
    end
  end,
}
