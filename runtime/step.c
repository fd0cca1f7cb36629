/* step — durable primitives and the replay of history (see step.h).
 *
 * A primitive that must stop the run (wait, wait_for, exit) records what it
 * waits for in the run context and yields from C; the instance runner sees
 * the yield, stores the instance, and drops the coroutine (or keeps a long
 * run's for its next timer wake, instance.c); otherwise the next wake
 * replays from the top. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "coupon.h"
#include "customer.h"
#include "event.h"
#include "fetch.h"
#include "helpers.h"
#include "json.h"
#include "outbox.h"
#include "policy.h"
#include "step.h"
#include "task.h"
#include "util.h"

/* Every primitive starts here: once the entry has tripped, whatever the
 * script still runs (a __close handler, a pcall'd rest) raises the trip's
 * error at its first primitive, so nothing it does acts or commits. */
engine *step_engine(lua_State *L)
{
    sandbox_check_live(L);
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* Per-resume fan-out limits: live acts of one kind in one run. */
static void count_act(lua_State *L, struct run_ctx *ctx, int *used, int limit, const char *what,
                      const char *key)
{
    if (++*used > limit)
        luaL_error(L, "%s: more than %d %s in one run of journey '%s' (limits.%s)", what, limit, key,
                   ctx->journey, key);
}

/* A start or emit from a run makes the next link of its chain. */
static void check_chain(lua_State *L, engine *e, struct run_ctx *ctx, const char *what)
{
    if (ctx->chain + 1 > e->cfg.max_chain)
        luaL_error(L, "%s: chain limit reached: journey '%s' is %d starts/emits away from the "
                      "event that began it (limits.chain = %d)", what, ctx->journey, ctx->chain,
                   e->cfg.max_chain);
}

struct run_ctx *step_ctx(engine *e)
{
    return e->cur;
}

struct run_ctx *step_require(lua_State *L, engine *e, const char *what)
{
    if (!e->cur)
        luaL_error(L, "%s can only be used inside a journey's run", what);
    return e->cur;
}

/* 31 bits: the hash is stored as a JSON number, and numbers that fit an int
 * print fast (cJSON takes a slow, exact path for the others). */
static uint32_t fold_hash(uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32)) & 0x7fffffffu;
}

uint32_t step_hash(const char *text)
{
    return fold_hash(util_hash64(text, strlen(text)));
}

uint32_t step_hash_pair(const char *a, const char *b)
{
    uint64_t h = util_hash64_add(UTIL_HASH64_INIT, a, strlen(a));
    h = util_hash64_add(h, "\x1f", 1);
    return fold_hash(util_hash64_add(h, b, strlen(b)));
}

void step_new_segment(struct run_ctx *ctx)
{
    cJSON_Delete(ctx->reads);
    ctx->reads = NULL;
}

/* --- history ---------------------------------------------------------- */

static int diverge(lua_State *L, struct run_ctx *ctx, const struct history_entry *entry, const char *kind,
                   const char *desc)
{
    char where[200];
    sandbox_where(L, 1, where, sizeof where);
    char *was = history_desc(entry);
    /* A description shows part of what its hash covers (a send's values,
     * a segment's query, a wait's whole argument are hashed, not shown):
     * when the two read the same, say so rather than look like a bug. */
    int looks_same = strlen(kind) == entry->kind_len && !memcmp(kind, entry->kind, entry->kind_len) &&
                     !strcmp(desc, was);
    free(ctx->fatal);
    ctx->fatal = xasprintf("%s: journey '%s' (instance %lld) diverged from its history at step %d: "
                           "the script now calls %s(%s) where the history recorded %.*s(%s)%s",
                           where, ctx->journey, (long long)ctx->id, ctx->pos + 1, kind, desc,
                           (int)entry->kind_len, entry->kind, was,
                           looks_same ? " (they read the same: what differs is hashed but not shown, such as a send's"
                                        " values or a segment's query)" : "");
    free(was);
    lua_pushstring(L, ctx->fatal);
    return lua_error(L);
}

/* Pushes a recorded result: the integers, booleans and nothing that most
 * steps record without a JSON parse. */
static void push_result(lua_State *L, struct run_ctx *ctx, const struct history_entry *e)
{
    const char *r = e->result;
    size_t n = e->result_len;
    if (!r) {
        lua_pushnil(L);
        return;
    }
    size_t i = r[0] == '-' ? 1 : 0;
    if (n > i && n - i <= 18) {
        size_t j = i;
        lua_Integer v = 0;
        while (j < n && r[j] >= '0' && r[j] <= '9')
            v = v * 10 + (r[j++] - '0');
        if (j == n) {
            lua_pushinteger(L, i ? -v : v);
            return;
        }
    }
    if (n == 4 && memcmp(r, "true", 4) == 0) {
        lua_pushboolean(L, 1);
        return;
    }
    if (n == 5 && memcmp(r, "false", 5) == 0) {
        lua_pushboolean(L, 0);
        return;
    }
    char err[160];
    if (json_push_stored(L, r, n, err, sizeof err) != 0) {
        free(ctx->fatal);
        ctx->fatal = xasprintf("journey '%s' (instance %lld): the result of history step %d cannot be read: %s",
                               ctx->journey, (long long)ctx->id, ctx->pos, err);
        lua_pushstring(L, ctx->fatal);
        lua_error(L);
    }
}

