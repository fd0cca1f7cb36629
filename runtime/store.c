/* store — SQLite behind tend's statement API (see store.h for the contract).
 *
 * Why a cache of statements keyed by SQL text: preparing is a parse and a
 * plan, ten times the cost of running a point query. Callers pass the same
 * literal each time, so the text is the natural key; hashing it is cheap next
 * to a prepare. The cache is an open-addressing table that only grows. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pool.h"
#include "schema.h"
#include "store.h"
#include "util.h"

/* SQLite's allocations go through pool.h's per-thread free lists (the
 * system SQLite is built without lookaside: ~120 mallocs and frees for a
 * delivered message, in bursts past glibc's per-thread cache); a thread of
 * the store empties its lists when it ends (pool_drain). */
static int pool_init(void *ud)
{
    (void)ud;
    return SQLITE_OK;
}

static void pool_shutdown(void *ud)
{
    (void)ud;
}

struct cached {
    uint64_t hash;
    char *sql;
    sqlite3_stmt *stmt;
};

/* Callers mostly pass string literals: a small direct-mapped table keyed by
 * the text's address finds the statement without hashing the text. The hit
 * is confirmed against the cached text (a buffer reused for other SQL must
 * not get the old statement); comparing costs a fraction of hashing. */
#define ALIASES 256

struct alias {
    const char *sql;            /* the caller's pointer */
    const char *text;           /* the cache's copy of the text */
    sqlite3_stmt *stmt;
};

struct store {
    sqlite3 *db;
    struct cached *cache;
    size_t cache_cap, cache_len;
    struct alias aliases[ALIASES];
    int depth;              /* store_batch nesting: 0 = no transaction */
    double commit_ms;       /* time spent in COMMIT (its fsync), in all */
    char err[512];          /* a message of ours, when the error is not SQLite's */
    struct committer *committer;   /* store_commit_start's thread, once started */
    int begin_deferred;     /* store_begin_after_commit: depth is 1, BEGIN runs at settle */
    struct checkpointer *checkpointer;   /* the WAL's checkpoints, off the writer's path */
    void (*pending)(void *ud);   /* store_set_pending: writes the rows kept back */
    void *pending_ud;
};

/* --- checkpoints on a thread of their own ------------------------------
 * SQLite's own checkpoint runs inside the COMMIT that fills the WAL past
 * its limit: that commit copies the WAL into the database and syncs it,
 * seconds of a long fan-out spent waiting. While a bulk writer asks for it
 * (store_checkpoint_aside), the writer's commits only count the WAL's pages
 * (sqlite3_wal_hook), and past CHECKPOINT_PAGES a thread with a connection
 * of its own runs a PASSIVE checkpoint while the writer goes on (WAL mode
 * lets a checkpoint and one writer run together; the checkpoint syncs as
 * the writer's synchronous level says, so what is durable is as before).
 * Should that thread fall behind by CHECKPOINT_PAGES * 4, the committing
 * connection checkpoints itself, as SQLite would: the WAL stays bounded.
 * Otherwise the committing connection checkpoints at CHECKPOINT_PAGES, as
 * SQLite's wal_autocheckpoint: for a stream of small commits that is
 * cheaper, because a checkpoint that finishes before the next write lets
 * that write start the WAL from its beginning, where one that runs beside
 * the writer never catches up and the WAL grows to its bound (measured:
 * a 200-step journey's late wake took 2.5x the CPU with the thread). */
#define CHECKPOINT_PAGES 8192

struct checkpointer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int want, quit, started;
    int running;            /* the thread's checkpoint is under way (mu) */
    atomic_int aside;       /* store_checkpoint_aside: the thread checkpoints (else the writer) */
    char *path;             /* the database the thread opens */
    char sync[8];           /* the writer's synchronous level */
};

/* The thread that runs a COMMIT while the caller's thread goes on with
 * work that does not touch the store. Only one commit is in flight at a
 * time; while it is, every call of this API on the caller's thread first
 * waits for it (settle), so the connection is never used by two threads
 * at once and calls keep their order. */
struct committer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;                 /* eventfd: written when a commit ended */
    int job, done, quit;    /* a commit asked for; it ended; the thread ends */
    /* store_commit_detach's commits: the job's kind, their own eventfd and
     * result, apart from store_commit_finish's (another owner's) */
    int detached, dfd, drc, dunclaimed;
    char derr[512];
    int in_flight;          /* started and not yet settled (caller's thread) */
    int rc;                 /* the ended commit: 0, or -1 (rolled back) */
    int unclaimed;          /* its result is not yet read by store_commit_finish */
    double ms;
    char err[512];
};

/* The store whose commit is in flight, if any (set and cleared on the
 * caller's thread): statement calls know no store, and settle through it. */
static store *in_flight;

