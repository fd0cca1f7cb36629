#!/bin/sh
# tend check: load errors name file:line; lint findings (links glued to text,
# blocked words, over-long SMS, sends missing a placeholder, unknown
# templates); the summary line; exit 1 on errors, 0 on warnings only.
#   TEND=bin/tend sh tests/cli/check_test.sh
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "check_test: TEND=$TEND is not an executable" >&2; exit 1; }

tmp=$(mktemp -d) || { echo "check_test: mktemp -d failed" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
cd "$tmp" || exit 1

failures=0
fail() { echo "check_test: FAIL: $*" >&2; failures=$((failures + 1)); }

# run DIR: tend check DIR → $out, $err, $rc; sanitizer reports are failures.
run() {
  "$TEND" check "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/err" >/dev/null; then
    fail "tend check $*: sanitizer output on stderr:"
    sed 's/^/    /' "$tmp/err" >&2
  fi
}

# has TEXT [what]: $out contains the fixed string TEXT.
has() {
  case $out in *"$1"*) ;; *) fail "${2:-tend check}: expected the output to contain '$1'; got:
$out" ;; esac
}
hasnt() {
  case $out in *"$1"*) fail "${2:-tend check}: the output should not contain '$1'; got:
$out" ;; esac
}
status() {
  [ "$rc" = "$1" ] || fail "$2: expected exit status $1, got $rc; output:
$out
stderr: $(cat "$tmp/err")"
}

# --- (a) a good directory -----------------------------------------------------
mkdir good
cat >good/care.lua <<'EOF'
template "paid" { category = "transactional", sms = "{{ name | default: 'friend' }}, we got your order {{order}}." }

journey "paid" {
  on = "order.paid",
  run = function(c, ev)
    send("sms", c, "paid", { order = ev.order })
  end,
}
EOF
run good
status 0 "a good directory"
printf '%s\n' "$out" | grep -E '^good: 0 errors, [0-9]+ warnings?$' >/dev/null ||
  fail "a good directory: expected the summary line 'good: 0 errors, N warnings'; got:
$out"
[ ! -e good/tend.db ] || fail "tend check must not create a store (good/tend.db exists)"

# --- (b) a syntax error ---------------------------------------------------------
mkdir syntax
cat >syntax/broken.lua <<'EOF'
template "paid" { category = "transactional", sms = "hi" }

journey "paid" {
  on = "order.paid"
  run = function(c) end,
}
EOF
run syntax
status 1 "a syntax error"
has "broken.lua:5:" "a syntax error (line 5)"

# --- (c) runtime errors while declaring -----------------------------------------
mkdir decl
cat >decl/typo.lua <<'EOF'
template "paid" { category = "transactional", sms = "hi" }
journey "paid" {
  on = "order.paid",
  runn = function(c) end,
}
EOF
run decl
status 1 "an unknown key in a declaration"
printf '%s\n' "$out" | grep -E 'typo\.lua:[24]:' >/dev/null ||
  fail "an unknown key in a declaration: expected typo.lua:2: (the declaration) or :4: (the key); got:
$out"
has "runn" "an unknown key in a declaration (names the key)"

mkdir toplevel
cat >toplevel/oops.lua <<'EOF'
template "paid" { category = "transactional", sms = "hi" }
local settings = nil
local x = settings.retries
EOF
run toplevel
status 1 "an error in top-level code"
has "oops.lua:3:" "an error in top-level code"

# --- (d) lint findings ------------------------------------------------------------
long=""
i=0
while [ $i -lt 140 ]; do long="$long春"; i=$((i + 1)); done   # 140 UCS-2 units: 3 segments

mkdir lint
cat >lint/tend.lua <<'EOF'
return {
  channels = {
    sms = { type = "file", price = 0.05, per = "segment", blocked_words = { "free money" } },
  },
}
EOF
cat >lint/promo.lua <<EOF
template "link" { category = "marketing", sms = "点击https://x.cn/a领取" }
template "words" { category = "marketing", sms = "Get FREE MONEY now" }
template "long" { category = "marketing", sms = "$long" }
template "gift" { category = "marketing", sms = "{{ name | default: 'friend' }}: {{coupon.code}}" }

journey "promo" {
  on = "promo",
  run = function(c, ev)
    send("sms", c, "gift", { x = 1 })
    send("sms", c, "nosuch")
    send("sms", c, "gift", { coupon = { code = "A1" } })
  end,
}
EOF
run lint
status 1 "lint errors"
has "promo.lua:1:" "a link glued to Chinese text (file:line)"
has "https://x.cn/a" "a link glued to Chinese text (names the link)"
printf '%s\n' "$out" | grep 'promo.lua:1:' | grep 'error' | grep 'https://x.cn/a' >/dev/null ||
  fail "a link glued to Chinese text must be an error naming the link; got:
