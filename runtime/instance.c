/* instance — starting, waking and storing journey instances (see instance.h).
 *
 * A wake: load the row, find the journey version it is pinned to, run `run`
 * from the top in a fresh coroutine with the run context installed, and
 * store what the run stopped on. Timers and listeners are rows next to the
 * instance, kept in step with it here and nowhere else. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "customer.h"
#include "fetch.h"
#include "history.h"
#include "instance.h"
#include "json.h"
#include "metrics.h"
#include "script.h"
#include "step.h"
#include "util.h"

/* --- starting ---------------------------------------------------------- */

/* 1 if the customer may enter (once / reenter_after), 0 if not, -1 error. */
static int may_enter(engine *e, const char *journey, const char *customer, int once,
                     tend_time reenter_after, tend_time now)
{
    if (!once && reenter_after <= 0)
        return 1;
    store_stmt *s = store_sql(e->st, "SELECT count, last_at FROM entries WHERE journey = ? AND customer = ?");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    int rc = store_step(s);
    if (rc == STORE_DONE)
        return 1;
    if (rc != STORE_ROW)
        return -1;
    int64_t count = store_col_int(s, 0);
    tend_time last = store_col_int(s, 1);
    store_reset(s);
    if (once && count > 0)
        return 0;
    if (reenter_after > 0 && now - last < reenter_after)
        return 0;
    return 1;
}

static int record_entry(engine *e, const char *journey, const char *customer, tend_time now)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO entries (journey, customer, count, last_at) VALUES (?, ?, 1, ?)"
                                     " ON CONFLICT(journey, customer) DO UPDATE SET count = count + 1,"
                                     " last_at = excluded.last_at");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    store_bind_int(s, 3, now);
    return store_run(s);
}

unsigned instance_listener_writes(const engine *e)
{
    return e->listener_writes;
}

static int add_listener(engine *e, const char *customer, const char *type, int64_t id, int kind,
                        tend_time until)
{
    e->listener_writes++;
    store_stmt *s = store_sql(e->st, "INSERT INTO listeners (customer, type, instance, kind, until)"
                                     " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, type, -1);
    store_bind_int(s, 3, id);
    store_bind_int(s, 4, kind);
    if (until)
        store_bind_int(s, 5, until);
    return store_run(s);
}

static int drop_listener(engine *e, const char *customer, const char *type, int64_t id, int kind)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM listeners WHERE customer = ? AND type = ?"
                                     " AND instance = ? AND kind = ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, type, -1);
    store_bind_int(s, 3, id);
    store_bind_int(s, 4, kind);
    return store_run(s);
}

static int write_due_timers(engine *e);

static int set_timer(engine *e, tend_time at, int64_t id, int on)
{
    /* a timer kept back by the due pass may be the one deleted here */
    if (!on && write_due_timers(e) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, on ? "INSERT INTO timers (wake_at, instance) VALUES (?, ?) ON CONFLICT DO NOTHING"
                                        : "DELETE FROM timers WHERE wake_at = ? AND instance = ?");
    store_bind_int(s, 1, at);
    store_bind_int(s, 2, id);
    return store_run(s);
}

static int64_t reserve_id(engine *e, struct instance_starter *st);
static int start_run(engine *e, int64_t id, struct instance_starter *st, const char *customer, tend_time now);
static int write_kept(engine *e);
static int write_rows(engine *e, struct instance_starter *st, struct start_rows *k, int from, int n);
static void kept_free(struct start_rows *k);
static void kept_clear(struct start_rows *k);

