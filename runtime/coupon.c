/* coupon — issuing codes (see coupon.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "coupon.h"
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
    double value = 0;
    tend_time valid = 30 * TEND_DAY;
    char prefix[17] = "";
    if (spec) {
        if (lua_getfield(L, spec, "value") != LUA_TNIL) {
            if (!lua_isnumber(L, -1)) {
                snprintf(err, errlen, "'value' must be a number");
                return -1;
            }
            value = lua_tonumber(L, -1);
        }
        if (lua_getfield(L, spec, "valid") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) <= 0) {
                snprintf(err, errlen, "'valid' must be a positive number of seconds (days(14))");
                return -1;
            }
            valid = (tend_time)lua_tonumber(L, -1);
        }
        if (lua_getfield(L, spec, "prefix") != LUA_TNIL) {
            const char *p = lua_tostring(L, -1);
            if (!p || strlen(p) > 16) {
                snprintf(err, errlen, "'prefix' must be a string of at most 16 characters");
                return -1;
            }
            snprintf(prefix, sizeof prefix, "%s", p);
        }
        lua_pop(L, 3);
    }
    tend_time now = engine_now(e);
    char seed[300], code[40];
    snprintf(seed, sizeof seed, "%s\x1f%s\x1f%lld\x1f%d", journey, customer, (long long)instance, step);
    uint64_t h = util_hash64(seed, strlen(seed));
    /* A collision with another customer's code (a 40-bit space) is retried
     * with the next hash; the UNIQUE key is the judge. */
    for (int attempt = 0;; attempt++) {
        make_code(code, sizeof code, prefix, h);
        store_stmt *s = store_sql(e->st, "INSERT INTO coupons (code, customer, journey, instance, value,"
                                         " issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                                         " ON CONFLICT DO NOTHING");
        store_bind_text(s, 1, code, -1);
        store_bind_text(s, 2, customer, -1);
        store_bind_text(s, 3, journey, -1);
        store_bind_int(s, 4, instance);
        store_bind_double(s, 5, value);
        store_bind_int(s, 6, now);
        store_bind_int(s, 7, now + valid);
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
    clock_format_date(now + valid, tz, date, sizeof date);
    free(tz);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushnumber(L, value);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, date);
    lua_setfield(L, -2, "expires");
    lua_pushinteger(L, now + valid);
    lua_setfield(L, -2, "expires_at");
    return 0;
}
