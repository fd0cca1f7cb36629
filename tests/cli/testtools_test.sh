#!/bin/sh
# tend test's tools for finding out why: the failure's YAML diagnostics (the
# sim's failed instances and warn/error log), -k, t.skip, --junit, --coverage,
# escaped TAP names, a file that fails to load; the output read by Perl's
# TAP::Parser and the JUnit XML by Python's xml.etree.
#   TEND=bin/tend sh tests/cli/testtools_test.sh
NAME=testtools_test
. "$(dirname "$0")/lib.sh"

mkdir -p suite/journeys
cat >suite/journeys/gift.lua <<'EOF'
-- a gift with a typo in it
template "gift" { category = "transactional", sms = "{{ name | default: 'friend' }}: {{coupon}}" }

journey "gift" {
  on = "order.paid",
  run = function(c)
    local coupon = coupon_isue(c, { value = 20 })
    send("sms", c, "gift", { coupon = coupon })
  end,
}

journey "never" {
  on = "nothing.ever",
  run = function(c)
    send("sms", c, "gift", { coupon = "X" })
  end,
}
EOF
cat >suite/gift_test.lua <<'EOF'
local t = require "tend.test"

t.case("the gift # is sent\nat once", function()
  local s = t.sim{ scripts = { "journeys/gift.lua" } }
  s:customer{ id = "c1", name = "Ann" }
  s:event{ type = "order.paid", customer = "c1" }
  t.eq(#s:sent{ customer = "c1" }, 1)
end)

t.skip("not written yet", function() error("must not run") end)

t.case("arithmetic", function() t.eq(1 + 1, 2) end)
EOF
cat >suite/broken_test.lua <<'EOF'
local t = require "tend.test"
t.case("before the error", function() end)
local n = nil
print(n + 1)
EOF

# --- a failing case explains itself -------------------------------------------
run test suite
status 1 "a failing suite"
cp "$tmp/out" "$tmp/suite.tap"
has "$out" 'not ok 2 - suite/broken_test.lua' "a file failing at load is one failed case named after it"
has "$out" 'message: "suite/broken_test.lua:4: attempt to perform arithmetic' "the load error names file:line"
has "$out" 'not ok 3 - the gift \# is sent\nat once' "the other files still run; '#' and newline escaped"
has "$out" 'message: "suite/gift_test.lua:7: expected 1, got 0"' "the assertion"
has "$out" 'failed_instances:' "the sim's failed instances"
has "$out" 'journey: "gift"' "the failed instance's journey"
has "$out" 'customer: "c1"' "the failed instance's customer"
has "$out" "error: \"suite/journeys/gift.lua:7: unknown global 'coupon_isue'\"" "the real error, file:line"
has "$out" "log: |" "the sim's warn/error log"
has "$out" "error: instance 1 of 'gift' failed" "the sim's error log line"
has "$out" 'ok 4 - not written yet # SKIP' "t.skip"
hasnt "$out" 'must not run' "a skipped case does not run"
printf '%s\n' "$out" | tail -n 1 | grep -E '^2 passed, 2 failed, 1 skipped$' >/dev/null ||
  fail "summary line: expected '2 passed, 2 failed, 1 skipped'; got: $(printf '%s\n' "$out" | tail -n 1)"

# the report names only the sims of the failing case
mkdir scoped
cp suite/journeys/gift.lua scoped/gift.lua
cat >scoped/scope_test.lua <<'EOF'
local t = require "tend.test"
local keep
t.case("an earlier case whose sim failed an instance", function()
  keep = t.sim{ scripts = "gift.lua" }
  keep:customer{ id = "c1" }
  keep:event{ type = "order.paid", customer = "c1" }
end)
t.case("a later failing case", function()
  local s = t.sim{ scripts = "gift.lua" }
  t.eq(#s:sent{}, 1)
end)
t.case("a case failing on the shared sim", function()
  keep:customer{ id = "c2" }
  keep:event{ type = "order.paid", customer = "c2" }
  t.eq(#keep:sent{}, 1)
end)
EOF
run test scoped
status 1 "a later failing case"
has "$out" 'message: "scoped/scope_test.lua:10: expected 1, got 0"' "the later case's assertion"
second=$(printf '%s\n' "$out" | sed -n '/^not ok 2 /,/^ok \|^not ok 3 /p')
hasnt "$second" "failed_instances" "a case's report leaves out what failed before it"
third=$(printf '%s\n' "$out" | sed -n '/^not ok 3 /,$p')
has "$third" 'customer: "c2"' "a shared sim's failure during the case is reported"
hasnt "$third" 'customer: "c1"' "a shared sim's failure before the case is not"
has "$third" "error: instance 2 of 'gift' failed" "a shared sim's log since the case began"
hasnt "$third" "error: instance 1 of 'gift' failed" "a shared sim's log before the case is not"

# --- TAP::Parser reads it: plan, results, YAML, no TODO from the '#' ----------
if perl -MTAP::Parser -e 1 2>/dev/null; then
  tap=$(perl -MTAP::Parser -e '
    my $p = TAP::Parser->new({ source => do { local $/; <STDIN> } });
    my ($yaml, $todo) = (0, 0);
    while (my $r = $p->next) {
      $todo++ if $r->is_test && $r->has_todo;
      if ($r->is_yaml) {
        my $d = $r->data;
        $yaml++;
        print "yaml-at: $d->{at}\n";
        for my $i (@{ $d->{failed_instances} || [] }) { print "instance: $i->{journey} $i->{customer} $i->{error}\n" }
      }
    }
    printf "tests=%d passed=%d failed=%d skipped=%d todo=%d yaml=%d plan=%s errors=%d\n",
      $p->tests_run, scalar($p->passed), scalar($p->failed), scalar($p->skipped), $todo, $yaml, $p->plan,
      scalar($p->parse_errors);
    print "parse error: $_\n" for $p->parse_errors;' <"$tmp/suite.tap")
  has "$tap" "tests=5 passed=3 failed=2 skipped=1 todo=0 yaml=2 plan=1..5 errors=0" "TAP::Parser counts"
  has "$tap" "yaml-at: suite/gift_test.lua:7" "TAP::Parser reads the YAML block"
  has "$tap" "instance: gift c1 suite/journeys/gift.lua:7: unknown global 'coupon_isue'" "TAP::Parser reads the instances"
else
  fail "perl TAP::Parser is not available"
fi

# --- -k -----------------------------------------------------------------------
run test -k '^arith' suite/gift_test.lua
status 0 "-k selects the passing case only"
has "$out" 'ok 1 - arithmetic' "-k runs the matching case"
hasnt "$out" 'the gift' "-k leaves the others out"
run test -k 'gift|arith' suite/gift_test.lua
status 1 "-k with an alternation"
has "$out" "1 passed, 1 failed" "-k with an alternation (both cases)"
run test -k '(' suite
status 2 "-k with an invalid pattern"
has "$err" "-k '('" "-k with an invalid pattern names it"
[ -z "$out" ] || fail "-k invalid: nothing may run; got: $out"

# --- --junit ------------------------------------------------------------------
run test --junit "$tmp/junit.xml" suite
status 1 "--junit on a failing suite"
junit=$(/usr/bin/python3 - "$tmp/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
print("totals", root.get("tests"), root.get("failures"), root.get("skipped"))
for s in root.findall("testsuite"):
    print("suite", s.get("name"), s.get("tests"), s.get("failures"), s.get("skipped"))
    for c in s.findall("testcase"):
        f = c.find("failure")
        state = "failure " + f.get("message") if f is not None else ("skipped" if c.find("skipped") is not None else "ok")
        print("case", repr(c.get("name")), state)
        if f is not None and "coupon_isue" in (f.text or ""):
            print("failure text names the instance error")
EOF
) || fail "--junit: the XML does not parse: $(cat "$tmp/junit.xml")"
has "$junit" "totals 5 2 1" "--junit totals"
has "$junit" "suite suite/broken_test.lua 2 1 0" "--junit: one testsuite per file (broken)"
has "$junit" "suite suite/gift_test.lua 3 1 1" "--junit: one testsuite per file (gift)"
has "$junit" "case 'the gift # is sent\\nat once' failure suite/gift_test.lua:7: expected 1, got 0" "--junit failure with file:line"
has "$junit" "case 'not written yet' skipped" "--junit skipped"
has "$junit" "failure text names the instance error" "--junit failure text carries the diagnostics"
run test --junit /nonexistent-dir/junit.xml suite
status 2 "--junit to an unwritable path"
has "$err" "--junit /nonexistent-dir/junit.xml: No such file or directory" "--junit unwritable: the reason"

# --- --coverage -----------------------------------------------------------------
run test --coverage "$tmp/cov.info" suite/gift_test.lua
status 1 "--coverage on a failing file still writes the report"
cov=$(cat "$tmp/cov.info")
has "$cov" "SF:suite/journeys/gift.lua" "--coverage names the journey script"
hasnt "$cov" "gift_test.lua" "--coverage leaves the test files out"
has "$cov" "DA:7,1" "--coverage: the line that ran (the typo) once"
has "$cov" "DA:8,0" "--coverage: the send after the failure never ran"
has "$cov" "DA:15,0" "--coverage: the journey that never started"
hasnt "$cov" "DA:1," "--coverage: a comment is no code"
has "$cov" "end_of_record" "--coverage: lcov record"
mkdir covmiss
cat >covmiss/miss_test.lua <<'EOF'
local t = require "tend.test"
t.case("a wrong path", function() t.fails(function() t.sim{ scripts = "nope.lua" } end, "cannot read") end)
EOF
run test --coverage "$tmp/miss.info" covmiss
status 0 "--coverage with a script that never loaded"
[ -s "$tmp/miss.info" ] && fail "--coverage lists a script that never loaded: $(cat "$tmp/miss.info")"
run test --coverage /nonexistent-dir/cov.info suite
status 2 "--coverage to an unwritable path"
has "$err" "--coverage /nonexistent-dir/cov.info" "--coverage unwritable: names it"

run test --help
status 0 "tend test --help"
for o in -k --junit --coverage -v; do has "$out" "$o" "tend test --help lists $o"; done

finish
