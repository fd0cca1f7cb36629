/* history — the line form of recorded steps (see history.h).
 *
 * Written and read by hand rather than through cJSON: this is the hot path
 * of every wake (a 200-step journey reads 200 entries to take one step), so
 * an entry is read with a few byte scans and written with a few copies, no
 * tree and no allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

/* --- reading ----------------------------------------------------------- */

/* A hex digit's value + 1 (0: not a hex digit): one load per digit, as a
 * replay reads a hash per entry. */
static const unsigned char HEX1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16};

/* A decimal integer at *p (optional '-'); 0 on success. */
static inline int read_int(const char **p, const char *end, int64_t *out)
{
    const char *s = *p;
    int neg = 0;
    if (s < end && *s == '-') {
        neg = 1;
        s++;
    }
    const char *first = s;
    uint64_t v = 0;
    unsigned d;
    while (s < end && (d = (unsigned)(unsigned char)*s - '0') <= 9) {
        v = v * 10 + d;
        s++;
    }
    if (s == first)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    *p = s;
    return 0;
}

int history_next(const char *text, size_t len, size_t *off, struct history_entry *e)
{
    if (*off >= len)
        return 0;
    const char *p = text + *off, *end = text + len;
    e->start = *off;
    e->has_hash = e->has_t = e->pending = 0;
    e->hash = 0;
    e->t = e->deadline = 0;
    e->result = NULL;
    e->result_len = 0;
    /* a bad line still moves on past itself */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *eol = nl ? nl : end;
    e->end = *off = (size_t)((nl ? nl + 1 : end) - text);

    e->kind = p;
    const char *sp = memchr(p, ' ', (size_t)(eol - p));
    p = sp ? sp : eol;
    e->kind_len = (size_t)(p - e->kind);
    if (p >= eol || e->kind_len == 0)
        return -1;
    p++;
    if (p < eol && *p == '-') {
        p++;
    } else {
        uint32_t h = 0;
        const char *first = p, *stop = eol - p > 8 ? p + 8 : eol;
        unsigned d;
        while (p < stop && (d = HEX1[(unsigned char)*p]) != 0) {
            h = h << 4 | (d - 1);
            p++;
        }
        if (p == first)
            return -1;
        e->has_hash = 1;
        e->hash = h;
    }
    if (p >= eol || *p++ != ' ')
        return -1;
    if (p + 1 < eol && p[0] == '-' && p[1] == ' ') {
        p++;
    } else {
        if (read_int(&p, eol, &e->t) != 0)
            return -1;
        e->has_t = 1;
    }
    if (p >= eol || *p++ != ' ' || p >= eol)
        return -1;
    if (*p == 'p') {
        e->pending = 1;
        p++;
        if (p < eol && *p != ' ' && read_int(&p, eol, &e->deadline) != 0)
            return -1;
    } else if (*p == '-') {
        p++;
    } else {
        return -1;
    }
    if (p >= eol || *p++ != ' ' || p >= eol || *p != '"')
        return -1;
    e->desc = p++;
    /* to the closing quote: the first '"' unless a backslash came before it */
    const char *q = memchr(p, '"', (size_t)(eol - p));
    if (q && memchr(p, '\\', (size_t)(q - p)))
        q = NULL;   /* escapes: byte by byte */
    if (q) {
        p = q;
    } else {
        while (p < eol && *p != '"')
            p += *p == '\\' ? 2 : 1;
    }
    if (p >= eol)
        return -1;
    p++;
    e->desc_len = (size_t)(p - e->desc);
    if (p < eol) {
        if (*p++ != ' ' || p >= eol)
            return -1;
        e->result = p;
        e->result_len = (size_t)(eol - p);
    }
    return 1;
}

char *history_desc(const struct history_entry *e)
{
    cJSON *s = e->desc ? cJSON_ParseWithLength(e->desc, e->desc_len) : NULL;
    char *out = xstrdup(cJSON_IsString(s) ? s->valuestring : "");
    cJSON_Delete(s);
    return out;
}

/* --- writing ----------------------------------------------------------- */

/* The line's head (kind, hash, time, pending) is written straight into
 * the buffer, reserved once: a wake writes a line a step, and a call a
 * field (13 of them) cost more than the bytes. */
