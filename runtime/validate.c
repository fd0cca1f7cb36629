/* validate — rules for input from outside (see validate.h). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* --- times ----------------------------------------------------------------- */

static int in_range(tend_time t, char *err, size_t errlen, const char *what)
{
    if (t < VALIDATE_TIME_MIN || t > VALIDATE_TIME_MAX)
        return fail(err, errlen, "%s is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z", what);
    return 0;
}

int validate_time_number(double d, tend_time *out, char *err, size_t errlen)
{
    if (!isfinite(d))
        return fail(err, errlen, "must be a finite number of epoch seconds");
    /* compared as a double first: a cast of 1e300 to int64 is undefined */
    if (d < (double)VALIDATE_TIME_MIN || d >= (double)VALIDATE_TIME_MAX + 1) {
        char what[48];
        snprintf(what, sizeof what, "time %.15g", d);
        return in_range(-1, err, errlen, what);
    }
    *out = (tend_time)floor(d);
    return 0;
}

int validate_time_text(const char *s, tend_time *out, char *err, size_t errlen)
{
    tend_time t;
    char why[160];
    if (clock_parse_time(s, &t, why, sizeof why) != 0)
        return fail(err, errlen, "must be epoch seconds or ISO-8601 with an offset: %s", why);
    if (t < VALIDATE_TIME_MIN || t > VALIDATE_TIME_MAX) {
        char what[96];
        snprintf(what, sizeof what, "time \"%.64s\"", s);
        return in_range(t, err, errlen, what);
    }
    *out = t;
    return 0;
}

int validate_time_json(const cJSON *j, tend_time *out, char *err, size_t errlen)
{
    if (cJSON_IsNumber(j))
        return validate_time_number(j->valuedouble, out, err, errlen);
    if (cJSON_IsString(j))
        return validate_time_text(j->valuestring, out, err, errlen);
    return fail(err, errlen, "must be epoch seconds or ISO-8601 text with an offset");
}

/* --- text ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;   /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;          /* overlong */
        else if (c == 0xED)
            hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;          /* overlong */
        else if (c == 0xF4)
            hi = 0x8F;          /* > U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

size_t validate_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, n - i);
        if (!k)
            return i;
        i += k;
    }
    return n;
}

/* 1 when s[0, n) is all printable ASCII (0x20 to 0x7e): text that passes
 * every check below. Eight bytes at a time: a byte at or above 0x80 has its
 * high bit, 0x7f gets it by adding 1, one below 0x20 by subtracting 0x20; a
 * carry or borrow into the next byte comes only out of a byte already
 * caught, so "any high bit" is exact. */
static int printable_ascii(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if ((x | (x + ones) | (x - 0x20 * ones)) & high)
            return 0;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

int validate_text(const char *s, size_t n, int flags, char *err, size_t errlen)
{
    /* Names, ids, cities: nearly always plain ASCII, settled in one pass
     * (a CSV import validates every cell; 6% of its instructions were here). */
    if (printable_ascii(s, n))
        return 0;
    const char *nul = memchr(s, 0, n);
    if (nul)
        return fail(err, errlen, "contains a NUL byte (byte %zu)", (size_t)(nul - s) + 1);
    size_t bad = validate_utf8(s, n);
    if (bad < n)
        return fail(err, errlen, "invalid UTF-8 at byte %zu", bad + 1);
    if (flags & VALIDATE_SINGLE_LINE) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\r' || c == '\n')
                return fail(err, errlen, "contains a line break (byte %zu)", i + 1);
            if (c < 0x20 || c == 0x7f)
                return fail(err, errlen, "contains a control character (byte %zu)", i + 1);
        }
    }
    return 0;
}

char *validate_printable(const char *s, size_t len, char *buf, size_t n)
{
    if (!n)
        return buf;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len && o + 1 < n) {
        size_t k = p[i] < 0x80 ? (p[i] >= 0x20 && p[i] != 0x7f) : utf8_seq(p + i, len - i);
        if (!k) {
            buf[o++] = '?';
            i++;
            continue;
        }
        if (o + k >= n)
            break;
        memcpy(buf + o, p + i, k);
        o += k;
        i += k;
    }
    buf[o] = 0;
    return buf;
}

/* --- email ----------------------------------------------------------------- */