$out"
printf '%s\n' "$out" | grep 'promo.lua:2:' | grep 'error' | grep -i 'free money' >/dev/null ||
  fail "a blocked word of the channel must be an error at promo.lua:2 naming it; got:
$out"
printf '%s\n' "$out" | grep 'promo.lua:3:' | grep 'warning' | grep '3 segments' | grep '0.15' >/dev/null ||
  fail "an over-long SMS must be a warning at promo.lua:3 with '3 segments' and the cost 0.15; got:
$out"
printf '%s\n' "$out" | grep 'promo.lua:9:' | grep 'error' | grep "'coupon'" >/dev/null ||
  fail "a send missing {{coupon.code}} must be an error at promo.lua:9 naming 'coupon'; got:
$out"
printf '%s\n' "$out" | grep 'promo.lua:10:' | grep 'error' | grep 'nosuch' >/dev/null ||
  fail "a send to an unknown template must be an error at promo.lua:10 naming it; got:
$out"
hasnt "promo.lua:11:" "a send that passes coupon is fine"
# two for the link (before and after it), the blocked word, 'coupon', 'nosuch'
nerr=$(printf '%s\n' "$out" | sed -n 's/^lint: \([0-9][0-9]*\) errors\{0,1\}, [0-9][0-9]* warnings\{0,1\}$/\1/p')
[ -n "$nerr" ] && [ "$nerr" -ge 5 ] ||
  fail "lint: expected the summary 'lint: N errors, N warnings' with N >= 5 errors; got:
$out"

# only warnings: exit 0
mkdir warn
cp lint/tend.lua warn/tend.lua
cat >warn/long.lua <<EOF
template "long" { category = "marketing", sms = "$long" }
EOF
run warn
status 0 "only warnings"
has "long.lua:1:" "only warnings (file:line)"
printf '%s\n' "$out" | grep -E '^warn: 0 errors, 1 warning$' >/dev/null ||
  fail "only warnings: expected the summary 'warn: 0 errors, 1 warning'; got:
$out"

# --- (e) Liquid: v1 defaults, unknown filters and tags, rendered-sample length ----
mkdir v1
cat >v1/old.lua <<'EOF'
template "hi" { category = "transactional",
  sms = "Hi {{name|friend}}, your order {{order}}." }
EOF
run v1
status 1 "the v1 default form"
has "old.lua:1:" "the v1 default form (file:line)"
has "column 11 (byte 11)" "the v1 default form (where it breaks)"
has "write {{ name | default: \"friend\" }}" "the v1 default form (the fix)"

mkdir unknown
cat >unknown/f.lua <<'EOF'
template "hi" { category = "transactional", sms = "Hi {{ name | upcse }}" }
EOF
run unknown
status 1 "an unknown filter"
has "unknown filter 'upcse'" "an unknown filter (named)"
cat >unknown/f.lua <<'EOF'
template "hi" { category = "transactional",
  sms = "Hi {% if vip %}VIP{% endif %}\n{% case x %}{% endcase %}" }
EOF
run unknown
status 1 "an unknown tag"
has "line 2, column 4" "an unknown tag (line and column in the text)"
has "unknown tag 'case'" "an unknown tag (named)"

mkdir sample
cp lint/tend.lua sample/tend.lua
cat >sample/s.lua <<EOF
-- the raw text is short; what is sent is not: the sample's note is long
template "note" { category = "marketing", sms = "{{ note }} https://x.cn/r/{{ sku }} ok",
  sample = { note = "$long", sku = "A1" } }
-- a long raw text that renders short: the loop prints nothing for no items
template "items" { category = "marketing",
  sms = "Hi{% for i in items %}{{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }} {{ i.name }}{% endfor %}",
  sample = { items = {} } }
-- no sample: the default customer and stand-ins for what it lacks
template "gift" { category = "marketing", sms = "{{ name }}: {{ coupon.code }} https://x.cn/c/{{ coupon.code }}" }
EOF
run sample
status 0 "rendered-sample lint"
printf '%s\n' "$out" | grep 's.lua:2:' | grep 'warning' | grep '3 segments' >/dev/null ||
  fail "the length of the rendered sample (3 segments) must be a warning at s.lua:2; got:
$out"
hasnt "s.lua:5:" "a long loop that renders short is not over-long"
hasnt "s.lua:9:" "a placeholder inside a link is fine"
hasnt "needs a space" "a placeholder inside a link is fine"

# the directory may come from --dir as well
run --dir good
status 0 "tend check --dir DIR"

# an anniversary whose field holds no date in the store: a warning at the
# journey's line with the count and an example; the store is only read
mkdir dated
cat >dated/tend.lua <<'EOF'
return { timezone = "Asia/Shanghai" }
EOF
cat >dated/baby.lua <<'EOF'
template "hb" { category = "marketing", sms = "Happy birthday" }

