/* importer — `tend import`: customers from CSV or NDJSON (see importer.h).
 *
 * The input streams through one read buffer: a 10M-row file costs the
 * buffer, not the file. Each row becomes a customer_upsert(); rows commit in
 * batches of IMPORT_BATCH, one fsync each. A row the customer (or product)
 * module refuses is refused before anything of it is written (their
 * contract: validation first), so a rejected row needs no savepoint of its
 * own; a store failure (in the row or its date triggers) rolls back the
 * open batch, which was never counted, and ends the import: nothing
 * accepted is half-stored, and what was reported imported is durable.
 *
 * CSV, as RFC 4180 with the usual leniencies: CRLF or LF (or a lone CR) ends
 * a record, a UTF-8 BOM at the start is skipped, blank lines are skipped, a
 * quote inside an unquoted cell is taken literally. A quoted cell may hold
 * commas, doubled quotes and newlines; the line a row is reported at is the
 * line it starts on (the header is line 1).
 *
 * Header names are customer fields (customer.c's table, minus the computed
 * lifecycle r f m), `tags` (split on '|' or ';', trimmed, empty names
 * dropped; a cell of only separators clears the set) and `attrs.<key>`
 * (always stored as a string: a CSV cell has no type, and guessing one
 * would turn a zip code "02139" into 2139). An empty cell leaves the field
 * as it is. A bad header rejects the whole file before any row is read.
 *
 * Why the CSV path builds its cJSON by hand: customer_upsert takes a cJSON
 * object, and building one per row with cJSON_Create* is a dozen mallocs a
 * row for values that already sit NUL-terminated in our cell buffer. Instead
 * each column owns one node, made once, whose valuestring is re-pointed at
 * the row's cell; the row's object is just the present nodes linked
 * together. Nothing here ever cJSON_Delete()s those nodes.
 *
 * A customer CSV is read and checked on a second thread while this one
 * writes (see "CSV customers on two threads" below); what is reported and
 * committed, and in which order, is as if one thread did both.
 *
 * NDJSON: one object a line, exactly what PUT /v1/customers takes; blank
 * lines are skipped; json_parse() gives positioned errors. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "customer.h"
#include "dates.h"
#include "importer.h"
#include "json.h"
#include "product.h"
#include "util.h"
#include "validate.h"

#define IMPORT_BATCH      10000         /* rows per transaction (one fsync) */
#define READ_CHUNK        (256 << 10)   /* bytes per read(2) */
#define MAX_RECORD        (16 << 20)    /* longest row or line we buffer */
#define FRESH_INPUT_MAX   (448LL << 20) /* largest file a first import takes in one transaction */
#define IMPORT_REASON     512           /* longest reason a row is rejected with */

/* --- the reader ---------------------------------------------------------- */

/* Bytes buf[pos, len) are read but not consumed. rd_more() keeps them (moved
 * to the front) and appends more, growing the buffer only for a line longer
 * than it, so an NDJSON line is always contiguous in buf. */
struct reader {
    int fd;
    char *buf;
    size_t cap, pos, len;
    int eof;
    int err;        /* errno of a failed read, or EFBIG past MAX_RECORD */
};

/* Appends input after the unread bytes. Returns the count added, 0 at the
 * end of input, -1 on failure (r->err). */
static ssize_t rd_more(struct reader *r)
{
    if (r->eof || r->err)
        return r->err ? -1 : 0;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < READ_CHUNK / 2) {
        if (r->cap >= MAX_RECORD) {
            r->err = EFBIG;
            return -1;
        }
        r->cap *= 2;
        r->buf = xrealloc(r->buf, r->cap);
    }
    ssize_t n;
    do
        n = read(r->fd, r->buf + r->len, r->cap - r->len);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        r->err = errno;
        return -1;
    }
    if (n == 0)
        r->eof = 1;
    r->len += (size_t)n;
    return n;
}

/* The next byte, or -1 at the end of input (or on an error: see r->err). */
static inline int rd_getc(struct reader *r)
{
    if (r->pos == r->len && rd_more(r) <= 0)
        return -1;
    return (unsigned char)r->buf[r->pos++];
}

static inline int rd_peek(struct reader *r)
{
    if (r->pos == r->len && rd_more(r) <= 0)
        return -1;
    return (unsigned char)r->buf[r->pos];
}

/* Makes at least n bytes visible (fewer only at the end of input). */
static void rd_want(struct reader *r, size_t n)
{
    while (r->len - r->pos < n && rd_more(r) > 0)
        ;
}

/* --- the import: rows, savepoints, batches ------------------------------ */

struct importer {
    engine *e;
    const char *path;
    import_reject_fn reject;
    void *ud;
    struct import_report *rep;
    int products;                   /* rows are products (--products), not customers */
    int dated;                      /* a journey is planned by date or local time (dates_any_planned) */
    int open;                       /* a batch transaction is open */
    int fresh;                      /* first import: one transaction, indexes built at the end */
    char **index_sql;               /* fresh: the dropped indexes' CREATE statements */
    int cache_raised;               /* fresh: the page cache holds the whole import */
    long long cache_kib;            /* fresh: the page cache's size through the import */
    int nindex;
    struct customer_writer cw;      /* the customer rows' writer (its new_tags: see fresh_begin) */
    int batch_rows;
    int64_t batch_created, batch_updated;   /* folded into rep on commit */
    char *err;
    size_t errlen;
    char reason[IMPORT_REASON];
};

static void rejected(struct importer *im, long line, const char *reason)
{
    im->rep->rejected++;
    if (im->reject)
        im->reject(im->ud, line, reason);
}

static int store_failed(struct importer *im, long line, const char *what)
{
    snprintf(im->err, im->errlen, "%s: line %ld: %s", im->path, line, what);
    return -1;
}

/* Commits the open batch; its rows count only once they are durable. */
static int batch_commit(struct importer *im)
{
    if (!im->open)
        return 0;
    im->open = 0;
    if (store_commit(im->e->st) != 0)
        return -1;
    im->rep->imported += im->batch_created;
    im->rep->updated += im->batch_updated;
    im->batch_created = im->batch_updated = 0;
    im->batch_rows = 0;
    return 0;
}

/* Rolls back the open batch after a store failure (its rows were never
 * counted) and ends the import with the reason. */
