/* receipt — receipts for sent messages (see receipt.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "customer.h"
#include "event.h"
#include "json.h"
#include "receipt.h"
#include "step.h"
#include "util.h"
#include "validate.h"

static const char *const STATUSES[] = {"delivered", "failed", "opened", "clicked", "replied", "unsubscribed", NULL};

/* The index of s in STATUSES, or -1. */
static int status_index(const char *s)
{
    for (int i = 0; STATUSES[i]; i++)
        if (!strcmp(STATUSES[i], s))
            return i;
    return -1;
}

static int known_status(const char *s)
{
    return status_index(s) >= 0;
}

/* The outbox row a receipt names; its texts point into the batch's row
 * buffer (valid until the batch's next lookup). */
struct message_row {
    int64_t id;
    const char *customer, *channel, *template_name, *journey, *key;
};

/* 1 found, 0 none, -1 store error. */
static int find_message(struct receipt_batch *b, int64_t id, const char *key, struct message_row *m)
{
    engine *e = b->e;
    store_stmt *s = key ? store_sql(e->st, "SELECT id, customer, channel, template, journey, idem_key FROM outbox"
                                           " WHERE idem_key = ? ORDER BY id LIMIT 1")
                        : store_sql(e->st, "SELECT id, customer, channel, template, journey, idem_key FROM outbox"
                                           " WHERE id = ?");
    if (key)
        store_bind_text_kept(s, 1, key, -1);
    else
        store_bind_int(s, 1, id);
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        /* the five texts copied into one buffer (the statement is reset
         * before they are used) */
        size_t need = 0;
        for (int c = 1; c <= 5; c++)
            need += (size_t)store_col_bytes(s, c) + 1;
        if (need > b->row_cap) {
            b->row = xrealloc(b->row, need);
            b->row_cap = need;
        }
        const char **out[] = {&m->customer, &m->channel, &m->template_name, &m->journey, &m->key};
        char *p = b->row;
        for (int c = 1; c <= 5; c++) {
            const char *t = store_col_text(s, c);
            size_t n = (size_t)store_col_bytes(s, c);
            *out[c - 1] = t ? p : NULL;
            if (t)
                memcpy(p, t, n);
            p[n] = 0;
            p += n + 1;
        }
        m->id = store_col_int(s, 0);
    }
    store_reset(s);
    return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

/* ,"name":"value" — names are our own, plain ASCII */
static void put_field(strbuf *b, const char *name, const char *value)
{
    strbuf_add(b, ",\"", 2);
    strbuf_puts(b, name);
    strbuf_add(b, "\":", 2);
    strbuf_json_string(b, value, strlen(value));
}

/* ,"name":n */
static void put_int_field(strbuf *b, const char *name, long long n)
{
    char digits[24], *p = digits + sizeof digits;
    unsigned long long u = n < 0 ? 0 - (unsigned long long)n : (unsigned long long)n;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (n < 0)
        *--p = '-';
    strbuf_add(b, ",\"", 2);
    strbuf_puts(b, name);
    strbuf_add(b, "\":", 2);
    strbuf_add(b, p, (size_t)(digits + sizeof digits - p));
}

/* The event of something that happened to message m. Its body is written
 * as text, not built as a cJSON tree and printed: a receipt batch makes one
 * a line, and every value is known valid here (a type of our own, the
 * message's stored customer, a one-line id). The text goes into the
 * batch's buffer, and is bound without a copy. */
