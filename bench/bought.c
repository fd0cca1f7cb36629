/* bench/bought — the bought filter over many customers and order lines.
 *
 *   build/release/bench_bought [-p] [N [DB]]     (default N = 100000)
 *
 * N customers with 5 order lines each (in 1 to 3 orders over the last
 * year; 200 skus in 10 categories). The store is made by tend's own
 * store_open (its schema and migrations); the rows then go in straight
 * through raw SQLite in key order, 64 rows a statement, the secondary
 * indexes and triggers of the three tables dropped first and made again
 * from their own SQL after the load (a sort each, not random inserts; the
 * time of each is printed to stderr), the kept counts (bought_counts)
 * filled from the loaded rows. The rows are exactly those orderline_batch_flush writes for
 * the same orders; -p stores them through it instead (the processing
 * path, batches of 20,000 orders; slow at millions) to check that.
 * Then compiled segments count through segment_count: every bought form
 * (ever, within, at_least, at_least with within, sku and category,
 * not_). Each count runs 5 times; the fastest and the median are printed
 * with the count, then SQLite's plan for it (EXPLAIN QUERY PLAN). The
 * counts run with tend's default page cache, or BENCH_BOUGHT_CACHE_MB. DB defaults to a temporary file, removed at the end; a
 * DB that has customers is reused as it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "orderline.h"
#include "segment.h"
#include "store.h"
#include "util.h"

#define NOW 1767225600LL    /* 2026-01-01T00:00:00Z */
#define DAY 86400LL

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t below(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static void die(store *st, const char *what)
{
    fprintf(stderr, "bench_bought: %s: %s\n", what, st ? store_errmsg(st) : "");
    exit(1);
}

/* The store as a bulk load builds it: bought_recent (kind, key, last_at,
 * orders) is dropped while the random-time facts go in and built once at
 * the end, a sort instead of 2N random index inserts; the same index the
 * schema makes, so the counts below read what a live store has. */
static void generate_processed(store *st, long n)
{
    double a = seconds();
    if (store_exec(st, "DROP INDEX bought_recent") != 0)
        die(st, "drop index");
    long orders = 0, lines = 0, in_batch = 0;
    orderline_batch *batch = orderline_batch_new();
    if (store_begin(st) != 0)
        die(st, "begin");
    for (long i = 1; i <= n; i++) {
        char id[24];
        snprintf(id, sizeof id, "c%010ld", i);
        store_stmt *s = store_sql(st, "INSERT INTO customers (id, first_seen_at) VALUES (?, ?)");
        store_bind_text(s, 1, id, -1);
        store_bind_int(s, 2, NOW - 400 * DAY);
        if (store_run(s) != 0)
            die(st, "customer");
        int norders = 1 + (int)below(3), left = 5;
        for (int o = 0; o < norders; o++) {
            int k = o == norders - 1 ? left : 1 + (int)below((uint64_t)(left - (norders - o - 1)));
            left -= k;
            cJSON *items = cJSON_CreateArray();
            for (int j = 0; j < k; j++) {
                int sku = (int)below(200);
                char sk[8], cat[8];
                snprintf(sk, sizeof sk, "S%03d", sku);
                snprintf(cat, sizeof cat, "k%d", sku % 10);
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "sku", sk);
                cJSON_AddStringToObject(it, "category", cat);
                cJSON_AddNumberToObject(it, "qty", 1 + (double)below(3));
                cJSON_AddNumberToObject(it, "price", 5 + (double)below(200));
                cJSON_AddItemToArray(items, it);
            }
            char oid[24];
            snprintf(oid, sizeof oid, "o%ld-%d", i, o);
            orderline_batch_add(batch, id, oid, NOW - (long long)below(365 * DAY), items);
            cJSON_Delete(items);
            orders++;
            if (++in_batch == 20000) {
                int got = orderline_batch_flush(batch, st);
                if (got < 0)
                    die(st, "orderline_batch_flush");
                lines += got;
                if (store_commit(st) != 0 || store_begin(st) != 0)
                    die(st, "commit");
                in_batch = 0;
            }
        }
    }
    int got = orderline_batch_flush(batch, st);
    if (got < 0)
        die(st, "orderline_batch_flush");
    lines += got;
    orderline_batch_free(batch);
    if (store_exec(st, "CREATE INDEX bought_recent ON bought(kind, key, last_at, orders)") != 0 ||
        store_commit(st) != 0)
        die(st, "commit");
    double b = seconds();
    printf("bought: %ld customers, %ld orders, %ld lines stored through orderline_batch (index built after) in %.2f s"
           " = %.0f orders/s (%.0f lines/s)\n", n, orders, lines, b - a, orders / (b - a), lines / (b - a));
}