static int batch_failed(struct importer *im, long line, const char *why)
{
    int rc = store_failed(im, line, why);
    if (im->open && store_in_batch(im->e->st))
        store_rollback(im->e->st);
    im->open = 0;
    im->batch_created = im->batch_updated = im->batch_rows = 0;
    return rc;
}

/* Opens a batch for the next row unless one is open. */
static int batch_open(struct importer *im, long line)
{
    store *st = im->e->st;
    if (!im->open) {
        if (store_begin(st) != 0)
            return store_failed(im, line, store_errmsg(st));
        im->open = 1;
    }
    return 0;
}

/* After a row's upsert (rc, im->reason): a row the customer module refused
 * is rejected and the import goes on; a failing store ends it (-1,
 * im->err). `id` (NULL for a product) has its date triggers planned again. */
static int row_done(struct importer *im, int rc, int created, const char *id, long line)
{
    store *st = im->e->st;
    if (rc != 0) {
        /* customer_upsert reports its only non-data failure, the store's,
         * as "store: ...": that one is not the row's fault, and every row
         * after it would fail the same way. */
        if (strncmp(im->reason, "store: ", 7) == 0)
            return batch_failed(im, line, im->reason);
        rejected(im, line, im->reason);
        return 0;
    }
    /* A new or changed birthday (or any date field, or zone) re-plans the
     * customer's date triggers, in the row's own savepoint. */
    if (id && im->dated && dates_customer_changed(im->e, id) != 0) {
        snprintf(im->reason, sizeof im->reason, "date triggers: %s", store_errmsg(st));
        return batch_failed(im, line, im->reason);
    }
    if (created)
        im->batch_created++;
    else
        im->batch_updated++;
    if (++im->batch_rows >= IMPORT_BATCH && batch_commit(im) != 0)
        return store_failed(im, line, store_errmsg(st));
    return 0;
}

/* Upserts one row (row_done). `id` may be NULL: then it is read from obj
 * once the upsert succeeded. */
static int import_row(struct importer *im, const cJSON *obj, int flags, const char *id, long line)
{
    if (batch_open(im, line) != 0)
        return -1;
    int created = 0;
    int rc = im->products
        ? product_upsert(im->e->st, obj, flags ? PRODUCT_TEXT_VALUES : 0, engine_now(im->e), &created,
                         im->reason, sizeof im->reason)
        : customer_upsert(im->e, obj, flags, &created, im->reason, sizeof im->reason);
    if (im->products)
        id = NULL;      /* products have no date triggers */
    else if (rc == 0 && !id)
        id = cJSON_GetObjectItemCaseSensitive(obj, "id")->valuestring;
    return row_done(im, rc, created, id, line);
}

/* Ends the import: commits what is open even after a failure to read on, so
 * the rows before it are kept (a store failure rolled its batch back). */
static int import_finish(struct importer *im, int rc)
{
    if (batch_commit(im) != 0 && rc == 0)
        rc = store_failed(im, 0, store_errmsg(im->e->st));
    return rc;
}

/* The page cache back to tend.lua's cache_mb (store.c's setting) after a
 * first import raised it. */
static void cache_back(struct importer *im)
{
    if (!im->cache_raised)
        return;
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%d", im->e->cfg.cache_mb * 1024);
    store_exec(im->e->st, pragma);
    im->cache_raised = 0;
}

/* --- a first import ----------------------------------------------------
 * Into a store with no customers, from a file of at most FRESH_INPUT_MAX
 * bytes (see fresh_begin), the whole import is one transaction: the
 * indexes of customers and customer_tags are dropped at its start and built
 * again at its end, by sorting, which costs a fraction of keeping five
 * indexes up to date row by row. So are the triggers that copy a
 * customer's last_order_at into its tag rows: one UPDATE at the end makes
 * the same copies (the tag rows are all this import's), instead of a
 * trigger program and a statement journal per row. Batches are savepoints inside it, so a
 * rejected row, a failure to read on or a failing store keep the same
 * meaning; the rows are durable (and counted) when it commits. A crash
 * before that leaves the store as it was, indexes included. */
static int fresh_begin(struct importer *im, int fd)
{
    store *st = im->e->st;
    /* The transaction's pages must stay in the page cache: once SQLite
     * has to spill dirty pages of one transaction, each page it fetches
     * walks its dirty list, and an import goes 6x (at 1M rows) to 10x
     * slower than batches. The store is about 2.2x the input, so a first
     * import is one transaction only for a regular file of at most
     * FRESH_INPUT_MAX bytes, with the cache raised to fit it. */
    struct stat sb;
    if (fd <= 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > FRESH_INPUT_MAX)
        return 0;
    int64_t any = store_count(st, "SELECT EXISTS (SELECT 1 FROM customers)");
    if (any != 0)
        return any < 0 ? -1 : 0;
    long long kib = (long long)sb.st_size * 9 / 4 / 1024;
    im->cache_kib = (long long)im->e->cfg.cache_mb * 1024;
    if (kib > im->cache_kib) {   /* above tend.lua's cache_mb */
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%lld", kib);
        store_exec(st, pragma);
        im->cache_raised = 1;
        im->cache_kib = kib;
    }
    if (store_begin(st) != 0) {
        cache_back(im);
        return -1;
    }
    /* No tag rows either (there can be some, of no customer): then a
     * customer this import creates has none to delete before its tags are
     * written, and they carry its last_order_at, so fresh_end's UPDATE is
     * needed only after an update of a customer (see customer_writer).
     * Asked once, not per tagged row. */
    int64_t tagged = store_count(st, "SELECT EXISTS (SELECT 1 FROM customer_tags)");
    /* The indexes, and the triggers that copy last_order_at into the tag
     * rows (fresh_end writes those copies in one statement); indexes first,
     * so they are built again before the triggers come back. Any other
     * trigger stays and fires row by row. */
    store_stmt *s = store_sql(st, "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
                                  " AND ((type = 'index' AND tbl_name IN ('customers', 'customer_tags'))"
                                  " OR (type = 'trigger' AND name IN ('customer_tags_order_new',"
                                  " 'customers_order_tags', 'customers_order_tags_new')))"
                                  " ORDER BY type = 'trigger', name");
    int rc = STORE_ERROR;
    while (s && (rc = store_step(s)) == STORE_ROW) {
        im->index_sql = xrealloc(im->index_sql, (size_t)(im->nindex + 2) * sizeof *im->index_sql);
        im->index_sql[im->nindex++] = xasprintf("DROP %s \"%s\"", store_col_text(s, 0), store_col_text(s, 1));
        im->index_sql[im->nindex++] = xstrdup(store_col_text(s, 2));
    }
    for (int i = 0; s && rc == STORE_DONE && i < im->nindex; i += 2)
        if (store_exec(st, im->index_sql[i]) != 0)
            rc = STORE_ERROR;
    if (tagged < 0 || !s || rc != STORE_DONE) {
        store_rollback(st);
        cache_back(im);
        return -1;
    }
    im->fresh = 1;
    im->cw.new_tags = tagged == 0;
    return 0;
}