int instance_starter_init(engine *e, struct instance_starter *st, const char *journey, const cJSON *trigger,
                          int run_now, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    lua_State *L = sandbox_state(e->sb);
    const char *version = catalog_current_version(e, journey);
    if (!catalog_push_current(e, journey)) {
        lua_pop(L, 1);
        snprintf(err, errlen, "no journey named '%s'", journey);
        return -1;
    }
    int decl = lua_gettop(L);
    lua_getfield(L, decl, "once");
    st->once = lua_toboolean(L, -1);
    lua_getfield(L, decl, "reenter_after");
    st->reenter_after = (tend_time)lua_tointeger(L, -1);
    if (lua_getfield(L, decl, "goal") == LUA_TTABLE) {
        lua_getfield(L, -1, "event");
        st->goal = xstrdup(lua_tostring(L, -1));
        lua_getfield(L, -2, "within");
        st->within = (tend_time)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_settop(L, decl - 1);
    st->journey = xstrdup(journey);
    st->version = xstrdup(version);
    st->trigger_of = trigger;
    st->run_now = run_now;
    st->e = e;
    st->templ = LUA_NOREF;
    st->decl = LUA_NOREF;
    /* without once / reenter_after no start reads the entries, so a page
     * of first runs keeps its rows back (write_kept) */
    st->keep = run_now && !st->once && st->reenter_after <= 0;
    return 0;
}

void instance_starter_hold(struct instance_starter *st, int on)
{
    st->hold = on;
}

void instance_starter_discard(struct instance_starter *st)
{
    if (st->e && st->e->kept_starts == st)
        st->e->kept_starts = NULL;
    if (st->kept)
        kept_clear(st->kept);
}

int instance_starter_write(struct instance_starter *st)
{
    return st->e && st->e->kept_starts == st ? write_kept(st->e) : 0;
}

void instance_starter_set_trigger_text(struct instance_starter *st, const char *text)
{
    free(st->trigger);
    st->trigger = xstrdup(text);
    st->trigger_gen++;
}

int instance_starter_free(struct instance_starter *st)
{
    int rc = 0;
    if (st->e && st->e->kept_starts == st)
        rc = write_kept(st->e);
    kept_free(st->kept);
    if (st->e) {
        luaL_unref(sandbox_state(st->e->sb), LUA_REGISTRYINDEX, st->templ);
        luaL_unref(sandbox_state(st->e->sb), LUA_REGISTRYINDEX, st->decl);
    }
    free(st->journey);
    free(st->version);
    free(st->goal);
    free(st->trigger);
    memset(st, 0, sizeof *st);
    return rc;
}

int64_t instance_starter_start(engine *e, struct instance_starter *st, const char *customer, char *err,
                               size_t errlen)
{
    tend_time now = engine_now(e);
    if (e->kept_starts && e->kept_starts != st && write_kept(e) != 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    int ok = may_enter(e, st->journey, customer, st->once, st->reenter_after, now);
    if (ok <= 0) {
        if (ok < 0)
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return ok < 0 ? -1 : 0;
    }
    if (st->trigger_of && !st->trigger) {
        st->trigger = json_print(st->trigger_of);   /* printed once, at the first entry */
        st->trigger_gen++;
    }
    int64_t id = reserve_id(e, st);
    int rc = id > 0 ? 0 : -1;
    if (rc == 0 && !st->keep)   /* else written with the kept row */
        rc = record_entry(e, st->journey, customer, now);
    if (rc == 0 && st->goal)
        rc = add_listener(e, customer, st->goal, id, 1, st->within > 0 ? now + st->within : 0);
    if (rc == 0 && st->run_now) {
        /* the first run works from what the start has in hand, and its
         * row is written once, with what the run stopped on */
        rc = start_run(e, id, st, customer, now) ? -1 : 0;
    } else if (rc == 0) {
        store_stmt *s = store_sql(e->st, "INSERT INTO instances (id, journey, version, customer, state, started_at,"
                                         " trigger, history, wake_at, chain, goal) VALUES (?, ?, ?, ?, 'waiting', ?, ?, '[]', ?, ?, ?)");
        store_bind_int(s, 1, id);
        store_bind_text(s, 2, st->journey, -1);
        store_bind_text(s, 3, st->version, -1);
        store_bind_text(s, 4, customer, -1);
        store_bind_int(s, 5, now);
        store_bind_text(s, 6, st->trigger, -1);
        store_bind_int(s, 7, now);
        store_bind_int(s, 8, e->chain);
        store_bind_text(s, 9, st->goal, -1);
        rc = store_run(s);
        if (rc == 0)
            rc = set_timer(e, now, id, 1);
    }
    if (rc != 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    e->stats.instances_started++;
    metrics_inc(e->metrics, M_INSTANCES_STARTED, st->journey);
    return id;
}

int64_t instance_start(engine *e, const char *journey, const char *customer, const cJSON *trigger,
                       int run_now, char *err, size_t errlen)
{
    struct instance_starter st;
    if (instance_starter_init(e, &st, journey, trigger, run_now, err, errlen) != 0)
        return -1;
    int64_t id = instance_starter_start(e, &st, customer, err, errlen);
    if (instance_starter_free(&st) != 0 && id >= 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        id = -1;
    }
    return id;
}

struct start_batch {
    struct instance_starter *v;
    int n;
};

void instance_batch_begin(engine *e)
{
    if (!e->start_batch)
        e->start_batch = xcalloc(1, sizeof *e->start_batch);
}

struct instance_starter *instance_batch_starter(engine *e, const char *journey, const cJSON *trigger,
                                                const char *text, char *err, size_t errlen)
{
    struct start_batch *b = e->start_batch;
    err[0] = 0;
    if (!b)
        return NULL;
    struct instance_starter *st = NULL;
    for (int i = 0; i < b->n && !st; i++)
        if (strcmp(b->v[i].journey, journey) == 0)
            st = &b->v[i];
    if (!st) {
        struct instance_starter made;
        if (instance_starter_init(e, &made, journey, NULL, 1, err, errlen) != 0)
            return NULL;
        /* the array moves as it grows: write what a starter keeps first,
         * so e->kept_starts never points into the old one */
        if (write_kept(e) != 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            instance_starter_free(&made);
            return NULL;
        }
        b->v = xrealloc(b->v, (size_t)(b->n + 1) * sizeof *b->v);
        st = &b->v[b->n++];
        *st = made;
    }
    free(st->trigger);
    st->trigger = text ? xstrdup(text) : NULL;
    st->trigger_gen++;
    st->trigger_of = trigger;
    return st;
}

int instance_batch_end(engine *e)
{
    struct start_batch *b = e->start_batch;
    if (!b)
        return 0;
    int rc = 0;
    for (int i = 0; i < b->n; i++)
        rc |= instance_starter_free(&b->v[i]);
    free(b->v);
    free(b);
    e->start_batch = NULL;
    return rc ? -1 : 0;
}

int instance_admits(engine *e, int decl, const char *journey, const char *customer, const cJSON *ev)
{
    lua_State *L = sandbox_state(e->sb);
    if (lua_getfield(L, decl, "when") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 1;
    }
    catalog_restore_env(L, decl);
    customer_push_handle(e, L, customer);
    json_push(L, ev);
    if (sandbox_pcall(e->sb, L, 2, 1) != LUA_OK) {
        engine_logf(e, "error", "journey '%s': when() failed for customer %s: %s", journey, customer,
                    lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int yes = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return yes;
}

/* --- waking ------------------------------------------------------------ */

struct row {
    char *journey, *version, *customer, *state, *history, *trigger, *listen;
    size_t history_len;
    int steps;                  /* the step column: entries, sealed ones included */
    tend_time started_at, wake_at;
    int holdout, chain;
    char *strings;              /* one block holding every text above */
    char *version_owned;        /* version when not in strings (a start's, or script_migrate's) */
    struct instance_starter *unstored;  /* a start's first run: no row yet; persist writes it (write_start) */
};

static void row_free(struct row *r)
{
    free(r->strings);
    r->strings = NULL;
    free(r->version_owned);
    r->version_owned = NULL;
    r->version = NULL;
}

/* The row's columns, as ROW_COLS lists them (of table alias t), from
 * column `at` of a stepped statement. The texts share one allocation: a
 * wake makes one malloc for them, not seven. */
#define ROW_COLS(t) t "journey, " t "version, " t "customer, " t "state, " t "history, " t "trigger, " \
                    t "listen, " t "started_at, " t "wake_at, " t "holdout, " t "chain, " t "step"
static void row_read(store_stmt *s, int at, struct row *r)
{
    char **const cols[] = {&r->journey, &r->version, &r->customer, &r->state, &r->history, &r->trigger, &r->listen};
    enum { NCOLS = sizeof cols / sizeof cols[0] };
    int idx[NCOLS];
    size_t len[NCOLS];
    for (int i = 0; i < NCOLS; i++)
        idx[i] = at + i;
    r->strings = store_col_texts(s, idx, NCOLS, cols, len);
    if (!r->version) {   /* NOT NULL: "" for a damaged row, as before */
        static char no_version[] = "";
        r->version = no_version;
    }
    r->history_len = len[4];
    r->version_owned = NULL;   /* the version is in the block (script_migrate may replace it) */
    r->started_at = store_col_int(s, at + 7);
    r->wake_at = store_col_int(s, at + 8);
    r->holdout = store_col_type(s, at + 9) == STORE_NULL ? -1 : (int)store_col_int(s, at + 9);
    r->chain = (int)store_col_int(s, at + 10);
    r->steps = (int)store_col_int(s, at + 11);
}

/* Reads the instance's row. 0, 1 when there is no such row, -1. */
static int write_ended(engine *e);
static int flush_held(engine *e);

static int load_row(engine *e, int64_t id, struct row *r)
{
    if (write_kept(e) != 0 || write_ended(e) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, "SELECT " ROW_COLS("") " FROM instances WHERE id = ?");
    store_bind_int(s, 1, id);
    int rc = store_step(s);
    if (rc != STORE_ROW)
        return rc == STORE_DONE ? 1 : -1;
    row_read(s, 0, r);
    store_reset(s);
    return 0;
}

static void ctx_free(struct run_ctx *ctx)
{
    strbuf_free(&ctx->hist);
    cJSON_Delete(ctx->reads);
    free(ctx->listen_type);
    free(ctx->exit_reason);
    free(ctx->fatal);
    free(ctx->branch);
}

/* splitmix64: a well-mixed seed from the instance id. */
static uint64_t seed_of(int64_t id)
{
    uint64_t z = (uint64_t)id + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 1;
}

/* A history's lines past this many bytes (but its last) are sealed into a
 * history_chunks row: a wake writes the instance row and its recent lines,
 * and a long journey's past is written once. Small: every wake rewrites the
 * row's lines, so the row's bytes are a wake's cost (at 2048 a 200-step
 * journey's wake wrote ~1 KB more than a short one's, 25 us of CPU against
 * 15). Not smaller: a replay reads every chunk, and at 256 its 35 reads
 * for 200 steps cost it more than the row saved; the chunks of one
 * instance sit side by side in key order (WITHOUT ROWID, schema.c). */
#define HISTORY_SEAL_BYTES 512

/* Appends instance id's sealed chunks to b, in order; their count, or -1. */
static int read_chunks(engine *e, int64_t id, strbuf *b)
{
    store_stmt *s = store_sql(e->st, "SELECT lines FROM history_chunks WHERE instance = ? ORDER BY seq");
    store_bind_int(s, 1, id);
    int n = 0, rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        strbuf_add(b, store_col_text(s, 0), (size_t)store_col_bytes(s, 0));
        n++;
    }
    return rc == STORE_DONE ? n : -1;
}

static int count_lines(const char *s, size_t len)
{
    if (!len)
        return 0;   /* s may be NULL then (an empty history): no pointer arithmetic on it */
    int n = 0;
    for (const char *p = s, *end = s + len; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
        n++;
    return n + (len && s[len - 1] != '\n');
}

/* The row's history into ctx: its sealed chunks (when the row's lines are
 * fewer than its step count) and its recent lines, or the JSON array of
 * older stores converted (then written back in the line form by persist). */
static int load_history(engine *e, int64_t id, struct run_ctx *ctx, const struct row *r)
{
    strbuf_init(&ctx->hist);
    if (r->history && history_is_json(r->history)) {
        cJSON *old = history_to_json(r->history, r->history_len);
        ctx->steps = history_from_json(old, &ctx->hist);
        cJSON_Delete(old);
        ctx->appended = ctx->hist_rewrite = ctx->steps > 0;
        return 0;
    }
    int recent = r->history ? count_lines(r->history, r->history_len) : 0;
    if (r->steps > recent) {
        /* the chunks' lines are about as long as the row's: one buffer for
         * all of them, not a doubling every few chunks */
        size_t line = recent ? r->history_len / (size_t)recent + 1 : 64;
        strbuf_reserve(&ctx->hist, (size_t)r->steps * line + r->history_len);
        ctx->chunks = read_chunks(e, id, &ctx->hist);
        if (ctx->chunks < 0)
            return -1;
        ctx->sealed = ctx->hist.len;
    }
    /* with room for the lines this run adds (a few, mostly): one
     * allocation rather than a doubling every line or two */
    if (r->history) {
        strbuf_reserve(&ctx->hist, r->history_len + 256);
        strbuf_add(&ctx->hist, r->history, r->history_len);
    }
    /* sealed chunks end on a line break, so the lines are theirs plus the
     * row's, counted once each */
    ctx->steps = count_lines(ctx->hist.s, ctx->sealed) + recent;
    return 0;
}

/* Writes what changed of ctx's history: chunks again after a rewrite, a
 * new chunk when the recent lines grew past HISTORY_SEAL_BYTES. Sets
 * *recent to the offset in ctx->hist where the row's lines start. */
static int write_history(engine *e, int64_t id, struct run_ctx *ctx, size_t *recent)
{
    if (ctx->hist_rewrite && ctx->chunks) {
        store_stmt *d = store_sql(e->st, "DELETE FROM history_chunks WHERE instance = ?");
        store_bind_int(d, 1, id);
        if (store_run(d) != 0)
            return -1;
        ctx->chunks = 0;
    }
    if (ctx->hist_rewrite)
        ctx->sealed = 0;
    *recent = ctx->sealed;
    /* the last line stays in the row: a pending wait is completed there */
    const char *s = ctx->hist.s;
    size_t len = ctx->hist.len, last = 0;
    if (len < 2 || len - ctx->sealed <= HISTORY_SEAL_BYTES)
        return 0;
    const char *nl = memrchr(s + ctx->sealed, '\n', len - 1 - ctx->sealed);
    if (!nl || (last = (size_t)(nl + 1 - s)) - ctx->sealed < HISTORY_SEAL_BYTES / 2)
        return 0;
    /* an upsert: a chunk a failed wake left behind at this seq is replaced */
    store_stmt *ins = store_sql_beside(e->st, "INSERT INTO history_chunks (instance, seq, lines) VALUES (?, ?, ?)"
                                       " ON CONFLICT (instance, seq) DO UPDATE SET lines = excluded.lines");
    store_bind_int(ins, 1, id);
    store_bind_int(ins, 2, ctx->chunks);
    store_bind_text(ins, 3, s + ctx->sealed, (int)(last - ctx->sealed));
    if (store_run(ins) != 0)
        return -1;
    ctx->chunks++;
    ctx->sealed = *recent = last;
    return 0;
}

/* Ends listeners and timers of a finished instance. */
static int release(engine *e, int64_t id, const struct row *r, const struct run_ctx *ctx)
{
    int rc = 0;
    if (r->wake_at)
        rc |= set_timer(e, r->wake_at, id, 0);
    if (r->listen)
        rc |= drop_listener(e, r->customer, r->listen, id, 0);
    /* an http_get it waited for is not needed any more; a request row
     * exists only for a history that holds an http_get step (its kind is
     * in the text), so a history without one spends no statement here */
    if (!ctx || ctx->hist_partial || (ctx->hist.len && memmem(ctx->hist.s, ctx->hist.len, "http_get", 8)))
        rc |= fetch_cancel(e, id);
    return rc;
}

/* --- a page of starts, written together ---------------------------------
 * A starter of many customers (a fan-out page, a local-time slot, a batch
 * of events) keeps its first runs' rows back, with their entries and
 * timers, and writes them in multi-row statements of KEEP_ROWS: the fixed
 * cost of a statement (and the statement journal the count trigger on
 * instances opens) is paid once per KEEP_ROWS starts, not per start. Kept
 * rows are written before anything reads those tables: every entry point
 * of this module but the keeping starter's own starts writes them first
 * (e->kept_starts names the starter holding them), and instance_starter_free
 * writes the rest, inside the caller's transaction. */
#define KEEP_ROWS 64

/* A kept row's text: bytes [off, off + len) of its page's `text`; len < 0
 * is NULL. The texts of a page share one buffer, bound without a copy
 * (store_bind_text_kept): a kept row costs no malloc of its own. */
struct span {
    int off, len;
};

struct kept_row {
    int64_t id;
    struct span version, customer, state, label, listen, branch, history, error, trigger;
    int steps, holdout, chain;
    tend_time started_at, wake_at, ended_at;
};

struct start_rows {
    int n;
    tend_time entered_at;
    strbuf text;                /* every span's bytes */
    unsigned trigger_gen;       /* the starter's trigger_gen `trigger` holds... */
    struct span trigger;        /* ...so a page of one trigger holds its text once */
    int cap;                    /* rows v has room for: KEEP_ROWS, more for a held page */
    struct kept_row *v;
};

static void kept_clear(struct start_rows *k)
{
    k->n = 0;
    k->trigger_gen = 0;
    strbuf_reset(&k->text);
}

static void kept_free(struct start_rows *k)
{
    if (k) {
        strbuf_free(&k->text);
        free(k->v);
    }
    free(k);
}

/* Copies n bytes of s (NULL: a NULL span) into the page's text. */
static struct span kept_text(strbuf *text, const char *s, size_t n)
{
    if (!s)
        return (struct span){0, -1};
    struct span sp = {(int)text->len, (int)n};
    strbuf_add(text, s, n);
    return sp;
}

static struct span kept_str(strbuf *text, const char *s)
{
    return kept_text(text, s, s ? strlen(s) : 0);
}

/* The span's text in `text` (NULL for a NULL span); valid until text changes. */
static const char *span_ptr(const strbuf *text, struct span sp)
{
    return sp.len < 0 ? NULL : sp.len ? text->s + sp.off : "";
}

static void bind_span(store_stmt *s, int i, const struct start_rows *k, struct span sp)
{
    if (sp.len < 0)
        store_bind_null(s, i);
    else
        store_bind_text_kept(s, i, sp.len ? k->text.s + sp.off : "", sp.len);
}

enum { PAGE_INSTANCES, PAGE_ENTRIES, PAGE_TIMERS, PAGE_ENDED };
static const struct {
    const char *head;
    int cols;
    const char *tail;
} PAGE_SQL[] = {
    [PAGE_INSTANCES] = {"INSERT OR FAIL INTO instances (id, journey, version, customer, state, step, label, wake_at,"
                        " listen, started_at, ended_at, holdout, branch, trigger, history, error, chain, goal,"
                        " counted) VALUES",
                        19, ""},
    [PAGE_ENTRIES] = {"INSERT OR FAIL INTO entries (journey, customer, count, last_at) VALUES", 4,
                      " ON CONFLICT(journey, customer) DO UPDATE SET count = count + 1, last_at = excluded.last_at"},
    [PAGE_TIMERS] = {"INSERT OR IGNORE INTO timers (wake_at, instance) VALUES", 2, ""},
    /* UPDATE ... FROM a WITH list: both dialects have it */
    [PAGE_ENDED] = {"WITH v (id, state, step, history, error, ended_at, holdout, branch) AS (VALUES", 8,
                    ") UPDATE instances SET state = v.state, step = v.step, label = v.state, wake_at = NULL,"
                    " listen = NULL, history = COALESCE(v.history, instances.history), error = v.error,"
                    " ended_at = v.ended_at, holdout = v.holdout, branch = COALESCE(v.branch, instances.branch)"
                    " FROM v WHERE instances.id = v.id"},
};

/* The largest power of two <= n (1 <= n): writers cut a page into such
 * chunks (37 rows: 32 + 4 + 1), whose statements page_stmt keeps. */
static int page_chunk(int n)
{
    return util_rows_chunk(n, KEEP_ROWS);
}

/* The statement for `rows` rows of one of PAGE_SQL: the texts for a power
 * of two of rows up to KEEP_ROWS are built once (for the process, which
 * runs the engine on one thread) and kept prepared by the store (a last,
 * partial page prepared for each use cost more than the rows it wrote:
 * its statement and the triggers it fires compiled again); another count
 * is prepared for the once: *once is set, and page_run finalizes it. */
static store_stmt *page_stmt(engine *e, int table, int rows, int *once)
{
    static char *built[4][7];   /* [table][log2(rows)], rows <= KEEP_ROWS = 64 */
    int slot = -1;
    if (rows >= 1 && rows <= KEEP_ROWS && (rows & (rows - 1)) == 0)
        for (slot = 0; (1 << slot) < rows; slot++)
            ;
    *once = slot < 0;
    /* none of these rows is read by, nor fires a trigger that reads, the
     * customer tags a due pass keeps back: those stay kept; and every
     * parameter is bound for each run (write_rows, write_ended) */
    if (slot >= 0 && built[table][slot])
        return store_sql_beside_bound(e->st, built[table][slot]);
    strbuf b;
    strbuf_init(&b);
    util_values_sql(&b, PAGE_SQL[table].head, PAGE_SQL[table].cols, rows, PAGE_SQL[table].tail);
    if (slot >= 0)
        return store_sql_beside_bound(e->st, built[table][slot] = strbuf_take(&b));
    store_stmt *s = store_prepare(e->st, b.s);
    strbuf_free(&b);
    return s;
}

static int page_run(store_stmt *s, int once)
{
    int rc = store_run(s);
    if (once)
        store_finalize(s);
    return rc;
}

static void bind_opt_int(store_stmt *s, int i, int64_t v, int null)
{
    if (null)
        store_bind_null(s, i);
    else
        store_bind_int(s, i, v);
}

/* Writes the rows e->kept_starts holds: instances, then entries and timers,
 * each in one statement. OR FAIL / OR IGNORE leave no constraint that
 * aborts a statement half-way, so SQLite keeps no statement journal for
 * these multi-row statements (and the count trigger they fire); a failure
 * fails the caller's whole transaction anyway. 0, or -1 on a store error. */
static int write_kept(engine *e)
{
    struct instance_starter *st = e->kept_starts;
    if (!st)
        return 0;
    e->kept_starts = NULL;
    struct start_rows *k = st->kept;
    int rc = 0;
    /* a held page (instance_starter_hold) writes KEEP_ROWS to a statement too */
    for (int from = 0, n; rc == 0 && from < k->n; from += n)
        rc = write_rows(e, st, k, from, n = page_chunk(k->n - from));
    if (k->n)
        st->next_id = k->v[k->n - 1].id + 1;
    kept_clear(k);
    return rc;
}

/* k instances of journey inserted in state `state`, rows the counts
 * trigger leaves to their writer (counted = 1; schema.c, migration
 * add8_start_counts); 0, or -1 on a store error. */
static int counts_started(engine *e, const char *journey, const char *state, int state_len, int k)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO instance_counts (journey, state, n) VALUES (?, ?, ?)"
                                     " ON CONFLICT (journey, state) DO UPDATE SET n = n + excluded.n");
    if (!s)
        return -1;
    store_bind_text_kept(s, 1, journey, -1);
    store_bind_text_kept(s, 2, state, state_len);
    store_bind_int(s, 3, k);
    return store_run(s);
}

static int span_eq(const struct start_rows *k, struct span a, struct span b)
{
    return a.len == b.len && (a.len <= 0 || memcmp(k->text.s + a.off, k->text.s + b.off, (size_t)a.len) == 0);
}

/* Counts rows [from, from + n) of a kept page per state: a page's rows are
 * of one journey and mostly of one state (waiting), so this is one
 * statement for the page, not the trigger's one a row. */
static int count_rows(engine *e, struct instance_starter *st, struct start_rows *k, int from, int n)
{
    int rc = 0;
    for (int i = from; rc == 0 && i < from + n; i++) {
        int c = 0, seen = 0;
        for (int j = from; j < from + n && !seen; j++) {
            if (span_eq(k, k->v[j].state, k->v[i].state)) {
                seen = j < i;
                c++;
            }
        }
        if (!seen) {
            struct span sp = k->v[i].state;   /* a state is never NULL or empty */
            rc = counts_started(e, st->journey, k->text.s + sp.off, sp.len, c);
        }
    }
    return rc;
}

/* Rows [from, from + n) of a starter's kept page, n <= KEEP_ROWS. */
static int write_rows(engine *e, struct instance_starter *st, struct start_rows *k, int from, int n)
{
    int once = 0, rc = 0, timers = 0;
    store_stmt *s = page_stmt(e, PAGE_INSTANCES, n, &once);
    rc = s ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        const struct kept_row *r = &k->v[from + i];
        int p = i * 19;
        store_bind_int(s, p + 1, r->id);
        store_bind_text_kept(s, p + 2, st->journey, -1);
        bind_span(s, p + 3, k, r->version);
        bind_span(s, p + 4, k, r->customer);
        bind_span(s, p + 5, k, r->state);
        store_bind_int(s, p + 6, r->steps);
        bind_span(s, p + 7, k, r->label);
        bind_opt_int(s, p + 8, r->wake_at, !r->wake_at);
        bind_span(s, p + 9, k, r->listen);
        store_bind_int(s, p + 10, r->started_at);
        bind_opt_int(s, p + 11, r->ended_at, !r->ended_at);
        bind_opt_int(s, p + 12, r->holdout, r->holdout < 0);
        bind_span(s, p + 13, k, r->branch);
        bind_span(s, p + 14, k, r->trigger);
        if (r->history.len < 0)
            store_bind_text_kept(s, p + 15, "[]", 2);
        else
            bind_span(s, p + 15, k, r->history);
        bind_span(s, p + 16, k, r->error);
        store_bind_int(s, p + 17, r->chain);
        store_bind_text_kept(s, p + 18, st->goal, -1);
        store_bind_int(s, p + 19, 1);   /* counted here (count_rows) */
        timers += r->wake_at != 0;
    }
    if (rc == 0)
        rc = page_run(s, once);
    if (rc == 0)
        rc = count_rows(e, st, k, from, n);
    if (rc == 0) {
        s = page_stmt(e, PAGE_ENTRIES, n, &once);
        rc = s ? 0 : -1;
        for (int i = 0; rc == 0 && i < n; i++) {
            store_bind_text_kept(s, i * 4 + 1, st->journey, -1);
            bind_span(s, i * 4 + 2, k, k->v[from + i].customer);
            store_bind_int(s, i * 4 + 3, 1);
            store_bind_int(s, i * 4 + 4, k->v[from + i].started_at);
        }
        if (rc == 0)
            rc = page_run(s, once);
    }
    if (rc == 0 && timers) {
        s = page_stmt(e, PAGE_TIMERS, timers, &once);
        rc = s ? 0 : -1;
        for (int i = from, j = 0; rc == 0 && i < from + n; i++) {
            if (!k->v[i].wake_at)
                continue;
            store_bind_int(s, j * 2 + 1, k->v[i].wake_at);
            store_bind_int(s, j * 2 + 2, k->v[i].id);
            j++;
        }
        if (rc == 0)
            rc = page_run(s, once);
    }
    return rc;
}

/* --- rows of a due batch's ended instances, written together ------------
 * An instance a due wake ends (done, failed, exited) changes its state, and
 * the counts trigger on instances runs for it: about two thirds of such a
 * wake's row write. Inside instance_run_due those rows are kept back and
 * written KEEP_ROWS to a statement (the trigger's fixed cost is then paid
 * per statement), before the batch commits and before anything of this
 * module reads an instance row again (load_row, goal_where); no other
 * reader of instances runs inside a wake. */
struct ended_row {
    int64_t id;
    char *journey, *state, *history, *error, *branch;
    int steps, holdout;
    tend_time ended_at;
};

/* A waiting instance's row as a wake leaves it (persist's UPDATE): the
 * texts the caller's, NULL for a column set to NULL (state: left as it is). */
struct row_update {
    int64_t id;
    const char *state, *label, *listen, *hist, *error, *branch;
    int hist_len, steps, holdout;   /* holdout < 0: NULL */
    tend_time wake, ended_at;       /* 0: NULL */
};

/* The same, held (a pipelined batch, below): its texts in the hold's buffer. */
struct held_row {
    int64_t id;
    struct span label, listen, hist, error, branch;
    int steps, holdout;
    tend_time wake, ended_at;
};

/* What one instance_run_due keeps while its wakes run: on its stack,
 * reached through e->due (NULL outside a due pass), so nothing of it is
 * shared between engines or outlives the pass. */
struct due_pass {
    struct {
        int n;
        struct ended_row v[KEEP_ROWS];
    } ends;                     /* ended rows, for write_ended */
    struct {
        int n, cap;             /* cap: KEEP_ROWS, more while held */
        struct { tend_time at; int64_t id; } *v;
    } timers;                   /* the timers of its waits, for write_due_timers */
    /* A batch of a pipelined drain (instance_drain_due) runs while the commit
     * of the batch before it is in flight: its claim's range deletes, its
     * waiting rows' UPDATEs, its timers and its tags are held in memory and
     * written (flush_held) once that commit ended and succeeded, or before
     * any other statement of the store (store_set_pending), which waits for
     * that commit in any case: everything reads the store as if they had
     * been written at once. */
    struct {
        int on;
        int failed;             /* writing them failed: the batch rolls back */
        int deletes;            /* the range deletes up to (at, id) are still to run */
        tend_time at;
        int64_t id;
        int n, cap;
        struct held_row *v;
        strbuf text;            /* every held span's bytes */
    } hold;
    struct {
        int decl;               /* registry ref of the declaration, or LUA_NOREF */
        int current;            /* version is the journey's current one (or it has none): no migration */
        char journey[64], version[72];
    } memo;                     /* the journey version looked up last (push_run) */
};

static void ended_clear(struct due_pass *d)
{
    for (int i = 0; i < d->ends.n; i++) {
        free(d->ends.v[i].journey);
        free(d->ends.v[i].state);
        free(d->ends.v[i].history);
        free(d->ends.v[i].error);
        free(d->ends.v[i].branch);
    }
    d->ends.n = 0;
}

/* k instances of journey moved from waiting to `to` in instance_counts: an
 * end the counts trigger leaves to its writer (schema.c, migration
 * wake6_counts); 0, or -1 on a store error. */
static int counts_ended(engine *e, const char *journey, const char *to, int k)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO instance_counts (journey, state, n) VALUES (?1, 'waiting', -?3),"
                                     " (?1, ?2, ?3) ON CONFLICT (journey, state) DO UPDATE SET n = n + excluded.n");
    if (!s)
        return -1;
    store_bind_text_kept(s, 1, journey, -1);
    store_bind_text_kept(s, 2, to, -1);
    store_bind_int(s, 3, k);
    return store_run(s);
}