static void settle(store *st);
static void committer_stop(store *st);
#define SETTLE() do { if (in_flight) settle(in_flight); } while (0)
/* A call on one connection waits only for that connection's commit: a
 * reader (store_open_reader) reads the last committed state meanwhile. */
#define SETTLE_DB(h) do { if (in_flight && in_flight->db == (h)) settle(in_flight); } while (0)
#define SETTLE_ST(st) SETTLE_DB((st)->db)
#define SETTLE_STMT(s) SETTLE_DB(sqlite3_db_handle(STMT(s)))

#define STMT(s) ((sqlite3_stmt *)(void *)(s))

static void set_err(store *st, const char *msg)
{
    snprintf(st->err, sizeof st->err, "%s", msg);
}

const char *store_errmsg(store *st)
{
    SETTLE_ST(st);
    if (st->err[0])
        return st->err;
    return sqlite3_errmsg(st->db);
}

int store_constraint_failed(store *st)
{
    SETTLE_ST(st);
    return (sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CONSTRAINT;
}

/* --- opening and migrations ------------------------------------------- */

static int run_migrations(store *st, const struct store_migration *migs, int n, char **err)
{
    if (store_exec(st, "CREATE TABLE IF NOT EXISTS meta ("
                       " key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID") != 0)
        goto fail;
    int64_t version = 0;
    if (store_meta_get_int(st, "schema_version", &version) < 0)
        goto fail;
    if (version > n) {
        char msg[160];
        snprintf(msg, sizeof msg, "database schema version %lld is newer than this tend (%d)",
                 (long long)version, n);
        *err = strdup(msg);
        return -1;
    }
    /* One transaction per migration: a crash between two leaves a database
     * that resumes at the right one. */
    for (int i = (int)version; i < n; i++) {
        if (store_begin(st) != 0)
            goto fail;
        if (store_exec(st, migs[i].sql) != 0 ||
            store_meta_set_int(st, "schema_version", i + 1) != 0) {
            char msg[600];
            snprintf(msg, sizeof msg, "migration %d (%s): %s", i + 1, migs[i].name,
                     store_errmsg(st));
            store_rollback(st);
            *err = strdup(msg);
            return -1;
        }
        if (store_commit(st) != 0)
            goto fail;
    }
    return 0;
fail:
    *err = strdup(store_errmsg(st));
    return -1;
}

static void *checkpointer_main(void *arg)
{
    struct checkpointer *k = arg;
    sqlite3 *db = NULL;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->want && !k->quit)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->quit)
            break;
        k->want = 0;
        k->running = 1;
        pthread_mutex_unlock(&k->mu);
        if (!db && sqlite3_open_v2(k->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK) {
            char pragmas[96];
            snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous=%s; PRAGMA cache_size=-256;", k->sync);
            sqlite3_exec(db, pragmas, NULL, NULL, NULL);
        }
        /* busy (the writer checkpoints itself): the next call tries again */
        if (db)
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&k->mu);
        k->running = 0;
        pthread_cond_broadcast(&k->cv);   /* a writer 4x behind waits for this (wal_committed) */
    }
    pthread_mutex_unlock(&k->mu);
    sqlite3_close_v2(db);
    pool_drain();
    return NULL;
}

/* After every commit of the writer (on the thread that committed). */
static int wal_committed(void *ud, sqlite3 *db, const char *name, int pages)
{
    struct checkpointer *k = ud;
    if (pages < CHECKPOINT_PAGES)
        return SQLITE_OK;
    if (!k || !atomic_load(&k->aside) || pages >= CHECKPOINT_PAGES * 4) {
        /* 4x behind: the thread's checkpoint, if one is under way, holds
         * the checkpoint lock, and ours would return SQLITE_BUSY at once
         * and leave the WAL to grow past its bound while the thread is
         * slow (a loaded machine). Wait for it, then copy the rest. */
        if (k) {
            pthread_mutex_lock(&k->mu);
            while (k->running)
                pthread_cond_wait(&k->cv, &k->mu);
            pthread_mutex_unlock(&k->mu);
        }
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    pthread_mutex_lock(&k->mu);
    if (!k->started)
        k->started = pthread_create(&k->thread, NULL, checkpointer_main, k) == 0 ? 1 : -1;
    k->want = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    if (k->started < 0)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

static void checkpointer_stop(store *st)
{
    struct checkpointer *k = st->checkpointer;
    if (!k)
        return;
    if (st->db)
        sqlite3_wal_hook(st->db, NULL, NULL);
    pthread_mutex_lock(&k->mu);
    k->quit = 1;
    pthread_cond_broadcast(&k->cv);
    int started = k->started > 0;
    pthread_mutex_unlock(&k->mu);
    if (started)
        pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k->path);
    free(k);
    st->checkpointer = NULL;
}

/* The writer's checkpoints go to checkpointer_main (a file in WAL mode);
 * else SQLite's own at the same size. */
static void checkpointer_init(store *st, const char *path, const char *sync, int memory)
{
    struct checkpointer *k = memory ? NULL : calloc(1, sizeof *k);
    if (k) {
        k->path = strdup(path);
        snprintf(k->sync, sizeof k->sync, "%s", sync);
        pthread_mutex_init(&k->mu, NULL);
        pthread_cond_init(&k->cv, NULL);
        if (!k->path) {
            pthread_mutex_destroy(&k->mu);
            pthread_cond_destroy(&k->cv);
            free(k);
            k = NULL;
        }
    }
    st->checkpointer = k;
    sqlite3_wal_hook(st->db, wal_committed, k);
}

void store_checkpoint_aside(store *st, int on)
{
    struct checkpointer *k = st->checkpointer;
    if (!k)
        return;
    atomic_store(&k->aside, on);   /* read by wal_committed, on the thread that commits */
}

int store_checkpoint_is_aside(const store *st)
{
    return st->checkpointer && atomic_load(&st->checkpointer->aside);
}

static void pick_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv);