static int atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+/=?^_`{|}~-", c)) || c >= 0x80;
}

static int label_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c >= 0x80;
}

int validate_email(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    char why[120];
    if (validate_text(s, n, VALIDATE_SINGLE_LINE, why, sizeof why) != 0)
        return fail(err, errlen, "is not an email address: %s", why);   /* the value is not echoed */
    if (n > VALIDATE_EMAIL_MAX)
        return fail(err, errlen, "an email address has at most %d bytes", VALIDATE_EMAIL_MAX);
    const char *at = strchr(s, '@');
    if (!at || strchr(at + 1, '@'))
        return fail(err, errlen, "'%.64s' is not an email address (local@domain, one '@')", s);
    size_t local = (size_t)(at - s);
    if (local == 0 || local > 64)
        return fail(err, errlen, "'%.64s' is not an email address (the part before '@' has 1 to 64 bytes)", s);
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' ? i == 0 || i + 1 == local || s[i + 1] == '.' : !atext(c))
            return fail(err, errlen, "'%.64s' is not an email address (character %zu before '@')", s, i + 1);
    }
    const char *d = at + 1;
    int labels = 0;
    for (;;) {
        size_t k = 0;
        while (label_char((unsigned char)d[k]))
            k++;
        if (k == 0 || d[0] == '-' || d[k - 1] == '-' || k > 63)
            return fail(err, errlen, "'%.64s' is not an email address (the domain after '@')", s);
        labels++;
        if (d[k] == 0)
            break;
        if (d[k] != '.')
            return fail(err, errlen, "'%.64s' is not an email address (character '%c' in the domain)", s, d[k]);
        d += k + 1;
    }
    if (labels < 2)
        return fail(err, errlen, "'%.64s' is not an email address (the domain needs a dot: name@shop.example)", s);
    return 0;
}

/* --- JSON text ---------------------------------------------------------------- */

/* Where the scan is: one frame per open array or object. */
struct frame {
    char kind;              /* '{' or '[' */
    const char *key;        /* the current key (raw text) in an object */
    size_t keylen;
    long index;             /* the current element in an array */
};

/* "field 'a.b[2]': " for the path down the frames, "" at the top. */
static void path_prefix(const struct frame *f, int depth, char *buf, size_t n)
{
    char path[200];
    size_t o = 0;
    path[0] = 0;
    for (int i = 0; i < depth && o + 1 < sizeof path; i++) {
        if (f[i].kind == '[') {
            o += (size_t)snprintf(path + o, sizeof path - o, "[%ld]", f[i].index);
        } else if (f[i].key) {
            if (o && o + 1 < sizeof path)
                path[o++] = '.';
            char key[64];
            validate_printable(f[i].key, f[i].keylen, key, sizeof key);
            o += (size_t)snprintf(path + o, sizeof path - o, "%s", key);
        }
        if (o >= sizeof path)
            o = sizeof path - 1;
    }
    if (o)
        snprintf(buf, n, "field '%s': ", path);
    else
        buf[0] = 0;
}

static int hex4_is_zero(const char *p, const char *end)
{
    return end - p >= 4 && p[0] == '0' && p[1] == '0' && p[2] == '0' && p[3] == '0';
}

int validate_json_text(const char *text, size_t len, int max_depth, char *err, size_t errlen)
{
    struct frame stack[64];
    if (max_depth > (int)(sizeof stack / sizeof stack[0]))
        max_depth = (int)(sizeof stack / sizeof stack[0]);
    int depth = 0, expect_key = 0;
    const char *p = text, *end = text + len;
    char where[240];
    while (p < end) {
        char c = *p;
        if (c == '{' || c == '[') {
            if (depth == max_depth)
                return fail(err, errlen, "nested too deep (limit %d) at byte %zu", max_depth,
                            (size_t)(p - text) + 1);
            stack[depth] = (struct frame){.kind = c};
            depth++;
            expect_key = c == '{';
            p++;
        } else if (c == '}' || c == ']') {
            if (depth)
                depth--;
            expect_key = 0;
            p++;
        } else if (c == ',') {
            if (depth && stack[depth - 1].kind == '[')
                stack[depth - 1].index++;
            expect_key = depth && stack[depth - 1].kind == '{';
            p++;
        } else if (c == ':') {
            expect_key = 0;
            p++;
        } else if (c == '"') {
            const char *s = ++p;
            while (p < end && *p != '"') {
                if (*p == '\\') {
                    if (p + 1 < end && p[1] == 'u' && hex4_is_zero(p + 2, end)) {
                        path_prefix(stack, depth, where, sizeof where);
                        return fail(err, errlen, "%scontains a NUL character (\\u0000 at byte %zu)", where,
                                    (size_t)(p - text) + 1);
                    }
                    p += 2;
                    continue;
                }
                if ((unsigned char)*p >= 0x80) {
                    size_t k = utf8_seq((const unsigned char *)p, (size_t)(end - p));
                    if (!k) {
                        if (expect_key && depth) {   /* the key itself: name its object */
                            stack[depth - 1].key = NULL;
                        }
                        path_prefix(stack, depth, where, sizeof where);
                        return fail(err, errlen, "%sinvalid UTF-8 at byte %zu", where, (size_t)(p - text) + 1);
                    }
                    p += k;
                    continue;
                }
                p++;
            }
            if (expect_key && depth) {
                stack[depth - 1].key = s;
                stack[depth - 1].keylen = (size_t)((p < end ? p : end) - s);
            }
            p++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *s = p;
            int exponent = 0;
            while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' ||
                               *p == 'e' || *p == 'E')) {
                exponent |= *p == 'e' || *p == 'E';
                p++;
            }
            size_t n = (size_t)(p - s);
            /* without an exponent only 309 digits or more can overflow: the
             * common number is never converted here (cJSON does that) */
            if (!exponent && n < 300)
                continue;
            char small[64], *num = n < sizeof small ? small : malloc(n + 1);
            if (!num)
                return fail(err, errlen, "out of memory");
            memcpy(num, s, n);
            num[n] = 0;
            double d = strtod(num, NULL);
            if (num != small)
                free(num);
            if (!isfinite(d)) {
                path_prefix(stack, depth, where, sizeof where);
                return fail(err, errlen, "%snumber %.*s%s is out of range", where, n > 24 ? 24 : (int)n, s,
                            n > 24 ? "..." : "");
            }
        } else {
            p++;
        }
    }
    return 0;
}
