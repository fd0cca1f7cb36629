/* Unit tests for json_tree_fast (runtime/json.c): for every text it takes,
 * the tree is the one cJSON's parser builds (types, valueint, the exact
 * double, strings, keys, order, list links); it declines what it does not
 * read exactly (exponents, 16+ digits, odd blanks, bad text), and takes the
 * plain event texts it exists for. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* 1 when a and b are the same tree, node for node. */
static int same_tree(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->valueint != b->valueint || memcmp(&a->valuedouble, &b->valuedouble, sizeof(double)))
        return 0;
    if ((a->valuestring == NULL) != (b->valuestring == NULL) || (a->valuestring && strcmp(a->valuestring, b->valuestring)))
        return 0;
    if ((a->string == NULL) != (b->string == NULL) || (a->string && strcmp(a->string, b->string)))
        return 0;
    const cJSON *x = a->child, *y = b->child, *last_x = NULL;
    for (; x && y; last_x = x, x = x->next, y = y->next) {
        if (!same_tree(x, y) || (x->next && x->next->prev != x))
            return 0;
    }
    if (x || y)
        return 0;
    /* the head's prev is the last member, as cJSON's list functions expect */
    return !a->child || a->child->prev == last_x;
}

/* The fast tree of text, checked against cJSON's; 1 when the fast path took it. */
static int check_text(const char *text)
{
    cJSON *fast = json_tree_fast(text, strlen(text));
    if (!fast)
        return 0;
    cJSON *slow = cJSON_ParseWithLength(text, strlen(text));
    if (!slow || !same_tree(fast, slow))
        fail_msg("json_tree_fast differs from cJSON on: %s", text);
    cJSON_Delete(fast);
    cJSON_Delete(slow);
    return 1;
}

static void test_plain_texts(void **state)
{
    (void)state;
    const char *taken[] = {
        "{\"id\":\"p000000001\",\"type\":\"order.paid\",\"customer\":\"c0000050865\",\"at\":1767225602,"
        "\"order\":\"o1\",\"items\":[{\"sku\":\"S066\",\"category\":\"k6\",\"qty\":1,\"price\":193.79},"
        "{\"sku\":\"S106\",\"qty\":1,\"price\":90.30}],\"total\":418.71}",
        "{}", "[]", "[[]]", "{\"a\":{}}", " { \"a\" : [ 1 , 2 ] } \n", "\"\"", "\"x\"", "0", "-0", "-0.0", "0.1",
        "123456789012345", "-999999999999999", "0.00000000000001", "1.10", "2147483647", "2147483648",
        "-2147483649", "true", "false", "null", "[true,false,null]", "{\"a\":1,\"a\":2}",
        "{\"\":\"\"}", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"caf\\u00e9 \\u4e2d\"", "\"\xe4\xb8\xad\xe6\x96\x87\"",
        "{\"k\\u0041\":\"v\"}", "[0.5,-12.25,7,99.99]",
    };
    for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++)
        if (!check_text(taken[i]))
            fail_msg("the fast path declined: %s", taken[i]);
    /* declined: cJSON (or json_parse's error) decides these */
    const char *declined[] = {
        "1e5", "1E-2", "1234567890123456", "0.0000000000000001", "01", "1.", ".5", "+1", "-", "tru", "nul",
        "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{1:2}", "\"\\ud83d\\ude00\"", "\"\\u0000\"", "\"a\tb\"", "\"\\x\"",
        "[1]x", "\f[1]", "[1\v]", "", " ", "\"open", "{\"a\":[1,{\"b\":}]}",
    };
    for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++) {
        cJSON *j = json_tree_fast(declined[i], strlen(declined[i]));
        if (j)
            fail_msg("the fast path took: %s", declined[i]);
    }
    /* nesting past JSON_MAX_DEPTH is declined (json_parse reports it) */
    char deep[2 * (JSON_MAX_DEPTH + 2) + 1];
    memset(deep, '[', JSON_MAX_DEPTH + 1);
    memset(deep + JSON_MAX_DEPTH + 1, ']', JSON_MAX_DEPTH + 1);
    deep[2 * (JSON_MAX_DEPTH + 1)] = 0;
    assert_null(json_tree_fast(deep, strlen(deep)));
    deep[JSON_MAX_DEPTH] = ']';   /* JSON_MAX_DEPTH levels: taken */
    deep[2 * JSON_MAX_DEPTH] = 0;
    assert_int_equal(check_text(deep + 0), 1);
}

/* Random texts from a small grammar, with numbers of every length and
 * form: whatever the fast path takes equals cJSON's tree, and it takes
 * most of the plain ones. */
static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void put_number(char *buf, size_t *at)
{
    char num[64];
    int k = 0;
    if (rnd(3) == 0)
        num[k++] = '-';
    int digits = 1 + (int)rnd(18);
    for (int i = 0; i < digits; i++)
        num[k++] = (char)('0' + (i == 0 && digits > 1 ? 1 + rnd(9) : rnd(10)));
    if (rnd(2)) {
        num[k++] = '.';
        int frac = 1 + (int)rnd(17);
        for (int i = 0; i < frac; i++)
            num[k++] = (char)('0' + rnd(10));
    }
    if (rnd(8) == 0)
        k += snprintf(num + k, sizeof num - (size_t)k, "e%d", (int)rnd(40) - 20);
    memcpy(buf + *at, num, (size_t)k);
    *at += (size_t)k;
}

static void put_value(char *buf, size_t *at, int depth)
{
    static const char *const words[] = {"true", "false", "null", "\"\"", "\"sku-1\"", "\"\\u00e9t\\u00e9\"",
                                        "\"a\\\"b\"", "\"\xe4\xb8\xad\""};
    unsigned pick = depth > 3 ? rnd(2) : rnd(4);
    if (pick == 0) {
        put_number(buf, at);
    } else if (pick == 1) {
        const char *w = words[rnd(sizeof words / sizeof words[0])];
        memcpy(buf + *at, w, strlen(w));
        *at += strlen(w);
    } else {
        int is_array = pick == 2, n = (int)rnd(5);
        buf[(*at)++] = is_array ? '[' : '{';
        for (int i = 0; i < n; i++) {
            if (i)
                buf[(*at)++] = ',';
            if (rnd(4) == 0)
                buf[(*at)++] = ' ';
            if (!is_array)
                *at += (size_t)sprintf(buf + *at, "\"k%u\":", rnd(4));
            put_value(buf, at, depth + 1);
        }
        buf[(*at)++] = is_array ? ']' : '}';
    }
}

static void test_random_texts(void **state)
{
    (void)state;
    static char buf[1 << 16];
    int taken = 0;
    for (int i = 0; i < 20000; i++) {
        size_t at = 0;
        put_value(buf, &at, 0);
        buf[at] = 0;
        taken += check_text(buf);
    }
    /* most texts are taken (the ones with a long or exponent number are not) */
    assert_true(taken > 20000 / 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_texts),
        cmocka_unit_test(test_random_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