store *store_open_with(const char *path, const struct store_options *opts,
                       const struct store_migration *migs, int n, char **err)
{
    struct store_options defaults = {0};
    if (!opts)
        opts = &defaults;
    *err = NULL;
    store *st = calloc(1, sizeof *st);
    if (!st) {
        *err = strdup("out of memory");
        return NULL;
    }
    const char *where = opts->memory ? ":memory:" : path;
    /* No memory statistics (nothing reads them): with them, every SQLite
     * malloc and free takes a global mutex to count (5% of a wake). Only
     * possible before SQLite initializes, so the first open sets it. */
    static int configured;
    if (!configured) {
        configured = 1;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        if (POOL_ON) {
            static const sqlite3_mem_methods kept = {pool_malloc, pool_free, pool_realloc, pool_size,
                                                     pool_roundup, pool_init, pool_shutdown, NULL};
            sqlite3_config(SQLITE_CONFIG_MALLOC, &kept);
        }
    }
    if (sqlite3_open_v2(where, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", where, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        *err = strdup(msg);
        store_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000);
    /* store_bind_texts' reader; DIRECTONLY: a trigger or view in the file
     * cannot call it */
    if (sqlite3_create_function_v2(st->db, "tend_pick", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, NULL, pick_fn, NULL, NULL,
                                   NULL) != SQLITE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", where, sqlite3_errmsg(st->db));
        *err = strdup(msg);
        store_close(st);
        return NULL;
    }
    /* WAL: readers (status, the HTTP API) never block the one writer.
     * synchronous=FULL syncs the WAL at every commit, so an acknowledged
     * event survives a power cut; batching keeps that to one fsync a batch. */
    char pragmas[320];
    const char *sync = opts->throwaway ? "OFF" : opts->synchronous_normal ? "NORMAL" : "FULL";
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA temp_store=MEMORY;"
             "PRAGMA cache_size=-%d; PRAGMA foreign_keys=OFF;",
             sync, opts->cache_kib > 0 ? opts->cache_kib : 8192);
    if (store_exec(st, pragmas) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", where, store_errmsg(st));
        *err = strdup(msg);
        store_close(st);
        return NULL;
    }
    checkpointer_init(st, where, sync, opts->memory);   /* in place of wal_autocheckpoint */
    if (run_migrations(st, migs, n, err) != 0) {
        char *m = *err;
        size_t len = strlen(where) + strlen(m) + 3;
        *err = malloc(len);
        if (*err)
            snprintf(*err, len, "%s: %s", where, m);
        free(m);
        store_close(st);
        return NULL;
    }
    return st;
}

store *store_open(const char *path, const struct store_options *opts, char **err)
{
    return store_open_with(path, opts, schema_migrations, schema_migration_count, err);
}

store *store_open_reader(const char *path, int cache_kib, char **err)
{
    *err = NULL;
    store *st = calloc(1, sizeof *st);
    if (!st) {
        *err = strdup("out of memory");
        return NULL;
    }
    /* read-only and no migrations: the writer's connection made the
     * schema; WAL lets this one read the last commit while it writes */
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        *err = strdup(msg);
        store_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, 1000);
    char pragmas[80];
    snprintf(pragmas, sizeof pragmas, "PRAGMA cache_size=-%d; PRAGMA query_only=1;", cache_kib > 0 ? cache_kib : 2048);
    if (store_exec(st, pragmas) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, store_errmsg(st));
        *err = strdup(msg);
        store_close(st);
        return NULL;
    }
    return st;
}

