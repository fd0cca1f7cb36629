/* gen — synthetic customers and events for benchmarks and demos.
 *
 *   gen customers N [--seed S]
 *       N customers as CSV (the header `tend import` takes).
 *   gen events N --customers M [--seed S] [--start EPOCH]
 *       N events as NDJSON for customers c0000000001..cM, times increasing.
 *   gen orders N --customers M [--items K] [--seed S] [--start EPOCH]
 *       N order.paid events with K items each (default 3): 200 skus in 10
 *       categories, times increasing.
 *
 * The same seed gives the same bytes, so runs compare. Standalone (libc
 * only) and fast: a xorshift PRNG, hand-written number formatting and one
 * large output buffer, because printf would make the generator, not tend,
 * the thing being measured. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCH 1767225600LL      /* 2026-01-01T00:00:00Z: "now" for the data */
#define DAY 86400LL
#define OUT_CAP (1 << 20)

/* --- output ---------------------------------------------------------------- */

static char out[OUT_CAP + 4096];
static size_t outlen;

static void flush(void)
{
    if (outlen && fwrite(out, 1, outlen, stdout) != outlen) {
        perror("gen: write");
        exit(1);
    }
    outlen = 0;
}

/* Called once per line: a line is far shorter than the slack. */
static void line_done(void)
{
    out[outlen++] = '\n';
    if (outlen >= OUT_CAP)
        flush();
}

static void put(const char *s)
{
    size_t n = strlen(s);
    memcpy(out + outlen, s, n);
    outlen += n;
}

static void putch(char c)
{
    out[outlen++] = c;
}

static void put_u(uint64_t v)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n)
        out[outlen++] = tmp[--n];
}

/* v with leading zeros to `width` digits. */
static void put_pad(uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[outlen + (size_t)i] = (char)('0' + v % 10);
        v /= 10;
    }
    outlen += (size_t)width;
}

/* An amount in cents as "123.45" (or "123" when whole). */
static void put_money(uint64_t cents)
{
    put_u(cents / 100);
    if (cents % 100) {
        putch('.');
        put_pad(cents % 100, 2);
    }
}

/* --- randomness ------------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Uniform in [0, n). The modulo bias is irrelevant for test data. */
static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

static double unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (!rng_state)
        rng_state = 1;
    for (int i = 0; i < 8; i++)
        rnd();
}

/* --- customers ------------------------------------------------------------- */

static const char *const surnames[] = {
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou",
    "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
};
static const char *const given[] = {
    "Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang",
    "Yan", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hua", "Lingling", "Xin", "Yu",
    "Hao", "Ting", "Bo", "Lan", "Ying", "Ping", "Gang", "Hui", "Dan", "Kai",
};
#define NSUR (sizeof surnames / sizeof *surnames)
#define NGIV (sizeof given / sizeof *given)

static const struct { const char *city, *region; } cities[30] = {
    {"Shanghai", "Shanghai"},   {"Beijing", "Beijing"},     {"Guangzhou", "Guangdong"},
    {"Shenzhen", "Guangdong"},  {"Dongguan", "Guangdong"},  {"Foshan", "Guangdong"},
    {"Hangzhou", "Zhejiang"},   {"Ningbo", "Zhejiang"},     {"Wenzhou", "Zhejiang"},
    {"Nanjing", "Jiangsu"},     {"Suzhou", "Jiangsu"},      {"Wuxi", "Jiangsu"},
    {"Chengdu", "Sichuan"},     {"Chongqing", "Chongqing"}, {"Wuhan", "Hubei"},
    {"Xi'an", "Shaanxi"},       {"Tianjin", "Tianjin"},     {"Changsha", "Hunan"},
    {"Zhengzhou", "Henan"},     {"Qingdao", "Shandong"},    {"Jinan", "Shandong"},
    {"Shenyang", "Liaoning"},   {"Dalian", "Liaoning"},     {"Harbin", "Heilongjiang"},
    {"Kunming", "Yunnan"},      {"Xiamen", "Fujian"},       {"Fuzhou", "Fujian"},
    {"Hefei", "Anhui"},         {"Nanning", "Guangxi"},     {"Urumqi", "Xinjiang"},
};