int step_take(lua_State *L, struct run_ctx *ctx, const char *kind, const char *desc, uint32_t hash,
              struct history_entry *entry)
{
    if (ctx->fatal) {   /* a divergence is final, even if a pcall caught it */
        lua_pushstring(L, ctx->fatal);
        lua_error(L);
    }
    if (ctx->no_steps)
        luaL_error(L, "%s cannot be used inside wait_for's where or a task's assign function", kind);
    if (ctx->pos >= ctx->steps)
        return STEP_LIVE;
    struct history_entry e;
    size_t next = ctx->replay_at;
    if (history_next(ctx->hist.s, ctx->hist.len, &next, &e) != 1) {
        free(ctx->fatal);
        ctx->fatal = xasprintf("journey '%s' (instance %lld): history step %d is damaged", ctx->journey,
                               (long long)ctx->id, ctx->pos + 1);
        lua_pushstring(L, ctx->fatal);
        lua_error(L);
    }
    /* An entry without a hash came from a migration: only its kind is checked. */
    size_t klen = strlen(kind);
    if (e.kind_len != klen || memcmp(e.kind, kind, klen) != 0 || (e.has_hash && e.hash != hash))
        diverge(L, ctx, &e, kind, desc);
    if (entry)
        *entry = e;
    ctx->pos++;
    ctx->replay_at = next;
    if (e.pending)
        return STEP_PENDING;
    push_result(L, ctx, &e);
    return STEP_REPLAY;
}

/* Appends an entry (result: compact JSON or NULL) and moves past it. */
static void append(struct run_ctx *ctx, const char *kind, const char *desc, uint32_t hash, int pending,
                   tend_time deadline, const char *result, size_t rlen)
{
    /* the description is for people (timeline, messages): 80 bytes do */
    char shortdesc[81];
    size_t n = strnlen(desc, sizeof shortdesc - 1);
    memcpy(shortdesc, desc, n);
    shortdesc[n] = 0;
    history_append(&ctx->hist, kind, hash, ctx->now, pending, deadline, shortdesc, result, rlen);
    ctx->steps++;
    ctx->pos++;
    ctx->replay_at = ctx->hist.len;
    ctx->appended++;
}

void step_record(lua_State *L, struct run_ctx *ctx, const char *kind, const char *desc, uint32_t hash,
                 int idx)
{
    if (!idx) {
        append(ctx, kind, desc, hash, 0, 0, NULL, 0);
        return;
    }
    /* integers and booleans (waits, tags, ids) without a JSON tree */
    char small[24];
    if (lua_type(L, idx) == LUA_TBOOLEAN) {
        const char *b = lua_toboolean(L, idx) ? "true" : "false";
        append(ctx, kind, desc, hash, 0, 0, b, strlen(b));
        return;
    }
    if (lua_isinteger(L, idx)) {
        size_t n = util_int_text(small, lua_tointeger(L, idx));
        append(ctx, kind, desc, hash, 0, 0, small, n);
        return;
    }
    char err[200];
    char *r = json_encode(L, idx, err, sizeof err);
    if (!r)
        luaL_error(L, "%s: result cannot be recorded: %s", kind, err);
    append(ctx, kind, desc, hash, 0, 0, r, strlen(r));
    free(r);
}

/* Finishes the pending entry `e` (taken in this run): it stops pending and
 * gets `result` (compact JSON, NULL: none, replayed as nil). The entry is
 * rewritten in place; the entries after it, if any, are kept as they are. */
static void complete(struct run_ctx *ctx, const struct history_entry *e, const char *result)
{
    if (e->start < ctx->sealed)
        ctx->hist_rewrite = 1;   /* a line of a sealed chunk changes */
    strbuf nb;
    strbuf_init(&nb);
    strbuf_add(&nb, ctx->hist.s, e->start);
    char *kind = xstrndup(e->kind, e->kind_len), *desc = history_desc(e);
    history_append(&nb, kind, e->has_hash ? (int64_t)e->hash : -1, e->has_t ? e->t : -1, 0, 0, desc, result,
                   result ? strlen(result) : 0);
    free(kind);
    free(desc);
    size_t at = nb.len;
    strbuf_add(&nb, ctx->hist.s + e->end, ctx->hist.len - e->end);
    strbuf_free(&ctx->hist);
    ctx->hist = nb;
    ctx->replay_at = at;
    ctx->appended++;
}

/* Stops the run here; the runner stores where it waits. The label is
 * `what` (and " " `what2`, if given) and the script's file:line, written in
 * one pass: every wake that waits again makes one (sandbox_where's text,
 * then the label from it, cost three copies and a search). */
static int suspend(lua_State *L, struct run_ctx *ctx, enum suspend_kind kind, tend_time wake_at,
                   const char *listen, const char *what, const char *what2)
{
    lua_Debug ar;
    char line[24];
    const char *file = "?", *colon = "", *at = "";
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
        const char *slash = strrchr(ar.short_src, '/');
        file = slash ? slash + 1 : ar.short_src;
        util_int_text(line, ar.currentline);
        colon = ":";
        at = line;
    }
    ctx->suspend = kind;
    ctx->wake_at = wake_at;
    free(ctx->listen_type);
    ctx->listen_type = listen ? xstrdup(listen) : NULL;
    util_concat(ctx->label, sizeof ctx->label, what, what2 ? " " : "", what2 ? what2 : "", " (", file, colon, at,
                ")", NULL);
    return lua_yield(L, 0);
}

