/* store — durable state: one SQLite database, one writer.
 *
 * This is the only module that includes sqlite3.h; every other module speaks
 * SQL through the small statement API below, so a PostgreSQL backend can come
 * later behind this header (the SQL the modules write sticks to what both
 * dialects share: `?` parameters, ON CONFLICT upserts, no SQLite-only functions
 * outside the schema).
 *
 * Ownership: store_open() returns a store the caller frees with store_close().
 * Statements from store_sql() belong to the store (cached by SQL text and
 * reused); callers never finalize them. Statements from store_prepare() belong
 * to the caller (store_finalize()). Text and blob pointers returned by
 * store_col_*() are valid until the next step/reset of that statement.
 *
 * Writes: store_batch() runs a callback inside one transaction (BEGIN
 * IMMEDIATE, so the write lock is taken up front rather than on the first
 * write, where a busy database would fail half-way). A batch inside a batch
 * becomes a savepoint: the inner one can fail and roll back alone while the
 * outer one commits. */
#ifndef TEND_STORE_H
#define TEND_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;
typedef struct store_stmt store_stmt;

struct store_options {
    int synchronous_normal; /* 0: synchronous=FULL (default), 1: NORMAL */
    int throwaway;          /* a store nobody keeps (sims): synchronous=OFF, survives a
                               process crash but not a power cut, which is all a test needs */
    int busy_timeout_ms;    /* 0: 5000 */
    int memory;             /* 1: a private in-memory database (path ignored) */
    int cache_kib;          /* SQLite's page cache; 0: 8 MiB */
};

/* Opens (creating if needed) the database at `path`, sets WAL mode and the
 * pragmas, and runs every migration not yet applied. On failure returns NULL
 * and a malloc'd message in *err (caller frees). `opts` may be NULL. */
store *store_open(const char *path, const struct store_options *opts, char **err);
void   store_close(store *st);
/* A second, read-only connection to the database at `path` (a file the
 * writer opened and migrated): no migrations, its own page cache of
 * `cache_kib` (0: 2 MiB). Its reads see the last committed state and never
 * wait for the writer's commit in flight (WAL), so a scrape can be
 * answered while a commit syncs. Any write through it fails. NULL and a
 * malloc'd *err on failure; store_close() frees it. */
store *store_open_reader(const char *path, int cache_kib, char **err);

/* Copies the whole database to a new file at `dest` with SQLite's online
 * backup, a few pages at a time, so the writer (a running `tend run` in
 * another process) is held only for moments. `dest` must not exist.
 * Returns 0, or -1 with a message in err. */
int store_backup(store *st, const char *dest, char *err, size_t errlen);

/* The SQLite library version ("3.40.1"). */
const char *store_library_version(void);

/* The last error message on this connection (owned by the store). */
const char *store_errmsg(store *st);
/* 1 if the last failure on this connection was a constraint's (a taken
 * key, a NULL in a NOT NULL column): SQLite undid only the statement. */
int store_constraint_failed(store *st);

/* Runs SQL with no parameters and no rows (may hold several statements).
 * Returns 0, or -1 (see store_errmsg). */
int store_exec(store *st, const char *sql);

/* --- statements -------------------------------------------------------- */

enum { STORE_ROW = 1, STORE_DONE = 0, STORE_ERROR = -1 };

/* A cached statement for `sql` (keyed by its text), reset and with bindings
 * cleared; NULL on a syntax error (logged to stderr with the SQL: it is a
 * programming error). Literals are found fastest. */
store_stmt *store_sql(store *st, const char *sql);
/* store_sql for a statement store_sql returned before, without finding
 * it by its text again (a cached statement lives as long as the store: a
 * caller that runs one statement many times may hold it; comparing a long
 * SQL text costs more than the rest of store_sql). `bound` 1: the caller
 * binds every parameter before each step, so the last values are left
 * bound instead of cleared (SQLite clears them one by one). */
store_stmt *store_sql_again(store *st, store_stmt *s, int bound);
/* Rows a writer keeps back to write many to a statement (customer.c's tags
 * of a due pass): `write` runs (once; it is cleared first) before the
 * next statement store_sql, store_prepare or store_exec hands out, so
 * every statement sees the store as if the rows had been written one by
 * one. NULL: nothing is kept. */