/* Mostly China; some customers abroad or in neighbouring zones. */
static const char *const other_zones[] = {
    "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Tokyo", "Asia/Urumqi",
    "Europe/London", "America/Los_Angeles", "Australia/Sydney",
};
#define NZONES (sizeof other_zones / sizeof *other_zones)

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

static void put_birthday(void)
{
    int y = 1955 + (int)below(52);
    int m = 1 + (int)below(12);
    /* Leap years alone give Feb 29 about once in 1,461 birthdays; nudge it
     * up a little so small samples still have a few. */
    int d = 1 + (int)below((uint64_t)month_days(y, m));
    if (m == 2 && is_leap(y) && below(1461) == 0)
        d = 29;
    put_pad((uint64_t)y, 4);
    putch('-');
    put_pad((uint64_t)m, 2);
    putch('-');
    put_pad((uint64_t)d, 2);
}

/* Orders 1..40, most customers with one or two: u^3 skews to the low end. */
static int order_count(void)
{
    double u = unit();
    int n = 1 + (int)(u * u * u * 40.0);
    return n > 40 ? 40 : n;
}

static void put_orders(void)
{
    if (below(100) < 40) {      /* never ordered */
        put(",,,");
        return;
    }
    int n = order_count();
    uint64_t avg = 3000 + below(47000);                 /* 30.00 .. 500.00 */
    uint64_t total = 0;
    for (int i = 0; i < n && i < 4; i++)
        total += avg / 2 + below(avg);
    total = total * (uint64_t)n / (uint64_t)(n < 4 ? n : 4);
    long long last = EPOCH - (long long)below(730 * DAY);
    long long first = n > 1 ? last - (long long)below(1095 * DAY) : last;
    put_u((uint64_t)n);
    putch(',');
    put_money(total);
    putch(',');
    put_u((uint64_t)first);
    putch(',');
    put_u((uint64_t)last);
}

static void customer_row(uint64_t i)
{
    const char *sur = surnames[below(NSUR)], *giv = given[below(NGIV)];
    int c = (int)(below(100) < 60 ? below(10) : below(30));    /* big cities are bigger */
    putch('c');
    put_pad(i, 10);
    putch(',');
    put(sur);
    putch(' ');
    put(giv);
    put(",+861");
    putch((char)('3' + below(7)));
    put_pad(below(1000000000ULL), 9);
    putch(',');
    for (const char *p = giv; *p; p++)
        putch((char)(*p | 0x20));
    putch('.');
    for (const char *p = sur; *p; p++)
        putch((char)(*p | 0x20));
    put_u(i);
    put("@example.com,");
    put(cities[c].city);
    putch(',');
    put(cities[c].region);
    putch(',');
    put(below(100) < 92 ? "Asia/Shanghai" : other_zones[below(NZONES)]);
    putch(',');
    if (below(100) < 85)
        put_birthday();
    putch(',');
    put_orders();
    putch(',');
    uint64_t t = below(1000);
    if (t < 40)
        put("vip");
    else if (t < 50)
        put("vip|wholesale");
    else if (t < 80)
        put("newsletter");
    line_done();
}

static void gen_customers(uint64_t n)
{
    put("id,name,phone,email,city,region,timezone,birthday,orders_count,total_spent,"
        "first_order_at,last_order_at,tags");
    line_done();
    for (uint64_t i = 1; i <= n; i++)
        customer_row(i);
}

/* --- events ---------------------------------------------------------------- */

