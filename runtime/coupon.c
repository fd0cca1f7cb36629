/* coupon — issuing codes (see coupon.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "coupon.h"
#include "event.h"
#include "customer.h"
#include "util.h"

/* Crockford's base32 without I, L, O, U: nothing a customer can misread. */
static const char ALPHABET[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void make_code(char *out, size_t n, const char *prefix, uint64_t h)
{
    size_t len = (size_t)snprintf(out, n, "%s", prefix);
    for (int i = 0; i < 8 && len + 1 < n; i++) {
        out[len++] = ALPHABET[h & 31];
        h >>= 5;
    }
    out[len] = 0;
}

int coupon_issue(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                 const char *customer, int spec, char *err, size_t errlen)
{
    double value = 0, min_spend = 0;
    tend_time valid = 30 * TEND_DAY;
    tend_time now = engine_now(e), starts = now;
    char prefix[17] = "";
    if (spec) {
        int top = lua_gettop(L);
        if (lua_getfield(L, spec, "value") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || !isfinite(lua_tonumber(L, -1)) || lua_tonumber(L, -1) < 0) {
                snprintf(err, errlen, "'value' must be a number of 0 or more");
                return -1;
            }
            value = lua_tonumber(L, -1);
        }
        if (lua_getfield(L, spec, "valid") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) <= 0 || lua_tonumber(L, -1) > 100.0 * 366 * TEND_DAY) {
                snprintf(err, errlen, "'valid' must be a positive number of seconds (days(14))");
                return -1;
            }
            valid = (tend_time)lua_tonumber(L, -1);
        }
        if (lua_getfield(L, spec, "min_spend") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || !isfinite(lua_tonumber(L, -1)) || lua_tonumber(L, -1) < 0) {
                snprintf(err, errlen, "'min_spend' must be an amount of 0 or more");
                return -1;
            }
            min_spend = lua_tonumber(L, -1);
        }
        int t = lua_getfield(L, spec, "starts");
        if (t != LUA_TNIL) {
            char terr[160];
            if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
                starts = lua_tointeger(L, -1);
            } else if (t != LUA_TSTRING || clock_parse_time(lua_tostring(L, -1), &starts, terr, sizeof terr) != 0) {
                snprintf(err, errlen, "'starts' must be a time (epoch seconds or ISO-8601 with an offset)");
                return -1;
            }
        }
        if (lua_getfield(L, spec, "prefix") != LUA_TNIL) {
            const char *p = lua_tostring(L, -1);
            if (!p || strlen(p) > 16) {
                snprintf(err, errlen, "'prefix' must be a string of at most 16 characters");
                return -1;
            }
            snprintf(prefix, sizeof prefix, "%s", p);
        }
        lua_settop(L, top);
    }
    char seed[300], code[40];
    snprintf(seed, sizeof seed, "%s\x1f%s\x1f%lld\x1f%d", journey, customer, (long long)instance, step);
    uint64_t h = util_hash64(seed, strlen(seed));
    /* A collision with another customer's code (a 40-bit space) is retried
     * with the next hash; the UNIQUE key is the judge. */
    for (int attempt = 0;; attempt++) {
        make_code(code, sizeof code, prefix, h);
        store_stmt *s = store_sql(e->st, "INSERT INTO coupons (code, customer, journey, instance, value,"
                                         " issued_at, expires_at, starts_at, min_spend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                                         " ON CONFLICT DO NOTHING");
        store_bind_text(s, 1, code, -1);
        store_bind_text(s, 2, customer, -1);
        store_bind_text(s, 3, journey, -1);
        store_bind_int(s, 4, instance);
        store_bind_double(s, 5, value);
        store_bind_int(s, 6, now);
        store_bind_int(s, 7, starts + valid);
        store_bind_int(s, 8, starts);
        store_bind_double(s, 9, min_spend);
        if (store_run(s) != 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            return -1;
        }
        if (store_changes(e->st) == 1)
            break;
        if (attempt == 16) {
            snprintf(err, errlen, "could not find a free coupon code");
            return -1;
        }
        h = util_hash64_add(h, "+", 1);
    }
    char *tz = customer_timezone(e, customer);
    char date[16];
    clock_format_date(starts + valid, tz, date, sizeof date);
    free(tz);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushnumber(L, value);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, date);
    lua_setfield(L, -2, "expires");
    lua_pushinteger(L, starts + valid);
    lua_setfield(L, -2, "expires_at");
    lua_pushinteger(L, starts);
    lua_setfield(L, -2, "starts_at");
    lua_pushnumber(L, min_spend);
    lua_setfield(L, -2, "min_spend");
    return 0;
}

/* --- redemption ------------------------------------------------------------ */