/* --- waiting ----------------------------------------------------------- */

static int wait_common(lua_State *L, struct run_ctx *ctx, const char *kind, tend_time target,
                       const char *desc, uint32_t hash)
{
    step_new_segment(ctx);
    int mode = step_take(L, ctx, kind, desc, hash, NULL);
    tend_time wake_at;
    if (mode == STEP_REPLAY) {
        wake_at = (tend_time)lua_tointeger(L, -1);
        lua_pop(L, 1);
    } else {
        wake_at = target;
        lua_pushinteger(L, wake_at);
        step_record(L, ctx, kind, desc, hash, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (wake_at <= ctx->now)
        return 0;
    return suspend(L, ctx, SUSPEND_WAIT, wake_at, NULL, kind, desc);
}

static int p_wait(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "wait()");
    lua_Integer s = (lua_Integer)luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0, 1, "seconds must not be negative");
    /* Every replayed wait needs its text and hash: a loop of waits asks
     * for the same few, so the last one is kept (per thread: a pure
     * function of s, whichever engine asks). */
    static _Thread_local struct { lua_Integer s; uint32_t hash; char desc[24]; } last = {-1, 0, ""};
    if (last.s != s) {
        util_int_text(last.desc, s);
        last.hash = step_hash(last.desc);
        last.s = s;
    }
    char desc[24];
    memcpy(desc, last.desc, sizeof desc);
    return wait_common(L, ctx, "wait", ctx->now + s, desc, last.hash);
}

static int p_wait_until(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "wait_until()");
    tend_time t = helpers_check_time(L, 1);
    /* As for wait(): the first runs of a batch wait until the same moment
     * (a due date, a campaign's start), so the last text and hash are kept
     * (per thread: a pure function of t). */
    static _Thread_local struct { tend_time t; uint32_t hash; char desc[40]; } last = {-1, 0, ""};
    if (last.t != t || !last.desc[0]) {
        clock_format(t, NULL, last.desc, sizeof last.desc);
        last.hash = step_hash(last.desc);
        last.t = t;
    }
    char desc[40];
    memcpy(desc, last.desc, sizeof desc);
    return wait_common(L, ctx, "wait_until", t, desc, last.hash);
}

/* The Lua where(event) of a wait_for: runs once, live, and is never
 * replayed, so nothing it does may become a step. */
struct lua_where {
    lua_State *L;
    int fn;
};

static int lua_where_matches(const cJSON *ev, void *ud)
{
    struct lua_where *w = ud;
    struct run_ctx *ctx = step_ctx(step_engine(w->L));
    lua_pushvalue(w->L, w->fn);
    json_push(w->L, ev);
    ctx->no_steps = 1;
    int st = lua_pcall(w->L, 1, 1, 0);
    ctx->no_steps = 0;
    if (st != LUA_OK)
        return lua_error(w->L);
    int match = lua_toboolean(w->L, -1);
    lua_pop(w->L, 1);
    return match;
}

int step_wait_event(lua_State *L, struct run_ctx *ctx, const struct step_wait *w)
{
    step_new_segment(ctx);
    uint32_t hash = step_hash(w->hashed);
    struct history_entry entry;
    int mode = step_take(L, ctx, w->kind, w->desc, hash, &entry);
    if (mode == STEP_REPLAY)
        return 1;
    tend_time deadline;
    if (mode == STEP_LIVE) {
        deadline = w->timeout ? ctx->now + w->timeout : 0;
        append(ctx, w->kind, w->desc, hash, 1, deadline, NULL, 0);
    } else {
        deadline = entry.deadline;
        /* The event this wake carries, if it is the one awaited. */
        const cJSON *ev = ctx->event;
        const cJSON *evtype = ev ? cJSON_GetObjectItemCaseSensitive(ev, "type") : NULL;
        if (ctx->reason == WAKE_EVENT && !ctx->event_used && cJSON_IsString(evtype) &&
            util_type_matches(w->listen, evtype->valuestring) && (!w->match || w->match(ev, w->ud))) {
            ctx->event_used = 1;
            cJSON *result = w->result ? w->result(ev) : cJSON_Duplicate(ev, 1);
            char *text = json_print(result);
            complete(ctx, &entry, text);
            free(text);
            json_push(L, result);
            cJSON_Delete(result);
            return 1;
        }
        if (deadline && deadline <= ctx->now) {
            complete(ctx, &entry, NULL);
            lua_pushnil(L);
            return 1;
        }
    }
    char what[220];
    snprintf(what, sizeof what, "%s %s", w->kind, w->desc);
    return suspend(L, ctx, SUSPEND_WAIT_FOR, deadline, w->listen, what, NULL);
}

