/* Unit tests for runtime/mime.c (From parsing, address checks, the built
 * message's headers) and runtime/unsub.c (tokens: round trip, forgery). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "unsub.h"

static void from_ok(const char *from, const char *name, const char *addr)
{
    char n[256], a[256], err[200] = "";
    if (mime_parse_from(from, n, sizeof n, a, sizeof a, err, sizeof err) != 0)
        fail_msg("'%s': %s", from, err);
    assert_string_equal(n, name);
    assert_string_equal(a, addr);
}

static void from_bad(const char *from, const char *want)
{
    char n[256], a[256], err[200] = "";
    assert_int_equal(mime_parse_from(from, n, sizeof n, a, sizeof a, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("'%s': error '%s' does not say '%s'", from, err, want);
}

static void test_parse_from(void **state)
{
    (void)state;
    from_ok("Care <care@example.com>", "Care", "care@example.com");     /* the documented form */
    from_ok("care@example.com", "", "care@example.com");
    from_ok("<care@example.com>", "", "care@example.com");
    from_ok("\"关爱 Care\" <care@example.com>", "关爱 Care", "care@example.com");
    from_ok("  关爱团队   < care@example.com >  ", "关爱团队", "care@example.com");
    from_bad("Care <care.example.com>", "has no address");
    from_bad("Care <care@example.com", "must end with '>'");
    from_bad("Care <a@b.com> x", "must end with '>'");
    from_bad("Care <a@b.com>\r\nBcc: x@y.z", "one line");
    from_bad("", "has no address");
}

static void test_address_ok(void **state)
{
    (void)state;
    assert_true(mime_address_ok("ann@example.test"));
    assert_false(mime_address_ok("ann.example.test"));
    assert_false(mime_address_ok("@example.test"));
    assert_false(mime_address_ok("ann@"));
    assert_false(mime_address_ok("a@b@c"));
    assert_false(mime_address_ok("ann@example.test\r\nBcc: x@y"));
    assert_false(mime_address_ok("Ann <ann@example.test>"));
    assert_false(mime_address_ok(NULL));
}

static void test_build(void **state)
{
    (void)state;
    struct mime_mail m = {.from = "Care <care@example.com>", .to = "ann@example.test", .to_name = "Ann",
                          .subject = "Hi", .text = "plain", .html = "<p>x</p>", .key = "7-2",
                          .date = 1767225600, .unsubscribe_url = "https://t.example/v1/unsubscribe/abc"};
    char err[200];
    char *a = mime_build(&m, err, sizeof err);
    char *b = mime_build(&m, err, sizeof err);
    assert_non_null(a);
    assert_non_null(strstr(a, "From: Care <care@example.com>\r\n"));
    assert_non_null(strstr(a, "To: Ann <ann@example.test>\r\n"));
    assert_non_null(strstr(a, "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"));
    assert_non_null(strstr(a, "Content-Type: multipart/alternative;"));
    assert_non_null(strstr(a, "List-Unsubscribe: <https://t.example/v1/unsubscribe/abc>\r\n"));
    assert_non_null(strstr(a, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    /* no salt: two ids for one key, both <key.random@domain> */
    const char *ia = strstr(a, "Message-Id: <7-2."), *ib = strstr(b, "Message-Id: <7-2.");
    assert_non_null(ia);
    assert_non_null(ib);
    assert_non_null(strstr(ia, "@example.com>\r\n"));
    assert_memory_not_equal(ia, ib, 34);
    free(a);
    free(b);
    /* a store's salt: every attempt the same id; another store's salt, another id */
    m.id_salt = "salt of store one";
    a = mime_build(&m, err, sizeof err);
    b = mime_build(&m, err, sizeof err);
    m.id_salt = "salt of store two";
    char *c = mime_build(&m, err, sizeof err);
    ia = strstr(a, "Message-Id: <7-2.");
    ib = strstr(b, "Message-Id: <7-2.");
    const char *ic = strstr(c, "Message-Id: <7-2.");
    assert_memory_equal(ia, ib, 48);
    assert_memory_not_equal(ia, ic, 34);
    free(a);
    free(b);
    free(c);
    m.id_salt = NULL;
    /* a long Chinese subject: folded encoded words of at most 75 characters,
     * lines of at most 78; the unsubscribe URL stays a plain <URL> */
    m.subject = "王小明，春季新品上市：为您挑选的好物，限时优惠，先到先得 — spring arrivals picked for you";
    m.unsubscribe_url = "https://care.shop.example/v1/unsubscribe/YzE.ZW1haWw.0123456789abcdef0123456789abcdef";
    a = mime_build(&m, err, sizeof err);
    assert_non_null(strstr(a, "\r\nSubject: =?UTF-8?B?"));
    assert_non_null(strstr(a, "?=\r\n =?UTF-8?B?"));
    assert_non_null(strstr(a, "\r\nList-Unsubscribe: <https://care.shop.example/v1/unsubscribe/YzE.ZW1haWw."));
    for (const char *line = a; *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, "List-Unsubscribe: ", 18) != 0 && len > 78)
            fail_msg("a line of %zu characters: %.60s", len, line);
        line += len + (end ? 2 : 0);
    }
    for (const char *w = strstr(a, "=?"); w; w = strstr(w + 2, "=?")) {
        const char *close = strstr(w + 2, "?=");
        while (close && close[2] != '\r' && close[2] != ' ' && close[2] != '\0')
            close = strstr(close + 1, "?=");     /* the B text holds no "?=", the header does */
        assert_non_null(close);
        if (close + 2 - w > 75)
            fail_msg("an encoded word of %d characters", (int)(close + 2 - w));
        w = close;
    }
    free(a);
    m.from = "nobody";
    assert_null(mime_build(&m, err, sizeof err));
    m.from = "a@b.test";
    m.to = "bad\naddress@x";
    assert_null(mime_build(&m, err, sizeof err));
    assert_non_null(strstr(err, "is not an email address"));
}

static void test_unsub_tokens(void **state)
{
    (void)state;
    const char *secret = "0123456789abcdef0123456789abcdef";
    char *t = unsub_token(secret, "c.1/é", "email");
    char *cust, *chan, err[200];
    assert_int_equal(unsub_verify(secret, t, &cust, &chan, err, sizeof err), 0);
    assert_string_equal(cust, "c.1/é");
    assert_string_equal(chan, "email");
    free(cust);
    free(chan);
    assert_null(strchr(t, '/'));            /* safe in a URL path */
    /* another secret, a changed signature, another customer: refused */
    assert_int_equal(unsub_verify("another secret, 32 bytes long...", t, &cust, &chan, err, sizeof err), -1);
    assert_non_null(strstr(err, "signature does not match"));
    char *forged = strdup(t);
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
    assert_int_equal(unsub_verify(secret, forged, &cust, &chan, err, sizeof err), -1);
    char *other = unsub_token(secret, "c2", "email");
    char *swap = malloc(strlen(t) + strlen(other) + 1);
    const char *sig = strrchr(t, '.');
    snprintf(swap, strlen(t) + strlen(other) + 1, "%.*s%s", (int)(strrchr(other, '.') - other), other, sig);
    assert_int_equal(unsub_verify(secret, swap, &cust, &chan, err, sizeof err), -1);
    assert_int_equal(unsub_verify(secret, "garbage", &cust, &chan, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an unsubscribe link"));
    assert_null(cust);
    free(swap);
    free(other);
    free(forged);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_from),
        cmocka_unit_test(test_address_ok),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_unsub_tokens),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mime_shutdown();
    return rc;
}