/* Kept ended rows [from, from + n), n a power of two <= KEEP_ROWS; they
 * outlive the statement (ended_clear frees them after): bound without a
 * copy. */
static int write_ended_rows(engine *e, int from, int n)
{
    int once = 0;
    store_stmt *s = page_stmt(e, PAGE_ENDED, n, &once);
    if (!s)
        return -1;
    for (int i = 0; i < n; i++) {
        const struct ended_row *r = &e->due->ends.v[from + i];
        int p = i * 8;
        store_bind_int(s, p + 1, r->id);
        store_bind_text_kept(s, p + 2, r->state, -1);
        store_bind_int(s, p + 3, r->steps);
        store_bind_text_kept(s, p + 4, r->history, -1);
        store_bind_text_kept(s, p + 5, r->error, -1);
        store_bind_int(s, p + 6, r->ended_at);
        bind_opt_int(s, p + 7, r->holdout, r->holdout < 0);
        store_bind_text_kept(s, p + 8, r->branch, -1);
    }
    return page_run(s, once);
}

/* Writes the kept ended rows, and counts them per journey and state; 0, or
 * -1 on a store error. */
static int write_ended(engine *e)
{
    struct due_pass *d = e->due;
    if (d && d->hold.on && flush_held(e) != 0)
        return -1;
    if (!d || d->ends.n == 0)
        return 0;
    int rc = 0;
    for (int from = 0, n; rc == 0 && from < d->ends.n; from += n)
        rc = write_ended_rows(e, from, n = page_chunk(d->ends.n - from));
    /* a batch's ends are of a few journeys and states: each pair counted once */
    for (int i = 0; rc == 0 && i < d->ends.n; i++) {
        const struct ended_row *r = &d->ends.v[i];
        int k = 0, seen = 0;
        for (int j = 0; j < d->ends.n && !seen; j++) {
            if (strcmp(d->ends.v[j].journey, r->journey) == 0 && strcmp(d->ends.v[j].state, r->state) == 0) {
                seen = j < i;
                k++;
            }
        }
        if (!seen)
            rc = counts_ended(e, r->journey, r->state, k);
    }
    ended_clear(d);
    return rc;
}

