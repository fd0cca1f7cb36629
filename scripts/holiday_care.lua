-- Holiday care: greetings for Mid-Autumn and Spring Festival, sent at 10:00
-- on the eve in each customer's own zone, with a gift by member tier:
--   ordinary members (at least one order): a coupon with the greeting;
--   high value (total spent at least HIGH_VALUE): a greeting card message and
--     a task for staff to send a gift box;
--   top tier (total spent at least TOP_TIER, or tagged "top_tier"): the
--     greeting and a visit task for their account manager.
-- The dates move with the lunar calendar; tend's built-in calendar knows them.

local HIGH_VALUE = 3000
local TOP_TIER = 20000

local FESTIVALS = {
  mid_autumn = { name = "Mid-Autumn", wish = "a bright full moon and a happy reunion" },
  spring_festival = { name = "Spring Festival", wish = "health and good fortune in the new year" },
}

for key, f in pairs(FESTIVALS) do
  template(key .. "_coupon") {
    category = "marketing",
    sms = "{{who}}, wishing you " .. f.wish .. "! Our gift: {{coupon.code}}, {{coupon.value}} off until {{coupon.expires}}.",
  }
  template(key .. "_card") {
    category = "marketing",
    sms = "{{who}}, thank you for being with us this year. Wishing you " .. f.wish .. " - a small " .. f.name .. " gift is on its way to you.",
  }
  template(key .. "_greeting") {
    category = "marketing",
    sms = "{{who}}, wishing you and your family " .. f.wish .. ". {{manager}} will call on you before " .. f.name .. ".",
  }
end

local function top_tier(c)
  return c.total_spent >= TOP_TIER or c.tags.top_tier == true
end

local function care(key)
  return function(c, ev)
    local who = c.name or "Dear customer"
    if top_tier(c) then
      local visit = task(c, { kind = "visit", assign = c.attrs.manager or "key_accounts",
                              note = FESTIVALS[key].name .. " visit with a gift box (" .. ev.date .. ")" })
      send("sms", c, key .. "_greeting", { who = who, manager = visit.assignee or "Your account manager" })
    elseif c.total_spent >= HIGH_VALUE then
      send("sms", c, key .. "_card", { who = who })
      task(c, { kind = "gift", assign = "gifts", note = "send the " .. FESTIVALS[key].name .. " gift box and card" })
    else
      local coupon = coupon_issue(c, { value = 20, valid = days(14), prefix = "FEST" })
      send("sms", c, key .. "_coupon", { who = who, coupon = coupon })
    end
  end
end

local MEMBERS = { orders_count = at_least(1), lifecycle = not_("dead") }

journey "mid_autumn_care" {
  on = holiday("mid_autumn", { at = "10:00", offset_days = -1, audience = MEMBERS }),
  run = care("mid_autumn"),
}

journey "spring_festival_care" {
  on = holiday("spring_festival", { at = "10:00", offset_days = -1, audience = MEMBERS }),
  run = care("spring_festival"),
}