/* The sorter of the index builds on two threads. SQLite sorts on one
 * thread while its temporary files are in memory (store.c's temp_store),
 * and the raised page cache makes each build's sort one run in memory (a
 * sorter's run is as large as the page cache): PRAGMA threads alone
 * changes nothing. For the builds, temporary files go to SQLite's temp
 * directory and a run is SORT_RUN_KIB: a worker thread sorts and writes
 * each full run while this thread scans on (the reading thread is done by
 * then, so its core is free), and the runs are merged. The small cache
 * must not let SQLite write the transaction's pages before its commit:
 * cache_spill off keeps them in memory past cache_size (the cache holds
 * them already). A PRAGMA that fails leaves the builds as they were.
 * The last run of each build is sorted while this thread waits for it:
 * runs of 2 MiB rather than 4 halve that wait (a 200k import's builds
 * 0.50 s -> 0.42 s; at 1M no change), at a few more runs to merge.
 * Below SORT_THREADED_ROWS customers an index's sort is one run anyway,
 * and these settings made it cost more (callgrind, 20k rows: +7% on this
 * thread), so a smaller import keeps the sort in memory. */
#define SORT_RUN_KIB       2048
#define SORT_THREADED_ROWS 100000

static void sort_threaded(store *st)
{
    char pragma[128];
    snprintf(pragma, sizeof pragma, "PRAGMA threads = 1; PRAGMA cache_spill = 0; PRAGMA cache_size = -%d",
             SORT_RUN_KIB);
    if (store_exec(st, "PRAGMA temp_store = FILE") == 0)
        store_exec(st, pragma);
}

/* The import's settings again (store.c's temp_store and threads, SQLite's
 * default cache_spill), before the commit. */
static void sort_back(struct importer *im)
{
    char pragma[160];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%lld; PRAGMA cache_spill = 1; PRAGMA threads = 0;"
             " PRAGMA temp_store = MEMORY", im->cache_kib);
    store_exec(im->e->st, pragma);
}

/* Builds the indexes again and commits the import (rc 0), or rolls all of
 * it back when that fails (and then nothing counts). */
static int fresh_end(struct importer *im, int rc)
{
    store *st = im->e->st;
    /* What the dropped tag triggers would have written: each tag row
     * carries its customer's last_order_at. All rows are this import's.
     * With new_tags, a created customer's tag rows carry it already: only
     * a customer updated after (named again) can have left one stale. */
    int built = 0;
    if (!im->cw.new_tags || im->rep->updated > 0)
        built = store_exec(st, "UPDATE customer_tags SET last_order_at ="
                               " (SELECT c.last_order_at FROM customers c WHERE c.id = customer_tags.customer)");
    int threaded = built == 0 && im->rep->imported >= SORT_THREADED_ROWS;
    if (threaded)
        sort_threaded(st);
    for (int i = 1; i < im->nindex && built == 0; i += 2)
        built = store_exec(st, im->index_sql[i]);
    char why[256] = "";
    if (built != 0)     /* sort_back's PRAGMAs set the store's message anew */
        snprintf(why, sizeof why, "%s", store_errmsg(st));
    if (threaded)
        sort_back(im);
    if (built != 0 || store_commit(st) != 0) {
        if (rc == 0)
            store_failed(im, 0, built ? why : store_errmsg(st));
        if (store_in_batch(st))
            store_rollback(st);
        im->rep->imported = im->rep->updated = 0;
        rc = -1;
    }
    for (int i = 0; i < im->nindex; i++)
        free(im->index_sql[i]);
    free(im->index_sql);
    cache_back(im);
    return rc;
}

static int read_failed(struct importer *im, struct reader *r, long line)
{
    if (r->err == EFBIG)
        snprintf(im->err, im->errlen, "%s: line %ld: a row longer than %d MiB (an unclosed quote?)",
                 im->path, line, MAX_RECORD >> 20);
    else
        snprintf(im->err, im->errlen, "%s: read error: %s", im->path, strerror(r->err));
    return -1;
}

/* --- CSV records --------------------------------------------------------- */

/* One record: its cells, each NUL-terminated in text at off[i]. */
struct csv {
    struct reader *rd;
    char *text;
    size_t len, cap;
    size_t *off;
    int ncells, offcap;
    long line;          /* line of the reader's position */
    long first_line;    /* line the current record starts on */
    char problem[160];  /* what is malformed about the record, "" if nothing */
};

static void csv_grow(struct csv *c, size_t n)
{
    while (c->len + n > c->cap)
        c->cap = c->cap ? c->cap * 2 : 4096;
    c->text = xrealloc(c->text, c->cap);
}

static inline void csv_add(struct csv *c, const char *p, size_t n)
{
    if (n == 0)
        return;     /* an empty run, maybe before the first byte is buffered (text NULL) */
    if (c->len + n > c->cap)
        csv_grow(c, n);
    memcpy(c->text + c->len, p, n);
    c->len += n;
}

static inline void csv_putc(struct csv *c, char ch)
{
    if (c->len == c->cap)
        csv_grow(c, 1);
    c->text[c->len++] = ch;
}

#define CSV_EOF   (-1)
#define CSV_FATAL (-2)

/* Reads an unquoted run up to a delimiter, straight from the read buffer.
 * Returns the delimiter (',' '\n' '\r'), CSV_EOF or CSV_FATAL. */