journey "baby" {
  on = anniversary("attrs.baby_birthday", { at = "10:00", offset_days = -1 }),
  run = function(c) send("sms", c, "hb") end,
}
EOF
run dated
status 0 "an anniversary, no store yet"
hasnt "is not a date" "an anniversary, no store yet"
[ -e dated/tend.db ] && fail "tend check created the store"
printf '%s\n' '{"id":"c1","attrs":{"baby_birthday":"next may"}}' '{"id":"c2","attrs":{"baby_birthday":"2024-05-01"}}' \
  '{"id":"c3","attrs":{"baby_birthday":"2024-13-45"}}' >dated/customers.ndjson
(cd dated && "$TEND" import customers.ndjson >/dev/null 2>&1) || fail "import of the dated customers"
sum_before=$(cksum <dated/tend.db)
run dated
status 0 "malformed dates are a warning"
has "baby.lua:3: warning: journey 'baby': anniversary field 'attrs.baby_birthday' is not a date for 2 customers in" \
  "malformed dates in the store"
has "(e.g. 'c1': 'next may';" "malformed dates: an example"
[ "$(cksum <dated/tend.db)" = "$sum_before" ] || fail "tend check changed the store"
# --db (or TEND_DB) names the store to read instead
mkdir dated2 && cp dated/tend.lua dated/baby.lua dated2/
printf '%s\n' '{"id":"c9","attrs":{"baby_birthday":"someday"}}' >dated2/customers.ndjson
(cd dated2 && "$TEND" import customers.ndjson >/dev/null 2>&1) || fail "import of dated2"
run dated --db dated2/tend.db
status 0 "tend check --db"
has "is not a date for 1 customer in dated2/tend.db (e.g. 'c9': 'someday';" "tend check --db: the store named"
hasnt "next may" "tend check --db: only the store named"

# tend.lua's policy errors name the line of the value or setting
mkdir conf
echo 'template "hb" { category = "marketing", sms = "x" }' >conf/a.lua
printf 'return {\n  timezone = "Asia/Shanghai",\n  caps = { marketing = { day = 1 },\n    sms = { day = 2, fortnight = 1 } },\n}\n' >conf/tend.lua
run conf
status 1 "a cap with an unknown period"
has "tend.lua:4: setting 'caps.sms.fortnight' is not a period" "a cap with an unknown period: file:line"
printf 'return {\n  channels = { sms = { type = "capture",\n    window = { "10:00-11:00", "25:00-26:00" } } },\n}\n' >conf/tend.lua
run conf
status 1 "a bad window in tend.lua"
has "tend.lua:3: channel 'sms': window '25:00-26:00' is not" "a bad window in tend.lua: file:line"
printf 'return {\n  timezone = "UTC",\n  caps = { fax = { day = 1 } },\n}\n' >conf/tend.lua
run conf
status 1 "a cap on an unknown channel"
has "tend.lua:3: caps: 'fax' is neither a channel" "a cap on an unknown channel: file:line"
# branch loop2: the page cache's size is checked where it is set
printf 'return {\n  timezone = "UTC",\n  cache_mb = 0,\n}\n' >conf/tend.lua
run conf
status 1 "a page cache of 0 MiB"
has "tend.lua:3: setting 'cache_mb' must be 1 to 65536 (MiB)" "a page cache of 0 MiB: file:line"

# an audience table that does not compile is an error at the journey's line
# (a local_cron's would only show when its slot fires)
mkdir aud
cat >aud/a.lua <<'EOF'
template "hb" { category = "marketing", sms = "x" }

journey "j" { on = local_cron("0 9 * * *", { audience = { citty = "Shanghai" } }), run = function() end }
journey "k" { on = "go", audience = { orders_count = "many" }, run = function() end }
journey "m" { on = holiday("qixi", { audience = { city = "Shanghai" } }), run = function() end }
EOF
run aud
status 1 "a bad audience"
has "a.lua:3: error: journey 'j': audience: field 'citty' is not a customer field" "a local_cron audience"
has "a.lua:4: error: journey 'k': audience:" "a journey's audience"
hasnt "a.lua:5:" "a good holiday audience"

# the journey library and the examples, as shipped, check clean (what
# `make demo` and a user copying them start from)
ROOT=${TEND_ROOT:-}
if [ -n "$ROOT" ]; then
  mkdir library
  for f in "$ROOT"/scripts/*.lua; do case $f in *_test.lua) ;; *) cp "$f" library/ ;; esac; done
  cp "$ROOT/examples/demo/tend.lua" library/
  run library
  status 0 "tend check of scripts/ with the demo's tend.lua"
  has "0 errors" "the journey library"
  for ex in "$ROOT"/examples/*/; do
    [ -f "$ex/tend.lua" ] || continue
    run "$ex"
    status 0 "tend check $ex"
  done
fi

if [ "$failures" -gt 0 ]; then
  echo "check_test: $failures failure(s)" >&2
  exit 1
fi
echo "check_test: ok"