static void raw_die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bench_bought: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        raw_die(db, sql);
}

static sqlite3_stmt *raw_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        raw_die(db, sql);
    return s;
}

static void raw_step(sqlite3 *db, sqlite3_stmt *s, const char *what)
{
    if (sqlite3_step(s) != SQLITE_DONE)
        raw_die(db, what);
    sqlite3_reset(s);
}

/* Rows written ROWS a statement (INSERT ... VALUES (...), (...), ...): one
 * step and reset per ROWS rows instead of per row. The values of a row are
 * kept here (row_text, row_int, row_double, row_null, then row_end) and
 * bound when ROWS of them are there; rows_finish writes the rest with a
 * statement of that many rows. */
#define ROWS 64
#define MAX_COLS 10
struct val {
    int type;           /* SQLITE_TEXT, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_NULL */
    long long i;
    double d;
    char t[24];
};
struct rows {
    sqlite3 *db;
    const char *head;   /* "INSERT INTO t (a, b, ...)" */
    sqlite3_stmt *many;
    int cols, n, col;
    struct val v[ROWS][MAX_COLS];
};

static sqlite3_stmt *rows_prepare(sqlite3 *db, const char *head, int cols, int nrows)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_printf(&sql, "%s VALUES ", head);
    for (int i = 0; i < nrows; i++) {
        strbuf_puts(&sql, i ? ", (" : "(");
        for (int c = 0; c < cols; c++)
            strbuf_puts(&sql, c ? ", ?" : "?");
        strbuf_putc(&sql, ')');
    }
    sqlite3_stmt *s = raw_prepare(db, sql.s);
    strbuf_free(&sql);
    return s;
}

static struct rows *rows_new(sqlite3 *db, const char *head, int cols)
{
    struct rows *r = xmalloc(sizeof *r);
    *r = (struct rows){.db = db, .head = head, .cols = cols};
    r->many = rows_prepare(db, head, cols, ROWS);
    return r;
}

static struct val *row_next(struct rows *r)
{
    return &r->v[r->n][r->col++];
}

static void row_text(struct rows *r, const char *t)
{
    struct val *v = row_next(r);
    v->type = SQLITE_TEXT;
    snprintf(v->t, sizeof v->t, "%s", t);
}

static void row_int(struct rows *r, long long i)
{
    struct val *v = row_next(r);
    v->type = SQLITE_INTEGER;
    v->i = i;
}

static void row_double(struct rows *r, double d)
{
    struct val *v = row_next(r);
    v->type = SQLITE_FLOAT;
    v->d = d;
}

static void row_null(struct rows *r)
{
    row_next(r)->type = SQLITE_NULL;
}

static void rows_write(struct rows *r, sqlite3_stmt *s, const char *what)
{
    for (int k = 0; k < r->n; k++)
        for (int c = 0; c < r->cols; c++) {
            struct val *v = &r->v[k][c];
            int i = k * r->cols + c + 1;
            if (v->type == SQLITE_TEXT)
                sqlite3_bind_text(s, i, v->t, -1, SQLITE_STATIC);
            else if (v->type == SQLITE_INTEGER)
                sqlite3_bind_int64(s, i, v->i);
            else if (v->type == SQLITE_FLOAT)
                sqlite3_bind_double(s, i, v->d);
            else
                sqlite3_bind_null(s, i);
        }
    raw_step(r->db, s, what);
    r->n = 0;
}

static void row_end(struct rows *r, const char *what)
{
    r->col = 0;
    if (++r->n == ROWS)
        rows_write(r, r->many, what);
}

static void rows_finish(struct rows *r, const char *what)
{
    if (r->n) {
        sqlite3_stmt *s = rows_prepare(r->db, r->head, r->cols, r->n);
        rows_write(r, s, what);
        sqlite3_finalize(s);
    }
    sqlite3_finalize(r->many);
    free(r);
}

/* One customer's fact for one key, as orderline_batch_flush merges them. */
struct fact {
    int kind, key, orders, last_order;
    double qty;
    long long first_at, last_at, prev_at;   /* prev_at: the latest order but one, 0 while orders = 1 */
};