int store_backup(store *st, const char *dest, char *err, size_t errlen)
{
    SETTLE();
    if (access(dest, F_OK) == 0) {
        snprintf(err, errlen, "%s exists already; a backup never overwrites", dest);
        return -1;
    }
    sqlite3 *to = NULL;
    if (sqlite3_open_v2(dest, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", dest, to ? sqlite3_errmsg(to) : "cannot open");
        sqlite3_close(to);
        return -1;
    }
    sqlite3_backup *b = sqlite3_backup_init(to, "main", st->db, "main");
    int rc = b ? SQLITE_OK : sqlite3_errcode(to);
    /* 256 pages a step; between steps the source is free for its writer.
     * A write by another connection restarts the copy, which converges as
     * long as the steps outpace the writes. */
    while (b && ((rc = sqlite3_backup_step(b, 256)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED))
        sqlite3_sleep(rc == SQLITE_OK ? 0 : 5);
    if (b)
        sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "backup to %s: %s", dest, sqlite3_errmsg(to));
        sqlite3_close(to);
        unlink(dest);
        return -1;
    }
    /* the copy is a plain rollback-journal file, checked before it counts */
    char *msg = NULL;
    rc = sqlite3_exec(to, "PRAGMA journal_mode=DELETE", NULL, NULL, &msg);
    sqlite3_free(msg);
    sqlite3_stmt *q = NULL;
    int ok = rc == SQLITE_OK && sqlite3_prepare_v2(to, "PRAGMA quick_check", -1, &q, NULL) == SQLITE_OK &&
             sqlite3_step(q) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    if (!ok) {
        snprintf(err, errlen, "backup to %s: the copy failed its check: %s", dest, sqlite3_errmsg(to));
        sqlite3_close(to);
        unlink(dest);
        return -1;
    }
    if (sqlite3_close(to) != SQLITE_OK) {
        snprintf(err, errlen, "backup to %s: close failed", dest);
        return -1;
    }
    return 0;
}

const char *store_library_version(void)
{
    return sqlite3_libversion();
}

void store_close(store *st)
{
    if (!st)
        return;
    SETTLE();
    committer_stop(st);
    checkpointer_stop(st);
    for (size_t i = 0; i < st->cache_cap; i++) {
        if (st->cache[i].sql) {
            sqlite3_finalize(st->cache[i].stmt);
            free(st->cache[i].sql);
        }
    }
    free(st->cache);
    if (st->db)
        sqlite3_close_v2(st->db);
    free(st);
}

/* Writes what a writer keeps back before a statement that may see it. */
static void write_pending(store *st)
{
    void (*write)(void *) = st->pending;
    st->pending = NULL;
    write(st->pending_ud);
}

int store_exec(store *st, const char *sql)
{
    if (st->pending)
        write_pending(st);
    SETTLE_ST(st);
    char *msg = NULL;
    st->err[0] = 0;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(st, msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* --- the statement cache ---------------------------------------------- */

static int cache_grow(store *st)
{
    size_t ncap = st->cache_cap ? st->cache_cap * 2 : 64;
    struct cached *n = calloc(ncap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < st->cache_cap; i++) {
        struct cached *c = &st->cache[i];
        if (!c->sql)
            continue;
        size_t j = c->hash & (ncap - 1);
        while (n[j].sql)
            j = (j + 1) & (ncap - 1);
        n[j] = *c;
    }
    free(st->cache);
    st->cache = n;
    st->cache_cap = ncap;
    return 0;
}

static sqlite3_stmt *ready(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return stmt;
}

void store_set_pending(store *st, void (*write)(void *ud), void *ud)
{
    st->pending = write;
    st->pending_ud = ud;
}

store_stmt *store_sql(store *st, const char *sql)
{
    if (st->pending)
        write_pending(st);
    return store_sql_beside(st, sql);
}

store_stmt *store_sql_again(store *st, store_stmt *s, int bound)
{
    if (st->pending)
        write_pending(st);
    SETTLE_ST(st);
    st->err[0] = 0;
    if (bound)
        sqlite3_reset(STMT(s));
    else
        ready(STMT(s));
    return s;
}

/* A cached statement reset, its bindings cleared unless `bound`. */
static store_stmt *made_ready(sqlite3_stmt *stmt, int bound)
{
    if (bound) {
        sqlite3_reset(stmt);
        return (store_stmt *)(void *)stmt;
    }
    return (store_stmt *)(void *)ready(stmt);
}

static store_stmt *find_sql(store *st, const char *sql, int bound);

store_stmt *store_sql_beside(store *st, const char *sql)
{
    return find_sql(st, sql, 0);
}

store_stmt *store_sql_beside_bound(store *st, const char *sql)
{
    return find_sql(st, sql, 1);
}

store_stmt *store_sql_bound(store *st, const char *sql)
{
    if (st->pending)
        write_pending(st);
    return find_sql(st, sql, 1);
}

static store_stmt *find_sql(store *st, const char *sql, int bound)
{
    SETTLE_ST(st);
    st->err[0] = 0;   /* errors from here on are SQLite's, for this statement */
    struct alias *a = &st->aliases[((uintptr_t)sql >> 3) % ALIASES];
    if (a->sql == sql && strcmp(a->text, sql) == 0)
        return made_ready(a->stmt, bound);
    uint64_t h = util_hash64(sql, strlen(sql));
    if (st->cache_cap) {
        for (size_t j = h & (st->cache_cap - 1); st->cache[j].sql; j = (j + 1) & (st->cache_cap - 1)) {
            struct cached *c = &st->cache[j];
            if (c->hash == h && strcmp(c->sql, sql) == 0) {
                *a = (struct alias){sql, c->sql, c->stmt};
                return made_ready(c->stmt, bound);
            }
        }
    }
    if ((st->cache_len + 1) * 2 > st->cache_cap && cache_grow(st) != 0)
        return NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "tend: bad SQL (%s): %s\n", sqlite3_errmsg(st->db), sql);
        return NULL;
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(stmt);
        return NULL;
    }
    size_t j = h & (st->cache_cap - 1);
    while (st->cache[j].sql)
        j = (j + 1) & (st->cache_cap - 1);
    st->cache[j] = (struct cached){h, copy, stmt};
    st->cache_len++;
    *a = (struct alias){sql, copy, stmt};
    return (store_stmt *)(void *)stmt;
}