void store_set_pending(store *st, void (*write)(void *ud), void *ud);
/* store_sql for a statement that reads and changes nothing of what a
 * pending writer keeps back, nor fires a trigger that does: the kept rows
 * stay kept. */
store_stmt *store_sql_beside(store *st, const char *sql);
/* store_sql and store_sql_beside for a caller that binds every parameter
 * before each step (a multi-row statement's pages): the last values are
 * left bound instead of cleared one by one. */
store_stmt *store_sql_bound(store *st, const char *sql);
store_stmt *store_sql_beside_bound(store *st, const char *sql);
/* An uncached statement the caller finalizes (for SQL built at run time,
 * such as compiled segments). NULL and store_errmsg() on failure. */
store_stmt *store_prepare(store *st, const char *sql);
void        store_finalize(store_stmt *s);

/* Binding: idx is 1-based. Return 0 or -1. */
int store_bind_int(store_stmt *s, int idx, int64_t v);
int store_bind_double(store_stmt *s, int idx, double v);
int store_bind_text(store_stmt *s, int idx, const char *v, int len); /* len -1: strlen; NULL → NULL */
/* The same without a copy: v must stay unchanged until the statement has
 * been stepped to its end (store_run, store_step to DONE) or reset. For
 * the hot paths that bind text they hold anyway (an event's body). */
int store_bind_text_kept(store_stmt *s, int idx, const char *v, int len);
int store_bind_blob(store_stmt *s, int idx, const void *v, int len);
/* An array of n texts bound as one parameter, read in SQL by
 * tend_pick(?idx, i): item i (0-based; NULL out of range or for a NULL
 * item). One statement over a range of rows then takes a text a row with
 * no VALUES list joined in (a sent mark's responses). Neither t nor its
 * texts are copied: they must stay unchanged until the statement has been
 * stepped to its end or reset. */
struct store_texts {
    const char *const *v;
    int n;
};
int store_bind_texts(store_stmt *s, int idx, const struct store_texts *t);
int store_bind_null(store_stmt *s, int idx);
int store_param_count(store_stmt *s);

/* STORE_ROW, STORE_DONE, or STORE_ERROR. On DONE/ERROR the statement is reset,
 * so a cached statement never holds a read transaction open by accident. */
int  store_step(store_stmt *s);
/* Resets a statement a caller stopped stepping before DONE. */
void store_reset(store_stmt *s);
/* Steps a statement expected to produce no row; 0 or -1. */
int  store_run(store_stmt *s);

enum { STORE_NULL = 0, STORE_INT, STORE_FLOAT, STORE_TEXT, STORE_BLOB };
int         store_col_type(store_stmt *s, int col);
int64_t     store_col_int(store_stmt *s, int col);
double      store_col_double(store_stmt *s, int col);
const char *store_col_text(store_stmt *s, int col);  /* NULL for SQL NULL */
const void *store_col_blob(store_stmt *s, int col);
int         store_col_bytes(store_stmt *s, int col);
/* Copies the texts of columns cols[0, n) of the current row into one
 * malloc'd block, returned (the caller's to free; one malloc for them
 * all): *out[i] points at column cols[i]'s text in it, or is NULL for a
 * NULL; len[i] (len may be NULL) is its length in bytes. */
char       *store_col_texts(store_stmt *s, const int *cols, int n, char **const out[], size_t *len);
int         store_col_count(store_stmt *s);
const char *store_col_name(store_stmt *s, int col);

int64_t store_last_rowid(store *st);
int     store_changes(store *st);   /* rows changed by the last statement */

/* --- transactions ------------------------------------------------------ */

/* Runs fn(st, ud) in one transaction (or a savepoint when already inside
 * one). fn returns 0 to commit, non-zero to roll back; store_batch returns
 * what fn returned, or -1 if the commit itself failed (then nothing of the
 * batch is stored). */
typedef int (*store_batch_fn)(store *st, void *ud);
int store_batch(store *st, store_batch_fn fn, void *ud);
int store_in_batch(store *st);
/* Milliseconds spent in COMMIT since the store opened (mostly its fsync):
 * a loop that cuts work into slices tells the work from the wait. */