static void event_row(uint64_t i, uint64_t customers, long long at)
{
    uint64_t t = below(1000);
    const char *type = t < 540 ? "page.view" : t < 740 ? "order.paid" : t < 870 ? "order.shipped"
                     : t < 995 ? "order.delivered" : "unsubscribe";
    put("{\"id\":\"e");
    put_pad(i, 9);
    put("\",\"type\":\"");
    put(type);
    put("\",\"customer\":\"c");
    put_pad(1 + below(customers), 10);
    put("\",\"at\":");
    put_u((uint64_t)at);
    if (t < 540) {
        put(",\"url\":\"/p/");
        put_u(1 + below(5000));
        putch('"');
    } else if (t < 995) {
        put(",\"order\":\"o");
        put_pad(1 + below(i), 9);
        putch('"');
        if (t < 740) {
            put(",\"total\":");
            put_money(1500 + below(60000));
        }
    } else {
        put(",\"channel\":\"sms\"");
    }
    putch('}');
    line_done();
}

static void gen_events(uint64_t n, uint64_t customers, long long start)
{
    long long at = start;
    for (uint64_t i = 1; i <= n; i++) {
        at += (long long)below(3);      /* about one event every second */
        event_row(i, customers, at);
    }
}

/* One order.paid with `items` lines: sku S000..S199, category k0..k9 by
 * sku, qty 1..3, price 5.00..204.99. */
static void order_row(uint64_t i, uint64_t customers, long long at, uint64_t items)
{
    put("{\"id\":\"p");
    put_pad(i, 9);
    put("\",\"type\":\"order.paid\",\"customer\":\"c");
    put_pad(1 + below(customers), 10);
    put("\",\"at\":");
    put_u((uint64_t)at);
    put(",\"order\":\"o");
    put_pad(i, 9);
    put("\",\"items\":[");
    uint64_t total = 0;
    for (uint64_t k = 0; k < items; k++) {
        uint64_t sku = below(200), price = 500 + below(20000);
        if (k)
            putch(',');
        put("{\"sku\":\"S");
        put_pad(sku, 3);
        put("\",\"category\":\"k");
        put_u(sku % 10);
        put("\",\"qty\":");
        put_u(1 + below(3));
        put(",\"price\":");
        put_money(price);
        putch('}');
        total += price;
    }
    put("],\"total\":");
    put_money(total);
    putch('}');
    line_done();
}

static void gen_orders(uint64_t n, uint64_t customers, long long start, uint64_t items)
{
    long long at = start;
    for (uint64_t i = 1; i <= n; i++) {
        at += (long long)below(3);
        order_row(i, customers, at, items);
    }
}

/* --- arguments ------------------------------------------------------------- */

static const char usage[] =
    "usage: gen customers N [--seed S]\n"
    "       gen events N --customers M [--seed S] [--start EPOCH]\n"
    "       gen orders N --customers M [--items K] [--seed S] [--start EPOCH]\n";

static int number(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n, s = 1, customers = 0, start = (uint64_t)EPOCH, items = 3;
    if (argc < 3 || number(argv[2], &n) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        uint64_t *dst = !strcmp(argv[i], "--seed") ? &s
                      : !strcmp(argv[i], "--customers") ? &customers
                      : !strcmp(argv[i], "--start") ? &start
                      : !strcmp(argv[i], "--items") ? &items : NULL;
        if (!dst || i + 1 >= argc || number(argv[++i], dst) != 0) {
            fputs(usage, stderr);
            return 2;
        }
    }
    seed(s);
    if (!strcmp(argv[1], "customers")) {
        gen_customers(n);
    } else if (!strcmp(argv[1], "events") && customers > 0) {
        gen_events(n, customers, (long long)start);
    } else if (!strcmp(argv[1], "orders") && customers > 0 && items > 0 && items <= 100) {
        gen_orders(n, customers, (long long)start, items);
    } else {
        fputs(usage, stderr);
        return 2;
    }
    flush();
    if (fflush(stdout) != 0) {
        perror("gen: write");
        return 1;
    }
    return 0;
}
