#!/bin/sh
# Email end to end: tend run renders a Liquid email (subject, text with a
# long Chinese paragraph and a loop, HTML) and delivers it through libcurl to
# a real SMTP server (aiosmtpd on 127.0.0.1); Python's email parser checks the
# raw message (display-name From, envelope sender, folded encoded-word
# subject, 7-bit transfer encodings, multipart/alternative, Message-ID,
# List-Unsubscribe one-click on marketing only). Then the unsubscribe link:
# a GET only shows a page, a forged token is refused, the POST (no bearer
# token) unsubscribes, and the next marketing email is `suppressed`.
#   TEND=bin/tend sh tests/cli/email_test.sh
# Needs curl and python3 with aiosmtpd; skips (exit 0) without them.
TEND=${TEND:-bin/tend}
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac
[ -x "$TEND" ] || { echo "email_test: TEND=$TEND is not an executable" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
if ! command -v curl >/dev/null 2>&1 || ! "$PY" -c 'import aiosmtpd' 2>/dev/null; then
  echo "email_test: SKIP: needs curl and python3-aiosmtpd (nothing was tested)"
  exit 0
fi

tmp=$(mktemp -d) || { echo "email_test: mktemp -d failed" >&2; exit 1; }
pid="" sink=""
cleanup() {
  for p in $pid $sink; do
    if kill -0 "$p" 2>/dev/null; then
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "email_test: FAIL: $*" >&2; failures=$((failures + 1)); }
die() {
  fail "$*"
  [ -f "$tmp/server.err" ] && { echo "--- server stderr:" >&2; tail -n 30 "$tmp/server.err" >&2; }
  exit 1
}

# --- the SMTP server ------------------------------------------------------------
mkdir "$tmp/mail"
"$PY" "$here/smtp_sink.py" "$tmp/mail" 2>"$tmp/sink.err" &
sink=$!
i=0
while [ ! -f "$tmp/mail/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -f "$tmp/mail/port" ] || die "the SMTP sink did not start: $(cat "$tmp/sink.err")"
smtp_port=$(cat "$tmp/mail/port")

# --- the shop -------------------------------------------------------------------
dir=$tmp/shop
mkdir "$dir"
long=""
i=0
while [ $i -lt 400 ]; do long="$long春"; i=$((i + 1)); done   # 1,200 bytes, no line break
cat >"$dir/mail.lua" <<EOF
template "news" { category = "marketing",
  email = {
    subject = "{{ name }}，春季新品上市：为您挑选的好物，限时优惠，先到先得 — spring arrivals picked for you",
    body = "{{ name }}，您好！\\n$long\\n{% for i in items %}- {{ i.name }} {{ i.price | money }}\\n{% endfor %}",
    html = "<p>{{ name }}，您好！</p><ul>{% for i in items %}<li>{{ i.name }} {{ i.price | money }}</li>{% endfor %}</ul>",
  },
}
template "receipt" { category = "transactional",
  email = { subject = "Order {{ order }}", body = "Thanks for order {{ order }}." } }

journey "news" {
  on = "promo",
  run = function(c, ev)
    local r = send("email", c, "news", { items = ev.items })
    c:set{ ["attrs.news_" .. ev.n] = r.status }
  end,
}
journey "receipt" {
  on = "order.paid",
  run = function(c, ev) send("email", c, "receipt", { order = ev.order }) end,
}
EOF

random_port() {
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  echo $((30000 + (r + $$ * 7 + ${1:-0} * 211) % 25000))
}

: >"$tmp/server.err"
attempt=0 up=0
while [ $attempt -lt 8 ] && [ $up = 0 ]; do
  attempt=$((attempt + 1))
  port=$(random_port $attempt)
  cat >"$dir/tend.lua" <<EOF
return {
  listen = "127.0.0.1:$port",
  quiet_hours = false,
  caps = false,
  channels = {
    email = { type = "smtp", url = "smtp://127.0.0.1:$smtp_port",
              from = "关爱团队 Care <care@shop.test>", envelope_from = "bounces@shop.test" },
  },
}
EOF
  url=http://127.0.0.1:$port
  TEND_API_TOKEN=secret "$TEND" run "$dir" >>"$tmp/server.out" 2>>"$tmp/server.err" &
  pid=$!
  i=0
  while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do
    if [ "$(curl -s --max-time 2 "$url/healthz" 2>/dev/null)" = '{"ok":true}' ]; then up=1; break; fi
    sleep 0.1
    i=$((i + 1))
  done
  if [ $up = 0 ]; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    grep 'cannot listen' "$tmp/server.err" >/dev/null || die "tend run did not start"
  fi
done
[ $up = 1 ] || die "tend run found no free port in 8 tries"

api() {   # api METHOD PATH [curl options] → $code, $body (with the token)
  m=$1 p=$2
  shift 2
  code=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$m" \
              -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body" 2>/dev/null)
}
wait_mail() {   # wait_mail N: until N messages arrived (15 s at most)
  i=0
  while [ "$(ls "$tmp/mail" | grep -c '\.json$')" -lt "$1" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
  [ "$(ls "$tmp/mail" | grep -c '\.json$')" -ge "$1" ] || die "expected $1 message(s) at the SMTP server; got $(ls "$tmp/mail" | grep -c '\.json$')"
}
wait_attr() {   # wait_attr KEY VALUE: until the customer's attrs.KEY = VALUE (15 s at most)
  i=0
  while [ $i -lt 150 ]; do
    api GET /v1/customers/c1
    case $body in *"\"$1\":\"$2\""*) return 0 ;; esac
    sleep 0.1
    i=$((i + 1))
  done
  fail "attrs.$1 never became '$2'; the customer: $body"
}

api PUT /v1/customers/c1 -d '{"name":"王小明","email":"ming@example.test"}'
[ "$code" = 201 ] || die "PUT customer: $code $body"
# an address with a line break is refused at entry
api PUT /v1/customers/c2 -d '{"name":"x","email":"a@b.test\r\nBcc: all@b.test"}'
[ "$code" = 400 ] || fail "an email with CR/LF must be refused (400), got $code $body"
case $body in *"not an email address"*) ;; *) fail "the refusal must say why: $body" ;; esac