store_stmt *store_prepare(store *st, const char *sql)
{
    if (st->pending)
        write_pending(st);
    SETTLE_ST(st);
    sqlite3_stmt *stmt = NULL;
    st->err[0] = 0;
    if (sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return NULL;
    return (store_stmt *)(void *)stmt;
}

void store_finalize(store_stmt *s)
{
    SETTLE_STMT(s);
    if (s)
        sqlite3_finalize(STMT(s));
}

/* --- binding and stepping --------------------------------------------- */

int store_bind_int(store_stmt *s, int idx, int64_t v)
{
    SETTLE_STMT(s);
    return sqlite3_bind_int64(STMT(s), idx, v) == SQLITE_OK ? 0 : -1;
}

int store_bind_double(store_stmt *s, int idx, double v)
{
    SETTLE_STMT(s);
    return sqlite3_bind_double(STMT(s), idx, v) == SQLITE_OK ? 0 : -1;
}

int store_bind_text(store_stmt *s, int idx, const char *v, int len)
{
    SETTLE_STMT(s);
    if (!v)
        return store_bind_null(s, idx);
    /* SQLITE_TRANSIENT: callers' buffers are often Lua strings or stack
     * buffers that do not outlive the call. */
    return sqlite3_bind_text(STMT(s), idx, v, len, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : -1;
}

int store_bind_text_kept(store_stmt *s, int idx, const char *v, int len)
{
    SETTLE_STMT(s);
    if (!v)
        return store_bind_null(s, idx);
    return sqlite3_bind_text(STMT(s), idx, v, len, SQLITE_STATIC) == SQLITE_OK ? 0 : -1;
}

int store_bind_blob(store_stmt *s, int idx, const void *v, int len)
{
    SETTLE_STMT(s);
    return sqlite3_bind_blob(STMT(s), idx, v, len, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : -1;
}

/* tend_pick(texts, i): item i of an array bound by store_bind_texts, NULL
 * out of its range or for any other value. */
static void pick_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const struct store_texts *t = sqlite3_value_pointer(argv[0], "tend_texts");
    sqlite3_int64 i = sqlite3_value_int64(argv[1]);
    if (!t || i < 0 || i >= t->n || !t->v[i])
        sqlite3_result_null(ctx);
    else   /* static: the caller keeps the texts until the statement ends */
        sqlite3_result_text(ctx, t->v[i], -1, SQLITE_STATIC);
}

int store_bind_texts(store_stmt *s, int idx, const struct store_texts *t)
{
    SETTLE_STMT(s);
    return sqlite3_bind_pointer(STMT(s), idx, (void *)t, "tend_texts", NULL) == SQLITE_OK ? 0 : -1;
}

int store_bind_null(store_stmt *s, int idx)
{
    SETTLE_STMT(s);
    return sqlite3_bind_null(STMT(s), idx) == SQLITE_OK ? 0 : -1;
}

int store_param_count(store_stmt *s)
{
    return sqlite3_bind_parameter_count(STMT(s));
}

int store_step(store_stmt *s)
{
    SETTLE_STMT(s);
    int rc = sqlite3_step(STMT(s));
    if (rc == SQLITE_ROW)
        return STORE_ROW;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(STMT(s));
        return STORE_DONE;
    }
    /* Left un-reset so store_errmsg() still describes this failure; the
     * next store_sql() of this text resets it. */
    return STORE_ERROR;
}

void store_reset(store_stmt *s)
{
    SETTLE_STMT(s);
    sqlite3_reset(STMT(s));
}

int store_run(store_stmt *s)
{
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        store_reset(s);
        return 0;
    }
    return rc == STORE_DONE ? 0 : -1;
}

