#!/bin/sh
# tend simulate over the journey library: a simulated year of N customers
# (default 5,000, about 25 s of CPU; 800 under the sanitizers; `make bench`
# runs 100,000) in several zones with a realistic event stream (orders
# through the year, page views, unsubscribes, a weather alert). The report
# has the contact load per channel and day, --messages writes one NDJSON
# line per message with its local time, and the policy audit finds nothing.
#   TEND=bin/tend sh tests/cli/simulate_test.sh [CUSTOMERS]
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "simulate_test: TEND=$TEND is not an executable" >&2; exit 1; }
ROOT=${TEND_ROOT:-$(pwd)}
case ${TEND_BUILD:-} in *asan*) N=${1:-800} ;; *) N=${1:-5000} ;; esac
PY=/usr/bin/python3

tmp=$(mktemp -d) || { echo "simulate_test: mktemp -d failed" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "simulate_test: FAIL: $*" >&2; failures=$((failures + 1)); }

mkdir "$tmp/shop"
for f in "$ROOT"/scripts/*.lua; do
  case $f in *_test.lua) ;; *) cp "$f" "$tmp/shop/" ;; esac
done
cat >"$tmp/shop/tend.lua" <<'LUA'
return {
  timezone = "Asia/Shanghai",
  synchronous = "normal",
  caps = { marketing = { day = 1, week = 3 }, sms = { week = 3 } },
  channels = { sms = { type = "capture", price = 0.05 } },
}
LUA

# Customers and a year of events, from a fixed seed.
"$PY" - "$N" "$tmp/customers.ndjson" "$tmp/events.ndjson" <<'PY'
import json, random, sys
n, cpath, epath = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rnd = random.Random(20260101)
zones = ["Asia/Shanghai"] * 6 + ["Asia/Tokyo", "Europe/Berlin", "America/New_York", "Australia/Sydney"]
cities = ["Shanghai", "Beijing", "Hangzhou", "Chengdu"]
start = 1767225600          # 2026-01-01T00:00:00Z
with open(cpath, "w") as c, open(epath, "w") as e:
    events = []
    for i in range(n):
        cid = "c%06d" % i
        row = {"id": cid, "name": "Customer %d" % i, "phone": "+86138%08d" % i, "city": rnd.choice(cities),
               "timezone": rnd.choice(zones),
               "birthday": "%04d-%02d-%02d" % (rnd.randint(1960, 2004), rnd.randint(1, 12), rnd.randint(1, 28))}
        c.write(json.dumps(row) + "\n")
        t = start + rnd.randint(0, 60 * 86400)
        for k in range(rnd.choice([0, 1, 1, 2, 3, 5])):
            t += rnd.randint(5, 120) * 86400
            if t > start + 360 * 86400:
                break
            total = rnd.choice([59, 120, 399, 1200, 4000, 26000])
            order = "o%s-%d" % (cid, k)   # a shop's order.paid names its order, as shopping_care reads it
            events.append({"type": "order.paid", "customer": cid, "at": t, "total": total, "id": order,
                           "order": order})
            events.append({"type": "page.view", "customer": cid, "at": t - rnd.randint(60, 7200)})
        if rnd.random() < 0.05:
            events.append({"type": "unsubscribe", "customer": cid, "channel": "sms",
                           "at": start + rnd.randint(0, 300 * 86400)})
    events.append({"type": "weather.alert", "city": "Hangzhou", "kind": "storm", "at": start + 200 * 86400})
    events.sort(key=lambda ev: ev["at"])
    for ev in events:
        e.write(json.dumps(ev) + "\n")
PY

# SIMULATE_SHOW (make bench): the run's own wall time, CPU and peak RSS too
timed=
[ -n "${SIMULATE_SHOW:-}" ] && [ -x /usr/bin/time ] && timed="/usr/bin/time -o $tmp/time -f %e,%U,%M"
$timed "$TEND" simulate "$tmp/shop" --days 365 --start 2026-01-01T00:00:00Z --customers "$tmp/customers.ndjson" \
  --events "$tmp/events.ndjson" --messages "$tmp/messages.ndjson" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] || fail "tend simulate exited $rc"
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$tmp/err" >/dev/null; then
  fail "sanitizer output:"; sed 's/^/    /' "$tmp/err" >&2
fi
for want in "contact load by channel and day" "policy audit" \
            "marketing sent in quiet hours      0" "sends over a cap                   0" \
            "marketing sent after an opt-out    0" "deferred, due, never delivered     0"; do
  grep -qF "$want" "$tmp/out" || fail "the report lacks '$want'"
done
grep -q '^  ok$' "$tmp/out" || fail "the audit is not ok"
# every journey of the library sent something over the year
for tpl in month_gift birthday_eve mid_autumn_coupon spring_festival_coupon mid_autumn_card; do
  grep -q "\"template\":\"$tpl\"" "$tmp/messages.ndjson" || fail "no $tpl message in --messages"
done
# one line per outbox row, each with the fields and a local time with an offset
"$PY" - "$tmp/messages.ndjson" "$tmp/out" <<'PY' || fail "--messages is not what the report counts"
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = {"customer", "journey", "template", "channel", "category", "status", "at", "local"}
assert rows and all(set(r) == keys for r in rows), "fields"
assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)$", r["local"]) for r in rows), "local"
report = open(sys.argv[2]).read()
m = re.search(r"(\d+) messages sent", report)
assert m and int(m.group(1)) == sum(r["status"] == "sent" for r in rows), "sent count"
# no message of the library fails (a template that cannot render fails its send)
failed = [r for r in rows if r["status"] == "failed"]
assert not failed, "%d failed messages, first %r" % (len(failed), failed[0])
# a marketing message never leaves in quiet hours, in the customer's own time
for r in rows:
    if r["category"] == "marketing" and r["status"] == "sent":
        hhmm = r["local"][11:16]
        assert "08:30" <= hhmm < "21:30", r
PY
# a day where a cap defers more than 10% of the sends is flagged
mkdir "$tmp/capped"
cat >"$tmp/capped/tend.lua" <<'LUA'
return { timezone = "UTC", quiet_hours = false, caps = { sms = { day = 1 } } }
LUA
cat >"$tmp/capped/poke.lua" <<'LUA'
template "offer" { category = "marketing", on_cap = "defer", sms = "offer" }
journey "poke" { on = "poke", run = function(c) send("sms", c, "offer") end }
LUA
printf '{"id":"c1"}\n{"id":"c2"}\n' >"$tmp/capped/customers.ndjson"
printf '%s\n' '{"type":"poke","customer":"c1","at":"2026-03-02T10:00:00Z"}' \
  '{"type":"poke","customer":"c1","at":"2026-03-02T11:00:00Z"}' \
  '{"type":"poke","customer":"c2","at":"2026-03-02T11:00:00Z"}' >"$tmp/capped/events.ndjson"
"$TEND" simulate "$tmp/capped" --days 3 --start 2026-03-02T00:00:00Z --customers "$tmp/capped/customers.ndjson" \
  --events "$tmp/capped/events.ndjson" >"$tmp/capped/out" 2>&1 || fail "tend simulate (capped) failed"
grep -q '^2026-03-02   sms                3              1  ! caps defer more than 10%$' "$tmp/capped/out" ||
  fail "the capped day is not flagged: $(cat "$tmp/capped/out")"
grep -q '^1 day where caps defer more than 10% of the messages$' "$tmp/capped/out" || fail "no count of flagged days"
grep -q '^  ok$' "$tmp/capped/out" || fail "the capped run's audit is not ok"

if [ -n "${SIMULATE_SHOW:-}" ]; then
  sed -n '/^policy audit/,$p' "$tmp/out"
  [ -s "$tmp/time" ] && tail -1 "$tmp/time" | awk -F, '{ printf "tend simulate: %s s wall, %s s CPU, max RSS %.0f MB\n", $1, $2, $3 / 1024 }'
fi
if [ "$failures" -gt 0 ]; then
  sed 's/^/    /' "$tmp/out" | tail -30 >&2
  echo "simulate_test: $failures failure(s)" >&2
  exit 1
fi
echo "simulate_test: ok ($N customers, a year)"