items='[{"name":"<b>洗发水</b>","price":59},{"name":"护发素","price":1234.5}]'
api POST /v1/events -d "{\"type\":\"promo\",\"customer\":\"c1\",\"n\":1,\"items\":$items}"
[ "$code" = 202 ] || die "POST promo: $code $body"
wait_mail 1
api POST /v1/events -d '{"type":"order.paid","customer":"c1","order":"A1","total":10}'
wait_mail 2

# --- the raw messages, through a real parser -----------------------------------
if ! "$PY" "$here/check_mail.py" "$tmp/mail" news receipt >"$tmp/check.out" 2>&1; then
  fail "the messages as Python's email package reads them:
$(cat "$tmp/check.out")"
  exit 1
fi
link=$(tail -n 1 "$tmp/check.out")
case $link in "$url/v1/unsubscribe/"*) ;; *) die "the unsubscribe link '$link' does not point at tend run ($url)" ;; esac

# --- the unsubscribe link ---------------------------------------------------------
# a person opening it gets a page with a button; nothing changes yet
code=$(curl -s --max-time 10 -o "$tmp/page" -w '%{http_code}' "$link")
[ "$code" = 200 ] || fail "GET of the unsubscribe link: $code"
grep -q '<form method="post">' "$tmp/page" || fail "the unsubscribe page has no POST button: $(cat "$tmp/page")"
api POST /v1/events -d "{\"type\":\"promo\",\"customer\":\"c1\",\"n\":2,\"items\":[]}"
wait_attr news_2 queued
wait_mail 3

# a forged token (another signature) is refused, without the bearer token too
forged=$(printf '%s' "$link" | sed 's/.$/0/')
[ "$forged" != "$link" ] || forged=$(printf '%s' "$link" | sed 's/.$/1/')
code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' -X POST "$forged")
[ "$code" = 404 ] || fail "a forged unsubscribe token must be refused (404), got $code $(cat "$tmp/body")"

# RFC 8058: a POST with List-Unsubscribe=One-Click, no Authorization header
code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' -X POST -d 'List-Unsubscribe=One-Click' "$link")
[ "$code" = 200 ] || fail "POST of the unsubscribe link: $code $(cat "$tmp/body")"
grep -q '"unsubscribed":true' "$tmp/body" || fail "the unsubscribe answer: $(cat "$tmp/body")"

api POST /v1/events -d "{\"type\":\"promo\",\"customer\":\"c1\",\"n\":3,\"items\":[]}"
wait_attr news_3 suppressed
# transactional mail still goes
api POST /v1/events -d '{"type":"order.paid","customer":"c1","order":"A2","total":10}'
wait_mail 4
sleep 0.3
[ "$(ls "$tmp/mail" | grep -c '\.json$')" = 4 ] || fail "only the receipt may arrive after the unsubscribe"

kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""
if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$tmp/server.err" >/dev/null; then
  fail "sanitizer output on tend run's stderr:"
  sed 's/^/    /' "$tmp/server.err" >&2
fi
if [ "$failures" -gt 0 ]; then
  echo "email_test: $failures failure(s)" >&2
  exit 1
fi
echo "email_test: ok"
