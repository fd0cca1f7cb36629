#!/bin/sh
# products_test — the product catalog and order lines end to end:
# `tend import --products` (CSV and NDJSON, bad rows rejected by file:line,
# good ones kept), PUT/GET /v1/products/{sku} over HTTP (bearer token, JSON
# errors, absent fields kept), and order events with items through POST
# /v1/events (a bad item rejects the event naming it; good lines reach the
# bought segment).
#   TEND=bin/tend sh tests/cli/products_test.sh
# Needs curl for the HTTP part; skips it (exit 0) without. Every wait is bounded.
: "${TEND:?set TEND to the tend binary}"
case $TEND in /*) ;; *) TEND=$(pwd)/$TEND ;; esac

tmp=$(mktemp -d) || exit 1
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

failures=0
fail() { echo "products_test: FAIL: $*" >&2; failures=$((failures + 1)); }
sanitizer_check() {   # sanitizer_check FILE
  if grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$1" >/dev/null; then
    fail "sanitizer output in $1:"
    cat "$1" >&2
  fi
}

dir=$tmp/shop
mkdir "$dir"
cat >"$dir/segments.lua" <<'EOF'
segment "coffee_buyers" { where = { bought = { category = "coffee", within = days(30) } } }
segment "no_beans" { where = { not_(bought{ sku = "B1" }) } }
EOF

# --- import --products ---------------------------------------------------------
cat >"$tmp/products.csv" <<'EOF'
sku,name,category,price,usage_days,related
B1,Beans,coffee,59,10,F1|F2
B2,Tea,tea,20,abc,
,Nameless,tea,1,1,
F1,Filter,coffee,5,,
EOF
(cd "$tmp" && "$TEND" import --dir "$dir" --products products.csv) >"$tmp/out" 2>"$tmp/err"
st=$?
sanitizer_check "$tmp/err"
[ "$st" = 1 ] || fail "import --products with bad rows: exit $st, expected 1"
[ "$(cat "$tmp/out")" = "imported 2, updated 0, rejected 2" ] || fail "import --products: stdout $(cat "$tmp/out")"
grep -q "^products.csv:3: field 'usage_days' must be a positive number" "$tmp/err" ||
  fail "a bad usage_days is not rejected by file:line: $(cat "$tmp/err")"
grep -q "^products.csv:4: field 'sku' is empty" "$tmp/err" || fail "an empty sku is not rejected by line: $(cat "$tmp/err")"
[ "$(grep -c . "$tmp/err")" = 2 ] || fail "import --products: expected 2 rejections: $(cat "$tmp/err")"

printf '%s\n%s\n%s\n' '{"sku":"N1","usage_days":-1}' '{"sku":"N2","usage_days":3,"related":["B1"]}' \
  '{"sku":"B1","price":49}' >"$tmp/products.ndjson"
(cd "$tmp" && "$TEND" import --dir "$dir" --products products.ndjson) >"$tmp/out" 2>"$tmp/err"
[ "$(cat "$tmp/out")" = "imported 1, updated 1, rejected 1" ] || fail "import --products NDJSON: stdout $(cat "$tmp/out")"
grep -q "^products.ndjson:1: field 'usage_days' must be a positive number of days (how long one unit lasts), got -1" \
  "$tmp/err" || fail "NDJSON usage_days -1 not rejected by line: $(cat "$tmp/err")"
"$TEND" import --dir "$dir" "$tmp/products.csv" >"$tmp/out" 2>"$tmp/err"
grep -q "unknown column 'sku'" "$tmp/err" || fail "a product file without --products is not refused as customers: $(cat "$tmp/err")"

# --- the server ------------------------------------------------------------------
if ! command -v curl >/dev/null 2>&1; then
  echo "products_test: SKIP of the HTTP part: curl is not installed"
  [ "$failures" = 0 ] && exit 0 || exit 1
fi
: >"$tmp/server.err"
attempt=0
url=""
while [ $attempt -lt 8 ] && [ -z "$url" ]; do
  attempt=$((attempt + 1))
  r=$(awk 'BEGIN { srand(); printf "%d", rand() * 20000 }')
  port=$((30000 + (r + $$ * 13 + attempt * 307) % 25000))
  printf 'return { listen = "127.0.0.1:%s", quiet_hours = false }\n' "$port" >"$dir/tend.lua"
  TEND_API_TOKEN=secret "$TEND" run "$dir" >"$tmp/server.out" 2>>"$tmp/server.err" &
  pid=$!
  i=0
  while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do   # 15 s: a sanitizer build starts slowly
    if [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null)" = '{"ok":true}' ]; then
      url=http://127.0.0.1:$port
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  if [ -z "$url" ]; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
  fi
done
[ -n "$url" ] || { fail "tend run did not start: $(tail -n 20 "$tmp/server.err")"; exit 1; }

req() {   # req METHOD PATH [curl options]: with the token; sets code and body
  m=$1 p=$2
  shift 2
  code=$(curl -s --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$m" \
              -H 'Authorization: Bearer secret' "$@" "$url$p")
  body=$(cat "$tmp/body" 2>/dev/null)
}
expect() { [ "$code" = "$1" ] || fail "$2: expected HTTP $1, got $code: $body"; }
contains() { case $body in *"$1"*) ;; *) fail "$2: expected '$1' in: $body" ;; esac; }

code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' "$url/v1/products/B1")
[ "$code" = 401 ] || fail "GET /v1/products/B1 without a token: expected 401, got $code"

req GET /v1/products/B1
expect 200 "GET an imported product"
contains '"name":"Beans"' "GET /v1/products/B1"
contains '"price":49' "GET /v1/products/B1 (updated by the NDJSON import)"
contains '"usage_days":10' "GET /v1/products/B1 (kept by the NDJSON import)"
contains '"related":["F1","F2"]' "GET /v1/products/B1"
req GET /v1/products/NOPE
expect 404 "GET an unknown product"
contains '"error":' "GET an unknown product (a JSON error)"

req PUT /v1/products/T1 --data '{"name":"Green tea","usage_days":"often"}'
expect 400 "PUT a product with a bad usage_days"
contains "usage_days" "PUT a bad usage_days (names the field)"
req GET /v1/products/T1
expect 404 "a rejected product is not stored"
req PUT /v1/products/T1 --data '{"name":"Green tea","category":"tea","usage_days":20,"related":["B1"]}'
expect 201 "PUT a new product"
req PUT /v1/products/T1 --data '{"price":30}'
expect 200 "PUT an existing product"
req GET /v1/products/T1
contains '"name":"Green tea"' "PUT keeps the fields it does not give"
contains '"price":30' "PUT writes the fields it gives"
req PUT /v1/products/T1 --data '{"sku":"T2"}'
expect 400 "PUT with a different sku in the body"
req PUT /v1/products/T1 --data '{"name":'
expect 400 "PUT malformed JSON"
req DELETE /v1/products/T1
expect 405 "DELETE a product"

# --- order events with items ---------------------------------------------------
req POST /v1/events --data '{"type":"order.paid","customer":"c1","id":"p1","order":"o1","items":[{"sku":"B1","qty":1,"price":49,"category":"coffee"},{"qty":2}]}'
expect 400 "an order with an item without sku"
contains "item 2: field 'sku' is required" "an item without sku (names the item)"
contains "p1" "an item without sku (names the event)"
req POST /v1/events --data '{"type":"order.paid","customer":"c1","id":"p2","items":[{"sku":"B1","qty":"two"}]}'
expect 400 "an item with a non-numeric qty"
contains "field 'qty'" "a non-numeric qty (names the field)"

req POST /v1/events --data '{"type":"order.paid","customer":"c1","id":"p3","order":"o3","total":49,"items":[{"sku":"B1","qty":1,"price":49,"category":"coffee"}]}'
expect 202 "an order with good items"
req POST /v1/events --data '{"type":"order.paid","customer":"c2","id":"p4","order":"o4","total":20,"items":[{"sku":"T1","qty":1,"price":20,"category":"tea"}]}'
expect 202 "another order with good items"
i=0
while [ $i -lt 100 ]; do
  req GET /v1/segments/coffee_buyers
  case $body in *'"count":1'*) break ;; esac
  sleep 0.1
  i=$((i + 1))
done
contains '"count":1' "the bought segment after the orders"
contains '"c1"' "the bought segment names its customer"
req GET /v1/segments/no_beans
contains '"count":1' "not_(bought{sku}) after the orders"
contains '"c2"' "not_(bought{sku}) names the customer who did not buy it"

kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""
sanitizer_check "$tmp/server.err"
[ "$failures" = 0 ] || exit 1
echo "products_test: ok"