/* --- timers of a due batch's waits, written together ---------------------
 * A due wake that waits again sets its next timer: one INSERT a wake, whose
 * fixed cost (statement start, halt, reset) is about a third of the row's.
 * Inside instance_run_due those timers are kept back and written KEEP_ROWS
 * to a statement, in the batch's transaction: before a timer is deleted
 * (set_timer with on = 0, which a later wake of the batch or a release may
 * do) and before the batch commits; nothing else reads timers inside a
 * wake. A rolled-back batch drops them with its rows. */

/* Writes the kept timers; 0, or -1 on a store error. */
static int write_timer_rows(engine *e)
{
    struct due_pass *d = e->due;
    if (!d || d->timers.n == 0)
        return 0;
    int rc = 0;
    for (int from = 0, n; rc == 0 && from < d->timers.n; from += n) {
        int once = 0;
        store_stmt *s = page_stmt(e, PAGE_TIMERS, n = page_chunk(d->timers.n - from), &once);
        rc = s ? 0 : -1;
        for (int i = 0; rc == 0 && i < n; i++) {
            store_bind_int(s, i * 2 + 1, d->timers.v[from + i].at);
            store_bind_int(s, i * 2 + 2, d->timers.v[from + i].id);
        }
        if (rc == 0)
            rc = page_run(s, once);
    }
    d->timers.n = 0;
    return rc;
}

/* The kept timers, after the held writes before them (a timer a wake sets
 * may fall in its claim's range, which is deleted first). */
static int write_due_timers(engine *e)
{
    struct due_pass *d = e->due;
    return d && d->hold.on ? flush_held(e) : write_timer_rows(e);
}

/* Sets instance id's timer at `at`: kept for write_due_timers inside a due
 * batch, else written now; 0, or -1 on a store error. */
static int add_timer(engine *e, tend_time at, int64_t id)
{
    struct due_pass *d = e->due;
    if (!d)
        return set_timer(e, at, id, 1);
    if (d->timers.n == d->timers.cap) {
        d->timers.cap = d->timers.cap ? d->timers.cap * 2 : KEEP_ROWS;
        d->timers.v = xrealloc(d->timers.v, (size_t)d->timers.cap * sizeof *d->timers.v);
    }
    d->timers.v[d->timers.n].at = at;
    d->timers.v[d->timers.n++].id = id;
    return d->timers.n >= KEEP_ROWS && !d->hold.on ? write_due_timers(e) : 0;
}

/* Keeps an ended instance's row for write_ended; 0, or -1 on a store error
 * (writing a full page). */
static int keep_ended(engine *e, int64_t id, const struct run_ctx *ctx, const char *state, const char *error,
                      const char *hist, size_t hist_len)
{
    struct due_pass *d = e->due;
    d->ends.v[d->ends.n++] = (struct ended_row){.id = id, .journey = xstrdup(ctx->journey), .state = xstrdup(state),
                                            .history = hist ? xstrndup(hist, hist_len) : NULL,
                                            .error = error ? xstrdup(error) : NULL,
                                            .branch = ctx->branch ? xstrdup(ctx->branch) : NULL,
                                            .steps = ctx->steps, .holdout = ctx->holdout, .ended_at = ctx->now};
    return d->ends.n == KEEP_ROWS ? write_ended(e) : 0;
}

/* A start's first run stopped: its row (persist's UPDATE and the start's
 * INSERT in one) and its timer, written now or kept with the starter's
 * page. */
