/* template_render — rendering a compiled template (see template.h, the
 * tree is in template_tree.h). Part of the template module: the compiler is
 * template.c. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <glib.h>

#include "clock.h"
#include "template.h"
#include "template_tree.h"
#include "util.h"

/* --- values ------------------------------------------------------------------------ */

enum val_kind { V_NIL, V_BOOL, V_NUM, V_STR, V_ARR, V_OBJ };

struct val {
    enum val_kind k;
    int b;
    double n;
    const char *s;
    size_t len;
    const cJSON *j;
    int safe;                   /* already HTML-escaped */
};

/* j as a value, into *v (NULL: nil). By the type byte, not cJSON_Is*():
 * six library calls a value add up in a render that reads a few dozen. */
static void set_json(struct val *v, const cJSON *j)
{
    *v = (struct val){0};
    if (!j)
        return;
    switch (j->type & 0xFF) {
    case cJSON_False: v->k = V_BOOL; break;
    case cJSON_True: v->k = V_BOOL; v->b = 1; break;
    case cJSON_Number: v->k = V_NUM; v->n = j->valuedouble; break;
    case cJSON_String:
        v->k = V_STR;
        v->s = j->valuestring ? j->valuestring : "";
        v->len = strlen(v->s);
        break;
    case cJSON_Array: v->k = V_ARR; v->j = j; break;
    case cJSON_Object: v->k = V_OBJ; v->j = j; break;
    default: break;     /* null (and raw, which no vars hold) */
    }
}

/* obj's member `name` (the first, as cJSON_GetObjectItemCaseSensitive):
 * the first byte is compared before the call, as most names differ there. */
static const cJSON *member(const cJSON *obj, const char *name)
{
    if (!obj)
        return NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && c->string[0] == name[0] && strcmp(c->string, name) == 0)
            return c;
    return NULL;
}

/* Characters in UTF-8 text (what g_utf8_strlen counts in valid text, which
 * every stored value is): the bytes that do not continue a sequence. */
static long utf8_chars(const char *s, size_t n)
{
    long chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

static const char *kind_name(const struct val *v)
{
    static const char *const names[] = {"nothing", "true/false", "a number", "text", "a list",
                                        "an object"};
    return names[v->k];
}

/* Strings made while rendering: blocks chained, all freed after the render. */
struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
};

struct frame {
    const char *name;
    const cJSON *item;
    int index, length;
    const char *key;
};

struct render {
    const template_prog *t;
    const cJSON *vars;
    struct template_env env;
    char *out;
    size_t len, cap;
    int iterations;
    struct frame frames[TEMPLATE_MAX_DEPTH + 1];
    int nframes;
    uint64_t slots_found;       /* bit k: slot[k] holds variable slot k (struct operand.slot) */
    const cJSON *slot[TEMPLATE_SLOTS];
    struct arena_block *arena;
    char scratch[2048];         /* the first strings, before any block is needed */
    size_t scratch_used;
    char *err;
    size_t errlen;
    int failed;
};

static void rfail(struct render *r, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rfail(struct render *r, size_t off, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = 1;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    template_set_err(r->err, r->errlen, "line %d: %s", template_line_of(r->t->src, off), what);
}

static char *arena_alloc(struct render *r, size_t n)
{
    if (sizeof r->scratch - r->scratch_used >= n + 1) {
        char *p = r->scratch + r->scratch_used;
        r->scratch_used += n + 1;
        p[n] = '\0';
        return p;
    }
    struct arena_block *b = r->arena;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > 4000 ? n + 1 : 4000;
        b = xmalloc(sizeof *b + cap);
        b->used = 0;
        b->cap = cap;
        b->next = r->arena;
        r->arena = b;
    }
    char *p = b->data + b->used;
    b->used += n + 1;
    p[n] = '\0';
    return p;
}

static struct val str_val(struct render *r, const char *s, size_t n)
{
    char *p = arena_alloc(r, n);
    memcpy(p, s, n);
    struct val v = {.k = V_STR, .s = p, .len = n};
    return v;
}

/* The output grows (or the render fails at the output limit): the rare
 * part of emit, out of line. 0 when n more bytes (and the NUL) fit. */
