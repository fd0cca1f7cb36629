/* receipt — receipts for sent messages (see receipt.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "event.h"
#include "json.h"
#include "receipt.h"
#include "step.h"
#include "util.h"

static const char *const STATUSES[] = {"delivered", "failed", "opened", "clicked", "replied", "unsubscribed", NULL};

static int known_status(const char *s)
{
    for (const char *const *k = STATUSES; *k; k++)
        if (!strcmp(*k, s))
            return 1;
    return 0;
}

/* The outbox row a receipt names. */
struct message_row {
    int64_t id;
    char *customer, *channel, *template_name, *journey, *key;
};

static void message_row_free(struct message_row *m)
{
    free(m->customer);
    free(m->channel);
    free(m->template_name);
    free(m->journey);
    free(m->key);
}

static char *dup_text(store_stmt *s, int col)
{
    return store_col_text(s, col) ? xstrdup(store_col_text(s, col)) : NULL;
}

/* 1 found, 0 none, -1 store error. */
static int find_message(engine *e, int64_t id, const char *key, struct message_row *m)
{
    store_stmt *s = key ? store_sql(e->st, "SELECT id, customer, channel, template, journey, idem_key FROM outbox"
                                           " WHERE idem_key = ? ORDER BY id LIMIT 1")
                        : store_sql(e->st, "SELECT id, customer, channel, template, journey, idem_key FROM outbox"
                                           " WHERE id = ?");
    if (key)
        store_bind_text(s, 1, key, -1);
    else
        store_bind_int(s, 1, id);
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        m->id = store_col_int(s, 0);
        m->customer = dup_text(s, 1);
        m->channel = dup_text(s, 2);
        m->template_name = dup_text(s, 3);
        m->journey = dup_text(s, 4);
        m->key = dup_text(s, 5);
    }
    store_reset(s);
    return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

/* The event of something that happened to message m. */
static int message_event(engine *e, const struct message_row *m, const char *status, const char *id, tend_time at,
                         const char *reason, struct event_result *res, char *err, size_t errlen)
{
    /* The strings are borrowed (references): the event lives only for this
     * call, shorter than m and the caller's strings. */
    cJSON *ev = cJSON_CreateObject();
    char type[40];
    snprintf(type, sizeof type, "message.%s", status);
    cJSON_AddItemToObject(ev, "type", cJSON_CreateStringReference(type));
    cJSON_AddItemToObject(ev, "id", cJSON_CreateStringReference(id));
    cJSON_AddItemToObject(ev, "customer", cJSON_CreateStringReference(m->customer));
    cJSON_AddNumberToObject(ev, "at", (double)at);
    cJSON_AddNumberToObject(ev, "message", (double)m->id);
    cJSON_AddItemToObject(ev, "key", cJSON_CreateStringReference(m->key));
    cJSON_AddItemToObject(ev, "channel", cJSON_CreateStringReference(m->channel));
    if (m->template_name)
        cJSON_AddItemToObject(ev, "template", cJSON_CreateStringReference(m->template_name));
    if (m->journey)
        cJSON_AddItemToObject(ev, "journey", cJSON_CreateStringReference(m->journey));
    if (reason)
        cJSON_AddItemToObject(ev, "reason", cJSON_CreateStringReference(reason));
    int rc = event_accept(e, ev, res, err, errlen);
    cJSON_Delete(ev);
    return rc;
}

/* Reads an optional time field; 0 absent, 1 present, -1 invalid. */
static int read_time(const cJSON *v, tend_time *out, char *err, size_t errlen)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 && v->valuedouble < 253402300800.0) {
        *out = (tend_time)v->valuedouble;
        return 1;
    }
    char terr[200];
    if (cJSON_IsString(v) && clock_parse_time(v->valuestring, out, terr, sizeof terr) == 0 && *out >= 0 &&
        *out < 253402300800LL)
        return 1;
    snprintf(err, errlen, "field 'at': must be epoch seconds or ISO-8601 with an offset, 1970..9999");
    return -1;
}