int store_col_type(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    switch (sqlite3_column_type(STMT(s), col)) {
    case SQLITE_INTEGER: return STORE_INT;
    case SQLITE_FLOAT:   return STORE_FLOAT;
    case SQLITE_TEXT:    return STORE_TEXT;
    case SQLITE_BLOB:    return STORE_BLOB;
    default:             return STORE_NULL;
    }
}

int64_t store_col_int(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    return sqlite3_column_int64(STMT(s), col);
}
double store_col_double(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    return sqlite3_column_double(STMT(s), col);
}
const char *store_col_text(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    return (const char *)sqlite3_column_text(STMT(s), col);
}
const void *store_col_blob(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    return sqlite3_column_blob(STMT(s), col);
}
int store_col_bytes(store_stmt *s, int col)
{
    SETTLE_STMT(s);
    return sqlite3_column_bytes(STMT(s), col);
}
char *store_col_texts(store_stmt *s, const int *cols, int n, char **const out[], size_t *len)
{
    SETTLE_STMT(s);
    size_t total = 0, mine[16];
    /* each length asked of SQLite once (~60 instructions a call): kept in
     * the caller's len, or here for up to 16 columns */
    size_t *lens = len ? len : n <= 16 ? mine : NULL;
    for (int i = 0; i < n; i++) {
        /* the row's texts, valid until the next step: copied below */
        *out[i] = (char *)sqlite3_column_text(STMT(s), cols[i]);
        size_t l = *out[i] ? (size_t)sqlite3_column_bytes(STMT(s), cols[i]) : 0;
        if (lens)
            lens[i] = l;
        total += *out[i] ? l + 1 : 0;
    }
    char *block = xmalloc(total ? total : 1), *p = block;
    for (int i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : *out[i] ? (size_t)sqlite3_column_bytes(STMT(s), cols[i]) : 0;
        if (!*out[i])
            continue;
        memcpy(p, *out[i], l);
        p[l] = 0;
        *out[i] = p;
        p += l + 1;
    }
    return block;
}

int store_col_count(store_stmt *s) { return sqlite3_column_count(STMT(s)); }
const char *store_col_name(store_stmt *s, int col) { return sqlite3_column_name(STMT(s), col); }

int64_t store_last_rowid(store *st)
{
    SETTLE_ST(st);
    return sqlite3_last_insert_rowid(st->db);
}

int store_changes(store *st)
{
    SETTLE_ST(st);
    return sqlite3_changes(st->db);
}

/* --- transactions ----------------------------------------------------- */

/* Cached statements that a caller stopped stepping would keep a read
 * snapshot open across the commit; resetting every busy one is cheap and
 * makes that impossible. */
static void reset_busy(store *st)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(st->db, NULL); s; s = sqlite3_next_stmt(st->db, s))
        if (sqlite3_stmt_busy(s))
            sqlite3_reset(s);
}

/* BEGIN, COMMIT, SAVEPOINT, RELEASE from the statement cache: a
 * transaction per request or per slice, and a nested one per row (the
 * importer, event processing), would otherwise parse their SQL every time. */
static int exec_cached(store *st, const char *sql)
{
    store_stmt *s = store_sql(st, sql);
    if (!s)
        return -1;
    int rc = sqlite3_step(STMT(s));
    sqlite3_reset(STMT(s));
    if (rc != SQLITE_DONE) {
        set_err(st, sqlite3_errmsg(st->db));
        return -1;
    }
    return 0;
}

int store_begin(store *st)
{
    SETTLE_ST(st);
    if (st->depth == 0) {
        if (exec_cached(st, "BEGIN IMMEDIATE") != 0)
            return -1;
    } else {
        char sql[48];
        snprintf(sql, sizeof sql, "SAVEPOINT s%d", st->depth);
        if (exec_cached(st, sql) != 0)
            return -1;
    }
    st->depth++;
    return 0;
}

