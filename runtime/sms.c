/* sms — SMS segment counting and text lint (see sms.h).
 *
 * Everything works on the raw UTF-8 bytes of the text. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sms.h"

/* --- SMS ---------------------------------------------------------------- */

/* Decodes one UTF-8 sequence. Returns its length (with *cp set), or 0 when
 * the bytes are not valid UTF-8: truncated, overlong, a surrogate or past
 * U+10FFFF. `s` is NUL-terminated, so a short sequence stops at the NUL. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t c;

    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    else if ((s[0] & 0xE0) == 0xC0) { n = 2; c = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { n = 3; c = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { n = 4; c = s[0] & 0x07; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

/* The GSM 03.38 basic set outside ASCII, sorted by code point. */
static const uint16_t gsm_basic[] = {
    0x00A1, 0x00A3, 0x00A4, 0x00A5, 0x00A7, 0x00BF,             /* ¡ £ ¤ ¥ § ¿ */
    0x00C4, 0x00C5, 0x00C6, 0x00C7, 0x00C9, 0x00D1, 0x00D6,     /* Ä Å Æ Ç É Ñ Ö */
    0x00D8, 0x00DC, 0x00DF, 0x00E0, 0x00E4, 0x00E5, 0x00E6,     /* Ø Ü ß à ä å æ */
    0x00E8, 0x00E9, 0x00EC, 0x00F1, 0x00F2, 0x00F6, 0x00F8,     /* è é ì ñ ò ö ø */
    0x00F9, 0x00FC,                                             /* ù ü */
    0x0393, 0x0394, 0x0398, 0x039B, 0x039E, 0x03A0, 0x03A3,     /* Γ Δ Θ Λ Ξ Π Σ */
    0x03A6, 0x03A8, 0x03A9,                                     /* Φ Ψ Ω */
};

/* Septets a code point takes in GSM-7: 1 in the basic set, 2 in the
 * extension table (escape + char), 0 when GSM-7 cannot carry it at all. */