enum receipt_result receipt_accept(engine *e, const cJSON *r, char *err, size_t errlen)
{
    if (!cJSON_IsObject(r)) {
        snprintf(err, errlen, "a receipt must be a JSON object");
        return RECEIPT_INVALID;
    }
    static const char *const known[] = {"message", "key", "status", "at", "reason", "id", NULL};
    const cJSON *f;
    cJSON_ArrayForEach(f, r) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++)
            ok = !strcmp(*k, f->string);
        if (!ok) {
            snprintf(err, errlen, "unknown field '%.60s' (known: message, key, status, at, reason, id)", f->string);
            return RECEIPT_INVALID;
        }
    }
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(r, "message");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(r, "key");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(r, "reason");
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r, "id");
    if (!msg == !key) {
        snprintf(err, errlen, "field 'message' (the outbox id) or 'key' (the idempotency key) is required, not both");
        return RECEIPT_INVALID;
    }
    long long mid = 0;
    if (msg && (json_int(msg, &mid) != 0 || mid <= 0)) {
        snprintf(err, errlen, "field 'message': must be an outbox id (a positive whole number)");
        return RECEIPT_INVALID;
    }
    if (key && (!cJSON_IsString(key) || !key->valuestring[0] || strlen(key->valuestring) > 255)) {
        snprintf(err, errlen, "field 'key': must be the message's idempotency key (text, at most 255 bytes)");
        return RECEIPT_INVALID;
    }
    if (!cJSON_IsString(status) || !known_status(status->valuestring)) {
        snprintf(err, errlen, "field 'status': must be one of delivered, failed, opened, clicked, replied, unsubscribed");
        return RECEIPT_INVALID;
    }
    if (reason && !cJSON_IsNull(reason) && (!cJSON_IsString(reason) || strlen(reason->valuestring) > 1000)) {
        snprintf(err, errlen, "field 'reason': must be text of at most 1000 bytes");
        return RECEIPT_INVALID;
    }
    char idtext[240] = "";
    if (rid && !cJSON_IsNull(rid)) {
        long long n;
        if (cJSON_IsString(rid) && rid->valuestring[0] && strlen(rid->valuestring) <= 200)
            snprintf(idtext, sizeof idtext, "receipt:%s", rid->valuestring);
        else if (json_int(rid, &n) == 0)
            snprintf(idtext, sizeof idtext, "receipt:%lld", n);
        else {
            snprintf(err, errlen, "field 'id': must be text (at most 200 bytes) or a whole number");
            return RECEIPT_INVALID;
        }
    }
    tend_time at = engine_now(e);
    if (read_time(cJSON_GetObjectItemCaseSensitive(r, "at"), &at, err, errlen) < 0)
        return RECEIPT_INVALID;

    struct message_row m = {0};
    int found = find_message(e, (int64_t)mid, key ? key->valuestring : NULL, &m);
    if (found <= 0) {
        if (found < 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            return RECEIPT_STORE_ERROR;
        }
        if (key)
            snprintf(err, errlen, "no message with key '%.200s'", key->valuestring);
        else
            snprintf(err, errlen, "no message %lld", mid);
        return RECEIPT_UNKNOWN_MESSAGE;
    }
    const char *st = status->valuestring;
    if (!idtext[0])   /* the first receipt of each status counts */
        snprintf(idtext, sizeof idtext, "receipt:%lld:%s", (long long)m.id, st);
    struct event_result res;
    int rc = message_event(e, &m, st, idtext, at, cJSON_IsString(reason) ? reason->valuestring : NULL, &res, err,
                           errlen);
    enum receipt_result out = rc != 0 ? RECEIPT_STORE_ERROR : res.duplicate ? RECEIPT_DUPLICATE : RECEIPT_STORED;
    if (out == RECEIPT_STORED) {
        /* the column is named by the status, from the fixed list above */
        char sql[200];
        snprintf(sql, sizeof sql, "UPDATE outbox SET %s_at = COALESCE(%s_at, ?),"
                                  " receipt_reason = COALESCE(?, receipt_reason) WHERE id = ?", st, st);
        store_stmt *u = store_sql(e->st, sql);
        store_bind_int(u, 1, at);
        store_bind_text(u, 2, cJSON_IsString(reason) ? reason->valuestring : NULL, -1);
        store_bind_int(u, 3, m.id);
        if (store_run(u) != 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            out = RECEIPT_STORE_ERROR;
        }
    }
    message_row_free(&m);
    return out;
}

