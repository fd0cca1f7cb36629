/* policy — suppression, quiet hours, caps (see policy.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "customer.h"
#include "dates.h"
#include "policy.h"
#include "segment.h"
#include "step.h"
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

/* --- contact windows ----------------------------------------------------- */

static int parse_span(const char *s, int *from, int *to)
{
    int h1, m1, h2, m2;
    char tail;
    if (sscanf(s, "%2d:%2d-%2d:%2d%c", &h1, &m1, &h2, &m2, &tail) != 4 || strlen(s) != 11)
        return -1;
    if (h1 > 23 || m1 > 59 || m2 > 59 || h2 > 24 || (h2 == 24 && m2 != 0))
        return -1;
    *from = h1 * 60 + m1;
    *to = h2 * 60 + m2;
    return *to > *from ? 0 : -1;
}

static int parse_days(const char *s, unsigned *days)
{
    static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    *days = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    if (strlen(s) >= sizeof buf || !*s)
        return -1;
    for (char *save = NULL, *part = strtok_r(buf, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        int a = -1, b = -1;
        char *dash = strchr(part, '-');
        for (int i = 0; i < 7; i++) {
            if (strncmp(part, names[i], 3) == 0 && (part[3] == 0 || part[3] == '-'))
                a = i;
            if (dash && strcmp(dash + 1, names[i]) == 0)
                b = i;
        }
        if (a < 0 || (dash && b < 0) || (!dash && part[3]))
            return -1;
        if (!dash)
            b = a;
        for (int i = a;; i = (i + 1) % 7) {   /* "fri-mon" wraps the weekend */
            *days |= 1u << i;
            if (i == b)
                break;
        }
    }
    return 0;
}

int policy_read_window(lua_State *L, int decl, struct policy_window *w, char *err, size_t n)
{
    memset(w, 0, sizeof *w);
    w->days = 0x7f;
    if (!lua_istable(L, decl))
        return 0;
    decl = lua_absindex(L, decl);
    int t = lua_getfield(L, decl, "window");
    if (t == LUA_TSTRING || t == LUA_TTABLE) {
        int count = t == LUA_TSTRING ? 1 : (int)lua_rawlen(L, -1);
        for (int i = 1; i <= count; i++) {
            if (t == LUA_TTABLE)
                lua_rawgeti(L, -1, i);
            const char *span = lua_tostring(L, -1);
            if (w->n == POLICY_MAX_SPANS || !span || parse_span(span, &w->from[w->n], &w->to[w->n]) != 0) {
                snprintf(err, n, "window '%s' is not \"HH:MM-HH:MM\" (a later end, at most %d spans)",
                         span ? span : luaL_typename(L, -1), POLICY_MAX_SPANS);
                lua_settop(L, decl);
                return -1;
            }
            w->n++;
            if (t == LUA_TTABLE)
                lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        snprintf(err, n, "window must be \"HH:MM-HH:MM\" or a list of them");
        lua_settop(L, decl);
        return -1;
    }
    lua_pop(L, 1);
    t = lua_getfield(L, decl, "days");
    if (t != LUA_TNIL) {
        const char *d = lua_tostring(L, -1);
        if (t != LUA_TSTRING || parse_days(d, &w->days) != 0) {
            snprintf(err, n, "days '%s' is not like \"mon-fri\" or \"sat,sun\"", d ? d : luaL_typename(L, -1));
            lua_settop(L, decl);
            return -1;
        }
        w->restricted_days = w->days != 0x7f;
    }
    lua_pop(L, 1);
    return 0;
}

tend_time policy_window_next(const struct policy_window *w, const char *tz, tend_time t)
{
    if (w->n == 0 && !w->restricted_days)
        return t;
    struct clock_local l;
    if (clock_to_local(t, tz, &l) != 0)
        return t;
    for (int day = 0; day < 9; day++) {
        int wday = (l.wday + day) % 7;
        if (!(w->days >> wday & 1))
            continue;
        tend_time best = -1;
        for (int i = 0; i < (w->n ? w->n : 1); i++) {
            int from = w->n ? w->from[i] : 0, to = w->n ? w->to[i] : 24 * 60;
            tend_time open, close;
            clock_from_local(tz, l.year, l.month, l.day + day, from / 60, from % 60, 0, &open);
            clock_from_local(tz, l.year, l.month, l.day + day, to / 60, to % 60, 0, &close);
            if (t >= open && t < close)
                return t;
            if (open > t && (best < 0 || open < best))
                best = open;
        }
        if (best >= 0)
            return best;
    }
    return t;   /* no opening at all: never hold a message forever */
}

/* The channel's window (none for an undeclared channel). */
static int channel_window(engine *e, const char *channel, struct policy_window *w)
{
    lua_State *L = sandbox_state(e->sb);
    struct channel_info info;
    channel_push(e, channel, &info);
    char err[200];
    int rc = policy_read_window(L, -1, w, err, sizeof err);
    lua_pop(L, 1);
    if (rc != 0)
        w->n = 0, w->days = 0x7f, w->restricted_days = 0;   /* checked at load: cannot happen */
    return 0;
}

/* The first time at or after t that is outside quiet hours (marketing) and
 * inside the channel's window. */
static tend_time contact_time(engine *e, const struct policy_window *w, const char *tz, int marketing,
                              tend_time t)
{
    for (int i = 0; i < 16; i++) {
        tend_time before = t;
        if (marketing)
            t = policy_quiet_end(e, tz, t);
        t = policy_window_next(w, tz, t);
        if (t == before)
            break;
    }
    return t;
}

tend_time policy_contact_time(engine *e, const struct policy_window *w, const char *tz, int marketing, tend_time t)
{
    return contact_time(e, w, tz, marketing, t);
}

/* --- caps ---------------------------------------------------------------- */

/* The period of a cap holding t, [from, to), in zone tz. */
static void period_bounds(const struct config_cap *c, const char *tz, tend_time t, tend_time *from, tend_time *to)
{
    struct clock_local l;
    clock_to_local(t, tz, &l);
    switch (c->period) {
    case CAP_DAY:
        clock_from_local(tz, l.year, l.month, l.day, 0, 0, 0, from);
        clock_from_local(tz, l.year, l.month, l.day + 1, 0, 0, 0, to);
        break;
    case CAP_WEEK: {
        int back = (l.wday + 6) % 7;   /* ISO weeks start on Monday */
        clock_from_local(tz, l.year, l.month, l.day - back, 0, 0, 0, from);
        clock_from_local(tz, l.year, l.month, l.day - back + 7, 0, 0, 0, to);
        break;
    }
    case CAP_MONTH:
        clock_from_local(tz, l.year, l.month, 1, 0, 0, 0, from);
        clock_from_local(tz, l.year, l.month + 1, 1, 0, 0, 0, to);
        break;
    case CAP_ROLLING:
        /* A send at t is allowed while fewer than `limit` lie within
         * `within` of it on either side: then no span of that length ever
         * holds more than `limit`, whatever order sends are queued in. */
        *from = t - c->within + 1;
        *to = t + c->within;
        break;
    }
}

/* Sends counted by a cap's scope in [from, to): marketing messages, or a
 * channel's messages of any category but transactional (and its tasks). */
static int64_t count_scope(engine *e, const char *customer, const char *scope, tend_time from, tend_time to)
{
    /* a fallback attempt (attempt_of) is the same message: counted once */
    store_stmt *s;
    if (strcmp(scope, "marketing") == 0) {
        s = store_sql(e->st, "SELECT COUNT(*) FROM outbox WHERE customer = ? AND category = 'marketing'"
                             " AND attempt_of IS NULL AND status IN ('queued', 'deferred', 'sending', 'sent')"
                             " AND due_at >= ? AND due_at < ?");
        store_bind_text(s, 1, customer, -1);
        store_bind_int(s, 2, from);
        store_bind_int(s, 3, to);
    } else {
        s = store_sql(e->st, "SELECT (SELECT COUNT(*) FROM outbox WHERE customer = ?1 AND channel = ?2"
                             " AND category <> 'transactional' AND attempt_of IS NULL AND status IN ('queued', 'deferred', 'sending', 'sent')"
                             " AND due_at >= ?3 AND due_at < ?4) + (SELECT COUNT(*) FROM tasks WHERE"
                             " customer = ?1 AND kind = ?2 AND created_at >= ?3 AND created_at < ?4)");
        store_bind_text(s, 1, customer, -1);
        store_bind_text(s, 2, scope, -1);
        store_bind_int(s, 3, from);
        store_bind_int(s, 4, to);
    }
    if (store_step(s) != STORE_ROW)
        return -1;
    int64_t n = store_col_int(s, 0);
    store_reset(s);
    return n;
}

/* Takes the slot of the lowest-priority unsent message of the scope in the
 * window if it ranks below `priority`: that one becomes capped. */
static int bump(engine *e, const char *customer, const char *scope, int priority, tend_time from, tend_time to)
{
    int marketing = strcmp(scope, "marketing") == 0;
    store_stmt *s = store_sql(e->st, "SELECT id, due_key FROM outbox WHERE customer = ?1"
                                     " AND ((?5 AND category = 'marketing') OR (NOT ?5 AND channel = ?6"
                                     " AND category <> 'transactional'))"
                                     " AND status IN ('queued', 'deferred') AND due_at >= ?2 AND due_at < ?3"
                                     " AND priority < ?4 ORDER BY priority, due_at DESC LIMIT 1");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, from);
    store_bind_int(s, 3, to);
    store_bind_int(s, 4, priority);
    store_bind_int(s, 5, marketing);
    store_bind_text(s, 6, scope, -1);
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

/* 1 if the customer is in the segment, 0 not, -1 error (logged: no override). */
static int in_segment(engine *e, const char *customer, const char *segment)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L), rc = 0;
    if (catalog_push_segment(e, segment)) {
        if (lua_getfield(L, -1, "where") == LUA_TFUNCTION && sandbox_pcall(e->sb, L, 0, 1) != LUA_OK)
            lua_pushnil(L);
        char err[300];
        segment_query *q = lua_istable(L, -1) ? segment_compile(L, -1, engine_now(e), err, sizeof err) : NULL;
        rc = q ? segment_matches(e->st, q, customer) : -1;
        segment_query_free(q);
    }
    lua_settop(L, top);
    return rc;
}