static int write_start(engine *e, int64_t id, const struct row *r, const struct run_ctx *ctx, const char *state,
                       const char *error, const char *hist, size_t hist_len)
{
    int ended = strcmp(state, "waiting") != 0;
    tend_time wake = ended ? 0 : ctx->wake_at;
    struct instance_starter *st = r->unstored;
    if (st->keep) {
        if (e->kept_starts && e->kept_starts != st && write_kept(e) != 0)
            return -1;
        if (!st->kept)
            st->kept = xcalloc(1, sizeof *st->kept);
        struct start_rows *page = st->kept;
        if (page->n == page->cap) {
            page->cap = page->cap ? page->cap * 2 : KEEP_ROWS;
            page->v = xrealloc(page->v, (size_t)page->cap * sizeof *page->v);
        }
        struct kept_row *k = &page->v[page->n++];
        *k = (struct kept_row){.id = id, .steps = ctx->steps, .holdout = ctx->holdout, .chain = r->chain,
                               .started_at = r->started_at, .wake_at = wake, .ended_at = ended ? ctx->now : 0};
        k->version = kept_str(&page->text, r->version);
        k->customer = kept_str(&page->text, r->customer);
        k->state = kept_str(&page->text, state);
        k->label = kept_str(&page->text, ended ? state : ctx->label);
        k->listen = kept_str(&page->text, ended ? NULL : ctx->listen_type);
        k->branch = kept_str(&page->text, ctx->branch);
        k->history = kept_text(&page->text, hist, hist_len);
        k->error = kept_str(&page->text, error);
        /* a fan-out page's rows share one trigger: its text is kept once */
        if (r->trigger != st->trigger || !page->trigger_gen || page->trigger_gen != st->trigger_gen) {
            page->trigger = kept_str(&page->text, r->trigger);
            page->trigger_gen = r->trigger == st->trigger ? st->trigger_gen : 0;
        }
        k->trigger = page->trigger;
        e->kept_starts = st;
        return st->kept->n == KEEP_ROWS && !st->hold ? write_kept(e) : 0;
    }
    store_stmt *s = store_sql(e->st,
        "INSERT INTO instances (id, journey, version, customer, state, step, label, wake_at, listen, started_at,"
        " ended_at, holdout, branch, trigger, history, error, chain, goal)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    store_bind_int(s, 1, id);
    store_bind_text(s, 2, r->journey, -1);
    store_bind_text(s, 3, r->version, -1);
    store_bind_text(s, 4, r->customer, -1);
    store_bind_text(s, 5, state, -1);
    store_bind_int(s, 6, ctx->steps);
    store_bind_text(s, 7, ended ? state : ctx->label, -1);
    bind_opt_int(s, 8, wake, !wake);
    store_bind_text(s, 9, ended ? NULL : ctx->listen_type, -1);
    store_bind_int(s, 10, r->started_at);
    bind_opt_int(s, 11, ctx->now, !ended);
    bind_opt_int(s, 12, ctx->holdout, ctx->holdout < 0);
    store_bind_text(s, 13, ctx->branch, -1);
    store_bind_text(s, 14, r->trigger, -1);
    store_bind_text(s, 15, hist ? hist : "[]", hist ? (int)hist_len : -1);
    store_bind_text(s, 16, error, -1);
    store_bind_int(s, 17, r->chain);
    store_bind_text(s, 18, st->goal, -1);
    int rc = store_run(s);
    if (rc == 0 && wake)
        rc = set_timer(e, wake, id, 1);
    return rc;
}

/* A waiting instance that waits again leaves `state` out of the SET: the
 * counts trigger (UPDATE OF state) then does not run at all. The row is
 * its own: the tags a due pass keeps back stay kept. */
static int run_update(engine *e, const struct row_update *u)
{
    store_stmt *s = !u->state
        ? store_sql_beside(e->st,
                    "UPDATE instances SET step = ?2, label = ?3, wake_at = ?4, listen = ?5,"
                    " history = COALESCE(?6, history), error = ?7, ended_at = ?8, holdout = ?9,"
                    " branch = COALESCE(?10, branch) WHERE id = ?11")
        : store_sql_beside(e->st,
                    "UPDATE instances SET state = ?1, step = ?2, label = ?3, wake_at = ?4, listen = ?5,"
                    " history = COALESCE(?6, history), error = ?7, ended_at = ?8, holdout = ?9,"
                    " branch = COALESCE(?10, branch) WHERE id = ?11");
    /* the texts outlive store_run (the run's ctx, the caller's error, the
     * hold's buffer): bound without a copy. store_sql_beside hands the
     * statement out with its bindings cleared, so a NULL is bound by
     * binding nothing (a bind is ~100 instructions; a waiting instance's
     * wake leaves five NULL), and ?1 only when the statement names it. */
    if (u->state)
        store_bind_text_kept(s, 1, u->state, -1);
    store_bind_int(s, 2, u->steps);
    store_bind_text_kept(s, 3, u->label, -1);
    if (u->wake)
        store_bind_int(s, 4, u->wake);
    if (u->listen)
        store_bind_text_kept(s, 5, u->listen, -1);
    if (u->hist)
        store_bind_text_kept(s, 6, u->hist, u->hist_len);
    if (u->error)
        store_bind_text_kept(s, 7, u->error, -1);
    if (u->ended_at)
        store_bind_int(s, 8, u->ended_at);
    if (u->holdout >= 0)
        store_bind_int(s, 9, u->holdout);
    if (u->branch)
        store_bind_text_kept(s, 10, u->branch, -1);
    store_bind_int(s, 11, u->id);
    return store_run(s);
}

/* A text of a held row, NUL-terminated: run_update binds it so. */
static struct span held_str(strbuf *t, const char *s)
{
    struct span sp = kept_str(t, s);
    if (s)
        strbuf_putc(t, 0);
    return sp;
}

/* Keeps a waiting row's UPDATE in the hold (its texts copied). */
static int hold_update(engine *e, const struct row_update *u)
{
    struct due_pass *d = e->due;
    if (d->hold.n == d->hold.cap) {
        d->hold.cap = d->hold.cap ? d->hold.cap * 2 : 256;
        d->hold.v = xrealloc(d->hold.v, (size_t)d->hold.cap * sizeof *d->hold.v);
    }
    strbuf *t = &d->hold.text;
    d->hold.v[d->hold.n++] = (struct held_row){.id = u->id, .label = held_str(t, u->label),
                                               .listen = held_str(t, u->listen),
                                               .hist = kept_text(t, u->hist, (size_t)u->hist_len),
                                               .error = held_str(t, u->error), .branch = held_str(t, u->branch),
                                               .steps = u->steps, .holdout = u->holdout, .wake = u->wake,
                                               .ended_at = u->ended_at};
    return 0;
}

static int delete_claimed(engine *e, tend_time at, int64_t id);

/* store_set_pending's writer while a batch holds its writes. */
static void held_pending(void *ud)
{
    flush_held(ud);
}

/* Writes what the hold keeps, in the order the batch made it: the claim's
 * range deletes, the rows' UPDATEs, the timers, the tags; 0, or -1 (then
 * and after, the batch has failed). */
static int flush_held(engine *e)
{
    struct due_pass *d = e->due;
    store_set_pending(e->st, NULL, NULL);
    int rc = d->hold.failed ? -1 : 0;
    if (rc == 0 && d->hold.deletes) {
        d->hold.deletes = 0;
        rc = delete_claimed(e, d->hold.at, d->hold.id);
    }
    const strbuf *t = &d->hold.text;
    for (int i = 0; rc == 0 && i < d->hold.n; i++) {
        const struct held_row *h = &d->hold.v[i];
        struct row_update u = {.id = h->id, .label = span_ptr(t, h->label), .listen = span_ptr(t, h->listen),
                               .hist = span_ptr(t, h->hist), .hist_len = h->hist.len,
                               .error = span_ptr(t, h->error), .branch = span_ptr(t, h->branch),
                               .steps = h->steps, .holdout = h->holdout, .wake = h->wake, .ended_at = h->ended_at};
        rc = run_update(e, &u);
    }
    d->hold.n = 0;
    strbuf_reset(&d->hold.text);
    if (rc == 0)
        rc = write_timer_rows(e);
    if (rc == 0)
        rc = customer_tags_write(e);
    if (rc != 0)
        d->hold.failed = 1;
    else if (d->hold.on)
        store_set_pending(e->st, held_pending, e);
    return rc;
}

/* Stores what the run stopped on. */
static int persist(engine *e, int64_t id, struct row *r, struct run_ctx *ctx, const char *state,
                   const char *error)
{
    int ended = strcmp(state, "waiting") != 0;
    tend_time wake = ended ? 0 : ctx->wake_at;
    const char *listen = ended ? NULL : ctx->listen_type;
    int rc = 0;
    if (r->unstored) {
        /* a first run: its timer goes with its row (write_start) */
    } else if (r->wake_at && r->wake_at != wake) {
        rc |= set_timer(e, r->wake_at, id, 0);
    }
    if (wake && wake != r->wake_at && !r->unstored)
        rc |= add_timer(e, wake, id);
    int same_listen = (!r->listen && !listen) || (r->listen && listen && strcmp(r->listen, listen) == 0);
    if (!same_listen) {
        if (r->listen)
            rc |= drop_listener(e, r->customer, r->listen, id, 0);
        if (listen)
            rc |= add_listener(e, r->customer, listen, id, 0, 0);
    }
    if (rc)
        return -1;
    /* the history is written only when this run added to it */
    size_t recent = 0;
    if (ctx->appended && write_history(e, id, ctx, &recent) != 0)
        return -1;
    const char *hist = ctx->appended ? (ctx->hist.s ? ctx->hist.s + recent : "") : NULL;
    if (r->unstored)
        return write_start(e, id, r, ctx, state, error, hist, hist ? ctx->hist.len - recent : 0);
    if (e->due && strcmp(state, r->state) != 0 && strcmp(state, "waiting") != 0)
        return keep_ended(e, id, ctx, state, error, hist, hist ? ctx->hist.len - recent : 0);
    int same_state = strcmp(state, r->state) == 0;
    struct row_update u = {.id = id, .state = same_state ? NULL : state, .label = ended ? state : ctx->label,
                           .listen = listen, .hist = hist, .hist_len = hist ? (int)(ctx->hist.len - recent) : 0,
                           .error = error, .branch = ctx->branch, .steps = ctx->steps, .holdout = ctx->holdout,
                           .wake = wake, .ended_at = ended ? ctx->now : 0};
    if (e->due && e->due->hold.on) {
        if (same_state)
            return hold_update(e, &u);
        if (flush_held(e) != 0)
            return -1;
    }
    rc = run_update(e, &u);
    /* a waiting instance that ends here is counted here (counts_ended) */
    if (rc == 0 && ended && strcmp(r->state, "waiting") == 0)
        rc = counts_ended(e, r->journey, state, 1);
    return rc;
}

/* The declaration of the journey version a due batch's wakes run, looked
 * up in the catalog once per batch rather than once per wake (four table
 * reads by name, and the current version for script_migrate): a batch's
 * instances mostly share one. Set by push_run inside instance_run_due
 * only, and let go at the batch's end: nothing inside a wake reloads the
 * scripts (loading an old version adds to the catalog, it changes no
 * declaration), so the one it names stays the catalog's. Kept in the
 * pass's struct due_pass (memo). */
static int run_memo_has(engine *e, const char *journey, const char *version)
{
    const struct due_pass *d = e->due;
    return d && d->memo.decl != LUA_NOREF && strcmp(d->memo.journey, journey) == 0 &&
           strcmp(d->memo.version, version) == 0;
}

static void run_memo_drop(struct due_pass *d, lua_State *L)
{
    luaL_unref(L, LUA_REGISTRYINDEX, d->memo.decl);
    d->memo.decl = LUA_NOREF;
}

/* Keeps the declaration at the top of L as journey's version (inside a due
 * pass). */
static void run_memo_set(engine *e, lua_State *L, const char *journey, const char *version)
{
    struct due_pass *d = e->due;
    run_memo_drop(d, L);
    if (strlen(journey) >= sizeof d->memo.journey || strlen(version) >= sizeof d->memo.version)
        return;
    const char *current = catalog_current_version(e, journey);
    d->memo.current = !current || strcmp(current, version) == 0;
    memcpy(d->memo.journey, journey, strlen(journey) + 1);
    memcpy(d->memo.version, version, strlen(version) + 1);
    lua_pushvalue(L, -1);
    d->memo.decl = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes the run function of the instance's pinned version, loading that
 * version from the store if this process has not seen it. */
static int push_run(engine *e, const struct row *r)
{
    lua_State *L = sandbox_state(e->sb);
    /* a starter's first runs are of its journey and version: the
     * declaration is looked up at the first and kept for the rest */
    struct instance_starter *st = r->unstored;
    int of_starter = st && strcmp(r->version, st->version) == 0 && strcmp(r->journey, st->journey) == 0;
    if (of_starter && st->decl != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->decl);
    } else if (run_memo_has(e, r->journey, r->version)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->due->memo.decl);
    } else {
        if (!catalog_push_journey(e, r->journey, r->version)) {
            lua_pop(L, 1);
            if (script_load_version(e, r->version) != 0 || !catalog_push_journey(e, r->journey, r->version)) {
                lua_pop(L, 1);
                return -1;
            }
        }
        if (e->due)
            run_memo_set(e, L, r->journey, r->version);
    }
    if (of_starter && st->decl == LUA_NOREF) {
        lua_pushvalue(L, -1);
        st->decl = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    catalog_restore_env(L, -1);
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    return 0;
}

/* Pushes a run's `ev`, the row's trigger read into Lua. A starter's second
 * first run with the same trigger reads a template of it, and the page's
 * further runs copy that: each run gets its own table (a script may change
 * its ev), built as a read of the text would build it. 0, or -1 with
 * nothing pushed when the text does not read. */
static int push_trigger(lua_State *co, const struct row *r)
{
    struct instance_starter *st = r->unstored;
    size_t len = strlen(r->trigger);
    if (st && r->trigger == st->trigger) {
        lua_State *L = sandbox_state(st->e->sb);
        if (st->templ_gen != st->trigger_gen && st->trigger_pushed == st->trigger_gen) {
            luaL_unref(L, LUA_REGISTRYINDEX, st->templ);
            st->templ = json_template_new(L, r->trigger, len) == 0 ? luaL_ref(L, LUA_REGISTRYINDEX) : LUA_NOREF;
            st->templ_gen = st->trigger_gen;
        }
        st->trigger_pushed = st->trigger_gen;
        if (st->templ_gen == st->trigger_gen && st->templ != LUA_NOREF) {
            lua_rawgeti(co, LUA_REGISTRYINDEX, st->templ);
            json_template_push(co, -1);
            lua_remove(co, -2);
            return 0;
        }
    }
    char jerr[128];
    return json_push_stored(co, r->trigger, len, jerr, sizeof jerr);
}

/* --- runs kept between wakes ---------------------------------------------
 * A wake replays the history from the top, so a long journey's wake costs
 * its whole past in Lua (200 waits replayed to take one step). The
 * coroutine of a long run that stopped on a timer wait is kept, a bounded
 * number of them, and its next timer wake resumes it where it stopped:
 * what the replay would rebuild (the same code, the same recorded results,
 * the same random() state) is still there. Kept only when nothing in it
 * can be stale at the next wake: a timer wait (its result is the time
 * itself), no customer row cached in a handle (run_ctx.row_cached), and
 * used only when the stored instance is exactly where the coroutine
 * stopped (its steps and history length, version, run function, start);
 * any other wake, a rolled-back batch, a migration or a reload finds a
 * mismatch and replays as before. Memory only: a restart replays. */
#define KEPT_RUNS 1024
#define KEPT_MIN_STEPS 16   /* shorter histories replay in about the time a resume takes */

struct kept_run {
    int64_t id, started_at;
    int steps, chunks;
    size_t row_len;             /* the row's own history lines, as it stopped */
    uint64_t rng;
    tend_time wake_at;
    const void *run;
    char version[72];
};

struct kept_runs {
    struct kept_run v[KEPT_RUNS];
};

/* A run's slot: its id's place in the cache, direct-mapped, so a wake
 * looks at one slot rather than scanning all of them (instance ids are
 * consecutive: up to KEPT_RUNS runs started together never share one).
 * A run put in a taken slot lets the one before it go. */
static int kept_slot(int64_t id)
{
    return (int)((uint64_t)id % KEPT_RUNS);
}

static const char KEPT_KEY = 0;   /* registry: the kept_runs userdata; its uservalue holds the threads */

/* The kept runs of the sandbox L belongs to, made at the first use; pushes
 * the table of their threads (slot + 1 -> thread). */
static struct kept_runs *kept_runs(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &KEPT_KEY) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        struct kept_runs *k = lua_newuserdatauv(L, sizeof *k, 1);
        memset(k, 0, sizeof *k);
        lua_createtable(L, KEPT_RUNS, 0);
        lua_setiuservalue(L, -2, 1);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &KEPT_KEY);
    }
    struct kept_runs *k = lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    return k;
}