/* wait_for(type, {timeout = s, where = fn}) → the event, or nil on timeout. */
static int p_wait_for(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "wait_for()");
    const char *type = luaL_checkstring(L, 1);
    lua_Integer timeout = 0;
    int where = 0, at_once = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
            lua_Number t = luaL_checknumber(L, -1);
            /* like wait(0): a timeout of nothing (0, negative, under a
             * second) has passed already */
            at_once = !(t >= 1);
            timeout = at_once ? -1 : (lua_Integer)t;
        }
        if (lua_getfield(L, 2, "where") != LUA_TNIL) {
            luaL_argcheck(L, lua_isfunction(L, -1), 2, "where must be a function(event)");
            where = lua_gettop(L);
        }
    }
    char hashed[240];
    snprintf(hashed, sizeof hashed, "%s\x1f%lld", type, (long long)timeout);
    if (at_once) {   /* the timeout has passed already: recorded as a wait that ended */
        uint32_t hash = step_hash(hashed);
        if (step_take(L, ctx, "wait_for", type, hash, NULL) == STEP_REPLAY)
            return 1;
        step_record(L, ctx, "wait_for", type, hash, 0);
        lua_pushnil(L);
        return 1;
    }
    struct lua_where lw = {L, where};
    struct step_wait w = {.kind = "wait_for", .desc = type, .hashed = hashed, .listen = type,
                          .timeout = timeout, .match = where ? lua_where_matches : NULL, .ud = &lw};
    return step_wait_event(L, ctx, &w);
}

/* --- acting ------------------------------------------------------------ */

static const char *handle_or_id(lua_State *L, int arg)
{
    const char *id = customer_handle_id(L, arg);
    if (!id)
        luaL_argexpected(L, 0, arg, "customer");
    return id;
}

/* Reads the journey's priority and on_cap for a send. */
static void journey_send_policy(engine *e, struct run_ctx *ctx, int *priority, int *defer)
{
    lua_State *L = sandbox_state(e->sb);
    *priority = 0;
    *defer = 0;
    if (!catalog_push_journey(e, ctx->journey, ctx->version)) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "priority");
    *priority = (int)lua_tointeger(L, -1);
    lua_getfield(L, -2, "on_cap");
    *defer = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "defer") == 0;
    lua_pop(L, 3);
}

/* One attempt on one channel, a recorded step: pushes {status, id,
 * channel[, error]}. attempt_of: the outbox id of the message's first
 * attempt when this one falls back from it (0: the first). */
static tend_time ctx_now(engine *e)
{
    return e->cur ? e->cur->now : engine_now(e);
}

static int send_one(lua_State *L, engine *e, struct run_ctx *ctx, const char *channel, const char *customer,
                    const char *tmpl, const char *vars_text, int64_t attempt_of)
{
    char err[300];
    uint32_t hash = step_hash(lua_pushfstring(L, "%s\x1f%s\x1f%s\x1f%s", channel, customer, tmpl, vars_text));
    lua_pop(L, 1);
    char desc[200];
    snprintf(desc, sizeof desc, "%s, %s", channel, tmpl);
    if (step_take(L, ctx, "send", desc, hash, NULL) == STEP_REPLAY)
        return 1;
    count_act(L, ctx, &ctx->sends, e->cfg.max_sends, "send", "sends");
    /* send("sms", c.name, ...) would queue a message nobody can receive */
    int known = customer_exists(e, customer);
    if (known < 0)
        return luaL_error(L, "send: store: %s", store_errmsg(e->st));
    if (!known)
        return luaL_argerror(L, 2, lua_pushfstring(L, "no customer has the id '%s' (pass c or c.id)", customer));
    cJSON *vars = cJSON_Parse(vars_text);
    struct send_request req = {
        .instance = ctx->id, .step = ctx->pos, .journey = ctx->journey, .customer = customer,
        .channel = channel, .template_name = tmpl, .vars = vars, .attempt_of = attempt_of};
    journey_send_policy(e, ctx, &req.priority, &req.defer_on_cap);
    struct send_result res;
    int rc = outbox_send(e, &req, &res, err, sizeof err);
    cJSON_Delete(vars);
    if (rc != 0)
        return luaL_error(L, "send: %s", err);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, res.status);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, res.id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, channel);
    lua_setfield(L, -2, "channel");
    if (res.error[0]) {
        lua_pushstring(L, res.error);
        lua_setfield(L, -2, "error");
    }
    step_record(L, ctx, "send", desc, hash, lua_gettop(L));
    e->stats.sends++;
    return 1;
}

/* Why `channel` cannot reach `customer` with template `tmpl` (into why), or
 * NULL when it can: the template has no text for the channel, the customer
 * is suppressed on it, or the customer's address field for it is empty. */