/* The same customers, orders and lines generate_processed stores (the same
 * draws in the same order), written in key order by raw SQLite. */
static void generate_raw(const char *path, long n)
{
    double a = seconds();
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        raw_die(db, "open");
    raw_exec(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;"
                 " PRAGMA cache_size = -4194304; PRAGMA temp_store = FILE");
    /* the indexes and triggers of the loaded tables, made again afterwards */
    int nsaved = 0;
    char *saved[64];
    sqlite3_stmt *q = raw_prepare(db, "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
                                      " AND sql IS NOT NULL AND tbl_name IN ('customers', 'order_items', 'bought')"
                                      " ORDER BY type = 'trigger', name");
    char *drops[64];
    while (sqlite3_step(q) == SQLITE_ROW && nsaved < 64) {
        drops[nsaved] = xasprintf("DROP %s %s", sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
        saved[nsaved++] = xstrdup((const char *)sqlite3_column_text(q, 2));
    }
    sqlite3_finalize(q);
    for (int k = 0; k < nsaved; k++) {
        raw_exec(db, drops[k]);
        free(drops[k]);
    }
    int has_counts = sqlite3_exec(db, "SELECT 1 FROM bought_counts LIMIT 0", NULL, NULL, NULL) == SQLITE_OK;
    struct rows *ins_c = rows_new(db, "INSERT INTO customers (id, first_seen_at)", 2);
    struct rows *ins_i = rows_new(db, "INSERT INTO order_items (customer, order_id, line, sku, category, name,"
                                      " qty, price, at)", 9);
    struct rows *ins_b = rows_new(db, "INSERT INTO bought (kind, key, customer, orders, qty, first_at, last_at,"
                                      " prev_at)", 8);
    static long long per_key[2][200];   /* customers per (kind, key): bought_counts */
    long orders = 0, lines = 0, facts = 0;
    raw_exec(db, "BEGIN");
    for (long i = 1; i <= n; i++) {
        char id[24];
        snprintf(id, sizeof id, "c%010ld", i);
        row_text(ins_c, id);
        row_int(ins_c, NOW - 400 * DAY);
        row_end(ins_c, "customers");
        struct fact f[10];
        int nf = 0;
        int norders = 1 + (int)below(3), left = 5;
        for (int o = 0; o < norders; o++) {
            int k = o == norders - 1 ? left : 1 + (int)below((uint64_t)(left - (norders - o - 1)));
            left -= k;
            int sku[5];
            double qty[5], price[5];
            for (int j = 0; j < k; j++) {
                sku[j] = (int)below(200);
                qty[j] = 1 + (double)below(3);
                price[j] = 5 + (double)below(200);
            }
            long long at = NOW - (long long)below(365 * DAY);
            char oid[24];
            snprintf(oid, sizeof oid, "o%ld-%d", i, o);
            for (int j = 0; j < k; j++) {
                char sk[8], cat[8];
                snprintf(sk, sizeof sk, "S%03d", sku[j]);
                snprintf(cat, sizeof cat, "k%d", sku[j] % 10);
                row_text(ins_i, id);
                row_text(ins_i, oid);
                row_int(ins_i, j + 1);
                row_text(ins_i, sk);
                row_text(ins_i, cat);
                row_null(ins_i);
                row_double(ins_i, qty[j]);
                row_double(ins_i, price[j]);
                row_int(ins_i, at);
                row_end(ins_i, "order lines");
                lines++;
                /* merged as orderline_batch_flush does: orders counts the
                 * distinct orders with the key */
                for (int kind = 0; kind < 2; kind++) {
                    int key = kind == 0 ? sku[j] : sku[j] % 10, m = 0;
                    while (m < nf && !(f[m].kind == kind && f[m].key == key))
                        m++;
                    if (m == nf)
                        f[nf++] = (struct fact){kind, key, 0, -1, 0, at, at, 0};
                    else if (f[m].last_order != o)
                        f[m].prev_at = at >= f[m].last_at ? f[m].last_at : at > f[m].prev_at ? at : f[m].prev_at;
                    f[m].orders += f[m].last_order != o;
                    f[m].last_order = o;
                    f[m].qty += qty[j];
                    f[m].first_at = at < f[m].first_at ? at : f[m].first_at;
                    f[m].last_at = at > f[m].last_at ? at : f[m].last_at;
                }
            }
            orders++;
        }
        /* key order: kind, then the key's text ("S007" < "S042"; "k0" .. "k9") */
        for (int x = 1; x < nf; x++)
            for (int y = x; y > 0 && (f[y].kind < f[y - 1].kind ||
                                      (f[y].kind == f[y - 1].kind && f[y].key < f[y - 1].key)); y--) {
                struct fact t = f[y];
                f[y] = f[y - 1];
                f[y - 1] = t;
            }
        for (int x = 0; x < nf; x++) {
            char key[8];
            snprintf(key, sizeof key, f[x].kind == 0 ? "S%03d" : "k%d", f[x].key);
            row_int(ins_b, f[x].kind);
            row_text(ins_b, key);
            row_text(ins_b, id);
            row_int(ins_b, f[x].orders);
            row_double(ins_b, f[x].qty);
            row_int(ins_b, f[x].first_at);
            row_int(ins_b, f[x].last_at);
            if (f[x].orders > 1)
                row_int(ins_b, f[x].prev_at);
            else
                row_null(ins_b);
            row_end(ins_b, "facts");
            per_key[f[x].kind][f[x].key]++;
            facts++;
        }
        if (i % 1000000 == 0) {
            raw_exec(db, "COMMIT; BEGIN");
            fprintf(stderr, "bench_bought: %ld customers written (%.0f s)\n", i, seconds() - a);
        }
    }
    rows_finish(ins_c, "customers");
    rows_finish(ins_i, "order lines");
    rows_finish(ins_b, "facts");
    if (has_counts) {
        raw_exec(db, "DELETE FROM bought_counts");
        sqlite3_stmt *ins_n = raw_prepare(db, "INSERT INTO bought_counts (kind, key, customers) VALUES (?, ?, ?)");
        for (int kind = 0; kind < 2; kind++)
            for (int key = 0; key < (kind == 0 ? 200 : 10); key++) {
                if (!per_key[kind][key])
                    continue;
                char k[8];
                snprintf(k, sizeof k, kind == 0 ? "S%03d" : "k%d", key);
                sqlite3_bind_int(ins_n, 1, kind);
                sqlite3_bind_text(ins_n, 2, k, -1, SQLITE_STATIC);
                sqlite3_bind_int64(ins_n, 3, per_key[kind][key]);
                raw_step(db, ins_n, "count");
            }
        sqlite3_finalize(ins_n);
    }
    raw_exec(db, "COMMIT");
    double b = seconds();
    raw_exec(db, "BEGIN");
    for (int k = 0; k < nsaved; k++) {
        double t = seconds();
        raw_exec(db, saved[k]);
        fprintf(stderr, "bench_bought: %.1f s: %.50s...\n", seconds() - t, saved[k]);
        free(saved[k]);
    }
    raw_exec(db, "COMMIT; PRAGMA journal_mode = WAL");
    sqlite3_close(db);
    double c = seconds();
    struct stat sb;
    printf("bought: %ld customers, %ld orders, %ld lines, %ld facts written by raw SQLite in key order in %.1f s,"
           " %d indexes and triggers made after in %.1f s; store %.2f GB\n", n, orders, lines, facts, b - a, nsaved,
           c - b, stat(path, &sb) == 0 ? sb.st_size / 1e9 : 0.0);
}

/* The plan SQLite makes for what segment_count runs on q (its count_sql,
 * or the COUNT over customers): the detail lines of EXPLAIN QUERY PLAN. */
static void print_plan(store *st, const segment_query *q)
{
    const char *count_sql = segment_query_count_sql(q);
    char *sql = count_sql ? xasprintf("EXPLAIN QUERY PLAN %s", count_sql)
                          : xasprintf("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM customers WHERE %s",
                                      segment_query_where(q));
    store_stmt *s = store_prepare(st, sql);
    if (!s || segment_query_bind(q, s, 1) != 0)
        die(st, "explain");
    while (store_step(s) == STORE_ROW)
        printf("bought:     plan: %s\n", store_col_text(s, 3));
    store_finalize(s);
    free(sql);
}

/* Compiles `filter` (Lua source of a table) and times segment_count. */
static void measure(store *st, lua_State *L, const char *label, const char *filter)
{
    char *code = xasprintf("return %s", filter);
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "bench_bought: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    free(code);
    char err[300];
    segment_query *q = segment_compile(L, -1, NOW, err, sizeof err);
    lua_pop(L, 1);
    if (!q) {
        fprintf(stderr, "bench_bought: %s\n", err);
        exit(1);
    }
    double t[5];
    int64_t count = 0;
    for (int i = 0; i < 5; i++) {
        double a = seconds();
        count = segment_count(st, q);
        t[i] = (seconds() - a) * 1000;
        if (count < 0)
            die(st, "count");
    }
    for (int i = 1; i < 5; i++)     /* sort the five */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    printf("bought: %-44s %9lld customers  fastest %8.1f ms  median %8.1f ms\n", label, (long long)count,
           t[0], t[2]);
    print_plan(st, q);
    segment_query_free(q);
}

/* Filter nodes as the helpers make them (a table with op and a metatable
 * segment.c recognises); enough for not_ and bought here. */
static const char NODES[] =
    "local mt = {}\n"
    "debug.getregistry()['tend.filter'] = mt\n"
    "function not_(x) return setmetatable({ op = 'not', x }, mt) end\n"
    "function bought(x) return setmetatable({ op = 'bought', x }, mt) end\n";

/* The store's file size in GB (the WAL is checkpointed at close). */
static double store_gb(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size / 1e9 : 0.0;
}

int main(int argc, char **argv)
{
    int processed = argc > 1 && strcmp(argv[1], "-p") == 0;
    argc -= processed;
    argv += processed;
    long n = argc > 1 ? atol(argv[1]) : 100000;
    char tmpl[] = "/tmp/bench-bought.XXXXXX";
    const char *path = argc > 2 ? argv[2] : NULL;
    if (!path) {
        int fd = mkstemp(tmpl);
        if (fd < 0)
            die(NULL, "mkstemp");
        close(fd);
        unlink(tmpl);
        path = tmpl;
    }
    /* BENCH_BOUGHT_CACHE_MB: the store's page cache (tend's cache_mb;
     * unset, tend's default) */
    const char *cache_mb = getenv("BENCH_BOUGHT_CACHE_MB");
    struct store_options so = {.synchronous_normal = 1, .cache_kib = cache_mb ? atoi(cache_mb) * 1024 : 0};
    char *err = NULL;
    store *st = store_open(path, &so, &err);
    if (!st) {
        fprintf(stderr, "bench_bought: %s\n", err);
        return 1;
    }
    if (store_count(st, "SELECT COUNT(*) FROM customers") == 0) {
        if (processed) {
            generate_processed(st, n);
        } else {
            store_close(st);   /* the schema is tend's; the rows go in raw */
            generate_raw(path, n);
            st = store_open(path, &so, &err);
            if (!st) {
                fprintf(stderr, "bench_bought: %s\n", err);
                return 1;
            }
        }
    } else {
        printf("bought: reusing %s (%lld customers, %lld lines, %.2f GB)\n", path,
               (long long)store_count(st, "SELECT COUNT(*) FROM customers"),
               (long long)store_count(st, "SELECT COUNT(*) FROM order_items"), store_gb(path));
    }
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, NODES) != LUA_OK)
        die(NULL, lua_tostring(L, -1));
    measure(st, L, "{category, within = 30 days}", "{ bought = { category = 'k3', within = 30 * 86400 } }");
    measure(st, L, "{sku, within = 30 days}", "{ bought = { sku = 'S042', within = 30 * 86400 } }");
    measure(st, L, "{category} (ever)", "{ bought = { category = 'k3' } }");
    measure(st, L, "{sku} (ever)", "{ bought = { sku = 'S042' } }");
    measure(st, L, "{category, at_least = 2}", "{ bought = { category = 'k3', at_least = 2 } }");
    measure(st, L, "{sku, at_least = 2}", "{ bought = { sku = 'S042', at_least = 2 } }");
    measure(st, L, "{category, within = 90 days, at_least = 2}",
            "{ bought = { category = 'k3', within = 90 * 86400, at_least = 2 } }");
    measure(st, L, "{sku, within = 90 days, at_least = 2}",
            "{ bought = { sku = 'S042', within = 90 * 86400, at_least = 2 } }");
    measure(st, L, "not_(bought{category, within = 30 days})",
            "{ not_(bought{ category = 'k3', within = 30 * 86400 }) }");
    measure(st, L, "not_(bought{category})", "{ not_(bought{ category = 'k3' }) }");
    lua_close(L);
    store_close(st);
    if (argc <= 2)
        store_remove(path);
    return 0;
}
