-- tend.lua — the settings of one installation (every key is optional; a
-- misspelt key is an error). Secrets come from the environment:
-- TEND_API_TOKEN for the HTTP API, provider keys for channels.
return {
  -- db = "tend.db",                 -- the SQLite store, relative to this directory
  -- listen = "127.0.0.1:8725",      -- the HTTP API (--listen / TEND_LISTEN override)
  timezone = "Asia/Shanghai",        -- customers without a zone of their own
  -- synchronous = "full",           -- "normal" trades a power cut's last commits for speed
  -- quiet_hours = { from = "21:30", to = "08:30" },
  -- caps = { day = 1, week = 3 },   -- marketing sends per customer
  -- ready_backlog = 100000,         -- /readyz is 503 past this many unprocessed events
  -- server = { max_connections = 1024, idle_timeout = 60, header_timeout = 10, request_timeout = 30 },
  -- shutdown_grace = 10,            -- seconds SIGTERM waits for deliveries in flight
  -- currency = "CNY",               -- the templates' money filter: ¥1,234.50
  -- public_url = "https://care.shop.example",  -- base of the unsubscribe link in marketing email
  -- unsubscribe_secret: set TEND_UNSUBSCRIBE_SECRET, or let tend make one and keep it in the store
  channels = {
    sms = { type = "file", path = "outbox.ndjson", price = 0.045, per = "segment" },
    call = { type = "task", assign = { "care-team" } },
    -- email = { type = "smtp", url = "smtps://smtp.example.com:465", username = "care",
    --           password = "${SMTP_PASSWORD}", from = "关爱团队 Care <care@shop.example>",
    --           envelope_from = "bounces@shop.example" },
  },
}