static int refuse(engine *e, const char *code, const char *customer, const char *order, tend_time at,
                  const char *reason)
{
    engine_logf(e, "warn", "order %s of customer %s: coupon %s not redeemed: %s", order ? order : "(no id)",
                customer, code, reason);
    store_stmt *s = store_sql(e->st, "INSERT INTO coupon_refusals (code, customer, order_id, at, reason)"
                                     " VALUES (?, ?, ?, ?, ?)");
    store_bind_text(s, 1, code, -1);
    store_bind_text(s, 2, customer, -1);
    store_bind_text(s, 3, order, -1);
    store_bind_int(s, 4, at);
    store_bind_text(s, 5, reason, -1);
    return store_run(s);
}

static int redeem_one(engine *e, const char *code, const char *customer, const char *order, tend_time at,
                      double amount)
{
    store_stmt *s = store_sql(e->st, "SELECT customer, journey, value, starts_at, expires_at, min_spend, redeemed_at,"
                                     " order_id FROM coupons WHERE code = ?");
    store_bind_text(s, 1, code, -1);
    if (store_step(s) != STORE_ROW) {
        store_reset(s);
        return refuse(e, code, customer, order, at, "no such code");
    }
    char reason[200] = "";
    char *journey = store_col_text(s, 1) ? xstrdup(store_col_text(s, 1)) : NULL;
    double value = store_col_double(s, 2), min_spend = store_col_double(s, 5);
    tend_time starts = store_col_type(s, 3) == STORE_NULL ? 0 : store_col_int(s, 3);
    if (strcmp(store_col_text(s, 0), customer) != 0)
        snprintf(reason, sizeof reason, "the code belongs to another customer");
    else if (store_col_type(s, 6) != STORE_NULL)
        snprintf(reason, sizeof reason, "already redeemed on order %s", store_col_text(s, 7) ? store_col_text(s, 7) : "?");
    else if (at < starts)
        snprintf(reason, sizeof reason, "not valid yet (from %lld)", (long long)starts);
    else if (at >= store_col_int(s, 4))
        snprintf(reason, sizeof reason, "expired (at %lld)", (long long)store_col_int(s, 4));
    else if (min_spend > 0 && !(amount >= min_spend))
        snprintf(reason, sizeof reason, "the order's total %.2f is below the minimum spend %.2f", isnan(amount) ? 0 : amount,
                 min_spend);
    store_reset(s);
    if (reason[0]) {
        free(journey);
        return refuse(e, code, customer, order, at, reason);
    }
    s = store_sql(e->st, "UPDATE coupons SET redeemed_at = ?, order_id = ? WHERE code = ? AND redeemed_at IS NULL");
    store_bind_int(s, 1, at);
    store_bind_text(s, 2, order, -1);
    store_bind_text(s, 3, code, -1);
    int rc = store_run(s);
    if (rc == 0) {
        cJSON *ev = cJSON_CreateObject();
        char id[120];
        snprintf(id, sizeof id, "coupon:%s:redeemed", code);
        cJSON_AddStringToObject(ev, "type", "coupon.redeemed");
        cJSON_AddStringToObject(ev, "id", id);
        cJSON_AddStringToObject(ev, "customer", customer);
        cJSON_AddNumberToObject(ev, "at", (double)at);
        cJSON_AddStringToObject(ev, "code", code);
        if (journey)
            cJSON_AddStringToObject(ev, "journey", journey);
        cJSON_AddNumberToObject(ev, "value", value);
        if (order)
            cJSON_AddStringToObject(ev, "order", order);
        struct event_result res;
        char err[300];
        rc = event_accept(e, ev, &res, err, sizeof err);
        cJSON_Delete(ev);
    }
    free(journey);
    return rc;
}

int coupon_redeem_order(engine *e, const char *customer, tend_time at, const cJSON *ev, double amount)
{
    /* most orders carry no coupon: the order's name is looked up only for
     * one that does (two look-ups of the event an order saved) */
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(ev, "coupon");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(ev, "coupons"), *c;
    int has_one = cJSON_IsString(one) && one->valuestring[0];
    if (!has_one && !cJSON_IsArray(many))
        return 0;
    /* the order: its `order` field, else the event's id */
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(ev, "order");
    if (!cJSON_IsString(o))
        o = cJSON_GetObjectItemCaseSensitive(ev, "id");
    char num[32];
    const char *order = cJSON_IsString(o) ? o->valuestring : NULL;
    if (cJSON_IsNumber(o)) {
        snprintf(num, sizeof num, "%.0f", o->valuedouble);
        order = num;
    }
    if (has_one && redeem_one(e, one->valuestring, customer, order, at, amount) != 0)
        return -1;
    if (cJSON_IsArray(many))
        cJSON_ArrayForEach(c, many)
            if (cJSON_IsString(c) && c->valuestring[0] && redeem_one(e, c->valuestring, customer, order, at, amount) != 0)
                return -1;
    return 0;
}