void history_append(strbuf *b, const char *kind, int64_t hash, int64_t t, int pending, int64_t deadline,
                    const char *desc, const char *result, size_t rlen)
{
    if (!*kind)
        kind = "?";
    size_t klen = strlen(kind);
    /* kind, ' ', 8 hex digits, ' ', 20 digits and a sign, ' ', 'p' and 21, ' ' */
    strbuf_reserve(b, klen + 56);
    char *p = b->s + b->len;
    /* a kind is one token: a migration's odd kind keeps its letters */
    for (size_t i = 0; i < klen; i++)
        *p++ = kind[i] == ' ' || kind[i] == '\n' ? '_' : kind[i];
    *p++ = ' ';
    if (hash >= 0) {
        static const char digits[] = "0123456789abcdef";
        char hex[8];
        int n = 0;
        uint32_t h = (uint32_t)hash;
        do {
            hex[7 - n++] = digits[h & 15];
            h >>= 4;
        } while (h);
        memcpy(p, hex + 8 - n, (size_t)n);
        p += n;
    } else {
        *p++ = '-';
    }
    *p++ = ' ';
    if (t >= 0)
        p += util_int_text(p, t);
    else
        *p++ = '-';
    *p++ = ' ';
    if (pending) {
        *p++ = 'p';
        if (deadline)
            p += util_int_text(p, deadline);
    } else {
        *p++ = '-';
    }
    *p++ = ' ';
    *p = 0;
    b->len = (size_t)(p - b->s);
    desc = desc ? desc : "";
    strbuf_json_string(b, desc, strlen(desc));
    if (result) {
        strbuf_putc(b, ' ');
        strbuf_add(b, result, rlen);
    }
    strbuf_putc(b, '\n');
}

/* --- the JSON form ------------------------------------------------------ */

int history_is_json(const char *text)
{
    while (text && (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r'))
        text++;
    return text && *text == '[';
}

cJSON *history_to_json(const char *text, size_t len)
{
    if (!text)
        return cJSON_CreateArray();
    if (history_is_json(text)) {
        cJSON *arr = cJSON_ParseWithLength(text, len);
        if (cJSON_IsArray(arr))
            return arr;
        cJSON_Delete(arr);
        return cJSON_CreateArray();
    }
    cJSON *arr = cJSON_CreateArray();
    size_t off = 0;
    struct history_entry e;
    while (history_next(text, len, &off, &e) == 1) {
        cJSON *o = cJSON_CreateObject();
        char *kind = xstrndup(e.kind, e.kind_len);
        cJSON_AddStringToObject(o, "k", kind);
        free(kind);
        if (e.has_hash) {
            char hex[12];
            snprintf(hex, sizeof hex, "%x", (unsigned)e.hash);
            cJSON_AddStringToObject(o, "h", hex);
        }
        char *desc = history_desc(&e);
        cJSON_AddStringToObject(o, "a", desc);
        free(desc);
        if (e.has_t) {
            char t[24];
            snprintf(t, sizeof t, "%lld", (long long)e.t);
            cJSON_AddStringToObject(o, "t", t);
        }
        if (e.result) {
            cJSON *r = cJSON_ParseWithLength(e.result, e.result_len);
            if (r)
                cJSON_AddItemToObject(o, "r", r);
        }
        if (e.pending) {
            cJSON_AddTrueToObject(o, "p");
            cJSON_AddNumberToObject(o, "d", (double)e.deadline);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

int history_from_json(const cJSON *arr, strbuf *b)
{
    int n = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "k"));
        const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "h"));
        const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "a"));
        const cJSON *tj = cJSON_GetObjectItemCaseSensitive(o, "t");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "r");
        int pending = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "p"));
        double d = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "d"));
        int64_t hash = h && *h ? (int64_t)(strtoul(h, NULL, 16) & 0xffffffffu) : -1;
        int64_t t = cJSON_IsString(tj) ? strtoll(tj->valuestring, NULL, 10)
                  : cJSON_IsNumber(tj) ? (int64_t)tj->valuedouble : -1;
        char *rtext = r ? cJSON_PrintUnformatted(r) : NULL;
        history_append(b, kind ? kind : "?", hash, t, pending, pending && d == d ? (int64_t)d : 0, a ? a : "",
                       rtext, rtext ? strlen(rtext) : 0);
        free(rtext);
        n++;
    }
    return n;
}