/* Takes instance id's kept run out of the cache: 1 with its thread pushed
 * on L and *out filled, 0 (nothing pushed) when there is none. */
static int kept_take(lua_State *L, int64_t id, struct kept_run *out)
{
    struct kept_runs *k = kept_runs(L);
    int i = kept_slot(id);
    if (k->v[i].id != id) {
        lua_pop(L, 1);
        return 0;
    }
    *out = k->v[i];
    k->v[i].id = 0;
    lua_rawgeti(L, -1, i + 1);
    lua_pushnil(L);
    lua_rawseti(L, -3, i + 1);
    lua_remove(L, -2);
    return 1;
}

/* Keeps the coroutine at L index co_idx as instance id's run, stopped as
 * ctx says, in its slot (kept_slot). Kept runs share the sandbox's
 * memory cap with the runs that work: once the state holds a quarter of
 * its cap, every kept run is let go (their wakes replay, as without them)
 * rather than let a cache make a script run out of memory. */
static void kept_put(sandbox *sb, lua_State *L, int co_idx, int64_t id, const struct run_ctx *ctx, const void *run)
{
    if (strlen(ctx->version) >= sizeof ((struct kept_run *)0)->version)
        return;
    co_idx = lua_absindex(L, co_idx);
    struct kept_runs *k = kept_runs(L);
    if (sandbox_memory(sb) > sandbox_memory_limit(sb) / 4) {
        memset(k->v, 0, sizeof k->v);
        lua_pop(L, 1);   /* the old threads' table: the userdata lets it go */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &KEPT_KEY);
        lua_createtable(L, KEPT_RUNS, 0);
        lua_setiuservalue(L, -2, 1);
        lua_pop(L, 1);
        return;
    }
    int slot = kept_slot(id);
    struct kept_run *r = &k->v[slot];
    /* persist left ctx->sealed where the row's lines start */
    *r = (struct kept_run){.id = id, .started_at = ctx->started_at, .steps = ctx->steps, .chunks = ctx->chunks,
                           .row_len = ctx->hist.len - ctx->sealed, .rng = ctx->rng, .wake_at = ctx->wake_at,
                           .run = run};
    memcpy(r->version, ctx->version, strlen(ctx->version) + 1);
    lua_pushvalue(L, co_idx);
    lua_rawseti(L, -2, slot + 1);
    lua_pop(L, 1);
}

/* fresh: a start's first run, from the row the start has in hand (not
 * stored yet: fresh->unstored), or the stored row read already (the claim
 * of instance_run_due); wake takes its texts. NULL: wake reads the row. */