int store_commit(store *st)
{
    SETTLE_ST(st);
    if (st->depth <= 0) {
        set_err(st, "commit without a transaction");
        return -1;
    }
    if (st->depth == 1) {
        reset_busy(st);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = exec_cached(st, "COMMIT");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        st->commit_ms += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (rc != 0) {
            /* A failed COMMIT (disk full, I/O error) leaves the transaction
             * open; roll it back so nothing of the batch is half-stored. */
            char keep[sizeof st->err];
            memcpy(keep, st->err, sizeof keep);
            exec_cached(st, "ROLLBACK");
            memcpy(st->err, keep, sizeof keep);
            st->depth = 0;
            return -1;
        }
    } else {
        char sql[48];
        snprintf(sql, sizeof sql, "RELEASE s%d", st->depth - 1);
        if (exec_cached(st, sql) != 0)
            return -1;
    }
    st->depth--;
    return 0;
}

int store_rollback(store *st)
{
    SETTLE_ST(st);
    if (st->depth <= 0)
        return -1;
    int rc;
    /* Keep the error that caused the rollback: ROLLBACK itself succeeds
     * and would leave SQLite's message at "not an error". */
    char keep[sizeof st->err];
    if (st->err[0])
        memcpy(keep, st->err, sizeof keep);
    else
        snprintf(keep, sizeof keep, "%s", sqlite3_errmsg(st->db));
    if (st->depth == 1) {
        reset_busy(st);
        rc = exec_cached(st, "ROLLBACK");
    } else {
        char sql[48];
        snprintf(sql, sizeof sql, "ROLLBACK TO s%d", st->depth - 1);
        rc = exec_cached(st, sql);
        snprintf(sql, sizeof sql, "RELEASE s%d", st->depth - 1);
        if (exec_cached(st, sql) != 0)
            rc = -1;
    }
    memcpy(st->err, keep, sizeof keep);   /* keep the error that caused it */
    st->depth--;
    return rc;
}

/* --- a commit on another thread ------------------------------------- */

static void *committer_main(void *arg)
{
    store *st = arg;
    struct committer *c = st->committer;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->job && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit)
            break;
        c->job = 0;
        int detached = c->detached;
        pthread_mutex_unlock(&c->mu);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char *msg = NULL;
        int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, &msg) == SQLITE_OK ? 0 : -1;
        char err[sizeof c->err] = "";
        if (rc != 0) {
            /* as store_commit: a failed COMMIT leaves the transaction open */
            snprintf(err, sizeof err, "%s", msg ? msg : sqlite3_errmsg(st->db));
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        }
        sqlite3_free(msg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_mutex_lock(&c->mu);
        if (detached) {
            c->drc = rc;
            memcpy(c->derr, err, sizeof err);
        } else {
            c->rc = rc;
            memcpy(c->err, err, sizeof err);
        }
        c->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        c->done = 1;
        pthread_cond_broadcast(&c->cv);
        uint64_t one = 1;
        if (write(detached ? c->dfd : c->fd, &one, sizeof one) < 0) {
            /* the counter cannot overflow at one a commit: nothing to do */
        }
    }
    pthread_mutex_unlock(&c->mu);
    pool_drain();
    return NULL;
}

static void committer_stop(store *st)
{
    struct committer *c = st->committer;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    close(c->fd);
    close(c->dfd);
    free(c);
    st->committer = NULL;
}

static struct committer *committer_of(store *st)
{
    if (st->committer)
        return st->committer;
    struct committer *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->dfd = c->fd < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->dfd < 0) {
        if (c->fd >= 0)
            close(c->fd);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    st->committer = c;
    if (pthread_create(&c->thread, NULL, committer_main, st) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        close(c->fd);
        close(c->dfd);
        free(c);
        st->committer = NULL;
        return NULL;
    }
    return c;
}

/* Waits for the commit in flight to end; its result stays for
 * store_commit_finish. */
static void settle(store *st)
{
    struct committer *c = st->committer;
    in_flight = NULL;
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    c->in_flight = 0;
    st->commit_ms += c->ms;
    if (st->begin_deferred) {
        /* store_begin_after_commit's transaction opens now, before the call
         * that settled goes on. DEFERRED: it takes no lock here, so it does
         * not wait on another writer (a first write that meets one fails as
         * a statement); should even BEGIN fail, the transaction is reported
         * failed by store_commit_finish, as the commit's result. */
        st->begin_deferred = 0;
        if (exec_cached(st, "BEGIN") != 0) {
            st->depth = 0;
            if (!c->unclaimed || c->rc == 0) {
                snprintf(c->err, sizeof c->err, "BEGIN after a commit: %s", sqlite3_errmsg(st->db));
                c->rc = -1;
                c->unclaimed = 1;
            }
        }
    }
}

static int commit_hand_over(store *st, int detached)
{
    SETTLE();
    struct committer *c = st->depth == 1 ? committer_of(st) : NULL;
    if (!c)
        return store_commit(st);   /* a savepoint, or no thread: here */
    reset_busy(st);
    st->depth = 0;
    pthread_mutex_lock(&c->mu);
    c->done = 0;
    c->job = 1;
    c->detached = detached;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    c->in_flight = 1;
    if (detached)
        c->dunclaimed = 1;
    else
        c->unclaimed = 1;
    in_flight = st;
    return 0;
}