int receipt_dead(engine *e, int64_t message, tend_time at, const char *reason)
{
    struct message_row m = {0};
    int found = find_message(e, message, NULL, &m);
    int rc = found < 0 ? -1 : 0;
    if (found > 0) {
        char id[64], err[300];
        snprintf(id, sizeof id, "dead:%lld", (long long)message);
        struct event_result res;
        char cut[1000];
        snprintf(cut, sizeof cut, "%s", reason ? reason : "");
        rc = message_event(e, &m, "dead", id, at, reason ? cut : NULL, &res, err, sizeof err);
    }
    message_row_free(&m);
    return rc;
}

cJSON *receipt_map(engine *e, const char *channel, const char *body, size_t len, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    struct channel_info info;
    channel_push(e, channel, &info);
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "no channel '%.80s' is declared", channel);
        lua_settop(L, top);
        return NULL;
    }
    if (lua_getfield(L, -1, "receipt") != LUA_TFUNCTION) {
        snprintf(err, errlen, "channel '%.80s' has no receipt function", channel);
        lua_settop(L, top);
        return NULL;
    }
    char jerr[200];
    if (json_push_text(L, body, len, jerr, sizeof jerr) != 0)
        lua_pushlstring(L, body, len);   /* not JSON (a form post): the text */
    if (sandbox_pcall(e->sb, L, 1, 1) != LUA_OK) {
        snprintf(err, errlen, "channel '%.80s': receipt: %.300s", channel, lua_tostring(L, -1));
        lua_settop(L, top);
        return NULL;
    }
    cJSON *out = NULL;
    if (lua_istable(L, -1)) {
        char cerr[200];
        cJSON *j = json_from_lua(L, -1, cerr, sizeof cerr);
        if (cJSON_IsObject(j)) {
            out = cJSON_CreateArray();
            cJSON_AddItemToArray(out, j);
        } else if (cJSON_IsArray(j)) {
            out = j;
        } else {
            cJSON_Delete(j);
        }
    } else if (lua_isnil(L, -1)) {
        out = cJSON_CreateArray();   /* a callback that carries no receipt */
    }
    if (!out)
        snprintf(err, errlen, "channel '%.80s': receipt must return a receipt table, a list of them, or nil",
                 channel);
    lua_settop(L, top);
    return out;
}

/* --- wait_receipt -------------------------------------------------------- */


static int same_message(const cJSON *ev, void *ud)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "message");
    return cJSON_IsNumber(m) && (int64_t)m->valuedouble == *(const int64_t *)ud;
}

/* wait_receipt(r, status, {timeout = s}) → the message.<status> event for
 * the message r (what send returned, or its id), or nil after the timeout. */
static int p_wait_receipt(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "wait_receipt()");
    int64_t id;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "id");
        luaL_argcheck(L, lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0, 1,
                      "a message that was queued (what send() returned, with an id)");
        id = lua_tointeger(L, -1);
        lua_pop(L, 1);
    } else {
        id = luaL_checkinteger(L, 1);
    }
    const char *status = luaL_checkstring(L, 2);
    luaL_argcheck(L, known_status(status), 2, "delivered, failed, opened, clicked, replied or unsubscribed");
    lua_Integer timeout = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "timeout") != LUA_TNIL) {
            timeout = (lua_Integer)luaL_checknumber(L, -1);
            luaL_argcheck(L, timeout > 0, 3, "timeout must be positive seconds");
        }
        lua_pop(L, 1);
    }
    char listen[40], desc[80], hashed[100];
    snprintf(listen, sizeof listen, "message.%s", status);
    snprintf(desc, sizeof desc, "message %lld %s", (long long)id, status);
    snprintf(hashed, sizeof hashed, "%lld\x1f%s\x1f%lld", (long long)id, status, (long long)timeout);
    struct step_wait w = {.kind = "wait_receipt", .desc = desc, .hashed = hashed, .listen = listen,
                          .timeout = timeout, .match = same_message, .ud = &id};
    return step_wait_event(L, ctx, &w);
}

void receipt_register(engine *e)
{
    static const luaL_Reg fns[] = {{"wait_receipt", p_wait_receipt}, {NULL, NULL}};
    step_register_fns(e, fns);
}
