/* Unit tests for runtime/util.c's integer text (util_int_text), which
 * writes two digits a division: every length, both signs, the ends of the
 * range, against printf's "%lld". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static void check(int64_t v)
{
    char got[24], want[24];
    memset(got, 'x', sizeof got);
    size_t n = util_int_text(got, v);
    snprintf(want, sizeof want, "%" PRId64, v);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
}

static void test_int_text_edges(void **state)
{
    (void)state;
    check(0);
    check(INT64_MAX);
    check(INT64_MIN);
    check(INT64_MIN + 1);
    check(1767225600);
    check(-1767225600);
    /* every length: 10^k - 1, 10^k, 10^k + 1, negated too */
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        for (int64_t d = -1; d <= 1; d++) {
            check(p + d);
            check(-(p + d));
        }
    }
    for (int64_t v = -1000; v <= 1000; v++)
        check(v);
}

static void test_int_text_sampled(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ULL;   /* xorshift64: a fixed, spread sample */
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check((int64_t)x >> (x % 64));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_text_edges),
        cmocka_unit_test(test_int_text_sampled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
