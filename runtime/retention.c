/* retention — the sweep that forgets old instances and events (see retention.h). */
#include <stdlib.h>

#include "retention.h"
#include "util.h"

/* Where the sweep stands, in meta: */
#define K_AFTER   "retention.after"       /* the pass in progress: last id swept; absent or -1 = none */
#define K_PASS    "retention.pass"        /* number of the pass in progress (or the last one) */
#define K_GEN     "retention.pass_gen"    /* script generation when that pass began */
#define K_NEXT    "retention.next_pass"   /* when the next pass may begin */
#define K_REST    "retention.events_rest" /* the events sweep rests until then */

static int64_t meta_int(store *st, const char *key, int64_t dflt)
{
    int64_t v;
    return store_meta_get_int(st, key, &v) == 0 ? v : dflt;
}

/* Reads up to RETENTION_SLICE ids from s (bound by the caller), then
 * deletes each with del (one parameter: the id). The read finishes before
 * the first delete. Returns how many went, -1 on error. */
static int delete_each(store *st, store_stmt *s, const char *del)
{
    int64_t ids[RETENTION_SLICE];
    int n = 0, rc;
    while (n < RETENTION_SLICE && (rc = store_step(s)) == STORE_ROW)
        ids[n++] = store_col_int(s, 0);
    if (n == RETENTION_SLICE)
        store_reset(s);
    else if (rc == STORE_ERROR)
        return -1;
    for (int i = 0; i < n; i++) {
        store_stmt *d = store_sql(st, del);
        if (!d || store_bind_int(d, 1, ids[i]) != 0 || store_run(d) != 0)
            return -1;
    }
    return n;
}

/* Commits the slice's transaction when n >= 0, else rolls it back. */
static int finish(store *st, int n)
{
    if (n < 0 || store_commit(st) != 0) {
        if (store_in_batch(st))
            store_rollback(st);
        return -1;
    }
    return n;
}

/* A script version older than the current load exists. */
static int old_versions(store *st)
{
    store_stmt *s = store_sql(st, "SELECT EXISTS (SELECT 1 FROM scripts WHERE loaded_at < ?)");
    if (!s)
        return -1;
    store_bind_int(s, 1, meta_int(st, "script_generation", 0));
    int rc = store_step(s);
    int found = rc == STORE_ROW ? (int)store_col_int(s, 0) : -1;
    if (rc == STORE_ROW)
        store_reset(s);
    return found;
}

/* One slice of the pass over the instances (ids after..after+SLICE);
 * inside the caller's transaction. Sets *done at the pass's end. */
static int instances_slice(store *st, const struct retention_policy *p, tend_time now, int64_t after,
                           int64_t pass, int64_t gen, int *done)
{
    int64_t hi = after + RETENTION_SLICE;
    int deleted = 0;
    if (p->instances > 0) {
        /* Deleted by id, one at a time: whatever else keeps an instance's
         * rows by its id goes with the same statement's triggers. The
         * newest instance stays: SQLite gives a new row the largest id + 1,
         * and an id used again would meet the old one's messages and tasks
         * (their idempotency keys name it). */
        store_stmt *s = store_sql(st, "SELECT id FROM instances WHERE id > ? AND id <= ?"
                                      " AND state IN ('done', 'failed', 'converted', 'exited')"
                                      " AND COALESCE(ended_at, started_at) < ?"
                                      " AND id < (SELECT MAX(id) FROM instances)");
        if (!s)
            return -1;
        store_bind_int(s, 1, after);
        store_bind_int(s, 2, hi);
        store_bind_int(s, 3, now - p->instances);
        if ((deleted = delete_each(st, s, "DELETE FROM instances WHERE id = ?")) < 0)
            return -1;
    }
    /* The versions the waiting instances of this slice are on. */
    store_stmt *m = store_sql(st, "UPDATE scripts SET seen_pass = ?1 WHERE loaded_at < ?2 AND hash IN"
                                  " (SELECT version FROM instances WHERE id > ?3 AND id <= ?4"
                                  " AND state = 'waiting')");
    if (!m)
        return -1;
    store_bind_int(m, 1, pass);
    store_bind_int(m, 2, gen);
    store_bind_int(m, 3, after);
    store_bind_int(m, 4, hi);
    if (store_run(m) != 0)
        return -1;
    int64_t max = store_count(st, "SELECT COALESCE(MAX(id), 0) FROM instances");
    if (max < 0)
        return -1;
    *done = hi >= max;
    if (*done) {
        /* Every instance was looked at since the pass began, and an old
         * version gains no waiting instance (new ones start on the current
         * load; migrate moves them forward): one no slice saw is unused.
         * A version loaded again since has a newer loaded_at and stays. */
        store_stmt *d = store_sql(st, "DELETE FROM scripts WHERE loaded_at < ?1"
                                      " AND (seen_pass IS NULL OR seen_pass < ?2)");
        if (!d)
            return -1;
        store_bind_int(d, 1, gen);
        store_bind_int(d, 2, pass);
        if (store_run(d) != 0)
            return -1;
    }
    return deleted;
}