static int wake(engine *e, int64_t id, enum wake_reason reason, const cJSON *event, int fetch_step,
                const cJSON *fetched, const struct row *fresh)
{
    struct row r = {0};
    int rc = fresh ? 0 : load_row(e, id, &r);
    if (fresh)
        r = *fresh;
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (strcmp(r.state, "waiting") != 0) {   /* ended: a stale timer or listener */
        row_free(&r);
        return 0;
    }
    if (reason == WAKE_TIMER && r.wake_at <= engine_now(e))
        r.wake_at = 0;   /* instance_run_due removed the timer that fired */
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    struct run_ctx ctx = {0};
    ctx.e = e;
    ctx.id = id;
    ctx.journey = r.journey;
    ctx.version = r.version;
    ctx.customer = r.customer;
    struct kept_run k;
    int kept = !r.unstored && reason == WAKE_TIMER && r.steps >= KEPT_MIN_STEPS && kept_take(L, id, &k);
    if (kept) {
        /* usable when the row is where the run stopped, no migration
         * applies (the version is the current one) and the run function
         * is the one it runs; the thread stays on L below */
        const char *current = catalog_current_version(e, r.journey);
        kept = k.started_at == r.started_at && k.steps == r.steps && k.row_len == r.history_len &&
               k.wake_at <= engine_now(e) && strcmp(k.version, r.version) == 0 &&
               (!current || strcmp(current, r.version) == 0) && !history_is_json(r.history) &&
               push_run(e, &r) == 0;
        if (kept) {
            kept = lua_topointer(L, -1) == k.run;
            lua_pop(L, 1);
        }
        if (!kept)
            lua_pop(L, 1);   /* the thread: the replay rebuilds it */
    }
    if (kept) {
        /* the resumed run appends after its last step and reads none
         * before it: the row's lines are all it needs of the history
         * (offsets in ctx->hist are from their start; the chunks stay) */
        strbuf_init(&ctx.hist);
        strbuf_add(&ctx.hist, r.history, r.history_len);
        ctx.steps = r.steps;
        ctx.chunks = k.chunks;
        ctx.hist_partial = 1;
    } else if (load_history(e, id, &ctx, &r) != 0) {
        ctx_free(&ctx);
        row_free(&r);
        lua_settop(L, top);
        return -1;
    }
    ctx.now = engine_now(e);
    ctx.started_at = r.started_at;
    ctx.reason = reason;
    ctx.event = event;
    ctx.fetch_step = fetch_step;
    ctx.fetched = fetched;
    ctx.rng = seed_of(id);
    ctx.holdout = r.holdout;
    ctx.chain = r.chain;
    ctx.unstored = r.unstored != NULL;

    const char *state = "failed";
    char *error = NULL;
    const void *run = NULL;
    int keep = 0, co_at = 0;   /* the coroutine (at L index co_at) is kept for the next wake */
    /* a version the batch knows to be current has no migration to run, nor
     * has a first run on its starter's version (the current one when the
     * starter began; a starter lives while the scripts stay loaded) */
    int unmigrated = (r.unstored && strcmp(r.version, r.unstored->version) == 0) ||
                     (run_memo_has(e, r.journey, r.version) && e->due->memo.current);
    if ((!unmigrated && script_migrate(e, &r.version, &r.version_owned, &ctx) != 0) || push_run(e, &r) != 0) {
        error = xasprintf("journey '%s' version %s is no longer available", r.journey, r.version);
        ctx.version = r.version;
    } else {
        ctx.version = r.version;
        run = lua_topointer(L, -1);
        lua_State *co;
        int nargs = 2;
        if (kept) {
            /* the kept run resumes from its wait, which returns nothing,
             * as the replay of a wait whose time has come does */
            lua_pop(L, 1);   /* run */
            co = lua_tothread(L, -1);
            ctx.pos = ctx.steps;
            ctx.replay_at = ctx.hist.len;
            ctx.rng = k.rng;
            nargs = 0;
        } else {
            co = lua_newthread(L);
            lua_insert(L, -2);
            lua_xmove(L, co, 1);                        /* run */
            customer_push_handle(e, co, r.customer);    /* c */
            /* A run declared without ev and without varargs
             * (function(c)) never sees a second argument: the call
             * drops it. Its ev is then not read into a table (at a
             * start or a replay), nil standing in its place. */
            lua_Debug ar;
            lua_pushvalue(co, 1);
            int sees_ev = !lua_getinfo(co, ">u", &ar) || ar.isvararg || ar.nparams >= 2;
            if (!sees_ev || !r.trigger || push_trigger(co, &r) != 0)
                lua_pushnil(co);                        /* ev */
        }
        co_at = lua_gettop(L);
        e->cur = &ctx;
        int nres = 0;
        int status = sandbox_resume(e->sb, co, L, nargs, &nres);
        e->cur = NULL;
        keep = status == LUA_YIELD && nres == 0 && ctx.suspend == SUSPEND_WAIT && !ctx.fatal && !ctx.row_cached &&
               ctx.steps >= KEPT_MIN_STEPS;
        if (ctx.fatal) {
            error = xstrdup(ctx.fatal);
        } else if (status == LUA_YIELD && ctx.suspend == SUSPEND_EXIT) {
            state = "exited";
            error = NULL;
        } else if (status == LUA_YIELD && ctx.suspend != SUSPEND_NONE) {
            state = "waiting";
        } else if (status == LUA_YIELD) {
            error = xasprintf("journey '%s': run yielded outside a wait (coroutine.yield in run?)", r.journey);
        } else if (status == LUA_OK) {
            state = "done";
        } else {
            error = xstrdup(lua_tostring(co, -1) ? lua_tostring(co, -1) : "error");
        }
    }
    if (error)
        engine_logf(e, "error", "instance %lld of '%s' failed: %s", (long long)id, r.journey, error);
    if (strcmp(state, "exited") == 0 && ctx.exit_reason)
        error = xstrdup(ctx.exit_reason);   /* kept in `error` as the reason */
    rc = persist(e, id, &r, &ctx, error && strcmp(state, "exited") != 0 ? "failed" : state, error);
    if (rc == 0 && strcmp(state, "waiting") != 0)
        rc = release(e, id, &r, &ctx) ? -1 : 0;
    if (rc == 0 && keep && !error && strcmp(state, "waiting") == 0)
        kept_put(e->sb, L, co_at, id, &ctx, run);
    lua_settop(L, top);
    e->stats.instances_woken++;
    metrics_inc(e->metrics, M_INSTANCES_WOKEN, NULL);
    free(error);
    ctx_free(&ctx);
    row_free(&r);
    return rc;
}

/* The next instance id: one past the largest stored or kept back, and past
 * the id of a first run in progress, whose row is written when it stops (a
 * start() it makes must not take that id). A second backend takes it from
 * a sequence. */
static int64_t reserve_id(engine *e, struct instance_starter *st)
{
    /* the id after this starter's last, kept or written: free if no id was
     * taken since (a rolled-back page's ids are then skipped, a gap) */
    int64_t id = 0, kept = st->kept && st->kept->n ? st->kept->v[st->kept->n - 1].id + 1 : st->next_id;
    if (kept && st->taken_at == e->ids_taken) {
        id = kept;   /* no id was taken since this starter's last: the next one is free */
    } else {
        store_stmt *s = store_sql(e->st, "SELECT MAX(id) FROM instances");
        if (store_step(s) != STORE_ROW)
            return -1;
        id = store_col_int(s, 0) + 1;
        store_reset(s);
        if (kept > id)
            id = kept;
    }
    if (e->cur && e->cur->unstored && e->cur->id >= id)
        id = e->cur->id + 1;
    st->taken_at = ++e->ids_taken;
    return id;
}

static int start_run(engine *e, int64_t id, struct instance_starter *st, const char *customer, tend_time now)
{
    char *version = xstrdup(st->version);
    struct row r = {.journey = st->journey, .version = version, .version_owned = version, .customer = (char *)customer,
                    .state = "waiting", .trigger = st->trigger, .started_at = now, .holdout = -1,
                    .chain = e->chain, .unstored = st};
    return wake(e, id, WAKE_START, NULL, -1, NULL, &r);
}

int instance_wake(engine *e, int64_t id, enum wake_reason reason, const cJSON *event)
{
    return wake(e, id, reason, event, -1, NULL, NULL);
}

int instance_wake_fetched(engine *e, int64_t id, int step, const cJSON *result)
{
    return wake(e, id, WAKE_FETCH, NULL, step, result, NULL);
}


/* The revenue a goal event brings: the event's field named by the goal's
 * `value` in the instance's own version of the journey; NaN for none. */
static double conversion_value(engine *e, const struct row *r, const cJSON *ev)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    double v = NAN;
    if (catalog_push_journey(e, r->journey, r->version) && lua_getfield(L, -1, "goal") == LUA_TTABLE &&
        lua_getfield(L, -1, "value") == LUA_TSTRING) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(ev, lua_tostring(L, -1));
        if (cJSON_IsNumber(f) && isfinite(f->valuedouble))
            v = f->valuedouble;
    }
    lua_settop(L, top);
    return v;
}

int instance_convert(engine *e, int64_t id, tend_time at, const cJSON *ev)
{
    struct row r = {0};
    int rc = load_row(e, id, &r);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    int waiting = strcmp(r.state, "waiting") == 0;
    double value = ev ? conversion_value(e, &r, ev) : NAN;
    if (!isnan(value)) {
        store_stmt *v = store_sql(e->st, "UPDATE instances SET conversion_value = ? WHERE id = ? AND converted_at IS NULL");
        store_bind_double(v, 1, value);
        store_bind_int(v, 2, id);
        if (store_run(v) != 0) {
            row_free(&r);
            return -1;
        }
    }
    store_stmt *s = store_sql(e->st, "UPDATE instances SET converted_at = ?,"
                                     " state = CASE WHEN state = 'waiting' THEN 'converted' ELSE state END,"
                                     " label = CASE WHEN state = 'waiting' THEN 'converted' ELSE label END,"
                                     " ended_at = COALESCE(ended_at, ?), wake_at = CASE WHEN state = 'waiting'"
                                     " THEN NULL ELSE wake_at END WHERE id = ? AND converted_at IS NULL");
    store_bind_int(s, 1, at);
    store_bind_int(s, 2, engine_now(e));
    store_bind_int(s, 3, id);
    rc = store_run(s);
    if (rc == 0 && waiting)
        rc = release(e, id, &r, NULL);
    row_free(&r);
    return rc ? -1 : 0;
}

/* Whether `event` meets the goal of instance id: its journey's goal.where
 * (event) when it has one, else yes. 1, 0, or -1 on a store error; a
 * failing where() is logged and counts as no. */
static int goal_where(engine *e, int64_t id, const cJSON *event)
{
    if (write_kept(e) != 0 || write_ended(e) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, "SELECT journey, version FROM instances WHERE id = ?");
    store_bind_int(s, 1, id);
    if (store_step(s) != STORE_ROW)
        return 0;
    char *journey = xstrdup(store_col_text(s, 0)), *version = xstrdup(store_col_text(s, 1));
    store_reset(s);
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L), met = 1;
    if (catalog_push_journey(e, journey, version) && lua_getfield(L, -1, "goal") == LUA_TTABLE &&
        lua_getfield(L, -1, "where") == LUA_TFUNCTION) {
        json_push(L, event);
        if (sandbox_pcall(e->sb, L, 1, 1) != LUA_OK) {
            engine_logf(e, "error", "journey '%s': goal where() failed: %s", journey, lua_tostring(L, -1));
            met = 0;
        } else {
            met = lua_toboolean(L, -1);
        }
    }
    lua_settop(L, top);
    free(journey);
    free(version);
    return met;
}

int instance_route_event(engine *e, const char *customer, const char *type, tend_time at,
                         const cJSON *event)
{
    /* Listeners of the type itself, and of "prefix.*" (wait_task waits on
     * "task.*"): two key lookups. */
    char wildcard[128] = "";
    const char *dot = strrchr(type, '.');
    if (dot && (size_t)(dot - type) + 3 <= sizeof wildcard)
        snprintf(wildcard, sizeof wildcard, "%.*s.*", (int)(dot - type), type);
    struct hit { int64_t id; int kind; tend_time until; const char *type; } *hits = NULL;
    int n = 0;
    for (int w = 0; w < (wildcard[0] ? 2 : 1); w++) {
        const char *t = w ? wildcard : type;
        store_stmt *s = store_sql(e->st, "SELECT instance, kind, until FROM listeners WHERE customer = ? AND type = ?");
        store_bind_text(s, 1, customer, -1);
        store_bind_text(s, 2, t, -1);
        while (store_step(s) == STORE_ROW) {
            hits = xrealloc(hits, (size_t)(n + 1) * sizeof *hits);
            hits[n].id = store_col_int(s, 0);
            hits[n].kind = (int)store_col_int(s, 1);
            hits[n].until = store_col_type(s, 2) == STORE_NULL ? 0 : store_col_int(s, 2);
            hits[n].type = w ? wildcard : type;
            n++;
        }
    }
    int rc = 0;
    /* Goals first: an event that is both a goal and an awaited event
     * converts the instance rather than moving it on. */
    for (int pass = 1; pass >= 0 && rc == 0; pass--) {
        for (int i = 0; i < n && rc == 0; i++) {
            if (hits[i].kind != pass)
                continue;
            if (pass == 1) {
                int in_time = !hits[i].until || at <= hits[i].until;
                int met = in_time ? goal_where(e, hits[i].id, event) : 0;
                if (met < 0)
                    rc = -1;
                else if (met)
                    rc = instance_convert(e, hits[i].id, at, event);
                /* an event the goal's where() refuses leaves it listening */
                if (rc == 0 && (met || !in_time))
                    rc = drop_listener(e, customer, hits[i].type, hits[i].id, 1);
            } else {
                rc = instance_wake(e, hits[i].id, WAKE_EVENT, event);
            }
        }
    }
    free(hits);
    return rc;
}

