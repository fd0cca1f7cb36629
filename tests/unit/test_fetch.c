/* Unit tests for the connect-address guard of runtime/fetch.c
 * (fetch_address_refused): which addresses http_get may connect to. No
 * socket is opened; addresses are built with inet_pton. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "fetch.h"

/* The refusal for `text` (an IPv4 or IPv6 address) with `allow`, or NULL. */
static const char *judge(char *const *allow, const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    char shown[64];
    return fetch_address_refused(allow, (const struct sockaddr *)&ss, shown, sizeof shown);
}

static void expect(char *const *allow, const char *text, const char *why)
{
    const char *got = judge(allow, text);
    if (why == NULL && got != NULL)
        fail_msg("%s: refused as %s, expected allowed", text, got);
    if (why != NULL && (got == NULL || strcmp(got, why) != 0))
        fail_msg("%s: %s, expected refused as %s", text, got ? got : "allowed", why);
}

static void test_ipv4_inner_addresses_refused(void **state)
{
    (void)state;
    static const struct { const char *addr, *why; } cases[] = {
        {"127.0.0.1", "loopback"},      {"127.255.1.2", "loopback"},
        {"10.0.0.1", "private"},        {"10.255.255.255", "private"},
        {"172.16.0.1", "private"},      {"172.31.255.254", "private"},
        {"192.168.1.1", "private"},     {"169.254.169.254", "link-local"},
        {"0.0.0.0", "unspecified"},     {"0.1.2.3", "unspecified"},
        {"100.64.0.1", "shared address space"},
        {"224.0.0.1", "multicast"},     {"239.255.255.250", "multicast"},
        {"255.255.255.255", "reserved"}, {"240.0.0.1", "reserved"},
        {"192.0.2.10", "documentation"}, {"198.18.0.1", "benchmarking"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(NULL, cases[i].addr, cases[i].why);
}

static void test_ipv4_public_allowed(void **state)
{
    (void)state;
    const char *ok[] = {"8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.0", "192.167.255.255",
                        "100.128.0.0", "11.0.0.0", "223.255.255.255", "169.253.0.1"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        expect(NULL, ok[i], NULL);
}

static void test_ipv6(void **state)
{
    (void)state;
    static const struct { const char *addr, *why; } cases[] = {
        {"::1", "loopback"},                    {"::", "unspecified"},
        {"::ffff:127.0.0.1", "loopback"},       {"::ffff:10.1.2.3", "private"},
        {"::ffff:192.168.0.1", "private"},      {"::127.0.0.1", "loopback"},
        {"64:ff9b::7f00:1", "loopback"},        {"2002:7f00:1::", "loopback"},
        {"2002:a00:1::1", "private"},           {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},       {"fe80::1", "link-local"},
        {"febf::1", "link-local"},              {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},               {"2001:db8::1", "documentation"},
        {"2001::1", "special-purpose"},         {"100::1", "discard-only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(NULL, cases[i].addr, cases[i].why);
    expect(NULL, "2606:4700::1111", NULL);
    expect(NULL, "::ffff:8.8.8.8", NULL);
    expect(NULL, "64:ff9b::808:808", NULL);
    expect(NULL, "2002:808:808::1", NULL);
}

/* Only the very address named in http_allow opens it, in any spelling of it;
 * a host name in the list opens nothing. */
static void test_literal_allow(void **state)
{
    (void)state;
    char *allow[] = {"localhost", "*.shop.test", "127.0.0.1", "[::1]", "fd00::7", NULL};
    expect(allow, "127.0.0.1", NULL);
    expect(allow, "::ffff:127.0.0.1", NULL);
    expect(allow, "::1", NULL);
    expect(allow, "fd00::7", NULL);
    expect(allow, "127.0.0.2", "loopback");
    expect(allow, "fd00::8", "unique-local");
    expect(allow, "10.0.0.1", "private");
    char *names[] = {"localhost", "intranet", NULL};
    expect(names, "127.0.0.1", "loopback");
}

static void test_address_shown(void **state)
{
    (void)state;
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    inet_pton(AF_INET, "192.168.7.9", &in.sin_addr);
    char shown[64];
    assert_string_equal(fetch_address_refused(NULL, (struct sockaddr *)&in, shown, sizeof shown), "private");
    assert_string_equal(shown, "192.168.7.9");
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_non_null(fetch_address_refused(NULL, &un, shown, sizeof shown));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_inner_addresses_refused),
        cmocka_unit_test(test_ipv4_public_allowed),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_literal_allow),
        cmocka_unit_test(test_address_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
