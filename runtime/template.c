/* template — placeholders, rendering, SMS measuring and lint (see template.h).
 *
 * Everything works on the raw UTF-8 bytes of the text. Placeholders are found
 * by one small parser shared by rendering and checking, so the two can never
 * disagree about what a placeholder is. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "template.h"

/* A variable path longer than this is surely a typo or pasted text. */
#define PATH_MAX_LEN 255

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* How much of s[0..n) to quote in a message: at most max bytes, backed off
 * to a character boundary so the message stays valid UTF-8. */
static int snip(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return (int)n;
    while (max && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
    return (int)max;
}

/* --- placeholder parsing ------------------------------------------------ */

struct placeholder {
    size_t start, end;          /* bytes [start, end) hold "{{...}}" */
    const char *path;           /* not NUL-terminated */
    size_t pathlen;
    const char *def;            /* default text, when has_default */
    size_t deflen;
    int has_default;
};

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int is_path_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* Trims blanks off both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && is_blank(**s)) (*s)++, (*n)--;
    while (*n && is_blank((*s)[*n - 1])) (*n)--;
}

/* A path is dot-separated names: no empty name, so no leading, trailing or
 * doubled dot. */
static int valid_path(const char *p, size_t n)
{
    if (n == 0 || n > PATH_MAX_LEN || p[0] == '.' || p[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.' && p[i + 1] == '.')
            return 0;
        if (p[i] != '.' && !is_path_char(p[i]))
            return 0;
    }
    return 1;
}

/* Finds the "}}" closing a placeholder whose body starts at `from`. A
 * newline or another "{{" first means this one was never closed: reporting
 * it there beats swallowing a paragraph of text into one "placeholder". */
static const char *find_close(const char *from)
{
    for (const char *p = from; *p; p++) {
        if (*p == '\n' || (p[0] == '{' && p[1] == '{'))
            return NULL;
        if (p[0] == '}' && p[1] == '}')
            return p;
    }
    return NULL;
}

/* Parses the next placeholder at or after *pos. Returns 1 and fills ph,
 * 0 when there are no more, -1 (with err) on a malformed one. */
static int next_placeholder(const char *text, size_t *pos, struct placeholder *ph,
                            char *err, size_t errlen)
{
    const char *open = strstr(text + *pos, "{{");
    if (!open)
        return 0;
    size_t off = (size_t)(open - text) + 1;      /* 1-based, for people */
    const char *body = open + 2, *close = find_close(body);
    if (!close) {
        set_err(err, errlen, "unclosed placeholder '%.*s' at byte %zu",
                snip(open, strcspn(open, "\n"), 24), open, off);
        return -1;
    }
    size_t whole = (size_t)(close + 2 - open);
    const char *bar = memchr(body, '|', (size_t)(close - body));
    const char *path = body;
    size_t pathlen = (size_t)((bar ? bar : close) - body);
    trim(&path, &pathlen);
    if (pathlen == 0 && !bar) {
        set_err(err, errlen, "empty placeholder '%.*s' at byte %zu", (int)whole, open, off);
        return -1;
    }
    if (!valid_path(path, pathlen)) {
        set_err(err, errlen, "bad variable name in placeholder '%.*s' at byte %zu",
                snip(open, whole, 64), open, off);
        return -1;
    }
    ph->start = (size_t)(open - text);
    ph->end = ph->start + whole;
    ph->path = path;
    ph->pathlen = pathlen;
    ph->has_default = bar != NULL;
    ph->def = bar ? bar + 1 : NULL;
    ph->deflen = bar ? (size_t)(close - bar - 1) : 0;
    if (bar)
        trim(&ph->def, &ph->deflen);
    *pos = ph->end;
    return 1;
}

int template_vars(const char *text, template_var_fn fn, void *ud, char *err, size_t errlen)
{
    struct placeholder ph;
    char path[PATH_MAX_LEN + 1];
    size_t pos = 0;
    int r;

    while ((r = next_placeholder(text, &pos, &ph, err, errlen)) == 1) {
        memcpy(path, ph.path, ph.pathlen);
        path[ph.pathlen] = '\0';
        if (fn)
            fn(path, ph.has_default, ph.start + 1, ud);
    }
    return r;
}

/* --- rendering ---------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Looks up a dot-separated path without copying it: cJSON wants
 * NUL-terminated keys, so compare children by length instead. */
static const cJSON *lookup(const cJSON *v, const char *path, size_t n)
{
    while (v && cJSON_IsObject(v)) {
        size_t len = strcspn(path, ".");
        if (len > n) len = n;
        const cJSON *child, *found = NULL;
        cJSON_ArrayForEach(child, v)
            if (child->string && strlen(child->string) == len &&
                memcmp(child->string, path, len) == 0) {
                found = child;
                break;
            }
        if (len == n)
            return found;
        v = found;
        path += len + 1;
        n -= len + 1;
    }
    return NULL;
}

/* Integral values print as integers (a price of 99, not 99.000000); the rest
 * with at most 2 decimals, since template numbers are money and percentages.
 * The 1e15 bound keeps "%.0f" exact and free of exponents. */
static void format_number(double x, char *buf, size_t len)
{
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, len, "%.0f", x == 0 ? 0.0 : x);   /* no "-0" */
        return;
    }
    snprintf(buf, len, "%.2f", x);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf);
        while (end > dot + 1 && end[-1] == '0') *--end = '\0';
        if (end == dot + 1) *dot = '\0';
    }
    if (strcmp(buf, "-0") == 0)         /* -0.001 rounds to nothing */
        strcpy(buf, "0");
}

/* Appends one placeholder's value. Returns 0 or -1 with err. */
static int render_one(struct sbuf *b, const struct placeholder *ph, const cJSON *vars,
                      char *err, size_t errlen)
{
    const cJSON *v = lookup(vars, ph->path, ph->pathlen);

    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        set_err(err, errlen, "variable '%.*s' is %s, not text", (int)ph->pathlen, ph->path,
                cJSON_IsObject(v) ? "an object" : "an array");
        return -1;
    }
    if (cJSON_IsString(v) && v->valuestring && v->valuestring[0]) {
        sb_add(b, v->valuestring, strlen(v->valuestring));
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        char num[400];                  /* "%.2f" of DBL_MAX is 312 bytes */
        format_number(v->valuedouble, num, sizeof num);
        sb_add(b, num, strlen(num));
        return 0;
    }
    if (cJSON_IsBool(v)) {
        sb_add(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
        return 0;
    }
    /* Missing, null or "": a blank in a customer message reads worse than a
     * failed send, so only an explicit default may stand in. */
    if (!ph->has_default) {
        set_err(err, errlen, "missing variable '%.*s'", (int)ph->pathlen, ph->path);
        return -1;
    }
    sb_add(b, ph->def, ph->deflen);
    return 0;
}

char *template_render(const char *text, const cJSON *vars, char *err, size_t errlen)
{
    struct sbuf b = {0};
    struct placeholder ph;
    size_t pos = 0, copied = 0;
    int r;

    sb_add(&b, "", 0);                  /* "" renders to "", not NULL */
    while ((r = next_placeholder(text, &pos, &ph, err, errlen)) == 1) {
        sb_add(&b, text + copied, ph.start - copied);
        if (render_one(&b, &ph, vars, err, errlen) < 0) {
            r = -1;
            break;
        }
        copied = ph.end;
    }
    if (r == 0)
        sb_add(&b, text + copied, strlen(text + copied));
    if (r == 0 && b.oom)
        set_err(err, errlen, "out of memory");
    if (r < 0 || b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

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
    format_number(round(x * 100) / 100, buf, len);
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