/* --- due timers -------------------------------------------------------- */

/* A claimed timer and its instance's row, read in the claim. */
struct due {
    tend_time at;
    int64_t id;
    int loaded;         /* r holds the row (0: none, or read again at its wake) */
    struct row r;
};

static int due_by_id(const void *a, const void *b)
{
    const struct due *x = *(struct due *const *)a, *y = *(struct due *const *)b;
    return x->id != y->id ? (x->id < y->id ? -1 : 1) : (x < y ? -1 : x > y);
}

/* A long drain of due wakes (a second full claim in a row, and on) has
 * the store checkpoint on its own thread (store_checkpoint_aside): its
 * commits write many distinct pages, and a checkpoint inside one of them
 * holds the drain. A short claim ends the drain and gives checkpoints back
 * to the committing connection, which suits a stream of small wakes (a
 * long journey's wakes: store.c says why). Re-asserted at every full claim,
 * as a local-time slot turns it off at its end. */
static void drain_checkpoints(engine *e, int n, int max)
{
    if (n == max && n > 0) {
        if (++e->due_full_claims >= 2)
            store_checkpoint_aside(e->st, 1);
    } else {
        if (e->due_full_claims >= 2)
            store_checkpoint_aside(e->st, 0);
        e->due_full_claims = 0;
    }
}

/* Claims up to max due timers with their instances' rows into due[]; their
 * count. */
static int claim_due(engine *e, tend_time now, int max, struct due *due)
{
    /* The claim reads the instances' rows with their timers: one statement
     * per batch, not a row read per wake. */
    store_stmt *s = store_sql(e->st, "SELECT t.wake_at, t.instance, i.id, " ROW_COLS("i.")
                                     " FROM timers t LEFT JOIN instances i ON i.id = t.instance"
                                     " WHERE t.wake_at <= ? ORDER BY t.wake_at, t.instance LIMIT ?");
    store_bind_int(s, 1, now);
    store_bind_int(s, 2, max);
    int n = 0;
    while (store_step(s) == STORE_ROW) {
        struct due *d = &due[n++];
        d->at = store_col_int(s, 0);
        d->id = store_col_int(s, 1);
        d->loaded = store_col_type(s, 2) != STORE_NULL;
        d->r = (struct row){0};
        if (d->loaded)
            row_read(s, 3, &d->r);
    }
    drain_checkpoints(e, n, max);
    if (n == 0)
        return 0;
    /* An instance with two timers in the batch (a stale one) wakes on its
     * first; the second reads the row that wake left. A batch whose ids
     * rise in claim order (the timers of one time, as a fan-out or a
     * start's batch sets them) has no such instance: it skips the sort,
     * ~1.3k instructions a wake. */
    int rising = 1;
    for (int i = 1; i < n && rising; i++)
        rising = due[i].id > due[i - 1].id;
    if (!rising) {
        struct due **by_id = xmalloc((size_t)n * sizeof *by_id);
        for (int i = 0; i < n; i++)
            by_id[i] = &due[i];
        qsort(by_id, (size_t)n, sizeof *by_id, due_by_id);
        for (int i = 1; i < n; i++)
            if (by_id[i]->id == by_id[i - 1]->id && by_id[i]->loaded) {
                row_free(&by_id[i]->r);
                by_id[i]->loaded = 0;
            }
        free(by_id);
    }
    if (!clock_is_virtual(e->clock)) {   /* lateness is a real-time measure */
        double woke = metrics_now();
        for (int i = 0; i < n; i++)
            metrics_observe(e->metrics, M_WAKE_LATENESS, NULL, woke - (double)due[i].at);
    }
    return n;
}

static void due_free(struct due *due, int n)
{
    for (int i = 0; i < n; i++)
        if (due[i].loaded)
            row_free(&due[i].r);
}

/* The batch's timers go first, in one range delete: the batch is exactly
 * the timers up to its last (wake_at, instance), and timers its runs set
 * fall after that (later times, or newer instances at this time). Two
 * range deletes, not one with OR: SQLite walks the key for each, where the
 * OR form scans the whole table. */
static int delete_claimed(engine *e, tend_time at, int64_t id)
{
    store_stmt *d = store_sql(e->st, "DELETE FROM timers WHERE wake_at < ?");
    store_bind_int(d, 1, at);
    if (store_run(d) != 0)
        return -1;
    d = store_sql(e->st, "DELETE FROM timers WHERE wake_at = ? AND instance <= ?");
    store_bind_int(d, 1, at);
    store_bind_int(d, 2, id);
    return store_run(d);
}

/* Wakes a claimed batch in the open transaction; the rows are taken (or
 * freed). `held`: the commit of the batch before is in flight (pipelined
 * drain): the batch's writes are held until it ended, and a failure of it
 * fails this batch too. 0, or -1 (the caller rolls back). */
static int run_batch(engine *e, struct due *due, int n, int held)
{
    /* No wake changes another instance's row (a run's emits and starts
     * only store new rows; events are routed when they are processed), so
     * the rows read in the claim are the rows each wake would read. */
    /* the batch's ended rows are written together (write_ended), and the
     * timers of its waits (write_due_timers); its wakes look their journey
     * up once (push_run) */
    struct due_pass pass = {.ends.n = 0, .memo.decl = LUA_NOREF};
    e->due = &pass;
    /* and the tags its runs add (customer.h: customer_tags_keep) */
    struct customer_kept_tags tags = {0};
    int own_tags = !e->kept_tags, rc = 0;
    if (own_tags)
        customer_tags_keep(e, &tags);
    if (held) {
        pass.hold.on = pass.hold.deletes = 1;
        pass.hold.at = due[n - 1].at;
        pass.hold.id = due[n - 1].id;
        customer_tags_hold(e, 1);
        store_set_pending(e->st, held_pending, e);
    } else {
        rc = delete_claimed(e, due[n - 1].at, due[n - 1].id);
    }
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            rc = wake(e, due[i].id, WAKE_TIMER, NULL, -1, NULL, due[i].loaded ? &due[i].r : NULL);
            due[i].loaded = 0;   /* wake took the row's texts */
        } else if (due[i].loaded) {
            row_free(&due[i].r);
            due[i].loaded = 0;
        }
    }
    if (held) {
        /* the batch before must be stored before anything of this one is */
        pass.hold.on = 0;
        customer_tags_hold(e, 0);
        store_set_pending(e->st, NULL, NULL);
        if (store_commit_finish(e->st) != 0) {
            engine_logf(e, "error", "waking instances: the batch before failed to commit: %s", store_errmsg(e->st));
            rc = -1;
        }
        if (rc == 0)
            rc = flush_held(e);
        else if (own_tags)
            tags.failed = 1;   /* its held tags are dropped, not written into a transaction rolled back */
    }
    if (own_tags && customer_tags_end(e) != 0)
        rc = -1;
    if (rc == 0)
        rc = write_ended(e);
    if (rc == 0)
        rc = write_due_timers(e);
    ended_clear(&pass);
    run_memo_drop(&pass, sandbox_state(e->sb));
    free(pass.timers.v);
    free(pass.hold.v);
    strbuf_free(&pass.hold.text);
    e->due = NULL;
    return rc;
}

int instance_run_due(engine *e, tend_time now, int max)
{
    if (write_kept(e) != 0)
        return -1;
    struct due *due = xmalloc((size_t)max * sizeof *due);
    int n = claim_due(e, now, max, due);
    int rc = n > 0 ? store_begin(e->st) : 0;
    if (n > 0 && rc == 0)
        rc = run_batch(e, due, n, 0);
    else
        due_free(due, n);
    free(due);
    if (n == 0 || (rc == 0 && store_commit(e->st) == 0))
        return n;
    if (rc != 0 && store_in_batch(e->st))
        store_rollback(e->st);
    engine_logf(e, "error", "waking instances failed: %s", store_errmsg(e->st));
    return -1;
}

/* A drain whose first claim comes back full is pipelined: each batch's
 * commit runs on the store's thread (store_commit_start) while the next
 * batch, claimed inside the batch before's transaction (so it sees what
 * that batch wrote), replays with its writes held in memory (struct
 * due_pass's hold); they are written in a transaction that begins once
 * that commit ended (store_begin_after_commit), only if it succeeded, and
 * that commits only then: a failed commit fails the batch after it too,
 * and both are due again. The last batch commits here, so every wake the
 * drain counts is durable when it returns (nothing it sent is dispatched
 * before). */
int instance_drain_due(engine *e, tend_time now, int max)
{
    if (store_in_batch(e->st) || e->kept_tags)
        return instance_run_due(e, now, max);
    if (write_kept(e) != 0)
        return -1;
    struct due *due = xmalloc((size_t)max * sizeof *due);
    int n = claim_due(e, now, max, due);
    if (n == 0) {
        free(due);
        return 0;
    }
    int pipelined = n == max, rc = store_begin(e->st), total = 0, held = 0;
    while (rc == 0) {
        int woken = n;
        rc = run_batch(e, due, n, held);
        n = 0;
        if (rc != 0)
            break;
        total += woken;
        if (!pipelined || total > INT_MAX / 2 - max)
            break;
        /* as instance_run_due does before its claim: a start kept back by
         * a run is written first */
        if ((rc = write_kept(e)) != 0 || (n = claim_due(e, now, max, due)) == 0)
            break;
        if ((rc = store_commit_start(e->st)) == 0) {
            held = store_commit_pending(e->st);
            rc = store_begin_after_commit(e->st);
        }
    }
    due_free(due, n);
    free(due);
    if (rc == 0 && store_commit(e->st) == 0)
        return total;
    if (store_in_batch(e->st))
        store_rollback(e->st);
    engine_logf(e, "error", "waking instances failed: %s", store_errmsg(e->st));
    return -1;
}

tend_time instance_next_due(engine *e)
{
    if (write_kept(e) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, "SELECT wake_at FROM timers ORDER BY wake_at LIMIT 1");
    if (store_step(s) != STORE_ROW)
        return -1;
    tend_time t = store_col_int(s, 0);
    store_reset(s);
    return t;
}