static const char *unreachable(engine *e, const char *channel, const char *customer, const char *tmpl, char *why,
                               size_t n)
{
    /* the catalog's declarations are pushed on the main state, not the run's coroutine */
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    int marketing = 0, has_text = 0;
    if (catalog_push_template(e, tmpl)) {
        lua_getfield(L, -1, channel);
        has_text = !lua_isnil(L, -1);
        lua_getfield(L, -2, "category");
        marketing = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "marketing");
    }
    lua_settop(L, top);
    if (!has_text) {
        snprintf(why, n, "template '%s' has no text for it", tmpl);
        return why;
    }
    tend_time due;
    char reason[160];
    if (policy_recheck(e, customer, channel, marketing, ctx_now(e), &due, reason, sizeof reason) == 1) {
        snprintf(why, n, "%s", reason);
        return why;
    }
    /* the field that holds the customer's address on this channel */
    struct channel_info info;
    channel_push(e, channel, &info);
    const char *field = NULL;
    if (lua_istable(L, -1)) {
        if (lua_getfield(L, -1, "address") != LUA_TSTRING) {
            lua_pop(L, 1);
            lua_getfield(L, -1, "to");
        }
        field = lua_tostring(L, -1);
    }
    char fbuf[128] = "";
    if (field)
        snprintf(fbuf, sizeof fbuf, "%s", field);
    else if (info.kind == CHANNEL_SMTP)
        snprintf(fbuf, sizeof fbuf, "email");
    lua_settop(L, top);
    if (!fbuf[0])
        return NULL;
    cJSON *c = customer_json(e, customer);
    const cJSON *v = c ? json_path(c, fbuf) : NULL;
    int empty = !v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]);
    cJSON_Delete(c);
    if (empty) {
        snprintf(why, n, "no %s", fbuf);
        return why;
    }
    return NULL;
}

static int message_settled(const cJSON *ev, void *ud)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "message");
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
    return cJSON_IsNumber(m) && (int64_t)m->valuedouble == *(const int64_t *)ud && type &&
           (!strcmp(type, "message.delivered") || !strcmp(type, "message.failed") || !strcmp(type, "message.dead"));
}

/* send({"wechat", "sms"}, c, template, vars, {fallback_after = s}): the
 * channels in order. Which of them can reach the customer is decided once
 * and recorded (a "route" step), so a replay takes the same road whatever
 * changed since. Each attempt is a send step; with fallback_after, the wait
 * for its fate is a step too: delivered (a receipt) ends it, failed or dead
 * or no word in time passes to the next channel. Capped ends it: the
 * customer's caps count the message once, not per channel. */
static int send_fallback(lua_State *L, engine *e, struct run_ctx *ctx)
{
    int nch = (int)lua_rawlen(L, 1);
    luaL_argcheck(L, nch >= 1 && nch <= 8, 1, "a list of 1 to 8 channel names");
    for (int i = 1; i <= nch; i++) {
        lua_rawgeti(L, 1, i);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1, "a list of channel names");
        lua_pop(L, 1);
    }
    const char *customer = handle_or_id(L, 2);
    const char *tmpl = luaL_checkstring(L, 3);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    lua_Integer after = 0;
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        if (lua_getfield(L, 5, "fallback_after") != LUA_TNIL) {
            after = (lua_Integer)luaL_checknumber(L, -1);
            luaL_argcheck(L, after > 0, 5, "fallback_after must be positive seconds");
        }
        lua_pop(L, 1);
    }
    char err[300];
    const char *vars_text = "{}";
    if (!lua_isnoneornil(L, 4) && !(vars_text = json_push_encoded(L, 4, err, sizeof err)))
        return luaL_argerror(L, 4, err);
    int vars_idx = lua_gettop(L);   /* keeps vars_text alive */
    (void)vars_idx;
    /* the route: one recorded step */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= nch; i++) {
        lua_rawgeti(L, 1, i);
        luaL_addvalue(&b);
        luaL_addchar(&b, ',');
    }
    luaL_pushresult(&b);
    const char *names = lua_tostring(L, -1);
    uint32_t hash = step_hash(lua_pushfstring(L, "%s\x1f%s\x1f%s", names, customer, tmpl));
    lua_pop(L, 1);
    char desc[200];
    snprintf(desc, sizeof desc, "%s %s", names, tmpl);
    if (step_take(L, ctx, "route", desc, hash, NULL) != STEP_REPLAY) {
        lua_createtable(L, 0, 2);
        lua_newtable(L);   /* try */
        lua_newtable(L);   /* skipped: channel -> why */
        int ntry = 0;
        for (int i = 1; i <= nch; i++) {
            lua_rawgeti(L, 1, i);
            const char *ch = lua_tostring(L, -1);
            char why[200];
            if (unreachable(e, ch, customer, tmpl, why, sizeof why)) {
                lua_pushstring(L, why);
                lua_setfield(L, -3, ch);
                lua_pop(L, 1);
            } else {
                lua_rawseti(L, -3, ++ntry);
            }
        }
        lua_setfield(L, -3, "skipped");
        lua_setfield(L, -2, "try");
        step_record(L, ctx, "route", desc, hash, lua_gettop(L));
    }
    int route = lua_gettop(L);
    lua_getfield(L, route, "try");
    int tries = lua_gettop(L), ntry = (int)lua_rawlen(L, tries);
    if (ntry == 0) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "unreachable");
        lua_setfield(L, -2, "status");
        lua_getfield(L, route, "skipped");
        lua_setfield(L, -2, "skipped");
        return 1;
    }
    int64_t first = 0;
    for (int i = 1; i <= ntry; i++) {
        lua_rawgeti(L, tries, i);
        const char *ch = lua_tostring(L, -1);
        send_one(L, e, ctx, ch, customer, tmpl, vars_text, first);
        int result = lua_gettop(L);
        lua_getfield(L, result, "status");
        lua_getfield(L, result, "id");
        const char *status = lua_tostring(L, -2);
        int64_t id = lua_tointeger(L, -1);
        lua_pop(L, 2);
        if (!first)
            first = id;
        if (!strcmp(status, "capped") || i == ntry)
            return 1;
        if (!strcmp(status, "suppressed") || !strcmp(status, "failed")) {
            lua_settop(L, tries);
            continue;
        }
        if (!after)
            return 1;
        /* queued or deferred: wait for its fate (yields; a later wake replays to here) */
        char wdesc[80], whash[80];
        snprintf(wdesc, sizeof wdesc, "message %lld delivered", (long long)id);
        snprintf(whash, sizeof whash, "%lld\x1f%lld", (long long)id, (long long)after);
        struct step_wait w = {.kind = "wait_delivery", .desc = wdesc, .hashed = whash, .listen = "message.*",
                              .timeout = after, .match = message_settled, .ud = &id};
        step_wait_event(L, ctx, &w);
        int delivered = 0;
        if (lua_istable(L, -1)) {   /* nil: no word in time */
            lua_getfield(L, -1, "type");
            delivered = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "message.delivered");
        }
        lua_settop(L, result);
        if (delivered)
            return 1;
        lua_settop(L, tries);
    }
    return 1;   /* not reached: the last attempt returns */
}

