/* policy — suppression, quiet hours, caps (see policy.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customer.h"
#include "policy.h"
#include "util.h"

/* 1 suppressed (reason set), 0 free to send, -1 error. */
static int suppressed(engine *e, const char *customer, const char *channel, int marketing,
                      char *reason, size_t n)
{
    store_stmt *s = store_sql(e->st, "SELECT blocked FROM customers WHERE id = ?");
    store_bind_text(s, 1, customer, -1);
    int rc = store_step(s);
    if (rc == STORE_ERROR)
        return -1;
    int blocked = rc == STORE_ROW && store_col_int(s, 0);
    if (rc == STORE_ROW)
        store_reset(s);
    if (blocked) {
        snprintf(reason, n, "customer is blocked");
        return 1;
    }
    if (!marketing)
        return 0;
    s = store_sql(e->st, "SELECT channel FROM suppressions WHERE customer = ? AND channel IN (?, '*') LIMIT 1");
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, channel, -1);
    rc = store_step(s);
    if (rc == STORE_ROW) {
        snprintf(reason, n, "unsubscribed from %s", strcmp(store_col_text(s, 0), "*") == 0
                                                        ? "all marketing" : channel);
        store_reset(s);
        return 1;
    }
    return rc == STORE_DONE ? 0 : -1;
}

static int in_quiet(const struct config *c, int minute)
{
    if (c->quiet_from > c->quiet_to)   /* the window wraps midnight */
        return minute >= c->quiet_from || minute < c->quiet_to;
    return minute >= c->quiet_from && minute < c->quiet_to;
}

tend_time policy_quiet_end(engine *e, const char *tz, tend_time t)
{
    if (!e->cfg.quiet_enabled)
        return t;
    struct clock_local l;
    if (clock_to_local(t, tz, &l) != 0)
        return t;
    if (!in_quiet(&e->cfg, l.hour * 60 + l.minute))
        return t;
    tend_time end;
    if (clock_next_local(t, tz, e->cfg.quiet_to / 60, e->cfg.quiet_to % 60, &end) != 0)
        return t;
    return end;
}

/* Start of the local day and of the ISO week (Monday) holding t. */
static void windows(const char *tz, tend_time t, tend_time *day0, tend_time *day1, tend_time *week0,
                    tend_time *week1)
{
    struct clock_local l;
    clock_to_local(t, tz, &l);
    clock_from_local(tz, l.year, l.month, l.day, 0, 0, 0, day0);
    clock_from_local(tz, l.year, l.month, l.day + 1, 0, 0, 0, day1);
    int back = (l.wday + 6) % 7;
    clock_from_local(tz, l.year, l.month, l.day - back, 0, 0, 0, week0);
    clock_from_local(tz, l.year, l.month, l.day - back + 7, 0, 0, 0, week1);
}

static int64_t count_marketing(engine *e, const char *customer, tend_time from, tend_time to)
{
    /* a fallback attempt (attempt_of) is the same message: counted once */
    store_stmt *s = store_sql(e->st, "SELECT COUNT(*) FROM outbox WHERE customer = ? AND category = 'marketing'"
                                     " AND attempt_of IS NULL AND status IN ('queued', 'deferred', 'sending', 'sent')"
                                     " AND due_at >= ? AND due_at < ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, from);
    store_bind_int(s, 3, to);
    if (store_step(s) != STORE_ROW)
        return -1;
    int64_t n = store_col_int(s, 0);
    store_reset(s);
    return n;
}

/* Takes the slot of the lowest-priority unsent marketing message in the
 * window if it ranks below `priority`: that one becomes capped. */
static int bump(engine *e, const char *customer, int priority, tend_time from, tend_time to)
{
    store_stmt *s = store_sql(e->st, "SELECT id, due_key FROM outbox WHERE customer = ? AND category = 'marketing'"
                                     " AND status IN ('queued', 'deferred') AND due_at >= ? AND due_at < ?"
                                     " AND priority < ? ORDER BY priority, due_at DESC LIMIT 1");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, from);
    store_bind_int(s, 3, to);
    store_bind_int(s, 4, priority);
    if (store_step(s) != STORE_ROW)
        return 0;
    int64_t id = store_col_int(s, 0);
    tend_time due = store_col_int(s, 1);
    store_reset(s);
    s = store_sql(e->st, "UPDATE outbox SET status = 'capped', last_error = 'displaced by a message of"
                         " higher priority' WHERE id = ?");
    store_bind_int(s, 1, id);
    if (store_run(s) != 0)
        return -1;
    s = store_sql(e->st, "DELETE FROM outbox_due WHERE due_at = ? AND id = ?");
    store_bind_int(s, 1, due);
    store_bind_int(s, 2, id);
    return store_run(s) == 0 ? 1 : -1;
}