/* The limit that applies to this customer for (scope, period): a
 * segment_caps override of a segment they are in, else the base one. */
static int effective_limit(engine *e, const char *customer, const struct config_cap *base)
{
    const struct config *c = &e->cfg;
    for (int i = 0; i < c->ncaps; i++) {
        const struct config_cap *o = &c->caps[i];
        if (o->segment && o->period == base->period && strcmp(o->scope, base->scope) == 0 &&
            (o->period != CAP_ROLLING || o->within == base->within) && in_segment(e, customer, o->segment) == 1)
            return o->limit;
    }
    return base->limit;
}

/* 0 room at t, 1 over a cap (reason set, *free_at = when that cap's period
 * has room at the earliest), -1 error. `kind` is the channel (or task kind);
 * marketing says whether marketing caps apply too. */
static int over_cap(engine *e, const char *customer, const char *kind, int marketing, const char *tz,
                    int priority, tend_time t, tend_time *free_at, char *reason, size_t n)
{
    const struct config *c = &e->cfg;
    for (int i = 0; i < c->ncaps; i++) {
        const struct config_cap *cap = &c->caps[i];
        int applies = strcmp(cap->scope, "marketing") == 0 ? marketing : strcmp(cap->scope, kind) == 0;
        if (!applies)
            continue;
        /* an override alone (no base cap of that scope and period) is a cap of its own */
        int limit;
        if (cap->segment) {
            int base = 0;
            for (int j = 0; j < c->ncaps; j++)
                base |= !c->caps[j].segment && c->caps[j].period == cap->period &&
                        strcmp(c->caps[j].scope, cap->scope) == 0;
            if (base || in_segment(e, customer, cap->segment) != 1)
                continue;
            limit = cap->limit;
        } else {
            limit = effective_limit(e, customer, cap);
        }
        tend_time from, to;
        period_bounds(cap, tz, t, &from, &to);
        int64_t used = count_scope(e, customer, cap->scope, from, to);
        if (used < 0)
            return -1;
        if (used < limit)
            continue;
        int b = marketing || strcmp(cap->scope, "marketing") != 0 ? bump(e, customer, cap->scope, priority, from, to)
                                                                  : 0;
        if (b < 0)
            return -1;
        if (b == 0) {
            static const char *const names[] = {"day", "week", "month", "rolling"};
            if (cap->period == CAP_ROLLING)
                snprintf(reason, n, "%s cap of %d within %llds reached", cap->scope, limit,
                         (long long)cap->within);
            else
                snprintf(reason, n, "%s cap of %d a %s reached", cap->scope, limit, names[cap->period]);
            *free_at = cap->period == CAP_ROLLING ? t + cap->within : to;
            return 1;
        }
    }
    return 0;
}

