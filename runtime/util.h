/* util — the few small helpers every module wants.
 *
 * strbuf is a growable byte buffer (always NUL-terminated); its memory is the
 * caller's (strbuf_free, or strbuf_take to keep the bytes). Out of memory
 * aborts: tend cannot do anything useful without a few bytes of heap, and
 * checking every append would hide the real logic. */
#ifndef TEND_UTIL_H
#define TEND_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

void  strbuf_init(strbuf *b);
void  strbuf_free(strbuf *b);
void  strbuf_add(strbuf *b, const char *s, size_t n);
void  strbuf_puts(strbuf *b, const char *s);
void  strbuf_putc(strbuf *b, char c);
void  strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  strbuf_vprintf(strbuf *b, const char *fmt, va_list ap);
char *strbuf_take(strbuf *b);   /* the bytes, malloc'd; b is left empty */
void  strbuf_reset(strbuf *b);
/* Makes room for `more` bytes past len in one allocation (a caller that
 * knows about how much it will add saves the doubling's copies). */
void  strbuf_reserve(strbuf *b, size_t more);
/* Appends s[0..n) as a YAML double-quoted scalar (TAP 13 diagnostics). */
void  strbuf_yaml_quoted(strbuf *b, const char *s, size_t n);
/* Appends s[0..n) as a JSON string the way cJSON prints one: quotes,
 * backslashes and control bytes escaped (\b \f \n \r \t, others \u00XX),
 * every other byte as it is (the text must already be UTF-8). */
void  strbuf_json_string(strbuf *b, const char *s, size_t n);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file; NULL with errno set on failure. *len may be NULL. */
char *util_read_file(const char *path, size_t *len);

/* FNV-1a, 64 bits. */
uint64_t util_hash64(const void *p, size_t n);
uint64_t util_hash64_add(uint64_t h, const void *p, size_t n);
#define UTIL_HASH64_INIT 1469598103934665603ULL

/* "dir/name" into a malloc'd string ("name" alone when dir is NULL or "."). */
char *util_path_join(const char *dir, const char *name);

/* 1 if s ends with suffix. */
int util_ends_with(const char *s, const char *suffix);

/* Does event type `type` answer to `pattern`: the same type, or a pattern
 * "prefix.*" and a type under that prefix ("task.*" answers "task.done"). */
int util_type_matches(const char *pattern, const char *type);

/* v in decimal into buf (at least 21 bytes), NUL-terminated, as "%lld"
 * prints it but without printf's cost (a wake formats several); returns
 * the length. */
size_t util_int_text(char *buf, int64_t v);

/* The NULL-terminated texts after n, one after the other, into buf (n
 * bytes), cut to fit and NUL-terminated as snprintf would ("%s%s..."),
 * without its cost; returns the length written. */
size_t util_concat(char *buf, size_t n, ...);

/* The rows of the next multi-row statement when n (>= 1) are left: the
 * largest power of two <= n and <= max, so a batch of any size is written
 * with statements of a few sizes that stay prepared (37 = 32 + 4 + 1). */
int util_rows_chunk(int n, int max);
/* Appends head, then " (?, ?, ...)" of `cols` markers `rows` times,
 * comma-separated, then tail: a multi-row INSERT's text. */
void util_values_sql(strbuf *b, const char *head, int cols, int rows, const char *tail);
/* head, then `row` `rows` times joined by ", ", then tail (malloc'd). */
char *util_rows_text(const char *head, const char *row, int rows, const char *tail);
/* util_rows_text's text for rows a power of two up to 64, built once into
 * built[log2(rows)], a
 * table of 7 the caller keeps for the process (such a statement's text is
 * the same for every engine; the store keeps it prepared by the text). */
const char *util_rows_sql(char *built[7], int rows, const char *head, const char *row, const char *tail);

#endif
