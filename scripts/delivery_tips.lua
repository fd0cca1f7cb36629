-- Delivery tips: when an order is delivered, one message with a tip for
-- each category of the delivered items (how to store coffee, how to brew
-- tea, ...). Items of a category with no tip are left out; a delivery with
-- none of them sends nothing. The categories come from the event's items,
-- else from the catalog (product(sku).category).

template "delivery_tips" {
  category = "transactional",
  sms = "{{ name | default: 'Hello' }}, your order {{ order }} has arrived. {{ tips | join: ' ' }}",
  sample = { name = "Fang", order = "1001", tips = { "Tea: green tea 2 minutes at 80 degrees, black tea 3 minutes at 95." } },
}

-- One tip per category; edit freely.
local TIPS = {
  coffee = "Coffee: keep the beans airtight and away from light; grind just before brewing.",
  tea = "Tea: green tea 2 minutes at 80 degrees, black tea 3 minutes at 95.",
  baby = "Baby care: wash new clothes before the first wear, without softener.",
  pet = "Pet food: change food over a week, mixing a little more of the new each day.",
  care = "Skin care: try a new product on a small patch of skin first.",
}

local function category_of(it)
  if it.category then return it.category end
  local p = product(tostring(it.sku))
  return p and p.category
end

journey "delivery_tips" {
  on = "order.delivered",
  run = function(c, ev)
    local tips, seen = {}, {}   -- the tips' texts, in the order of the items
    for _, it in ipairs(ev.items or {}) do
      local cat = category_of(it)
      if cat and TIPS[cat] and not seen[cat] then
        seen[cat] = true
        tips[#tips + 1] = TIPS[cat]
      end
    end
    if #tips == 0 then return end
    send("sms", c, "delivery_tips", { order = ev.order, tips = tips })
  end,
}