/* The customer's zone for windows, quiet hours and active hours: its own,
 * else the configured one (an unknown zone said once: dates_zone). */
static char *customer_zone(engine *e, const char *customer)
{
    store_stmt *s = store_sql(e->st, "SELECT timezone FROM customers WHERE id = ?");
    store_bind_text(s, 1, customer, -1);
    char *tz = NULL;
    if (store_step(s) == STORE_ROW) {
        const char *t = store_col_text(s, 0);
        tz = xstrdup(dates_zone(e, t ? t : ""));
        store_reset(s);
    }
    return tz ? tz : xstrdup(e->cfg.timezone);
}

/* Quiet hours, the channel's window, caps: where a message of `kind`
 * (a channel, or a task kind) lands. Caps apply unless transactional. */
static int place(engine *e, const char *customer, const char *kind, int marketing, int transactional, int priority,
                 int defer_on_cap, tend_time now, struct policy_verdict *v)
{
    char *tz = customer_zone(e, customer);
    struct policy_window w;
    channel_window(e, kind, &w);
    tend_time t = contact_time(e, &w, tz, marketing, now);
    int rc = 0;
    v->status = t > now ? "deferred" : "queued";
    if (t > now)
        snprintf(v->reason, sizeof v->reason, "%s", marketing && policy_quiet_end(e, tz, now) > now
                                                        ? "quiet hours" : "outside the channel's window");
    /* Over a cap: capped, or (on_cap = "defer") moved to the first period
     * with room, for at most 15 moves. */
    for (int move = 0; !transactional && move < 15; move++) {
        tend_time free_at = t;
        int over = over_cap(e, customer, kind, marketing, tz, priority, t, &free_at, v->reason, sizeof v->reason);
        if (over < 0) {
            rc = -1;
            break;
        }
        if (!over)
            break;
        if (!defer_on_cap || move == 14) {
            v->status = "capped";
            break;
        }
        t = contact_time(e, &w, tz, marketing, free_at);
        v->status = "deferred";
    }
    v->due_at = t;
    free(tz);
    return rc;
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
    return place(e, customer, channel, marketing, !marketing, priority, defer_on_cap, now, v);
}