static int csv_plain(struct csv *c)
{
    struct reader *r = c->rd;
    for (;;) {
        if (r->pos == r->len && rd_more(r) <= 0)
            return r->err ? CSV_FATAL : CSV_EOF;
        const char *p = r->buf + r->pos, *end = r->buf + r->len, *q = p;
        while (q < end && *q != ',' && *q != '\n' && *q != '\r')
            q++;
        csv_add(c, p, (size_t)(q - p));
        r->pos += (size_t)(q - p);
        if (q < end) {
            r->pos++;
            return (unsigned char)*q;
        }
        if (c->len > MAX_RECORD) {
            r->err = EFBIG;
            return CSV_FATAL;
        }
    }
}

/* Reads a quoted cell's content after its opening quote, through the
 * closing one. Returns the byte after the closing quote, CSV_EOF (also for
 * an unclosed quote, noted in c->problem) or CSV_FATAL. */
static int csv_quoted(struct csv *c)
{
    struct reader *r = c->rd;
    for (;;) {
        if (r->pos == r->len && rd_more(r) <= 0) {
            if (r->err)
                return CSV_FATAL;
            snprintf(c->problem, sizeof c->problem,
                     "cell %d: the quote that opens it is never closed", c->ncells);
            return CSV_EOF;
        }
        const char *p = r->buf + r->pos, *end = r->buf + r->len, *q = p;
        while (q < end && *q != '"' && *q != '\n')
            q++;
        csv_add(c, p, (size_t)(q - p));
        r->pos += (size_t)(q - p);
        if (q == end) {
            if (c->len > MAX_RECORD) {
                r->err = EFBIG;
                return CSV_FATAL;
            }
            continue;
        }
        r->pos++;
        if (*q == '\n') {
            c->line++;
            csv_putc(c, '\n');
            continue;
        }
        if (rd_peek(r) == '"') {    /* "" is one quote */
            r->pos++;
            csv_putc(c, '"');
            continue;
        }
        int next = rd_getc(r);      /* the quote was the closing one */
        if (next < 0)
            return r->err ? CSV_FATAL : CSV_EOF;
        return next;
    }
}

/* Reads one cell; returns the delimiter that ended it ('\n' for any line
 * end, ','), CSV_EOF or CSV_FATAL. */
static int csv_cell(struct csv *c)
{
    if (c->ncells == c->offcap) {
        c->offcap = c->offcap ? c->offcap * 2 : 32;
        c->off = xrealloc(c->off, (size_t)c->offcap * sizeof *c->off);
    }
    c->off[c->ncells++] = c->len;
    struct reader *r = c->rd;
    int ch = rd_peek(r);
    if (ch == '"') {
        r->pos++;
        ch = csv_quoted(c);
        if (ch >= 0 && ch != ',' && ch != '\n' && ch != '\r') {
            /* "abc"def: keep the text, but the row is malformed. */
            if (!c->problem[0])
                snprintf(c->problem, sizeof c->problem,
                         "cell %d: text after the closing quote", c->ncells);
            csv_putc(c, (char)ch);
            ch = csv_plain(c);
        }
    } else {
        ch = csv_plain(c);
    }
    csv_putc(c, '\0');
    if (ch == '\r') {
        if (rd_peek(r) == '\n')
            r->pos++;
        ch = '\n';
    }
    if (ch == '\n')
        c->line++;
    return ch;
}

/* The common record, read whole: a line already in the read buffer, ended
 * by LF or CRLF, with no quote and no other CR in it, is its cells split at
 * the commas, exactly what csv_cell would make of it, with one copy and
 * three memchr scans instead of a copy and a call a cell. Returns 1 when it
 * took the record, 0 to leave it to csv_cell. */
static int csv_line(struct csv *c)
{
    struct reader *r = c->rd;
    const char *p = r->buf + r->pos;
    const char *nl = memchr(p, '\n', r->len - r->pos);
    if (!nl)
        return 0;
    size_t n = (size_t)(nl - p);
    if (n && p[n - 1] == '\r')
        n--;
    if (memchr(p, '"', n) || memchr(p, '\r', n))
        return 0;
    if (n + 1 > c->cap)
        csv_grow(c, n + 1);
    memcpy(c->text, p, n);
    c->text[n] = 0;
    c->len = n + 1;
    for (char *cell = c->text;;) {
        if (c->ncells == c->offcap) {
            c->offcap = c->offcap ? c->offcap * 2 : 32;
            c->off = xrealloc(c->off, (size_t)c->offcap * sizeof *c->off);
        }
        c->off[c->ncells++] = (size_t)(cell - c->text);
        char *comma = memchr(cell, ',', (size_t)(c->text + n - cell));
        if (!comma)
            break;
        *comma = 0;
        cell = comma + 1;
    }
    r->pos += (size_t)(nl - p) + 1;
    c->line++;
    return 1;
}

/* Reads the next record, skipping blank lines. Returns 1 (a record), 0 at
 * the end of input, -1 on a read failure or a record past MAX_RECORD. */
static int csv_next(struct csv *c)
{
    struct reader *r = c->rd;
    int ch;
    while ((ch = rd_peek(r)) == '\n' || ch == '\r') {
        r->pos++;
        if (ch == '\n' || rd_peek(r) != '\n')
            c->line++;
    }
    if (ch < 0)
        return r->err ? -1 : 0;
    c->ncells = 0;
    c->len = 0;
    c->problem[0] = 0;
    c->first_line = c->line;
    if (csv_line(c))
        return 1;
    do
        ch = csv_cell(c);
    while (ch == ',');
    return ch == CSV_FATAL ? -1 : 1;
}

static inline char *csv_at(struct csv *c, int i)
{
    return c->text + c->off[i];
}

/* --- CSV columns and rows ------------------------------------------------ */

enum col_kind { COL_FIELD, COL_TAGS, COL_ATTR };

struct column {
    enum col_kind kind;
    char *name;         /* the header name, trimmed (owned) */
    cJSON node;         /* this column's value in the row object */
};

struct table {
    int products;       /* the columns are a product's */
    struct column *cols;
    int ncols, id_col;
    cJSON root, attrs, tags;
    cJSON *tag_nodes;   /* a pool, reused row after row */
    size_t tag_cap;
};