static int p_send(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "send()");
    if (lua_istable(L, 1))
        return send_fallback(L, e, ctx);
    const char *channel = luaL_checkstring(L, 1);
    const char *customer = handle_or_id(L, 2);
    const char *tmpl = luaL_checkstring(L, 3);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    char err[300];
    const char *vars_text = "{}";
    if (!lua_isnoneornil(L, 4) && !(vars_text = json_push_encoded(L, 4, err, sizeof err)))
        return luaL_argerror(L, 4, err);
    return send_one(L, e, ctx, channel, customer, tmpl, vars_text, 0);
}

/* Shared shape of the primitives that take (c, spec) and act once. */
typedef int (*act_fn)(engine *e, struct run_ctx *ctx, lua_State *L, const char *customer,
                      int spec, char *err, size_t errlen);

static int act_step(lua_State *L, const char *kind, act_fn act)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, kind);
    const char *customer = handle_or_id(L, 1);
    int spec = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        spec = 2;
    }
    char err[300];
    char *spec_text = spec ? json_encode(L, spec, err, sizeof err) : xstrdup("{}");
    if (!spec_text) {
        /* a function in the spec (task's assign rule): hash its shape only */
        spec_text = xstrdup("{fn}");
    }
    char *hashed = xasprintf("%s\x1f%s", customer, spec_text);
    uint32_t hash = step_hash(hashed);
    free(hashed);
    free(spec_text);
    int mode = step_take(L, ctx, kind, customer, hash, NULL);
    if (mode == STEP_REPLAY)
        return 1;
    if (act(e, ctx, L, customer, spec, err, sizeof err) != 0)
        return luaL_error(L, "%s: %s", kind, err);
    step_record(L, ctx, kind, customer, hash, lua_gettop(L));
    return 1;
}

static int act_coupon(engine *e, struct run_ctx *ctx, lua_State *L, const char *customer, int spec,
                      char *err, size_t errlen)
{
    return coupon_issue(e, L, ctx->journey, ctx->id, ctx->pos, customer, spec, err, errlen);
}

static int p_coupon_issue(lua_State *L)
{
    return act_step(L, "coupon_issue", act_coupon);
}

static int act_task(engine *e, struct run_ctx *ctx, lua_State *L, const char *customer, int spec,
                    char *err, size_t errlen)
{
    return task_create(e, L, ctx->journey, ctx->id, ctx->pos, customer, spec, err, errlen);
}

static int p_task(lua_State *L)
{
    return act_step(L, "task", act_task);
}

/* emit{type = ..., customer = ..., ...}: a new event, deduplicated by an id
 * derived from the step, so a crash between emit and commit cannot emit twice. */
static int p_emit(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "emit()");
    luaL_checktype(L, 1, LUA_TTABLE);
    char err[300];
    const char *text = json_push_input(L, 1, err, sizeof err);
    if (!text)
        return luaL_argerror(L, 1, err);
    uint32_t hash = step_hash(text);
    lua_getfield(L, 1, "type");
    char desc[120];
    snprintf(desc, sizeof desc, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    if (step_take(L, ctx, "emit", desc, hash, NULL) == STEP_REPLAY)
        return 1;
    count_act(L, ctx, &ctx->emits, e->cfg.max_emits, "emit", "emits");
    check_chain(L, e, ctx, "emit");
    cJSON *ev = cJSON_Parse(text);
    if (!cJSON_GetObjectItemCaseSensitive(ev, "id")) {
        char id[64];
        snprintf(id, sizeof id, "emit:%lld:%d", (long long)ctx->id, ctx->pos);
        cJSON_AddStringToObject(ev, "id", id);
    }
    if (!cJSON_GetObjectItemCaseSensitive(ev, "at"))
        cJSON_AddNumberToObject(ev, "at", (double)ctx->now);
    struct event_result res;
    int outer = e->chain;
    e->chain = ctx->chain + 1;
    int rc = event_accept(e, ev, &res, err, sizeof err);
    e->chain = outer;
    cJSON_Delete(ev);
    if (rc != 0)
        return luaL_error(L, "emit: %s", err);
    lua_pushinteger(L, res.seq);
    step_record(L, ctx, "emit", desc, hash, lua_gettop(L));
    return 1;
}