int policy_check_task(engine *e, const char *customer, const char *kind, tend_time now, struct policy_verdict *v)
{
    v->reason[0] = 0;
    v->due_at = now;
    return place(e, customer, kind, 0, 0, 0, 0, now, v);
}

int policy_validate(engine *e, char *err, size_t n)
{
    lua_State *L = sandbox_state(e->sb);
    const struct config *c = &e->cfg;
    for (int i = 0; i < c->ncaps; i++) {
        const struct config_cap *cap = &c->caps[i];
        if (cap->segment) {
            int found = catalog_push_segment(e, cap->segment);
            lua_pop(L, 1);
            if (!found) {
                snprintf(err, n, "segment_caps: '%s' is not a declared segment", cap->segment);
                return -1;
            }
        }
        if (strcmp(cap->scope, "marketing") == 0)
            continue;
        /* a channel: declared (tend.lua or a script), or given text by a template */
        struct channel_info info;
        channel_push(e, cap->scope, &info);
        int found = !lua_isnil(L, -1);
        lua_pop(L, 1);
        catalog_push_all(e, "templates");
        lua_pushnil(L);
        while (!found && lua_next(L, -2)) {
            lua_getfield(L, -1, cap->scope);
            found = !lua_isnil(L, -1);
            lua_pop(L, 2);
            if (found)
                lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (!found) {
            snprintf(err, n, "%s: '%s' is neither a channel nor \"marketing\" (declared channels and template channels count)",
                     cap->segment ? "segment_caps" : "caps", cap->scope);
            return -1;
        }
    }
    return 0;
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
    char *tz = customer_zone(e, customer);
    *due = policy_quiet_end(e, tz, now);
    free(tz);
    return *due > now ? 2 : 0;
}

/* --- best_time ----------------------------------------------------------- */

int policy_note_activity(engine *e, const char *customer, tend_time at)
{
    char *tz = customer_timezone(e, customer);
    int rc = policy_note_activity_in(e, customer, at, tz);
    free(tz);
    return rc;
}

#define ACTIVITY_ROWS ((int)(sizeof ((struct activity_batch *)0)->v / sizeof ((struct activity_batch *)0)->v[0]))

/* The upsert of `rows` activity hours, rows a power of two up to
 * ACTIVITY_ROWS: the texts are built once for the process (they are the
 * same for every engine) and kept prepared by the store. A row of the
 * same (customer, hour) as an earlier one of the statement adds to it, as
 * one statement a row did. */
static store_stmt *activity_stmt(engine *e, int rows)
{
    static char *built[7];   /* [log2(rows)] */
    const char *sql = util_rows_sql(built, rows, "INSERT INTO activity_hours (customer, hour, n) VALUES ", "(?, ?, 1)",
                                    " ON CONFLICT(customer, hour) DO UPDATE SET n = n + 1");
    return store_sql_bound(e->st, sql);   /* activity_write binds every parameter */
}

/* Writes the kept activity hours, a power of two of them to a statement
 * (37: 32 + 4 + 1); 0, or -1 on a store error. */
static int activity_write(engine *e)
{
    struct activity_batch *b = e->activity;
    int rc = 0;
    for (int from = 0, n; rc == 0 && b && from < b->n; from += n) {
        n = util_rows_chunk(b->n - from, ACTIVITY_ROWS);
        store_stmt *s = activity_stmt(e, n);
        rc = s ? 0 : -1;
        for (int i = 0; rc == 0 && i < n; i++) {
            store_bind_text(s, 2 * i + 1, b->v[from + i].customer, -1);
            store_bind_int(s, 2 * i + 2, b->v[from + i].hour);
        }
        if (rc == 0)
            rc = store_run(s);
    }
    if (b) {
        b->n = 0;
        b->failed |= rc != 0;
    }
    return rc;
}

void policy_activity_begin(engine *e, struct activity_batch *b)
{
    b->n = b->failed = 0;
    e->activity = b;
}

int policy_activity_end(engine *e, int write)
{
    int rc = write ? activity_write(e) : 0;
    if (e->activity && e->activity->failed)
        rc = -1;
    e->activity = NULL;
    return rc;
}

int policy_note_activity_in(engine *e, const char *customer, tend_time at, const char *zone)
{
    const char *tz = dates_zone(e, zone ? zone : "");
    struct clock_local l;
    if (clock_to_local(at, tz, &l) != 0)
        return 0;   /* an instant out of range: nothing to learn */
    struct activity_batch *b = e->activity;
    if (b && strlen(customer) < sizeof b->v[0].customer) {
        /* one statement for many rows costs a fraction of one a row */
        memcpy(b->v[b->n].customer, customer, strlen(customer) + 1);
        b->v[b->n++].hour = l.hour;
        return b->n == ACTIVITY_ROWS ? activity_write(e) : 0;
    }
    store_stmt *s = store_sql(e->st, "INSERT INTO activity_hours (customer, hour, n) VALUES (?, ?, 1)"
                                     " ON CONFLICT(customer, hour) DO UPDATE SET n = n + 1");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, l.hour);
    return store_run(s);
}

