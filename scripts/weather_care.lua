-- Weather-event greetings: when a storm, smog or heat alert hits a city, a
-- careful greeting (no hard sell) to the customers who live there. The alert
-- is a broadcast event (no customer); the audience picks the customers.

template "weather_storm" {
  category = "marketing", priority = 10,
  sms = "{{ name | default: 'Hello' }}, a storm is coming to {{city}}. Please stay safe indoors; we will deliver when it is safe.",
}
template "weather_smog" {
  category = "marketing", priority = 10,
  sms = "{{ name | default: 'Hello' }}, the air in {{city}} is heavy today. Take care, and keep windows closed.",
}
template "weather_heat" {
  category = "marketing", priority = 10,
  sms = "{{ name | default: 'Hello' }}, it is very hot in {{city}}. Drink water and stay in the shade.",
}

local KINDS = { storm = true, smog = true, heat = true }

journey "weather_care" {
  on = "weather.alert",
  audience = function(ev) return { city = ev.city } end,
  when = function(c, ev) return KINDS[ev.kind] == true end,
  reenter_after = days(2),
  run = function(c, ev)
    send("sms", c, "weather_" .. ev.kind, { city = c.city })
  end,
}