static int message_event(struct receipt_batch *b, const struct message_row *m, const char *status, const char *id,
                         tend_time at, const char *reason, struct event_result *res, char *err, size_t errlen)
{
    char type[40] = "message.";
    size_t sl = strlen(status);
    if (sl > sizeof type - 9)
        sl = sizeof type - 9;
    memcpy(type + 8, status, sl);
    type[8 + sl] = 0;
    strbuf *t = &b->body;
    strbuf_reset(t);
    strbuf_add(t, "{\"type\":\"", 9);
    strbuf_add(t, type, 8 + sl);
    strbuf_putc(t, '"');
    put_field(t, "id", id);
    put_field(t, "customer", m->customer);
    put_int_field(t, "at", (long long)at);
    put_int_field(t, "message", (long long)m->id);
    put_field(t, "key", m->key);
    put_field(t, "channel", m->channel);
    if (m->template_name)
        put_field(t, "template", m->template_name);
    if (m->journey)
        put_field(t, "journey", m->journey);
    if (reason)
        put_field(t, "reason", reason);
    strbuf_putc(t, '}');
    struct event_made made = {.type = type, .id = id, .customer = m->customer, .at = at, .body = t->s};
    return event_accept_made(b->e, &made, res, err, errlen);
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

void receipt_batch_init(struct receipt_batch *b, engine *e)
{
    b->e = e;
    strbuf_init(&b->body);
    b->row = b->line = NULL;
    b->row_cap = b->line_cap = 0;
}

void receipt_batch_free(struct receipt_batch *b)
{
    strbuf_free(&b->body);
    free(b->row);
    free(b->line);
    b->row = b->line = NULL;
    b->row_cap = b->line_cap = 0;
}

enum receipt_result receipt_accept(engine *e, const cJSON *r, char *err, size_t errlen)
{
    struct receipt_batch b;
    receipt_batch_init(&b, e);
    enum receipt_result out = receipt_batch_accept(&b, r, err, errlen);
    receipt_batch_free(&b);
    return out;
}

enum receipt_result receipt_batch_accept(struct receipt_batch *b, const cJSON *r, char *err, size_t errlen)
{
    engine *e = b->e;
    if (!cJSON_IsObject(r)) {
        snprintf(err, errlen, "a receipt must be a JSON object");
        return RECEIPT_INVALID;
    }
    /* one pass over the fields: each known one found by name (the first of
     * a repeated name counts, as a lookup by name would find it) */
    enum { F_MESSAGE, F_KEY, F_STATUS, F_AT, F_REASON, F_ID, F_COUNT };
    static const char *const known[] = {"message", "key", "status", "at", "reason", "id"};
    const cJSON *field[F_COUNT] = {0};
    const cJSON *f;
    cJSON_ArrayForEach(f, r) {
        int k = 0;
        while (k < F_COUNT && strcmp(known[k], f->string))
            k++;
        if (k == F_COUNT) {
            snprintf(err, errlen, "unknown field '%.60s' (known: message, key, status, at, reason, id)", f->string);
            return RECEIPT_INVALID;
        }
        if (!field[k])
            field[k] = f;
    }
    const cJSON *msg = field[F_MESSAGE], *key = field[F_KEY], *status = field[F_STATUS];
    const cJSON *reason = field[F_REASON], *rid = field[F_ID];
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
    int st_index = cJSON_IsString(status) ? status_index(status->valuestring) : -1;
    if (st_index < 0) {
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
        size_t il = cJSON_IsString(rid) ? strlen(rid->valuestring) : 0;
        /* the event id is "receipt:<id>", one line of at most EVENT_ID_MAX */
        if (il && il <= 192 && validate_text(rid->valuestring, il, VALIDATE_SINGLE_LINE, NULL, 0) == 0) {
            memcpy(idtext, "receipt:", 8);
            memcpy(idtext + 8, rid->valuestring, il + 1);
        } else if (json_int(rid, &n) == 0) {
            snprintf(idtext, sizeof idtext, "receipt:%lld", n);
        } else {
            snprintf(err, errlen, "field 'id': must be one line of text (at most 192 bytes) or a whole number");
            return RECEIPT_INVALID;
        }
    }
    tend_time at = engine_now(e);
    if (read_time(field[F_AT], &at, err, errlen) < 0)
        return RECEIPT_INVALID;

    struct message_row m = {0};
    int found = find_message(b, (int64_t)mid, key ? key->valuestring : NULL, &m);
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
    if (e->cfg.reject_unknown && customer_exists(e, m.customer) != 1) {
        /* as event_accept would refuse the event: the customer is gone */
        snprintf(err, errlen, "unknown customer '%.100s' (the settings reject unknown customers)", m.customer);
        return RECEIPT_INVALID;
    }
    const char *st = status->valuestring;
    if (!idtext[0])   /* the first receipt of each status counts */
        snprintf(idtext, sizeof idtext, "receipt:%lld:%s", (long long)m.id, st);
    const char *why = cJSON_IsString(reason) ? reason->valuestring : NULL;
    struct event_result res;
    int rc = message_event(b, &m, st, idtext, at, why, &res, err, errlen);
    enum receipt_result out = rc != 0 ? RECEIPT_STORE_ERROR : res.duplicate ? RECEIPT_DUPLICATE : RECEIPT_STORED;
    if (out == RECEIPT_STORED) {
        /* the column is named by the status: one fixed text each, so the
         * prepared statement is found by its address */
#define SET_AT(c) "UPDATE outbox SET " c "_at = COALESCE(" c "_at, ?), receipt_reason = COALESCE(?, receipt_reason)" \
                  " WHERE id = ?"
        static const char *const UPDATES[] = {SET_AT("delivered"), SET_AT("failed"), SET_AT("opened"),
                                              SET_AT("clicked"), SET_AT("replied"), SET_AT("unsubscribed")};
#undef SET_AT
        store_stmt *u = store_sql(e->st, UPDATES[st_index]);
        store_bind_int(u, 1, at);
        store_bind_text_kept(u, 2, why, -1);
        store_bind_int(u, 3, m.id);
        if (store_run(u) != 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            out = RECEIPT_STORE_ERROR;
        }
    }
    return out;
}

/* --- a receipt line read without a parse --------------------------------
 * Providers post receipts as flat objects of plain strings and whole
 * numbers. Such a line is read here straight into nodes on the stack that
 * form the very tree cJSON would have parsed (same types, values, order,
 * repeated names kept), so receipt_batch_accept judges it by the same
 * rules. Anything else (an escape, a byte outside printable ASCII, a
 * nested value, a sign, a fraction, a leading zero, true/false, more than
 * FLAT_FIELDS fields) goes through json_parse as before, so its errors
 * stay word for word what they were. */

#define FLAT_FIELDS 8

static size_t skip_blank(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* A string of printable ASCII without escapes starting at p[i] == '"': the
 * index of its closing quote, or 0. */
static size_t plain_string_end(const char *p, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"')
            return i;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return 0;
    }
    return 0;
}

/* Reads the flat object in s[0, n) (a copy the nodes point into: closing
 * quotes become NULs) into obj and nodes; 0, or -1 when the line is not
 * that simple. */
static int read_flat(char *s, size_t n, cJSON *obj, cJSON nodes[FLAT_FIELDS])
{
    memset(obj, 0, sizeof *obj);
    obj->type = cJSON_Object;
    size_t i = skip_blank(s, 0, n);
    if (i >= n || s[i] != '{')
        return -1;
    int count = 0;
    for (;;) {
        i = skip_blank(s, i + 1, n);
        if (i >= n || s[i] != '"' || count == FLAT_FIELDS)
            return -1;
        size_t kend = plain_string_end(s, i, n);
        if (!kend)
            return -1;
        cJSON *f = &nodes[count];
        memset(f, 0, sizeof *f);
        f->string = s + i + 1;
        s[kend] = 0;
        i = skip_blank(s, kend + 1, n);
        if (i >= n || s[i] != ':')
            return -1;
        i = skip_blank(s, i + 1, n);
        if (i >= n)
            return -1;
        if (s[i] == '"') {
            size_t vend = plain_string_end(s, i, n);
            if (!vend)
                return -1;
            f->type = cJSON_String;
            f->valuestring = s + i + 1;
            s[vend] = 0;
            i = vend + 1;
        } else if (s[i] >= '0' && s[i] <= '9') {
            /* at most 15 digits: the double holds the number exactly */
            size_t d = i;
            long long v = 0;
            while (i < n && s[i] >= '0' && s[i] <= '9' && i - d < 15)
                v = v * 10 + (s[i++] - '0');
            if ((i < n && (s[i] >= '0' && s[i] <= '9')) || (s[d] == '0' && i - d > 1))
                return -1;
            f->type = cJSON_Number;
            f->valuedouble = (double)v;
            f->valueint = v > 2147483647LL ? 2147483647 : (int)v;
        } else if (n - i >= 4 && !memcmp(s + i, "null", 4)) {
            f->type = cJSON_NULL;
            i += 4;
        } else {
            return -1;
        }
        /* linked as cJSON links an object's children */
        if (count) {
            nodes[count - 1].next = f;
            f->prev = &nodes[count - 1];
        } else {
            obj->child = f;
        }
        obj->child->prev = f;
        count++;
        i = skip_blank(s, i, n);
        if (i < n && s[i] == ',')
            continue;
        if (i >= n || s[i] != '}')
            return -1;
        return skip_blank(s, i + 1, n) == n ? 0 : -1;
    }
}

enum receipt_result receipt_batch_accept_line(struct receipt_batch *b, const char *line, size_t len, char *err,
                                              size_t errlen)
{
    if (len + 1 > b->line_cap) {
        b->line_cap = len + 1 > 256 ? len + 1 : 256;
        b->line = xrealloc(b->line, b->line_cap);
    }
    memcpy(b->line, line, len);
    b->line[len] = 0;
    cJSON obj, nodes[FLAT_FIELDS];
    if (read_flat(b->line, len, &obj, nodes) == 0)
        return receipt_batch_accept(b, &obj, err, errlen);   /* the nodes are never cJSON_Delete'd */
    cJSON *r = json_parse(line, len, err, errlen);
    if (!r)
        return RECEIPT_INVALID;   /* a line that is not JSON is named and stores nothing */
    enum receipt_result out = receipt_batch_accept(b, r, err, errlen);
    cJSON_Delete(r);
    return out;
}

int receipt_dead(engine *e, int64_t message, tend_time at, const char *reason)
{
    struct receipt_batch b;
    receipt_batch_init(&b, e);
    struct message_row m = {0};
    int found = find_message(&b, message, NULL, &m);
    int rc = found < 0 ? -1 : 0;
    if (found > 0) {
        char id[64], err[300];
        snprintf(id, sizeof id, "dead:%lld", (long long)message);
        struct event_result res;
        char cut[1000];
        snprintf(cut, sizeof cut, "%s", reason ? reason : "");
        rc = message_event(&b, &m, "dead", id, at, reason ? cut : NULL, &res, err, sizeof err);
    }
    receipt_batch_free(&b);
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