/* Fields a CSV may name: customer.c's table without the computed ones. */
static const char *const importable[] = {
    "id", "name", "phone", "email", "city", "region", "timezone", "birthday",
    "first_seen_at", "first_order_at", "last_order_at", "orders_count", "total_spent",
    "last_active_at", "blocked", NULL,
};
static const char *const computed[] = {"lifecycle", "r", "f", "m", NULL};
/* A product's columns; `related` is a list like tags. */
static const char *const product_columns[] = {"sku", "name", "category", "price", "usage_days", NULL};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* The nodes are ours, never cJSON_Delete()d: the flags only make sure that,
 * should anyone try, cJSON would not free strings it does not own. */
static void node_init(cJSON *n, int type, char *key)
{
    memset(n, 0, sizeof *n);
    n->type = type | cJSON_IsReference | cJSON_StringIsConst;
    n->string = key;
}

/* Appends item to parent's children, keeping cJSON's convention that the
 * first child's prev is the last one. */
static void node_link(cJSON *parent, cJSON *item)
{
    item->next = NULL;
    if (!parent->child) {
        parent->child = item;
        item->prev = item;
    } else {
        cJSON *last = parent->child->prev;
        last->next = item;
        item->prev = last;
        parent->child->prev = item;
    }
}

static void table_free(struct table *t)
{
    for (int i = 0; i < t->ncols; i++)
        free(t->cols[i].name);
    free(t->cols);
    free(t->tag_nodes);
}

/* Checks one header name and sets up its column; -1 with why. */
static int column_init(struct table *t, int i, const char *name, char *why, size_t n)
{
    struct column *col = &t->cols[i];
    col->name = xstrdup(name);
    for (int k = 0; k < i; k++) {
        if (strcmp(t->cols[k].name, name) == 0) {
            snprintf(why, n, "column '%s' appears twice in the header", name);
            return -1;
        }
    }
    if (t->products) {
        if (strcmp(name, "related") == 0) {
            col->kind = COL_TAGS;
        } else if (in_list(product_columns, name)) {
            col->kind = COL_FIELD;
            node_init(&col->node, cJSON_String, col->name);
            if (strcmp(name, "sku") == 0)
                t->id_col = i;
        } else {
            snprintf(why, n, "unknown column '%s' (known: sku name category price usage_days related)", name);
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "tags") == 0) {
        col->kind = COL_TAGS;
    } else if (strncmp(name, "attrs.", 6) == 0 && name[6]) {
        col->kind = COL_ATTR;
        node_init(&col->node, cJSON_String, col->name + 6);
    } else if (in_list(importable, name)) {
        col->kind = COL_FIELD;
        node_init(&col->node, cJSON_String, col->name);
        if (strcmp(name, "id") == 0)
            t->id_col = i;
    } else if (in_list(computed, name)) {
        snprintf(why, n, "column '%s' is computed by tend and cannot be imported", name);
        return -1;
    } else if (!*name) {
        snprintf(why, n, "column %d has no name", i + 1);
        return -1;
    } else {
        snprintf(why, n, "unknown column '%s' (known: id name phone email city region timezone"
                 " birthday first_seen_at first_order_at last_order_at orders_count total_spent"
                 " last_active_at blocked tags attrs.<key>)", name);
        return -1;
    }
    return 0;
}

static int table_init(struct table *t, struct csv *c, int products, char *why, size_t n)
{
    memset(t, 0, sizeof *t);
    t->products = products;
    t->id_col = -1;
    node_init(&t->root, cJSON_Object, NULL);
    node_init(&t->attrs, cJSON_Object, "attrs");
    node_init(&t->tags, cJSON_Array, products ? "related" : "tags");
    if (c->problem[0]) {
        snprintf(why, n, "header: %s", c->problem);
        return -1;
    }
    t->cols = xcalloc((size_t)c->ncells, sizeof *t->cols);
    for (int i = 0; i < c->ncells; i++) {
        t->ncols = i + 1;
        /* A BOM the file repeats, or spaces, are not part of a name. */
        if (column_init(t, i, trim(csv_at(c, i)), why, n) != 0)
            return -1;
    }
    if (t->id_col < 0) {
        snprintf(why, n, "the header has no '%s' column", products ? "sku" : "id");
        return -1;
    }
    return 0;
}

static int is_tag_sep(char ch)
{
    return ch == '|' || ch == ';';
}

/* Splits a tags cell in place into the tag pool and links the names. */
static void row_tags(struct table *t, char *cell)
{
    size_t most = strlen(cell) / 2 + 1;
    if (most > t->tag_cap) {
        t->tag_cap = most * 2;
        t->tag_nodes = xrealloc(t->tag_nodes, t->tag_cap * sizeof *t->tag_nodes);
    }
    t->tags.child = NULL;
    size_t k = 0;
    for (char *p = cell;;) {
        char *end = p;
        while (*end && !is_tag_sep(*end))
            end++;
        int last = !*end;
        *end = 0;
        char *name = trim(p);
        if (*name) {
            node_init(&t->tag_nodes[k], cJSON_String, NULL);
            t->tag_nodes[k].valuestring = name;
            node_link(&t->tags, &t->tag_nodes[k++]);
        }
        if (last)
            break;
        p = end + 1;
    }
    node_link(&t->root, &t->tags);
}

/* Links the record's cells into t->root; they are read at `text`, c->text
 * or a copy of it. Returns 0, or -1 with why. */
static int row_build(struct table *t, struct csv *c, char *text, char *why, size_t n)
{
    if (c->problem[0]) {
        snprintf(why, n, "%s", c->problem);
        return -1;
    }
    if (c->ncells != t->ncols) {
        snprintf(why, n, "row has %d cell%s, the header has %d", c->ncells,
                 c->ncells == 1 ? "" : "s", t->ncols);
        return -1;
    }
    t->root.child = NULL;
    t->attrs.child = NULL;
    for (int i = 0; i < t->ncols; i++) {
        char *cell = text + c->off[i];
        struct column *col = &t->cols[i];
        /* A NUL byte would cut the cell where C strings end: refused, like
         * bytes that are not UTF-8, before anything reads the cell. */
        size_t len = (i + 1 < c->ncells ? c->off[i + 1] : c->len) - c->off[i] - 1;
        char msg[160];
        if (validate_text(cell, len, 0, msg, sizeof msg) != 0) {
            snprintf(why, n, "column '%s': %s", col->name, msg);
            return -1;
        }
        if (!*cell) {
            if (i == t->id_col) {
                snprintf(why, n, "field '%s' is empty", t->products ? "sku" : "id");
                return -1;
            }
            continue;       /* empty: leave the field as it is */
        }
        if (col->kind == COL_TAGS) {
            row_tags(t, cell);
            continue;
        }
        col->node.valuestring = cell;
        node_link(col->kind == COL_ATTR ? &t->attrs : &t->root, &col->node);
    }
    if (t->attrs.child)
        node_link(&t->root, &t->attrs);
    return 0;
}