static int sweep_instances(store *st, const struct retention_policy *p, tend_time now)
{
    /* the pass and generation are read only when a slice runs: between
     * passes (nearly every call) two reads decide */
    int64_t after = meta_int(st, K_AFTER, -1), pass, gen;
    if (after < 0) {
        if (now < meta_int(st, K_NEXT, 0))
            return 0;
        int old = old_versions(st);
        if (old < 0)
            return -1;
        if (p->instances <= 0 && !old)
            return 0;   /* nothing a pass would do; asking costs two small reads */
        after = 0;
        pass = meta_int(st, K_PASS, 0) + 1;
        gen = meta_int(st, "script_generation", 0);
    } else {
        pass = meta_int(st, K_PASS, 0);
        gen = meta_int(st, K_GEN, 0);
    }
    if (store_begin(st) != 0)
        return -1;
    int done = 0;
    int n = instances_slice(st, p, now, after, pass, gen, &done);
    if (n >= 0 && (store_meta_set_int(st, K_AFTER, done ? -1 : after + RETENTION_SLICE) != 0 ||
                   store_meta_set_int(st, K_PASS, pass) != 0 || store_meta_set_int(st, K_GEN, gen) != 0 ||
                   (done && store_meta_set_int(st, K_NEXT, now + RETENTION_PASS_EVERY) != 0)))
        n = -1;
    return finish(st, n);
}

static int sweep_events(store *st, const struct retention_policy *p, tend_time now)
{
    if (p->events <= 0 || now < meta_int(st, K_REST, 0))
        return 0;
    if (store_begin(st) != 0)
        return -1;
    /* The oldest RETENTION_SLICE processed events, and of those the ones
     * old enough that no broadcast still reads. received_at grows with seq,
     * so the window is where the old ones are. The newest event stays, so
     * seq never goes back (a new event takes the largest seq + 1, and one
     * at or below the processing cursor would never be processed). */
    store_stmt *s = store_sql(st, "SELECT seq FROM (SELECT seq, received_at FROM events WHERE seq <= ?"
                                  " ORDER BY seq LIMIT ?) WHERE received_at < ?"
                                  " AND seq NOT IN (SELECT event FROM fanouts)"
                                  " AND seq < (SELECT MAX(seq) FROM events)");
    int n = -1;
    if (s) {
        store_bind_int(s, 1, meta_int(st, "events_cursor", 0));
        store_bind_int(s, 2, RETENTION_SLICE);
        store_bind_int(s, 3, now - p->events);
        n = delete_each(st, s, "DELETE FROM events WHERE seq = ?");
    }
    if (n >= 0 && n < RETENTION_SLICE && store_meta_set_int(st, K_REST, now + RETENTION_EVENTS_REST) != 0)
        n = -1;
    return finish(st, n);
}

int retention_run_due(store *st, const struct retention_policy *p, tend_time now)
{
    int a = sweep_instances(st, p, now);
    if (a < 0)
        return -1;
    int b = sweep_events(st, p, now);
    return b < 0 ? -1 : a + b;
}