/* start(journey, c, payload): inside a run it is a step; in a schedule it
 * acts directly. Returns the new instance id, or false when entry is refused
 * (once, reenter_after). */
static int p_start(lua_State *L)
{
    engine *e = step_engine(L);
    const char *journey = luaL_checkstring(L, 1);
    const char *customer = handle_or_id(L, 2);
    char err[300];
    const char *text = NULL;
    if (!lua_isnoneornil(L, 3) && !(text = json_push_encoded(L, 3, err, sizeof err)))
        return luaL_argerror(L, 3, err);
    struct run_ctx *ctx = step_ctx(e);
    uint32_t hash = 0;
    char desc[200];
    snprintf(desc, sizeof desc, "%s, %s", journey, customer);
    if (ctx) {
        hash = step_hash(lua_pushfstring(L, "%s\x1f%s\x1f%s", journey, customer, text ? text : ""));
        if (step_take(L, ctx, "start", desc, hash, NULL) == STEP_REPLAY)
            return 1;
        count_act(L, ctx, &ctx->starts, e->cfg.max_starts, "start", "starts");
        check_chain(L, e, ctx, "start");
    }
    cJSON *payload = text ? cJSON_Parse(text) : NULL;
    /* when() filters every way in, start() included. It runs on the
     * engine's main thread, where the catalog is pushed, and is not part
     * of this run's history (the start step is what gets recorded). */
    int64_t id = 0;
    lua_State *M = sandbox_state(e->sb);
    if (catalog_push_current(e, journey)) {
        if (ctx)
            ctx->no_steps = 1;
        int ok = instance_admits(e, lua_gettop(M), journey, customer, payload);
        if (ctx)
            ctx->no_steps = 0;
        lua_pop(M, 1);
        if (ok == 1) {
            int outer = e->chain;
            if (ctx)
                e->chain = ctx->chain + 1;
            id = instance_start(e, journey, customer, payload, 0, err, sizeof err);
            e->chain = outer;
        }
    } else {
        lua_pop(M, 1);
        snprintf(err, sizeof err, "no journey named '%s'", journey);
        id = -1;
    }
    cJSON_Delete(payload);
    if (id < 0)
        return luaL_error(L, "start: %s", err);
    if (id > 0)
        lua_pushinteger(L, id);
    else
        lua_pushboolean(L, 0);
    if (ctx)
        step_record(L, ctx, "start", desc, hash, lua_gettop(L));
    return 1;
}

/* --- choosing ---------------------------------------------------------- */

/* xorshift64*: small, fast, and the same everywhere. */
static uint64_t next_random(struct run_ctx *ctx)
{
    uint64_t x = ctx->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ctx->rng = x;
    return x * 2685821657736338717ULL;
}

static double random_unit(struct run_ctx *ctx)
{
    return (double)(next_random(ctx) >> 11) * (1.0 / 9007199254740992.0);
}

/* random() / random(m) / random(m, n), as math.random. Outside a run it
 * uses a generator of the engine's own (schedules, load time). */
static int p_random(lua_State *L)
{
    engine *e = step_engine(L);
    static struct run_ctx outside = {.rng = 0x9E3779B97F4A7C15ULL};
    struct run_ctx *ctx = e->cur ? e->cur : &outside;
    double u = random_unit(ctx);
    int n = lua_gettop(L);
    if (n == 0) {
        lua_pushnumber(L, u);
        return 1;
    }
    lua_Integer lo = 1, hi;
    if (n == 1) {
        hi = luaL_checkinteger(L, 1);
    } else {
        lo = luaL_checkinteger(L, 1);
        hi = luaL_checkinteger(L, 2);
    }
    luaL_argcheck(L, lo <= hi, n, "interval is empty");
    lua_pushinteger(L, lo + (lua_Integer)(u * (double)(hi - lo + 1)));
    return 1;
}

/* split{A = 50, B = 50} → "A" or "B", by weight; recorded. */
static int p_split(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "split()");
    luaL_checktype(L, 1, LUA_TTABLE);
    char err[200];
    const char *text = json_push_encoded(L, 1, err, sizeof err);
    if (!text)
        return luaL_argerror(L, 1, err);
    uint32_t hash = step_hash(text);
    int mode = step_take(L, ctx, "split", text, hash, NULL);
    if (mode == STEP_REPLAY) {
        random_unit(ctx);   /* the live run drew once: so does the replay */
        free(ctx->branch);
        ctx->branch = xstrdup(lua_tostring(L, -1));
        return 1;
    }
    /* Sorted names, so the draw does not depend on table order. */
    cJSON *weights = cJSON_Parse(text);
    double total = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, weights) {
        if (!cJSON_IsNumber(w) || w->valuedouble < 0 || !w->string) {
            cJSON_Delete(weights);
            return luaL_argerror(L, 1, "split takes {name = weight, ...} with weights >= 0");
        }
        total += w->valuedouble;
    }
    if (total <= 0) {
        cJSON_Delete(weights);
        return luaL_argerror(L, 1, "split weights add up to nothing");
    }
    double pick = random_unit(ctx) * total;
    const char *chosen = NULL;
    cJSON_ArrayForEach(w, weights) {
        chosen = w->string;
        if ((pick -= w->valuedouble) < 0)
            break;
    }
    lua_pushstring(L, chosen);
    cJSON_Delete(weights);
    free(ctx->branch);
    ctx->branch = xstrdup(lua_tostring(L, -1));
    step_record(L, ctx, "split", text, hash, lua_gettop(L));
    return 1;
}