/* The records after the header, one after another on this thread. */
static int csv_rows(struct importer *im, struct reader *r, struct csv *c, struct table *t)
{
    int rc;
    while ((rc = csv_next(c)) == 1) {
        if (row_build(t, c, c->text, im->reason, sizeof im->reason) != 0) {
            rejected(im, c->first_line, im->reason);
            continue;
        }
        if (import_row(im, &t->root, CUSTOMER_TEXT_VALUES, csv_at(c, t->id_col), c->first_line) != 0)
            break;
    }
    if (rc < 0)
        return read_failed(im, r, c->first_line);
    return rc == 1 ? -1 : 0;    /* 1: the store failed (im->err is set) */
}

/* --- CSV customers on two threads ----------------------------------------
 * Reading, splitting and checking a customer row (customer_check: every
 * field's rules, no store) is about 30% of a row's instructions, and none
 * of it needs the store: a reading thread does it for the rows after the header
 * while this thread writes the rows it has checked (customer_write), so the
 * two overlap on two cores. The reader hands over batches of FEED_ROWS
 * rows through FEED_SLOTS slots, in file order, and waits while all are
 * full, so it is at most FEED_SLOTS batches ahead (about 1 MiB). A batch
 * holds each row's record text (the checked row points into it), or the
 * reason it was rejected with: this thread reports the rejections, opens and
 * commits the transactions and counts the rows in the order of the file,
 * exactly as csv_rows does. When the store fails, this thread stops the
 * reader and drops what it has not written. The reader uses only its own
 * csv, table and reader (clock.c's zone cache aside, which is safe to
 * share); they are this thread's again once it has been joined. */
#define FEED_ROWS  256
#define FEED_SLOTS 4
#define FEED_TEXT  (64 << 10)   /* a batch's text to start with; it grows for a longer record */

struct feed_entry {
    long line;
    const char *reason;         /* rejected with this (in the batch text), or NULL */
    int opens;                  /* the customer check rejected it: csv_rows had opened a batch */
    int tags_at, ntags;         /* its tags in the batch's tag_off, ntags -1 for no tags cell */
    struct customer_checked row;
};

struct feed_batch {
    char *text;
    size_t text_len, text_cap;
    size_t *tag_off;            /* offsets of the tag names in text */
    int ntag_off, tag_off_cap;
    struct feed_entry ent[FEED_ROWS];
    int n;
};

struct feed {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct feed_batch *slot[FEED_SLOTS];
    int head, count;            /* the full slots, in order: head, head + 1, ... (mod FEED_SLOTS) */
    int done, stop;             /* the reader has handed over its last batch; asked to stop */
    int rc;                     /* its csv_next's last answer: 0 end of input, -1 read failure */
    long end_line;              /* the record csv_next failed at */
    struct csv *c;
    struct table *t;
};

/* The reader: waits for a free slot (the one after the full ones). NULL
 * when asked to stop. */
static struct feed_batch *feed_free_slot(struct feed *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->count == FEED_SLOTS && !f->stop)
        pthread_cond_wait(&f->cv, &f->mu);
    struct feed_batch *b = f->stop ? NULL : f->slot[(f->head + f->count) % FEED_SLOTS];
    pthread_mutex_unlock(&f->mu);
    if (b && !b->text) {
        b->text_cap = FEED_TEXT;
        b->text = xmalloc(b->text_cap);
    }
    return b;
}