int store_begin_after_commit(store *st)
{
    struct committer *c = st->committer;
    if (!c || !c->in_flight || c->detached || st->depth != 0)
        return store_begin(st);
    st->begin_deferred = 1;
    st->depth = 1;
    return 0;
}

int store_commit_start(store *st)
{
    return commit_hand_over(st, 0);
}

int store_commit_detach(store *st)
{
    return commit_hand_over(st, 1);
}

int store_commit_detached_fd(store *st)
{
    struct committer *c = committer_of(st);
    return c ? c->dfd : -1;
}

/* Reads a commit's eventfd and its result, once (store_commit_finish's
 * or store_commit_detached_result's): 0 when none ended unread. */
static int claim_result(store *st, int fd, int *unclaimed, int *rc_of, char *err)
{
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0) {
        /* nothing written since the last read: the commit ran here */
    }
    if (!*unclaimed)
        return 0;
    *unclaimed = 0;
    int rc = *rc_of;
    *rc_of = 0;
    if (rc != 0 && err[0])
        set_err(st, err);
    err[0] = 0;
    return rc;
}

int store_commit_detached_result(store *st)
{
    struct committer *c = st->committer;
    if (!c)
        return 0;
    if (c->in_flight && c->detached)
        settle(st);
    /* (a commit of store_commit_start's may be in flight: not ours to wait for) */
    return claim_result(st, c->dfd, &c->dunclaimed, &c->drc, c->derr);
}

int store_commit_pending(const store *st)
{
    return st->committer && st->committer->in_flight;
}

int store_commit_fd(store *st)
{
    struct committer *c = committer_of(st);
    return c ? c->fd : -1;
}

int store_commit_finish(store *st)
{
    struct committer *c = st->committer;
    if (!c)
        return 0;
    if (c->in_flight)
        settle(st);
    return claim_result(st, c->fd, &c->unclaimed, &c->rc, c->err);
}

int store_in_batch(store *st)
{
    return st->depth > 0;
}

double store_commit_ms(const store *st)
{
    return st->commit_ms;
}

int store_batch(store *st, store_batch_fn fn, void *ud)
{
    if (store_begin(st) != 0)
        return -1;
    int rc = fn(st, ud);
    if (rc != 0) {
        store_rollback(st);
        return rc;
    }
    return store_commit(st) == 0 ? 0 : -1;
}

/* --- meta ------------------------------------------------------------- */

int store_meta_get_int(store *st, const char *key, int64_t *out)
{
    store_stmt *s = store_sql(st, "SELECT value FROM meta WHERE key = ?");
    if (!s)
        return -1;
    store_bind_text(s, 1, key, -1);
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        *out = store_col_int(s, 0);
        store_reset(s);
        return 0;
    }
    return rc == STORE_DONE ? 1 : -1;
}

int store_meta_set_int(store *st, const char *key, int64_t v)
{
    store_stmt *s = store_sql(st, "INSERT INTO meta(key, value) VALUES (?, ?)"
                                  " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (!s)
        return -1;
    store_bind_text(s, 1, key, -1);
    store_bind_int(s, 2, v);
    return store_run(s);
}

char *store_meta_get(store *st, const char *key)
{
    store_stmt *s = store_sql(st, "SELECT value FROM meta WHERE key = ?");
    if (!s)
        return NULL;
    store_bind_text(s, 1, key, -1);
    char *v = NULL;
    if (store_step(s) == STORE_ROW) {
        const char *t = store_col_text(s, 0);
        v = t ? strdup(t) : NULL;
        store_reset(s);
    }
    return v;
}

int store_meta_set(store *st, const char *key, const char *v)
{
    store_stmt *s = store_sql(st, "INSERT INTO meta(key, value) VALUES (?, ?)"
                                  " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (!s)
        return -1;
    store_bind_text(s, 1, key, -1);
    store_bind_text(s, 2, v, -1);
    return store_run(s);
}

int store_schema_version(store *st)
{
    int64_t v = 0;
    return store_meta_get_int(st, "schema_version", &v) == 0 ? (int)v : 0;
}

int store_migration_count(void)
{
    return schema_migration_count;
}

int64_t store_count(store *st, const char *sql)
{
    store_stmt *s = store_sql(st, sql);
    if (!s)
        return -1;
    if (store_step(s) != STORE_ROW)
        return -1;
    int64_t n = store_col_int(s, 0);
    store_reset(s);
    return n;
}

void store_remove(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        char *p = xasprintf("%s%s", path, suffixes[i]);
        unlink(p);
        free(p);
    }
}
