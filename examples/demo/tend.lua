-- The demo shop's settings: everything else is tend's default (a SQLite file
-- tend.db here, the file channel writing outbox.ndjson, 127.0.0.1:8725).
return {
  timezone = "Asia/Shanghai",
  channels = {
    sms = { type = "file", path = "outbox.ndjson", price = 0.045, per = "segment", max_segments = 2,
            blocked_words = { "free money", "guaranteed" } },
    call = { type = "task", assign = { "alice", "bob" } },
  },
}