/* The reader: hands the filled batch over. */
static void feed_publish(struct feed *f)
{
    pthread_mutex_lock(&f->mu);
    f->count++;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Room for a row of `need` bytes of text in *b, handing *b over for a new
 * one when it is full. 0, or -1 when asked to stop. */
static int feed_room(struct feed *f, struct feed_batch **b, size_t need)
{
    struct feed_batch *cur = *b;
    if (cur->n == FEED_ROWS || (cur->n > 0 && cur->text_len + need > cur->text_cap)) {
        feed_publish(f);
        if (!(cur = *b = feed_free_slot(f)))
            return -1;
    }
    if (need > cur->text_cap) {     /* an empty batch: nothing points into its text yet */
        while (need > cur->text_cap)
            cur->text_cap *= 2;
        cur->text = xrealloc(cur->text, cur->text_cap);
    }
    return 0;
}

/* The reader: the tags of the checked row (row_tags' list, whose names lie
 * in the batch's text) as offsets, for the writer to link again. */
static void feed_keep_tags(struct feed_batch *b, struct feed_entry *en)
{
    en->ntags = -1;
    if (!en->row.tags)
        return;
    en->tags_at = b->ntag_off;
    en->ntags = 0;
    const cJSON *tag;
    cJSON_ArrayForEach(tag, en->row.tags) {
        if (b->ntag_off == b->tag_off_cap) {
            b->tag_off_cap = b->tag_off_cap ? b->tag_off_cap * 2 : 256;
            b->tag_off = xrealloc(b->tag_off, (size_t)b->tag_off_cap * sizeof *b->tag_off);
        }
        b->tag_off[b->ntag_off++] = (size_t)(tag->valuestring - b->text);
        en->ntags++;
    }
    en->row.tags = NULL;        /* t->tags is the reader's, and the next row's */
}

static void *feed_read(void *arg)
{
    struct feed *f = arg;
    struct csv *c = f->c;
    struct table *t = f->t;
    char why[IMPORT_REASON];
    struct feed_batch *b = feed_free_slot(f);
    int rc = 0;
    while (b && (rc = csv_next(c)) == 1) {
        if (feed_room(f, &b, c->len + sizeof why) != 0)
            break;
        char *text = b->text + b->text_len;
        memcpy(text, c->text, c->len);
        struct feed_entry *en = &b->ent[b->n++];
        en->line = c->first_line;
        en->reason = NULL;
        en->opens = 0;
        if (row_build(t, c, text, why, sizeof why) == 0) {
            if (customer_check(&t->root, CUSTOMER_TEXT_VALUES, &en->row, why, sizeof why) == 0) {
                b->text_len += c->len;
                feed_keep_tags(b, en);
                continue;
            }
            en->opens = 1;
        }
        memset(&en->row, 0, sizeof en->row);
        size_t n = strlen(why) + 1;
        memcpy(text, why, n);       /* the record's text is not needed: the reason takes its place */
        en->reason = text;
        b->text_len += n;
    }
    pthread_mutex_lock(&f->mu);
    if (b && b->n > 0)
        f->count++;
    f->done = 1;
    f->rc = b ? rc : 0;
    f->end_line = c->first_line;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* The writer: row_tags' list of en again, its head `list`, its nodes from
 * `pool` on (the writer's pool holds a whole group's lists, grown before
 * any of them is linked). */
static void feed_link_tags(struct feed_batch *b, struct feed_entry *en, cJSON *list, cJSON *pool)
{
    node_init(list, cJSON_Array, "tags");
    for (int i = 0; i < en->ntags; i++) {
        node_init(&pool[i], cJSON_String, NULL);
        pool[i].valuestring = b->text + b->tag_off[en->tags_at + i];
        node_link(list, &pool[i]);
    }
    en->row.tags = list;
}

/* The writer: rows from..to-1 of b (none rejected), each created by
 * customer_write_many's INSERT when there are CUSTOMER_INSERT_ROWS of
 * them and none is in the store yet, else written one by one. Their tag
 * lists are in `tags` (its pool and heads). -1 when the store failed. */
static int feed_write_rows(struct importer *im, struct feed_batch *b, int from, int to, struct table *tags,
                           cJSON *heads)
{
    size_t need = 0;
    for (int k = from; k < to; k++)
        if (b->ent[k].ntags > 0)
            need += (size_t)b->ent[k].ntags;
    if (need > tags->tag_cap) {
        tags->tag_cap = need * 2;
        tags->tag_nodes = xrealloc(tags->tag_nodes, tags->tag_cap * sizeof *tags->tag_nodes);
    }
    struct customer_checked *rows[CUSTOMER_INSERT_ROWS];
    size_t used = 0;
    for (int k = from; k < to; k++) {
        struct feed_entry *en = &b->ent[k];
        if (en->ntags >= 0) {
            feed_link_tags(b, en, &heads[k - from], tags->tag_nodes + used);
            used += (size_t)en->ntags;
        }
        if (to - from == CUSTOMER_INSERT_ROWS)
            rows[k - from] = &en->row;
    }
    int rc = batch_open(im, b->ent[from].line), many = 0;
    if (rc == 0 && to - from == CUSTOMER_INSERT_ROWS) {
        many = customer_write_many(im->e, rows, &im->cw);
        if (many < 0) {
            snprintf(im->reason, sizeof im->reason, "store: %s", store_errmsg(im->e->st));
            rc = row_done(im, -1, 0, NULL, b->ent[from].line);
        }
        for (int k = from; many > 0 && k < to && rc == 0; k++) {
            struct feed_entry *en = &b->ent[k];
            rc = customer_write_new_tags(im->e, &en->row, &im->cw, im->reason, sizeof im->reason);
            rc = row_done(im, rc, 1, en->row.id, en->line);
        }
    }
    for (int k = from; k < to && rc == 0 && many == 0; k++) {
        struct feed_entry *en = &b->ent[k];
        int created = 0;
        rc = customer_write(im->e, &en->row, &im->cw, &created, im->reason, sizeof im->reason);
        rc = row_done(im, rc, created, en->row.id, en->line);
    }
    for (int k = from; k < to; k++)
        customer_checked_free(&b->ent[k].row);
    return rc;
}

/* The writer: one batch's rows, in order. In a first import (no indexes
 * on customers, see fresh_begin) the rows between rejections go in groups
 * of CUSTOMER_INSERT_ROWS that stay within one IMPORT_BATCH (a savepoint),
 * so a rejection, a batch's end and a store failure mean what they did row
 * by row. Returns -1 when the store failed. */
static int feed_write(struct importer *im, struct feed_batch *b, struct table *tags)
{
    cJSON heads[CUSTOMER_INSERT_ROWS];
    int group = im->fresh ? CUSTOMER_INSERT_ROWS : 1;
    int from = 0;
    for (int k = 0; k < b->n; k++) {
        struct feed_entry *en = &b->ent[k];
        if (en->reason) {
            if (from < k && feed_write_rows(im, b, from, k, tags, heads) != 0)
                return -1;
            from = k + 1;
            if (en->opens && batch_open(im, en->line) != 0)
                return -1;
            rejected(im, en->line, en->reason);
            continue;
        }
        if (k + 1 - from == group || im->batch_rows + (k + 1 - from) == IMPORT_BATCH) {
            if (feed_write_rows(im, b, from, k + 1, tags, heads) != 0)
                return -1;
            from = k + 1;
        }
    }
    return from < b->n ? feed_write_rows(im, b, from, b->n, tags, heads) : 0;
}

static void feed_batch_free(struct feed_batch *b)
{
    if (!b)
        return;
    for (int k = 0; k < b->n; k++)
        customer_checked_free(&b->ent[k].row);
    free(b->text);
    free(b->tag_off);
    free(b);
}

/* The customer records after the header: as csv_rows, with the reading and
 * checking on a second thread (or on this one, should it not start). */
static int feed_rows(struct importer *im, struct reader *r, struct csv *c, struct table *t)
{
    struct feed f = {.c = c, .t = t};
    for (int i = 0; i < FEED_SLOTS; i++)
        f.slot[i] = xcalloc(1, sizeof *f.slot[i]);
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    pthread_t reader;
    int rc;
    if (pthread_create(&reader, NULL, feed_read, &f) != 0) {
        rc = csv_rows(im, r, c, t);
    } else {
        struct table tags = {.tag_cap = 0};
        rc = 0;
        for (;;) {
            pthread_mutex_lock(&f.mu);
            while (f.count == 0 && !f.done)
                pthread_cond_wait(&f.cv, &f.mu);
            struct feed_batch *b = f.count ? f.slot[f.head] : NULL;
            pthread_mutex_unlock(&f.mu);
            if (!b)
                break;      /* the reader is done and every batch written */
            if (feed_write(im, b, &tags) != 0) {
                rc = -1;    /* the store failed: im->err is set */
                break;
            }
            b->n = 0;
            b->text_len = 0;
            b->ntag_off = 0;
            pthread_mutex_lock(&f.mu);
            f.head = (f.head + 1) % FEED_SLOTS;
            f.count--;
            pthread_cond_broadcast(&f.cv);
            pthread_mutex_unlock(&f.mu);
        }
        pthread_mutex_lock(&f.mu);
        f.stop = 1;
        pthread_cond_broadcast(&f.cv);
        pthread_mutex_unlock(&f.mu);
        pthread_join(reader, NULL);
        free(tags.tag_nodes);
        if (rc == 0 && f.rc < 0)
            rc = read_failed(im, r, f.end_line);
    }
    for (int i = 0; i < FEED_SLOTS; i++)
        feed_batch_free(f.slot[i]);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
    return rc;
}

static int csv_run(struct importer *im, struct reader *r)
{
    struct csv c = {.rd = r, .line = 1};
    struct table t;
    int rc = csv_next(&c);
    if (rc <= 0) {      /* an empty file: nothing to import */
        free(c.text);
        free(c.off);
        return rc < 0 ? read_failed(im, r, c.line) : 0;
    }
    if (table_init(&t, &c, im->products, im->reason, sizeof im->reason) != 0) {
        if (im->reject)
            im->reject(im->ud, c.first_line, im->reason);
        snprintf(im->err, im->errlen, "%s: nothing imported: the header row is invalid", im->path);
        rc = -1;
    } else {
        rc = im->products ? csv_rows(im, r, &c, &t) : feed_rows(im, r, &c, &t);
    }
    table_free(&t);
    free(c.text);
    free(c.off);
    return rc;
}

/* --- NDJSON -------------------------------------------------------------- */

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* The next line (without '\n'), contiguous in the read buffer until the next
 * read. Returns 1, 0 at the end of input, -1 on failure. */
static int next_line(struct reader *r, const char **line, size_t *n)
{
    size_t scanned = 0;
    for (;;) {
        char *start = r->buf + r->pos;
        char *nl = memchr(start + scanned, '\n', r->len - r->pos - scanned);
        if (nl) {
            *line = start;
            *n = (size_t)(nl - start);
            r->pos += *n + 1;
            return 1;
        }
        scanned = r->len - r->pos;
        ssize_t got = rd_more(r);
        if (got < 0)
            return -1;
        if (got == 0) {
            if (r->pos == r->len)
                return 0;
            *line = r->buf + r->pos;    /* the last line has no '\n' */
            *n = r->len - r->pos;
            r->pos = r->len;
            return 1;
        }
    }
}

static int ndjson_run(struct importer *im, struct reader *r)
{
    const char *p;
    size_t n;
    long line = 0;
    int rc;
    while ((rc = next_line(r, &p, &n)) == 1) {
        line++;
        if (is_blank(p, n))
            continue;
        cJSON *obj = json_parse(p, n, im->reason, sizeof im->reason);
        if (!obj) {
            rejected(im, line, im->reason);
            continue;
        }
        rc = import_row(im, obj, 0, NULL, line);
        cJSON_Delete(obj);
        if (rc != 0)
            return -1;
    }
    return rc < 0 ? read_failed(im, r, line + 1) : 0;
}

/* --- the entry point ----------------------------------------------------- */

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), m = strlen(ext);
    return n > m && strcasecmp(path + n - m, ext) == 0;
}