double store_commit_ms(const store *st);

/* Lower level, for a caller that spans a transaction across loop turns
 * (the server's write batching). */
int store_begin(store *st);
int store_commit(store *st);
int store_rollback(store *st);

/* A commit that does not hold the caller's thread for its fsync (the
 * loop of `tend run` serves probes meanwhile). store_commit_start hands
 * the open transaction (depth 1) to a thread of the store's own and
 * returns 0 at once, store_commit_pending then true; at a savepoint, or
 * when no thread can be had, it commits here as store_commit does
 * (returns its result, nothing pending). While a commit is in flight,
 * every other call of this API on that connection first waits for it to
 * end, so calls keep their order (a call on another connection, such as a
 * reader's, does not wait); nothing may be answered or sent on the
 * strength of the commit before store_commit_finish. store_commit_fd is an
 * eventfd that turns readable when a commit ended (-1: no thread).
 * store_commit_finish
 * waits for the commit in flight if any and returns its result once:
 * 0 committed (durable as store_commit's), -1 failed and rolled back
 * (store_errmsg says why); 0 when none was started. One commit in flight
 * per process. */
int store_commit_start(store *st);
/* store_begin for a caller that goes on working while the commit it
 * started (store_commit_start) is in flight: the transaction is open for
 * the caller at once (store_in_batch is true) and its BEGIN runs when that
 * commit has ended, at the first call of this API that settles it
 * (store_commit_finish, any statement); so nothing the caller stores
 * meanwhile runs outside it. The caller must read store_commit_finish
 * before it commits: a failed commit (or BEGIN) is reported there, and then
 * the caller rolls this transaction back. With no commit in flight, as
 * store_begin. */
int store_begin_after_commit(store *st);
/* While on, a file store's WAL checkpoints run on a thread of the store
 * with a connection of its own (PASSIVE, the writer's synchronous level)
 * instead of inside the commit that filled the WAL; the writer still
 * checkpoints itself if that thread falls 4x behind, after the thread's
 * checkpoint under way if there is one, so the WAL stays bounded on a
 * loaded machine too. For a bulk writer
 * (a local-time slot's pages, a long drain of due wakes): off, the
 * default, suits a stream of small commits better (see store.c). */
void store_checkpoint_aside(store *st, int on);
/* 1 while a file store's checkpoints run on that thread, else 0. */
int store_checkpoint_is_aside(const store *st);
int store_commit_pending(const store *st);
int store_commit_fd(store *st);
int store_commit_finish(store *st);
/* The same hand-over for a second owner (the dispatcher's results, while
 * the server owns store_commit_start/finish): its end makes
 * store_commit_detached_fd readable (not store_commit_fd), and its result
 * is read, once, by store_commit_detached_result (0 committed, -1 rolled
 * back; 0 when none ended unread). Returns as store_commit_start. The one
 * commit in flight is still one: a call of this API settles it first. */
int store_commit_detach(store *st);
int store_commit_detached_fd(store *st);
int store_commit_detached_result(store *st);

/* --- small helpers ----------------------------------------------------- */

/* The `meta` key/value table: schema version, cursors, settings. */
int   store_meta_get_int(store *st, const char *key, int64_t *out); /* 0 found, 1 absent, -1 error */
int   store_meta_set_int(store *st, const char *key, int64_t v);
char *store_meta_get(store *st, const char *key);                   /* malloc'd or NULL */
int   store_meta_set(store *st, const char *key, const char *v);

/* The schema version after migrations, and how many there are. */
int store_schema_version(store *st);
int store_migration_count(void);

/* Counts rows of `sql` (a SELECT COUNT(*) ... with no parameters); -1 on error. */
int64_t store_count(store *st, const char *sql);

/* Deletes a closed database file with its -wal and -shm companions
 * (throw-away stores of sims and tools). */
void store_remove(const char *path);

/* For tests: run the migrations list given instead of the built-in one. */
struct store_migration { const char *name; const char *sql; };
store *store_open_with(const char *path, const struct store_options *opts,
                       const struct store_migration *migs, int n, char **err);

#endif