#define BEST_TIME_MIN_EVENTS 3

/* The customer's most active local hour, or -1 (too few events). */
static int most_active_hour(engine *e, const char *customer)
{
    if (e->activity && e->activity->n && activity_write(e) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, "SELECT hour, n, SUM(n) OVER () FROM activity_hours WHERE customer = ?"
                                     " ORDER BY n DESC, hour LIMIT 1");
    store_bind_text(s, 1, customer, -1);
    int hour = -1;
    if (store_step(s) == STORE_ROW) {
        if (store_col_int(s, 2) >= BEST_TIME_MIN_EVENTS)
            hour = (int)store_col_int(s, 0);
        store_reset(s);
    }
    return hour;
}

static int l_best_time(lua_State *L)
{
    engine *e = lua_touserdata(L, lua_upvalueindex(1));
    const char *id = customer_handle_id(L, 1);
    luaL_argexpected(L, id, 1, "customer");
    int hh = 10, mm = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1))   /* a misspelt option would be ignored */
            if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "default") != 0)
                return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s' (default)",
                                                           lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                                                          : luaL_typename(L, -2)));
        if (lua_getfield(L, 2, "default") != LUA_TNIL) {
            const char *d = lua_tostring(L, -1);
            if (!d || clock_parse_hhmm(d, &hh, &mm) != 0)
                return luaL_argerror(L, 2, lua_pushfstring(L, "'default' must be a local time \"HH:MM\", not '%s'",
                                                           d ? d : luaL_typename(L, -1)));
        }
        lua_pop(L, 1);
    }
    struct run_ctx *ctx = step_ctx(e);
    char key[200];
    snprintf(key, sizeof key, "%s\x1f%02d:%02d", id, hh, mm);
    uint32_t hash = 0;
    if (ctx && !ctx->no_steps) {
        hash = step_hash(key);
        if (step_take(L, ctx, "best_time", key + strlen(id) + 1, hash, NULL) == STEP_REPLAY)
            return 1;
    }
    int hour = most_active_hour(e, id);
    if (hour >= 0) {
        hh = hour;
        mm = 0;
    }
    char *tz = customer_zone(e, id);
    tend_time t;
    int rc = clock_next_local(ctx ? ctx->now : engine_now(e), tz, hh, mm, &t);
    free(tz);
    if (rc != 0)
        return luaL_error(L, "best_time: cannot compute %02d:%02d in the customer's zone", hh, mm);
    lua_pushinteger(L, t);
    if (ctx && !ctx->no_steps)
        step_record(L, ctx, "best_time", key + strlen(id) + 1, hash, lua_gettop(L));
    return 1;
}

void policy_lua_register(engine *e)
{
    static const luaL_Reg fns[] = {{"best_time", l_best_time}, {NULL, NULL}};
    lua_State *L = sandbox_state(e->sb);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, e);
        lua_pushcclosure(L, f->func, 1);
        sandbox_set_global(e->sb, f->name, 0);
    }
}