static int emit_grow(struct render *r, size_t n)
{
    if (r->failed)
        return -1;
    if (r->len + n > TEMPLATE_MAX_OUTPUT) {
        r->failed = 1;
        template_set_err(r->err, r->errlen, "the message is over %d bytes (the output limit)", TEMPLATE_MAX_OUTPUT);
        return -1;
    }
    size_t cap = r->cap ? r->cap : 256;
    while (cap < r->len + n + 1) cap *= 2;
    if (cap > TEMPLATE_MAX_OUTPUT + 1)
        cap = TEMPLATE_MAX_OUTPUT + 1;      /* so whatever fits is within the limit */
    r->out = xrealloc(r->out, cap);
    r->cap = cap;
    return 0;
}

/* Appends n bytes; the NUL goes on at the end of the render (nothing reads
 * the output as a C string before). Past the limit, or after a failure,
 * nothing is added: the buffer never holds more than the limit and its NUL,
 * so bytes that fit are within it. */
static inline void emit(struct render *r, const char *s, size_t n)
{
    if ((r->len + n + 1 > r->cap || r->failed) && emit_grow(r, n) != 0)
        return;
    memcpy(r->out + r->len, s, n);
    r->len += n;
}

static void emit_escaped(struct render *r, const char *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        emit(r, s + from, i - from);
        emit(r, rep, strlen(rep));
        from = i + 1;
    }
    emit(r, s + from, n - from);
}

/* A scalar as text (numbers as format_number); 0, or -1 for lists/objects. */
static int text_of(struct render *r, const struct val *v, const char **s, size_t *n)
{
    char num[400];
    switch (v->k) {
    case V_NIL: *s = ""; *n = 0; return 0;
    case V_BOOL: *s = v->b ? "true" : "false"; *n = strlen(*s); return 0;
    case V_STR: *s = v->s; *n = v->len; return 0;
    case V_NUM: {
        template_format_number(v->n, num, sizeof num);
        struct val t = str_val(r, num, strlen(num));
        *s = t.s;
        *n = t.len;
        return 0;
    }
    default: return -1;
    }
}

/* The rest of a path after a value that is not in the vars (a forloop
 * field, a size): of those, only text has a member, .size. */
static void rest_of_path(struct val *v, const struct segment *g, int i, int nseg)
{
    for (; i < nseg; i++) {
        if (v->k == V_STR && g[i].name && !strcmp(g[i].name, "size")) {
            v->k = V_NUM;
            v->n = (double)utf8_chars(v->s, v->len);
        } else {
            *v = (struct val){0};
            return;
        }
    }
}

/* The value at an operand's path, into *v. The path is walked on the cJSON
 * tree and only its end made a value. */
static void lookup(struct render *r, const struct operand *o, struct val *v)
{
    const struct segment *g = o->seg;
    const cJSON *j;
    *v = (struct val){0};
    if (!g[0].name)
        return;
    if (o->forloop) {
        const struct frame *f = &r->frames[o->frame];
        switch (o->forloop) {
        case FORLOOP_INDEX: v->k = V_NUM; v->n = f->index + 1; break;
        case FORLOOP_INDEX0: v->k = V_NUM; v->n = f->index; break;
        case FORLOOP_RINDEX: v->k = V_NUM; v->n = f->length - f->index; break;
        case FORLOOP_LENGTH: v->k = V_NUM; v->n = f->length; break;
        case FORLOOP_FIRST: v->k = V_BOOL; v->b = f->index == 0; break;
        case FORLOOP_LAST: v->k = V_BOOL; v->b = f->index == f->length - 1; break;
        case FORLOOP_KEY:
            if (f->key) { v->k = V_STR; v->s = f->key; v->len = strlen(f->key); }
            break;
        default: break;
        }
        rest_of_path(v, g, 2, o->nseg);
        return;
    }
    if (o->frame >= 0) {
        j = r->frames[o->frame].item;
    } else if (o->slot >= 0) {
        uint64_t bit = (uint64_t)1 << o->slot;
        if (!(r->slots_found & bit)) {
            r->slot[o->slot] = member(r->vars, g[0].name);
            r->slots_found |= bit;
        }
        j = r->slot[o->slot];
    } else {
        j = member(r->vars, g[0].name);
    }
    for (int i = 1; i < o->nseg && j; i++) {
        const struct segment *s = &g[i];
        int type = j->type & 0xFF;
        if (type == cJSON_Object && s->name) {
            j = member(j, s->name);
        } else if (type == cJSON_Array) {
            int n = cJSON_GetArraySize(j);
            if (!s->name) {
                j = s->index >= 0 && s->index < n ? cJSON_GetArrayItem(j, (int)s->index) : NULL;
            } else if (!strcmp(s->name, "size")) {
                v->k = V_NUM;
                v->n = n;
                rest_of_path(v, g, i + 1, o->nseg);
                return;
            } else if (!strcmp(s->name, "first")) {
                j = n ? j->child : NULL;
            } else if (!strcmp(s->name, "last")) {
                j = n ? cJSON_GetArrayItem(j, n - 1) : NULL;
            } else {
                j = NULL;
            }
        } else if (type == cJSON_String) {
            set_json(v, j);
            rest_of_path(v, g, i, o->nseg);
            return;
        } else {
            j = NULL;
        }
    }
    set_json(v, j);
}

