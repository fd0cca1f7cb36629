/* util — small helpers (see util.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void out_of_memory(void)
{
    fputs("tend: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        out_of_memory();
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    strbuf b;
    strbuf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    return strbuf_take(&b);
}

void strbuf_init(strbuf *b)
{
    b->s = NULL;
    b->len = b->cap = 0;
}

void strbuf_free(strbuf *b)
{
    free(b->s);
    strbuf_init(b);
}

static void reserve(strbuf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

void strbuf_reserve(strbuf *b, size_t more)
{
    reserve(b, more);
}

void strbuf_add(strbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void strbuf_puts(strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_putc(strbuf *b, char c)
{
    strbuf_add(b, &c, 1);
}

void strbuf_vprintf(strbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char probe[1];   /* not NULL: GCC's sanitizer build warns on a NULL buffer */
    int n = vsnprintf(probe, sizeof probe, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void strbuf_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *strbuf_take(strbuf *b)
{
    char *s = b->s ? b->s : xstrdup("");
    strbuf_init(b);
    return s;
}

void strbuf_reset(strbuf *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = 0;
}

void strbuf_yaml_quoted(strbuf *b, const char *s, size_t n)
{
    strbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            strbuf_printf(b, "\\%c", c);
        else if (c == '\n')
            strbuf_puts(b, "\\n");
        else if (c == '\t')
            strbuf_puts(b, "\\t");
        else if (c < 0x20)
            strbuf_printf(b, "\\x%02x", c);
        else
            strbuf_putc(b, (char)c);
    }
    strbuf_putc(b, '"');
}

void strbuf_json_string(strbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_putc(b, '"');
    const char *run = s, *end = s + n;
    for (const char *p = s; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        strbuf_add(b, run, (size_t)(p - run));
        run = p + 1;
        char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
        size_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: esc[1] = 'u'; len = 6; break;
        }
        strbuf_add(b, esc, len);
    }
    strbuf_add(b, run, (size_t)(end - run));
    strbuf_putc(b, '"');
}

char *util_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    strbuf b;
    strbuf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        strbuf_add(&b, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        strbuf_free(&b);
        errno = EIO;
        return NULL;
    }
    if (len)
        *len = b.len;
    return strbuf_take(&b);
}

uint64_t util_hash64_add(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

uint64_t util_hash64(const void *p, size_t n)
{
    return util_hash64_add(UTIL_HASH64_INIT, p, n);
}

char *util_path_join(const char *dir, const char *name)
{
    if (!dir || !*dir || strcmp(dir, ".") == 0 || name[0] == '/')
        return xstrdup(name);
    size_t dl = strlen(dir);
    return xasprintf("%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
}

int util_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int util_type_matches(const char *pattern, const char *type)
{
    size_t n = strlen(pattern);
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return strncmp(pattern, type, n - 1) == 0 && type[n - 1] != 0;
    return strcmp(pattern, type) == 0;
}

size_t util_concat(char *buf, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    size_t len = 0;
    for (const char *s; (s = va_arg(ap, const char *)) != NULL && len + 1 < n;) {
        size_t k = strlen(s);
        if (k > n - 1 - len)
            k = n - 1 - len;
        memcpy(buf + len, s, k);
        len += k;
    }
    va_end(ap);
    if (n)
        buf[len] = 0;
    return len;
}

/* Two digits a division (a wake writes seven times and ids): written from
 * the end of a scratch buffer, then copied once. */
size_t util_int_text(char *buf, int64_t v)
{
    static const char pairs[201] =
        "0001020304050607080910111213141516171819"
        "2021222324252627282930313233343536373839"
        "4041424344454647484950515253545556575859"
        "6061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = pairs[d + 1];
        *--p = pairs[d];
    }
    if (u >= 10) {
        unsigned d = (unsigned)u * 2;
        *--p = pairs[d + 1];
        *--p = pairs[d];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(buf, p, n);
    buf[n] = 0;
    return n;
}

void util_values_sql(strbuf *b, const char *head, int cols, int rows, const char *tail)
{
    strbuf_puts(b, head);
    for (int i = 0; i < rows; i++) {
        strbuf_puts(b, i ? ", (" : " (");
        for (int c = 0; c < cols; c++)
            strbuf_puts(b, c ? ", ?" : "?");
        strbuf_putc(b, ')');
    }
    strbuf_puts(b, tail);
}

char *util_rows_text(const char *head, const char *row, int rows, const char *tail)
{
    strbuf b;
    strbuf_init(&b);
    strbuf_puts(&b, head);
    for (int i = 0; i < rows; i++) {
        if (i)
            strbuf_puts(&b, ", ");
        strbuf_puts(&b, row);
    }
    strbuf_puts(&b, tail);
    return strbuf_take(&b);
}

const char *util_rows_sql(char *built[7], int rows, const char *head, const char *row, const char *tail)
{
    int slot = 0;
    while ((1 << slot) < rows && slot < 6)
        slot++;
    return built[slot] ? built[slot] : (built[slot] = util_rows_text(head, row, rows, tail));
}

int util_rows_chunk(int n, int max)
{
    int m = 1;
    while (m * 2 <= n && m * 2 <= max)
        m *= 2;
    return m;
}