static int gsm_septets(uint32_t c)
{
    if (c < 0x80) {
        if (c == '\n' || c == '\r')
            return 1;
        if (c == '\f' || (c && strchr("^{}\\[~]|", (int)c)))
            return 2;
        return c >= 0x20 && c < 0x7F && c != '`';
    }
    if (c == 0x20AC)                    /* € lives in the extension table */
        return 2;
    size_t lo = 0, hi = sizeof gsm_basic / sizeof gsm_basic[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (gsm_basic[mid] == c) return 1;
        if (gsm_basic[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

void sms_measure(const char *text, struct sms_info *out)
{
    const unsigned char *s = (const unsigned char *)text;
    int septets = 0, utf16 = 0, gsm = 1;

    /* Count both ways in one pass: one character outside GSM-7 switches the
     * whole message to UCS-2, wherever it is. */
    while (*s) {
        uint32_t c;
        size_t n = utf8_decode(s, &c);
        if (n == 0) {                   /* invalid byte: one UCS-2 unit */
            gsm = 0;
            utf16++;
            s++;
            continue;
        }
        int sep = gsm_septets(c);
        if (sep == 0) gsm = 0;
        septets += sep;
        utf16 += c > 0xFFFF ? 2 : 1;    /* astral planes need a surrogate pair */
        s += n;
    }
    out->unicode = !gsm;
    out->units = gsm ? septets : utf16;
    int single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    if (out->units == 0)
        out->segments = 0;
    else if (out->units <= single)
        out->segments = 1;
    else
        out->segments = (out->units + part - 1) / part;
}

/* --- lint --------------------------------------------------------------- */

static int is_ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* U+3000, the ideographic space, is what CJK writers type as a space. */
static int is_ideographic_space(const unsigned char *s)
{
    return s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80;
}

static int space_before(const unsigned char *text, size_t i)
{
    return i == 0 || is_ascii_space(text[i - 1]) ||
           (i >= 3 && is_ideographic_space(text + i - 3));
}

static int space_at(const unsigned char *s)
{
    return *s == '\0' || is_ascii_space(*s) || is_ideographic_space(s);
}

/* Length of the link prefix at s, or 0. */
static size_t link_prefix(const char *s)
{
    static const char *const prefixes[] = {"https://", "http://", "www.", NULL};
    for (const char *const *p = prefixes; *p; p++)
        if (strncasecmp(s, *p, strlen(*p)) == 0)
            return strlen(*p);
    return 0;
}

/* Checks the link at text[i] and returns where scanning resumes. A link
 * stops at whitespace or at the first non-ASCII byte: a handset would read
 * on into the CJK text, which is the very thing being reported. Trailing
 * punctuation (a sentence's full stop) is left out of the quoted link, but
 * a handset would eat it too, so it also needs a space after the link. */
static size_t lint_link(const char *text, size_t i, size_t plen, lint_fn fn, void *ud,
                        int *errors)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t end = i + plen;
    char msg[192];

    while (t[end] && t[end] < 0x80 && !is_ascii_space(t[end])) end++;
    size_t stop = end;
    while (end > i + plen && strchr(".,;:!?)]}>'\"", text[end - 1])) end--;
    int len = (int)(end - i > 80 ? 80 : end - i);
    const char *more = end - i > 80 ? "..." : "";

    if (!space_before(t, i)) {
        snprintf(msg, sizeof msg, "link '%.*s%s' needs a space before it", len, text + i, more);
        if (fn) fn(LINT_ERROR, i, msg, ud);
        (*errors)++;
    }
    if (!space_at(t + end)) {
        snprintf(msg, sizeof msg, "link '%.*s%s' needs a space after it", len, text + i, more);
        if (fn) fn(LINT_ERROR, end, msg, ud);
        (*errors)++;
    }
    return stop;
}

/* ASCII-case-insensitive substring search; other bytes must match exactly,
 * which is right for CJK (no case) and good enough elsewhere. */
static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

int template_lint_words(const char *text, const char *const *blocked, lint_fn fn, void *ud)
{
    int found = 0;
    char msg[192];

    for (; blocked && *blocked; blocked++) {
        const char *at = (*blocked)[0] ? find_ci(text, *blocked) : NULL;
        if (!at)
            continue;
        snprintf(msg, sizeof msg, "blocked word '%s'", *blocked);
        if (fn) fn(LINT_ERROR, (size_t)(at - text), msg, ud);
        found++;
    }
    return found;
}

/* Money for people: "0.15", "2", never "2.000000". */
static void format_money(double x, char *buf, size_t len)
{
    double r = round(x * 100) / 100;
    if (r == floor(r) && fabs(r) < 1e15) {
        snprintf(buf, len, "%.0f", r == 0 ? 0.0 : r);
        return;
    }
    snprintf(buf, len, "%.2f", r);
    char *end = buf + strlen(buf);
    while (end[-1] == '0') *--end = '\0';
}

static void lint_length(const char *text, int max_segments, double price, lint_fn fn,
                        void *ud)
{
    struct sms_info in;
    char msg[512], tail[160] = "";

    sms_measure(text, &in);
    if (max_segments <= 0 || in.segments <= max_segments)
        return;
    if (price > 0) {
        char each[64], total[64];
        format_money(price, each, sizeof each);
        format_money(price * in.segments, total, sizeof total);
        snprintf(tail, sizeof tail, ", %s a message at %s a segment", total, each);
    }
    snprintf(msg, sizeof msg,
             "%d segments (%s, %d units), over the limit of %d; costs %d \xC3\x97 the "
             "segment price%s",
             in.segments, in.unicode ? "UCS-2" : "GSM-7", in.units, max_segments,
             in.segments, tail);
    if (fn) fn(LINT_WARNING, 0, msg, ud);
}

int template_lint_sms(const char *text, const char *const *blocked, int max_segments,
                      double price, lint_fn fn, void *ud)
{
    int errors = 0;

    for (size_t i = 0; text[i];) {
        size_t plen = link_prefix(text + i);
        i = plen ? lint_link(text, i, plen, fn, ud, &errors) : i + 1;
    }
    errors += template_lint_words(text, blocked, fn, ud);
    lint_length(text, max_segments, price, fn, ud);
    return errors;
}