/* NDJSON or CSV: by the extension, else by the first byte that is not
 * blank (a JSON object starts with '{'; no sane CSV header does). */
static int looks_ndjson(const char *path, struct reader *r)
{
    if (has_ext(path, ".csv"))
        return 0;
    if (has_ext(path, ".ndjson") || has_ext(path, ".jsonl") || has_ext(path, ".json"))
        return 1;
    for (size_t i = r->pos; i < r->len; i++) {
        char ch = r->buf[i];
        if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
            return ch == '{';
    }
    return 0;
}

static int run(engine *e, const char *path, int products, import_reject_fn reject, void *ud,
               struct import_report *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    struct reader r = {.fd = 0, .cap = 2 * READ_CHUNK};
    if (strcmp(path, "-") != 0 && (r.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    r.buf = xmalloc(r.cap);
    struct importer im = {.e = e, .path = strcmp(path, "-") ? path : "stdin", .reject = reject,
                          .ud = ud, .rep = rep, .products = products, .err = err, .errlen = errlen};
    /* The catalog stays as loaded through the import: asked once, not per row
     * (a row without dated journeys otherwise costs two catalog look-ups). */
    im.dated = !products && dates_any_planned(e);
    rd_want(&r, 64);
    if (r.len >= 3 && memcmp(r.buf, "\xEF\xBB\xBF", 3) == 0)
        r.pos = 3;
    int rc;
    if (!products && fresh_begin(&im, r.fd) != 0)
        rc = store_failed(&im, 0, store_errmsg(e->st));
    else if (r.err)
        rc = read_failed(&im, &r, 1);
    else if (looks_ndjson(path, &r))
        rc = ndjson_run(&im, &r);
    else
        rc = csv_run(&im, &r);
    rc = import_finish(&im, rc);
    if (im.fresh)
        rc = fresh_end(&im, rc);
    if (r.fd > 0)
        close(r.fd);
    free(r.buf);
    return rc;
}

int importer_run(engine *e, const char *path, import_reject_fn reject, void *ud,
                 struct import_report *rep, char *err, size_t errlen)
{
    return run(e, path, 0, reject, ud, rep, err, errlen);
}

int importer_run_products(engine *e, const char *path, import_reject_fn reject, void *ud,
                          struct import_report *rep, char *err, size_t errlen)
{
    return run(e, path, 1, reject, ud, rep, err, errlen);
}