static void eval_operand(struct render *r, const struct operand *o, struct val *v)
{
    if (o->kind == OPD_PATH) {
        lookup(r, o, v);
        return;
    }
    *v = (struct val){0};
    switch (o->kind) {
    case OPD_STR: v->k = V_STR; v->s = o->str; v->len = o->len; break;
    case OPD_NUM: v->k = V_NUM; v->n = o->num; break;
    case OPD_TRUE: v->k = V_BOOL; v->b = 1; break;
    case OPD_FALSE: v->k = V_BOOL; v->b = 0; break;
    default: break;     /* nil; blank and empty only mean something in == */
    }
}

/* --- filters ---------------------------------------------------------------------- */

/* A number from a number or numeric text ("12.5"); -1 if it is neither. */
static int number_of(const struct val *v, double *out)
{
    if (v->k == V_NUM) {
        *out = v->n;
        return 0;
    }
    if (v->k == V_STR && v->len) {
        char *end;
        char buf[64];
        if (v->len >= sizeof buf)
            return -1;
        memcpy(buf, v->s, v->len);
        buf[v->len] = '\0';
        *out = strtod(buf, &end);
        while (isspace((unsigned char)*end)) end++;
        return *end ? -1 : 0;
    }
    return -1;
}

static int is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* Upper/lower case, Unicode-aware (GLib's full case mapping: ß → SS). */
static struct val change_case(struct render *r, const char *s, size_t n, int upper)
{
    if (is_ascii(s, n)) {
        char *p = arena_alloc(r, n);
        for (size_t i = 0; i < n; i++)
            p[i] = (char)(upper ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
        return (struct val){.k = V_STR, .s = p, .len = n};
    }
    char *g = upper ? g_utf8_strup(s, (gssize)n) : g_utf8_strdown(s, (gssize)n);
    struct val v = str_val(r, g, strlen(g));
    g_free(g);
    return v;
}

static const struct currency {
    const char *code, *symbol;
    int decimals;
} CURRENCIES[] = {
    {"CNY", "\xC2\xA5", 2}, {"RMB", "\xC2\xA5", 2}, {"USD", "$", 2}, {"EUR", "\xE2\x82\xAC", 2},
    {"GBP", "\xC2\xA3", 2}, {"JPY", "\xC2\xA5", 0}, {"HKD", "HK$", 2}, {"TWD", "NT$", 2},
    {"KRW", "\xE2\x82\xA9", 0}, {"SGD", "S$", 2}, {"AUD", "A$", 2}, {"CAD", "C$", 2},
};

/* "¥1,234.50": the symbol, thousands grouped by ',', the currency's decimals. */
static struct val money(struct render *r, double x, const char *code)
{
    const char *symbol = NULL;
    int decimals = 2;
    char other[16];
    for (size_t i = 0; i < sizeof CURRENCIES / sizeof CURRENCIES[0] && !symbol; i++)
        if (CURRENCIES[i].code[0] == code[0] && !strcmp(CURRENCIES[i].code, code)) {  /* checked to be capitals */
            symbol = CURRENCIES[i].symbol;
            decimals = CURRENCIES[i].decimals;
        }
    if (!symbol) {
        snprintf(other, sizeof other, "%.3s ", code);
        symbol = other;
    }
    char digits[400], out[480];
    double scaled = round(fabs(x) * (decimals ? 100 : 1));
    if (scaled < 1e15) {                /* exact in an integer: no printf */
        long long units = (long long)scaled;
        char rev[32];
        int n = 0;
        for (int i = 0; i < decimals; i++, units /= 10)
            rev[n++] = (char)('0' + units % 10);
        if (decimals)
            rev[n++] = '.';
        do {
            rev[n++] = (char)('0' + units % 10);
            units /= 10;
        } while (units);
        for (int i = 0; i < n; i++)
            digits[i] = rev[n - 1 - i];
        digits[n] = '\0';
    } else {
        snprintf(digits, sizeof digits, "%.*f", decimals, fabs(x));
    }
    if (strspn(digits, "0.") == strlen(digits))
        x = 0;                          /* no "-¥0.00" */
    size_t intlen = strcspn(digits, ".");
    size_t k = 0;
    if (x < 0) out[k++] = '-';
    size_t symlen = strlen(symbol);             /* at most 8 bytes */
    memcpy(out + k, symbol, symlen);
    k += symlen;
    for (size_t i = 0; i < intlen && k < sizeof out - 8; i++) {
        if (i && (intlen - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = digits[i];
    }
    /* the decimals: at most a '.' and what "%.*f" of 2 decimals wrote */
    size_t declen = strlen(digits + intlen);
    if (declen > sizeof out - 1 - k)
        declen = sizeof out - 1 - k;
    memcpy(out + k, digits + intlen, declen);
    k += declen;
    return str_val(r, out, k);
}

/* A time for `date`: epoch seconds, ISO-8601 text, "now"/"today", or a
 * calendar date "YYYY-MM-DD" (shown as that date, in no zone). */
static int date_filter(struct render *r, const struct filter *f, const struct val *in,
                       const struct val *fmt, struct val *out)
{
    struct tm tm = {0};
    tend_time t = 0;
    int y, m, d, plain_date = 0;
    char text[64] = "", cerr[8];
    if (in->k == V_NUM) {
        t = (tend_time)in->n;
    } else if (in->k == V_STR && in->len < sizeof text) {
        memcpy(text, in->s, in->len);
        if (!strcmp(text, "now") || !strcmp(text, "today"))
            t = r->env.now;
        else if (strlen(text) == 10 && clock_parse_date(text, &y, &m, &d, cerr, sizeof cerr) == 0)
            plain_date = 1;
        else if (clock_parse_time(text, &t, cerr, sizeof cerr) != 0) {
            rfail(r, f->off, "filter 'date': '%s' is not a time", text);
            return -1;
        }
    } else {
        rfail(r, f->off, "filter 'date': %s is not a time", kind_name(in));
        return -1;
    }
    if (plain_date) {
        int64_t days = clock_days_from_civil(y, m, d);
        tm.tm_year = y - 1900;
        tm.tm_mon = m - 1;
        tm.tm_mday = d;
        tm.tm_wday = (int)(((days % 7) + 11) % 7);      /* 1970-01-01 was a Thursday */
        tm.tm_yday = (int)(days - clock_days_from_civil(y, 1, 1));
    } else {
        struct clock_local l;
        const char *tz = r->env.tz ? r->env.tz : "UTC";
        if (clock_to_local(t, tz, &l) != 0) {
            rfail(r, f->off, "filter 'date': cannot show the time in zone '%s'", tz);
            return -1;
        }
        tm.tm_year = l.year - 1900;
        tm.tm_mon = l.month - 1;
        tm.tm_mday = l.day;
        tm.tm_hour = l.hour;
        tm.tm_min = l.minute;
        tm.tm_sec = l.second;
        tm.tm_wday = l.wday;
        tm.tm_yday = l.yday;
        tm.tm_isdst = l.is_dst;
        tm.tm_gmtoff = l.utc_offset;
    }
    char buf[512];
    const char *fs;
    size_t fl;
    if (text_of(r, fmt, &fs, &fl) != 0 || fl >= 256) {
        rfail(r, f->off, "filter 'date': the format must be short text");
        return -1;
    }
    char fbuf[256];
    memcpy(fbuf, fs, fl);
    fbuf[fl] = '\0';
    size_t n = fl ? strftime(buf, sizeof buf, fbuf, &tm) : 0;
    *out = str_val(r, buf, n);
    return 0;
}

/* Applies filter f to v. Returns 0, or -1 after rfail. */
static int apply(struct render *r, const struct filter *f, struct val *v)
{
    static const struct val none;
    struct val a[2];        /* filters take at most 2 arguments; the absent ones are nil */
    for (int i = 0; i < 2; i++)
        if (i < f->nargs)
            eval_operand(r, &f->args[i], &a[i]);
        else
            a[i] = none;
    const char *name = FILTERS[f->id].name;
    const char *s;
    size_t n;
    double x, y;

    switch (f->id) {
    case F_DEFAULT:
        if (v->k == V_NIL || (v->k == V_BOOL && !v->b) || (v->k == V_STR && v->len == 0) ||
            ((v->k == V_ARR || v->k == V_OBJ) && !v->j->child))
            *v = a[0];
        return 0;
    case F_UPCASE:
    case F_DOWNCASE:
    case F_CAPITALIZE:
    case F_ESCAPE:
    case F_TRUNCATE:
        if (text_of(r, v, &s, &n) != 0)
            break;
        if (f->id == F_ESCAPE) {
            size_t save = r->len;
            emit_escaped(r, s, n);      /* borrow the output buffer, then take it back */
            if (r->failed)
                return -1;
            *v = str_val(r, r->out + save, r->len - save);
            r->len = save;
            v->safe = 1;
        } else if (f->id == F_TRUNCATE) {
            double lim = 50;
            const char *ell = "...";
            size_t ell_len = 3;
            if (f->nargs > 0 && number_of(&a[0], &lim) != 0) {
                rfail(r, f->off, "filter 'truncate': the length must be a number");
                return -1;
            }
            if (f->nargs > 1 && text_of(r, &a[1], &ell, &ell_len) != 0)
                break;
            if (lim != lim) {           /* NaN */
                rfail(r, f->off, "filter 'truncate': the length must be a number");
                return -1;
            }
            long chars = utf8_chars(s, n);
            if (lim >= (double)chars) {   /* compared as doubles: 1e66 must not become a long */
                *v = str_val(r, s, n);
                return 0;
            }
            long keep = (lim < 0 ? 0 : (long)lim) - utf8_chars(ell, ell_len);
            if (keep < 0) keep = 0;
            /* Cut at a character boundary, never inside a UTF-8 sequence. */
            const char *cut = g_utf8_offset_to_pointer(s, keep);
            size_t head = (size_t)(cut - s);
            char *p = arena_alloc(r, head + ell_len);
            memcpy(p, s, head);
            memcpy(p + head, ell, ell_len);
            *v = (struct val){.k = V_STR, .s = p, .len = head + ell_len};
        } else if (f->id == F_CAPITALIZE) {
            if (n == 0) {
                *v = str_val(r, "", 0);
                return 0;
            }
            const char *rest = g_utf8_next_char(s);
            struct val first = change_case(r, s, (size_t)(rest - s), 1);
            struct val tail = change_case(r, rest, n - (size_t)(rest - s), 0);
            char *p = arena_alloc(r, first.len + tail.len);
            memcpy(p, first.s, first.len);
            memcpy(p + first.len, tail.s, tail.len);
            *v = (struct val){.k = V_STR, .s = p, .len = first.len + tail.len};
        } else {
            *v = change_case(r, s, n, f->id == F_UPCASE);
        }
        return 0;
    case F_SIZE:
        if (v->k == V_STR)
            x = (double)utf8_chars(v->s, v->len);
        else if (v->k == V_ARR || v->k == V_OBJ)
            x = cJSON_GetArraySize(v->j);
        else if (v->k == V_NIL)
            x = 0;
        else
            break;
        *v = (struct val){.k = V_NUM, .n = x};
        return 0;
    case F_JOIN: {
        if (v->k == V_NIL) {
            *v = str_val(r, "", 0);
            return 0;
        }
        if (v->k != V_ARR)
            break;
        const char *sep = " ";
        size_t seplen = 1;
        if (f->nargs && text_of(r, &a[0], &sep, &seplen) != 0) {
            rfail(r, f->off, "filter 'join': the separator must be text");
            return -1;
        }
        size_t save = r->len;
        const cJSON *item;
        int first = 1;
        cJSON_ArrayForEach(item, v->j) {
            struct val iv;
            set_json(&iv, item);
            if (text_of(r, &iv, &s, &n) != 0) {
                r->len = save;
                rfail(r, f->off, "filter 'join': the list holds %s, not text", kind_name(&iv));
                return -1;
            }
            if (!first)
                emit(r, sep, seplen);
            emit(r, s, n);
            first = 0;
        }
        if (r->failed)
            return -1;
        *v = str_val(r, r->out + save, r->len - save);
        r->len = save;
        return 0;
    }
    case F_PLUS:
    case F_MINUS:
    case F_TIMES:
        if (number_of(v->k == V_NIL ? &(struct val){.k = V_NUM} : v, &x) != 0)
            break;
        if (number_of(&a[0], &y) != 0) {
            rfail(r, f->off, "filter '%s': the argument is %s, not a number", name, kind_name(&a[0]));
            return -1;
        }
        *v = (struct val){.k = V_NUM, .n = f->id == F_PLUS ? x + y : f->id == F_MINUS ? x - y : x * y};
        return 0;
    case F_ROUND: {
        if (number_of(v, &x) != 0)
            break;
        double digits = 0;
        if (f->nargs && number_of(&a[0], &digits) != 0) {
            rfail(r, f->off, "filter 'round': the number of digits must be a number");
            return -1;
        }
        double p = pow(10, floor(digits));
        *v = (struct val){.k = V_NUM, .n = round(x * p) / p};
        return 0;
    }
    case F_DATE:
        return date_filter(r, f, v, &a[0], v);
    case F_MONEY: {
        if (number_of(v, &x) != 0)
            break;
        char code[8];
        const char *c = r->env.currency ? r->env.currency : "CNY";
        if (f->nargs) {
            if (a[0].k != V_STR || a[0].len >= sizeof code) {
                rfail(r, f->off, "filter 'money': the currency must be a code like \"CNY\"");
                return -1;
            }
            memcpy(code, a[0].s, a[0].len);
            code[a[0].len] = '\0';
            c = code;
        }
        *v = money(r, x, c);
        return 0;
    }
    case F_PLURAL:
        if (number_of(v, &x) != 0)
            break;
        *v = x == 1 ? a[0] : a[1];
        return 0;
    }
    if (v->k == V_NIL)
        rfail(r, f->off, "filter '%s' has nothing to work on (a missing variable?)", name);
    else if (v->k == V_STR)
        rfail(r, f->off, "filter '%s': '%.*s' is not a number", name, (int)(v->len > 40 ? 40 : v->len), v->s);
    else
        rfail(r, f->off, "filter '%s' cannot take %s", name, kind_name(v));
    return -1;
}

/* --- rendering ------------------------------------------------------------------- */

static int is_blank_val(const struct val *v, int whitespace)
{
    switch (v->k) {
    case V_NIL: return 1;
    case V_BOOL: return !v->b && whitespace;
    case V_STR:
        if (!whitespace)
            return v->len == 0;
        for (size_t i = 0; i < v->len; i++)
            if (!isspace((unsigned char)v->s[i]))
                return 0;
        return 1;
    case V_ARR:
    case V_OBJ: return v->j->child == NULL;
    default: return 0;
    }
}

static int equal(const struct val *a, const struct val *b)
{
    if (a->k != b->k)
        return 0;
    switch (a->k) {
    case V_NIL: return 1;
    case V_BOOL: return a->b == b->b;
    case V_NUM: return a->n == b->n;
    case V_STR: return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    default: return a->j == b->j;
    }
}

/* 1 true, 0 false, -1 failed. */
static int compare(struct render *r, const struct comparison *c)
{
    struct val a, b;
    eval_operand(r, &c->a, &a);
    if (c->op == OP_TRUTHY)
        return !(a.k == V_NIL || (a.k == V_BOOL && !a.b));
    if ((c->op == OP_EQ || c->op == OP_NE) && (c->b.kind == OPD_BLANK || c->b.kind == OPD_EMPTY ||
                                               c->a.kind == OPD_BLANK || c->a.kind == OPD_EMPTY)) {
        int special_right = c->b.kind == OPD_BLANK || c->b.kind == OPD_EMPTY;
        struct val other = a;
        if (!special_right)
            eval_operand(r, &c->b, &other);
        enum operand_kind k = special_right ? c->b.kind : c->a.kind;
        int eq = is_blank_val(&other, k == OPD_BLANK);
        return c->op == OP_EQ ? eq : !eq;
    }
    eval_operand(r, &c->b, &b);
    switch (c->op) {
    case OP_EQ: return equal(&a, &b);
    case OP_NE: return !equal(&a, &b);
    case OP_CONTAINS: {
        if (a.k == V_NIL)
            return 0;
        if (a.k == V_ARR) {
            const cJSON *item;
            cJSON_ArrayForEach(item, a.j) {
                struct val iv;
            set_json(&iv, item);
                if (equal(&iv, &b))
                    return 1;
            }
            return 0;
        }
        const char *bs;
        size_t bn;
        if (text_of(r, &b, &bs, &bn) != 0) {
            rfail(r, c->b.off, "'contains' needs text or a number on its right, not %s", kind_name(&b));
            return -1;
        }
        char *needle = arena_alloc(r, bn);
        memcpy(needle, bs, bn);
        if (a.k == V_OBJ)
            return cJSON_GetObjectItemCaseSensitive(a.j, needle) != NULL;
        if (a.k != V_STR) {
            rfail(r, c->a.off, "'contains' needs text, a list or an object on its left, not %s",
                  kind_name(&a));
            return -1;
        }
        return g_strstr_len(a.s, (gssize)a.len, needle) != NULL;
    }
    default: break;
    }
    if (a.k == V_NIL || b.k == V_NIL)
        return 0;
    int d;
    if (a.k == V_NUM && b.k == V_NUM) {
        d = a.n < b.n ? -1 : a.n > b.n;
    } else if (a.k == V_STR && b.k == V_STR) {
        size_t n = a.len < b.len ? a.len : b.len;
        d = memcmp(a.s, b.s, n);
        if (d == 0)
            d = a.len < b.len ? -1 : a.len > b.len;
    } else {
        rfail(r, c->a.off, "cannot compare %s with %s", kind_name(&a), kind_name(&b));
        return -1;
    }
    switch (c->op) {
    case OP_GT: return d > 0;
    case OP_LT: return d < 0;
    case OP_GE: return d >= 0;
    default: return d <= 0;
    }
}

/* `and` binds tighter than `or`: a or b and c = a or (b and c). */
static int eval_cond(struct render *r, const struct cond *c)
{
    int any = 0, all = 1;
    for (int i = 0; i < c->n; i++) {
        if (i > 0 && c->c[i].or_before) {
            any |= all;
            all = 1;
        }
        if (!all)
            continue;           /* this and-group is already false */
        int v = compare(r, &c->c[i]);
        if (v < 0)
            return -1;
        all = v;
    }
    return any | all;
}

static int render_nodes(struct render *r, const struct nodes *ns);

static int render_output(struct render *r, const struct node *n)
{
    const struct expr *e = &n->u.out;
    struct val v;
    eval_operand(r, &e->base, &v);
    int missing = e->base.kind == OPD_PATH && !e->has_default &&
                  (v.k == V_NIL || (v.k == V_STR && v.len == 0));
    for (int i = 0; i < e->nfilters; i++)
        if (apply(r, &e->filters[i], &v) != 0)
            return -1;
    /* A blank in a customer message reads worse than a failed send; a
     * filter that makes something of nothing ({{ l | size }}) is fine. */
    if (missing && (v.k == V_NIL || (v.k == V_STR && v.len == 0))) {
        rfail(r, e->base.off, "missing variable '%s'", e->base.str);
        return -1;
    }
    if (v.k == V_NUM) {         /* digits, '-' and '.': nothing to escape, no copy to keep */
        char num[400];
        template_format_number(v.n, num, sizeof num);
        emit(r, num, strlen(num));
        return r->failed ? -1 : 0;
    }
    const char *s;
    size_t len;
    if (text_of(r, &v, &s, &len) != 0) {
        rfail(r, e->base.off, "'%s' is %s, not text (loop over it with {%% for %%}, or print one field)",
              e->base.kind == OPD_PATH ? e->base.str : "the value", kind_name(&v));
        return -1;
    }
    if (r->t->html && !v.safe)
        emit_escaped(r, s, len);
    else
        emit(r, s, len);
    return r->failed ? -1 : 0;
}

static int render_for(struct render *r, const struct node *n)
{
    struct val list;
    eval_operand(r, &n->u.loop.src, &list);
    if (list.k != V_NIL && list.k != V_ARR && list.k != V_OBJ) {
        rfail(r, n->u.loop.src.off, "cannot loop over '%s': it is %s",
              n->u.loop.src.str ? n->u.loop.src.str : "a value", kind_name(&list));
        return -1;
    }
    int count = list.k == V_NIL ? 0 : cJSON_GetArraySize(list.j);
    if (n->u.loop.has_limit) {
        struct val lv;
        eval_operand(r, &n->u.loop.limit, &lv);
        double lim;
        if (number_of(&lv, &lim) != 0 || lim < 0) {
            rfail(r, n->u.loop.limit.off, "'limit:' must be a number of 0 or more, not %s", kind_name(&lv));
            return -1;
        }
        if (lim < count)
            count = (int)lim;
    }
    if (count == 0)
        return render_nodes(r, &n->u.loop.els);
    struct frame *f = &r->frames[r->nframes++];
    f->name = n->u.loop.var;
    f->length = count;
    const cJSON *item = list.j->child;
    int rc = 0;
    for (int i = 0; i < count && item; i++, item = item->next) {
        if (++r->iterations > TEMPLATE_MAX_ITERATIONS) {
            rfail(r, n->off, "more than %d loop iterations in one message", TEMPLATE_MAX_ITERATIONS);
            rc = -1;
            break;
        }
        f->index = i;
        f->item = item;
        f->key = list.k == V_OBJ ? item->string : NULL;
        if ((rc = render_nodes(r, &n->u.loop.body)) != 0)
            break;
    }
    r->nframes--;
    return rc;
}

static int render_nodes(struct render *r, const struct nodes *ns)
{
    for (int i = 0; i < ns->n && !r->failed; i++) {
        const struct node *n = &ns->v[i];
        switch (n->kind) {
        case N_TEXT:
            emit(r, r->t->src + n->u.text.start, n->u.text.len);
            break;
        case N_OUTPUT:
            render_output(r, n);
            break;
        case N_IF: {
            const struct nodes *body = n->u.cond.has_else ? &n->u.cond.els : NULL;
            for (int b = 0; b < n->u.cond.nb; b++) {
                int v = eval_cond(r, &n->u.cond.b[b].cond);
                if (v < 0)
                    return -1;
                if (v) {
                    body = &n->u.cond.b[b].body;
                    break;
                }
            }
            if (body)
                render_nodes(r, body);
            break;
        }
        case N_FOR:
            render_for(r, n);
            break;
        }
    }
    return r->failed ? -1 : 0;
}

char *template_run(const template_prog *t, const cJSON *vars, const struct template_env *env,
                   char *err, size_t errlen)
{
    /* Field by field: most of struct render (scratch, frames, slots) needs
     * no zeroing, and a 4 KiB memset is a tenth of a short render. */
    struct render r;
    r.t = t;
    r.vars = vars;
    r.env = env ? *env : (struct template_env){0};
    r.len = 0;
    r.iterations = 0;
    r.nframes = 0;
    r.slots_found = 0;
    r.arena = NULL;
    r.scratch_used = 0;
    r.err = err;
    r.errlen = errlen;
    r.failed = 0;
    /* "" renders to "", not NULL; most messages are about as long as
     * their text, so they fit the first buffer. */
    r.cap = t->src_len + t->src_len / 2 + 64;
    if (r.cap > TEMPLATE_MAX_OUTPUT + 1)
        r.cap = TEMPLATE_MAX_OUTPUT + 1;
    r.out = xmalloc(r.cap);
    r.out[0] = '\0';
    render_nodes(&r, &t->root);
    while (r.arena) {
        struct arena_block *next = r.arena->next;
        free(r.arena);
        r.arena = next;
    }
    if (r.failed) {
        free(r.out);
        return NULL;
    }
    r.out[r.len] = '\0';       /* emit keeps a byte for it */
    return r.out;
}

char *template_render(const char *text, const cJSON *vars, char *err, size_t errlen)
{
    template_prog *t = template_compile(text, 0, err, errlen);
    if (!t)
        return NULL;
    char *out = template_run(t, vars, NULL, err, errlen);
    template_free(t);
    return out;
}

