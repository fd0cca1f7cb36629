/* The lift interval against Newcombe's published figures (Statistics in
 * Medicine 17, 873-890, 1998, table II, method 10: the hybrid score
 * interval), including the edge cases where the normal approximation fails:
 * a zero count, and small groups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "lift.h"

static void check(long long x1, long long n1, long long x2, long long n2, double d, double lo, double hi)
{
    double diff;
    struct lift_interval ci;
    assert_int_equal(lift_newcombe(x1, n1, x2, n2, LIFT_Z95, &diff, &ci), 0);
    assert_true(fabs(diff - d) < 5e-5);
    assert_true(fabs(ci.low - lo) < 5e-5);
    assert_true(fabs(ci.high - hi) < 5e-5);
}

static void newcombes_table(void **state)
{
    (void)state;
    check(56, 70, 48, 80, 0.2000, 0.0524, 0.3339);
    check(9, 10, 3, 10, 0.6000, 0.1705, 0.8090);
    check(5, 56, 0, 29, 0.0893, -0.0381, 0.1926);
}

static void wilson_stays_inside_zero_and_one(void **state)
{
    (void)state;
    struct lift_interval w = lift_wilson(0, 10, LIFT_Z95);
    assert_true(fabs(w.low) < 1e-12 && w.high > 0.25 && w.high < 0.32);   /* 0.2775 */
    w = lift_wilson(10, 10, LIFT_Z95);
    assert_true(fabs(w.high - 1) < 1e-12 && w.low > 0.68 && w.low < 0.75);
}

static void an_empty_group_has_no_lift(void **state)
{
    (void)state;
    double d = 7;
    struct lift_interval ci = {7, 7};
    assert_int_equal(lift_newcombe(1, 10, 0, 0, LIFT_Z95, &d, &ci), -1);
    assert_true(d == 7 && ci.low == 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(newcombes_table),
        cmocka_unit_test(wilson_stays_inside_zero_and_one),
        cmocka_unit_test(an_empty_group_has_no_lift),
    };
    return cmocka_run_group_tests_name("lift", tests, NULL, NULL);
}