/* 0 room at t, 1 over a cap (reason set), -1 error. */
static int over_cap(engine *e, const char *customer, const char *tz, int priority, tend_time t,
                    char *reason, size_t n)
{
    const struct config *c = &e->cfg;
    tend_time d0, d1, w0, w1;
    windows(tz, t, &d0, &d1, &w0, &w1);
    struct { int cap; tend_time from, to; const char *what; } caps[2] = {
        {c->cap_day, d0, d1, "day"}, {c->cap_week, w0, w1, "week"}};
    for (int i = 0; i < 2; i++) {
        if (caps[i].cap <= 0)
            continue;
        int64_t used = count_marketing(e, customer, caps[i].from, caps[i].to);
        if (used < 0)
            return -1;
        if (used < caps[i].cap)
            continue;
        int b = bump(e, customer, priority, caps[i].from, caps[i].to);
        if (b < 0)
            return -1;
        if (b == 0) {
            snprintf(reason, n, "marketing cap of %d a %s reached", caps[i].cap, caps[i].what);
            return 1;
        }
    }
    return 0;
}

int policy_check(engine *e, const char *customer, const char *channel, int marketing, int priority,
                 int defer_on_cap, tend_time now, struct policy_verdict *v)
{
    v->reason[0] = 0;
    v->due_at = now;
    int s = suppressed(e, customer, channel, marketing, v->reason, sizeof v->reason);
    if (s < 0)
        return -1;
    if (s) {
        v->status = "suppressed";
        return 0;
    }
    if (!marketing) {
        v->status = "queued";
        return 0;
    }
    char *tz = customer_timezone(e, customer);
    tend_time t = policy_quiet_end(e, tz, now);
    int rc = 0;
    v->status = t > now ? "deferred" : "queued";
    if (t > now)
        snprintf(v->reason, sizeof v->reason, "quiet hours");
    /* Over a cap: capped, or (on_cap = "defer") moved day by day to the
     * first one with room, for at most two weeks. */
    for (int day = 0; day < 15; day++) {
        int over = over_cap(e, customer, tz, priority, t, v->reason, sizeof v->reason);
        if (over < 0) {
            rc = -1;
            break;
        }
        if (!over)
            break;
        if (!defer_on_cap || day == 14) {
            v->status = "capped";
            break;
        }
        tend_time d0, d1, w0, w1;
        windows(tz, t, &d0, &d1, &w0, &w1);
        t = policy_quiet_end(e, tz, d1);
        v->status = "deferred";
    }
    v->due_at = t;
    free(tz);
    return rc;
}

int policy_recheck_facts(engine *e, const struct policy_facts *f, const char *channel, int marketing,
                         tend_time now, tend_time *due, char *reason, size_t n)
{
    if (f->blocked) {
        snprintf(reason, n, "customer is blocked");
        return 1;
    }
    if (marketing && f->unsubscribed) {
        snprintf(reason, n, "unsubscribed from %s", f->unsubscribed_all ? "all marketing" : channel);
        return 1;
    }
    if (!marketing)
        return 0;
    const char *tz = f->timezone && clock_tz_valid(f->timezone) ? f->timezone : e->cfg.timezone;
    *due = policy_quiet_end(e, tz, now);
    return *due > now ? 2 : 0;
}

int policy_recheck(engine *e, const char *customer, const char *channel, int marketing,
                   tend_time now, tend_time *due, char *reason, size_t n)
{
    int s = suppressed(e, customer, channel, marketing, reason, n);
    if (s < 0) {   /* could not tell: ask again in a minute rather than guess */
        *due = now + 60;
        return 2;
    }
    if (s)
        return 1;
    if (!marketing)
        return 0;
    char *tz = customer_timezone(e, customer);
    *due = policy_quiet_end(e, tz, now);
    free(tz);
    return *due > now ? 2 : 0;
}
