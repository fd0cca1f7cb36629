/* Unit tests for runtime/validate.c: the rules every entry applies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "validate.h"

static void test_times(void **state)
{
    (void)state;
    char err[200];
    tend_time t = -7;
    assert_int_equal(validate_time_number(0, &t, err, sizeof err), 0);
    assert_int_equal(t, 0);
    assert_int_equal(validate_time_number(253402300799.0, &t, err, sizeof err), 0);
    assert_int_equal(t, VALIDATE_TIME_MAX);
    assert_int_equal(validate_time_number(1767225600.75, &t, err, sizeof err), 0);
    assert_int_equal(t, 1767225600);   /* the fraction is dropped */
    assert_int_equal(validate_time_number(253402300800.0, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z"));
    assert_int_equal(validate_time_number(-1, &t, err, sizeof err), -1);
    assert_int_equal(validate_time_number(1e300, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "time 1e+300"));
    assert_int_equal(validate_time_number(-1e300, &t, err, sizeof err), -1);
    assert_int_equal(validate_time_number(NAN, &t, err, sizeof err), -1);
    assert_int_equal(validate_time_number(INFINITY, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "finite"));

    assert_int_equal(validate_time_text("1970-01-01T00:00:00Z", &t, err, sizeof err), 0);
    assert_int_equal(t, 0);
    assert_int_equal(validate_time_text("9999-12-31T23:59:59Z", &t, err, sizeof err), 0);
    assert_int_equal(t, VALIDATE_TIME_MAX);
    assert_int_equal(validate_time_text("1970-01-01T07:59:59+08:00", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "is outside"));
    assert_int_equal(validate_time_text("9999-12-31T23:59:59-00:01", &t, err, sizeof err), -1);
    assert_int_equal(validate_time_text("-99999999999", &t, err, sizeof err), -1);
    assert_int_equal(validate_time_text("yesterday", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "must be epoch seconds or ISO-8601"));

    cJSON *j = cJSON_CreateTrue();
    assert_int_equal(validate_time_json(j, &t, err, sizeof err), -1);
    cJSON_Delete(j);
    j = cJSON_CreateNumber(1772416800);
    assert_int_equal(validate_time_json(j, &t, err, sizeof err), 0);
    assert_int_equal(t, 1772416800);
    cJSON_Delete(j);
}

static void test_utf8_and_text(void **state)
{
    (void)state;
    struct { const char *s; size_t bad; } cases[] = {
        {"plain", 5},
        {"\xe7\x8e\xb2\xe7\x8e\xb2", 6},       /* 玲玲 */
        {"\xf0\x9f\x8e\x81", 4},               /* U+1F381 */
        {"a\xff", 1},
        {"a\xc0\xaf", 1},                      /* overlong '/' */
        {"\xe0\x80\xaf", 0},                   /* overlong, 3 bytes */
        {"\xed\xa0\x80", 0},                   /* U+D800, a surrogate */
        {"\xf4\x90\x80\x80", 0},               /* above U+10FFFF */
        {"ab\xe7\x8e", 2},                     /* cut short */
        {"\x80", 0},                           /* a lone continuation byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(validate_utf8(cases[i].s, strlen(cases[i].s)), cases[i].bad);

    char err[120];
    assert_int_equal(validate_text("a\0b", 3, 0, err, sizeof err), -1);
    assert_string_equal(err, "contains a NUL byte (byte 2)");
    assert_int_equal(validate_text("a\r\nb", 4, 0, err, sizeof err), 0);
    assert_int_equal(validate_text("a\r\nb", 4, VALIDATE_SINGLE_LINE, err, sizeof err), -1);
    assert_string_equal(err, "contains a line break (byte 2)");
    assert_int_equal(validate_text("a\tb", 3, VALIDATE_SINGLE_LINE, err, sizeof err), -1);
    assert_string_equal(err, "contains a control character (byte 2)");
    assert_int_equal(validate_text("x\xff", 2, 0, err, sizeof err), -1);
    assert_string_equal(err, "invalid UTF-8 at byte 2");

    char buf[16];
    assert_string_equal(validate_printable("a\xff\n\xe7\x8e\xb2", 6, buf, sizeof buf), "a??\xe7\x8e\xb2");
    assert_string_equal(validate_printable("\xe7\x8e\xb2\xe7\x8e\xb2", 6, buf, 5), "\xe7\x8e\xb2");
}

static void test_email(void **state)
{
    (void)state;
    const char *good[] = {"ann@example.test", "ling.ling+care@shop.example.cn", "a_b-c@x-y.example",
                          "o'brien@shop.example", "\xe7\x8e\xb2@\xe4\xbe\x8b.example"};
    const char *bad[] = {"not-an-email", "@shop.example", "ann@", "ann@localhost", "a@b@shop.example",
                         "ann @shop.example", "ann@shop .example", ".ann@shop.example", "ann.@shop.example",
                         "a..b@shop.example", "ann@-shop.example", "ann@shop-.example", "ann@shop..example",
                         "ann@shop.example.", "ann@shop.example\r\nBcc: evil@attacker.example",
                         "\"quoted\"@shop.example", "ann@[127.0.0.1]", "a\xff@shop.example"};
    char err[200];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (validate_email(good[i], err, sizeof err) != 0)
            fail_msg("%s refused: %s", good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (validate_email(bad[i], err, sizeof err) == 0)
            fail_msg("%s accepted", bad[i]);
    char longest[300];
    memset(longest, 'a', 64);
    snprintf(longest + 64, sizeof longest - 64, "@shop.example");
    assert_int_equal(validate_email(longest, err, sizeof err), 0);
    memset(longest, 'a', 65);
    snprintf(longest + 65, sizeof longest - 65, "@shop.example");
    assert_int_equal(validate_email(longest, err, sizeof err), -1);
}

/* n nested arrays around 1 */
static char *nested(int n, char *buf)
{
    memset(buf, '[', (size_t)n);
    buf[n] = '1';
    memset(buf + n + 1, ']', (size_t)n);
    buf[2 * n + 1] = 0;
    return buf;
}

static void test_json_text(void **state)
{
    (void)state;
    char err[300], buf[300];
    nested(JSON_MAX_DEPTH, buf);
    assert_int_equal(validate_json_text(buf, strlen(buf), JSON_MAX_DEPTH, err, sizeof err), 0);
    nested(JSON_MAX_DEPTH + 1, buf);
    assert_int_equal(validate_json_text(buf, strlen(buf), JSON_MAX_DEPTH, err, sizeof err), -1);
    assert_string_equal(err, "nested too deep (limit 32) at byte 33");

    const char *text = "{\"a\":[1,{\"b\":\"x\\u0000\"}]}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), -1);
    assert_string_equal(err, "field 'a[1].b': contains a NUL character (\\u0000 at byte 16)");
    text = "{\"a\":\"\\\\u0000 is six characters\"}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), 0);
    text = "{\"ok\":1,\"total\":1e400}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), -1);
    assert_string_equal(err, "field 'total': number 1e400 is out of range");
    text = "{\"ok\":-1e308,\"x\":1e-400}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), 0);
    text = "{\"name\":\"B\xc0\xaf\"}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), -1);
    assert_string_equal(err, "field 'name': invalid UTF-8 at byte 11");
    text = "{\"n\xff\":1}";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), -1);
    assert_string_equal(err, "invalid UTF-8 at byte 4");
    text = "[\"\xe7\x8e\xb2\"]";
    assert_int_equal(validate_json_text(text, strlen(text), 32, err, sizeof err), 0);

    /* json_parse says the same, before cJSON sees the text */
    char deep[4100];
    nested(2000, deep);
    assert_null(json_parse(deep, strlen(deep), err, sizeof err));
    assert_string_equal(err, "nested too deep (limit 32) at byte 33");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_utf8_and_text),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_json_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