/* holdout(percent) → true for the control group (which then gets nothing,
 * so conversions can be compared); recorded, and marked on the instance. */
static int p_holdout(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "holdout()");
    double pct = luaL_checknumber(L, 1);
    luaL_argcheck(L, pct >= 0 && pct <= 100, 1, "percent must be between 0 and 100");
    char desc[32];
    snprintf(desc, sizeof desc, "%g", pct);
    uint32_t hash = step_hash(desc);
    int mode = step_take(L, ctx, "holdout", desc, hash, NULL);
    double draw = random_unit(ctx);   /* drawn on replay too, so later random() agrees */
    if (mode != STEP_REPLAY) {
        lua_pushboolean(L, draw * 100 < pct);
        step_record(L, ctx, "holdout", desc, hash, lua_gettop(L));
    }
    ctx->holdout = lua_toboolean(L, -1);
    return 1;
}

static int p_now(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_ctx(e);
    if (!ctx) {
        lua_pushinteger(L, engine_now(e));
        return 1;
    }
    uint32_t hash = step_hash("now");
    if (step_take(L, ctx, "now", "", hash, NULL) == STEP_REPLAY)
        return 1;
    lua_pushinteger(L, ctx->now);
    step_record(L, ctx, "now", "", hash, lua_gettop(L));
    return 1;
}

static int p_exit(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "exit()");
    const char *reason = luaL_optstring(L, 1, "exit");
    free(ctx->exit_reason);
    ctx->exit_reason = xstrdup(reason);
    return suspend(L, ctx, SUSPEND_EXIT, 0, NULL, "exit", NULL);
}

/* Returns a recorded http_get result the Lua way: the table, or nil and
 * the message when it is {error = ...}. The result is on the stack top. */
static int http_result(lua_State *L)
{
    if (lua_getfield(L, -1, "error") != LUA_TNIL) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pop(L, 1);
    return 1;
}

/* http_get(url) → {status, body, json} or nil, message. One step. A URL
 * the guard refuses at once (not http/https, host not in http_allow) is
 * recorded as that error. Otherwise the step is recorded as pending and
 * the instance suspends until the answer comes (fetch.c); the wake that
 * brings it completes the entry, and later replays return it. */
static int p_http_get(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "http_get()");
    const char *url = luaL_checkstring(L, 1);
    uint32_t hash = step_hash(url);
    struct history_entry entry;
    int mode = step_take(L, ctx, "http_get", url, hash, &entry);
    if (mode == STEP_REPLAY)
        return http_result(L);
    int step = ctx->pos - 1;
    if (mode == STEP_LIVE) {
        char err[300];
        if (fetch_check_url(e, url, err, sizeof err) != 0) {
            lua_createtable(L, 0, 1);
            lua_pushstring(L, err);
            lua_setfield(L, -2, "error");
            step_record(L, ctx, "http_get", url, hash, lua_gettop(L));
            return http_result(L);
        }
        append(ctx, "http_get", url, hash, 1, 0, NULL, 0);
        step = ctx->pos - 1;
    } else if (ctx->reason == WAKE_FETCH && ctx->fetch_step == step && ctx->fetched) {
        char *text = json_print(ctx->fetched);
        complete(ctx, &entry, text);
        free(text);
        json_push(L, ctx->fetched);
        return http_result(L);
    }
    /* Waiting for the answer (again: the request row is kept, or made
     * again if it was lost). Reads stay cached across the answer, as they
     * were when http_get was synchronous, so older histories replay. */
    if (fetch_queue(e, ctx->id, step, url) != 0)
        return luaL_error(L, "http_get: store: %s", store_errmsg(e->st));
    char what[140];
    snprintf(what, sizeof what, "http_get %s", url);
    return suspend(L, ctx, SUSPEND_FETCH, 0, NULL, what, NULL);
}

void step_register_fns(engine *e, const luaL_Reg *fns)
{
    lua_State *L = sandbox_state(e->sb);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, e);
        lua_pushcclosure(L, f->func, 1);
        sandbox_set_global(e->sb, f->name, 0);
    }
}

void step_register(engine *e)
{
    static const luaL_Reg fns[] = {
        {"wait", p_wait}, {"wait_until", p_wait_until}, {"wait_for", p_wait_for},
        {"send", p_send}, {"coupon_issue", p_coupon_issue}, {"task", p_task},
        {"emit", p_emit}, {"start", p_start}, {"split", p_split}, {"holdout", p_holdout},
        {"now", p_now}, {"random", p_random}, {"exit", p_exit}, {"http_get", p_http_get},
        {NULL, NULL}};
    step_register_fns(e, fns);
    lua_State *L = sandbox_state(e->sb);
    lua_pushlightuserdata(L, e);
    lua_pushcclosure(L, p_random, 1);
    sandbox_set_global(e->sb, "math.random", 0);
}
