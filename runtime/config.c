/* config — reading tend.lua (see config.h). */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "config.h"
#include "util.h"

static const char CHANNELS_KEY = 0;

static char **strv(const char *const *items)
{
    size_t n = 0;
    while (items[n])
        n++;
    char **v = xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = xstrdup(items[i]);
    return v;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void caps_free(struct config *c)
{
    for (int i = 0; i < c->ncaps; i++) {
        free(c->caps[i].scope);
        free(c->caps[i].segment);
    }
    free(c->caps);
    c->caps = NULL;
    c->ncaps = 0;
}

static void caps_add(struct config *c, const char *scope, const char *segment, enum config_cap_period period,
                     int limit, tend_time within)
{
    c->caps = xrealloc(c->caps, (size_t)(c->ncaps + 1) * sizeof *c->caps);
    c->caps[c->ncaps++] = (struct config_cap){xstrdup(scope), segment ? xstrdup(segment) : NULL, period, limit,
                                              within};
}

/* The v1 settings: marketing's day and week. */
static void caps_set_marketing(struct config *c, int day, int week)
{
    c->cap_day = day;
    c->cap_week = week;
    if (day > 0)
        caps_add(c, "marketing", NULL, CAP_DAY, day, 0);
    if (week > 0)
        caps_add(c, "marketing", NULL, CAP_WEEK, week, 0);
}

void config_init(struct config *c)
{
    memset(c, 0, sizeof *c);
    c->db = xstrdup("tend.db");
    c->timezone = xstrdup("UTC");
    c->listen = xstrdup("127.0.0.1:8725");
    c->quiet_enabled = 1;
    c->quiet_from = 21 * 60 + 30;
    c->quiet_to = 8 * 60 + 30;
    c->cap_day = 1;
    c->cap_week = 3;
    c->silent_after = 90 * TEND_DAY;
    c->churned_after = 180 * TEND_DAY;
    c->dead_after = 365 * TEND_DAY;
    c->active_orders = 3;
    /* R: days since the last order at most 30/60/90/180 score 5/4/3/2 (else 1);
     * F: at least 10/5/3/2 orders score 5/4/3/2; M: at least 3000/1000/300/100. */
    static const double r[4] = {30, 60, 90, 180}, f[4] = {10, 5, 3, 2}, m[4] = {3000, 1000, 300, 100};
    memcpy(c->rfm_r, r, sizeof r);
    memcpy(c->rfm_f, f, sizeof f);
    memcpy(c->rfm_m, m, sizeof m);
    static const char *const paid[] = {"order.paid", NULL}, *const refund[] = {"order.refunded", NULL};
    c->paid_types = strv(paid);
    c->refund_types = strv(refund);
    c->amount_field = xstrdup("total");
    c->currency = xstrdup("CNY");
    static const char *const none[] = {NULL};
    c->http_allow = strv(none);
    c->memory_limit = 256u << 20;
    c->instruction_limit = 100000000L;
    c->time_limit_ms = 5000;
    c->load_limit = 1u << 20;
    c->max_sends = c->max_emits = c->max_starts = 100;
    c->max_chain = 20;
    c->delivery_batch = 500;
    c->cache_mb = 8;
    c->holidays = calendar_new();
    caps_set_marketing(c, 1, 3);
    c->ready_backlog = 100000;
    c->max_connections = 1024;
    c->idle_timeout = 60;
    c->header_timeout = 10;
    c->request_timeout = 30;
    c->shutdown_grace = 10;
}

void config_free(struct config *c)
{
    free(c->db);
    free(c->timezone);
    free(c->listen);
    free(c->amount_field);
    free(c->currency);
    free(c->unsubscribe_secret);
    free(c->public_url);
    strv_free(c->paid_types);
    strv_free(c->refund_types);
    strv_free(c->http_allow);
    calendar_free(c->holidays);
    caps_free(c);
    memset(c, 0, sizeof *c);
}

/* --- typed readers: each returns 0, or -1 with err naming the key ------- */

struct reader {
    lua_State *L;
    const char *source;
    char *err;
    size_t errlen;
};

static int bad(struct reader *r, const char *key, const char *what)
{
    snprintf(r->err, r->errlen, "%s: setting '%s' %s", r->source, key, what);
    return -1;
}

static int read_string(struct reader *r, const char *key, char **out)
{
    if (lua_type(r->L, -1) != LUA_TSTRING)
        return bad(r, key, "must be a string");
    free(*out);
    *out = xstrdup(lua_tostring(r->L, -1));
    return 0;
}

static int read_number(struct reader *r, const char *key, double min, double *out)
{
    int isnum;
    double v = lua_tonumberx(r->L, -1, &isnum);
    if (!isnum)
        return bad(r, key, "must be a number");
    if (v < min)
        return bad(r, key, "is out of range");
    *out = v;
    return 0;
}

static int read_int(struct reader *r, const char *key, int *out)
{
    double v;
    if (read_number(r, key, 0, &v) != 0)
        return -1;
    if (v != (double)(int)v)
        return bad(r, key, "must be a whole number");
    *out = (int)v;
    return 0;
}

static int read_strings(struct reader *r, const char *key, char ***out)
{
    lua_State *L = r->L;
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *one[] = {lua_tostring(L, -1), NULL};
        strv_free(*out);
        *out = strv(one);
        return 0;
    }
    if (!lua_istable(L, -1))
        return bad(r, key, "must be a list of strings");
    size_t n = lua_rawlen(L, -1);
    char **v = xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            strv_free(v);
            return bad(r, key, "must be a list of strings");
        }
        v[i] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    strv_free(*out);
    *out = v;
    return 0;
}

static int read_thresholds(struct reader *r, const char *key, double out[4])
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 4)
        return bad(r, key, "must be a list of 4 numbers");
    for (int i = 0; i < 4; i++) {
        lua_rawgeti(L, -1, i + 1);
        int isnum;
        out[i] = lua_tonumberx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum)
            return bad(r, key, "must be a list of 4 numbers");
    }
    return 0;
}

/* Walks a sub-table's keys, refusing any not in `known`. */
static int check_keys(struct reader *r, const char *table, const char *const *known)
{
    lua_State *L = r->L;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = 0;
        for (const char *const *p = known; k && *p; p++)
            if (strcmp(*p, k) == 0)
                ok = 1;
        if (!ok) {
            char key[160];
            snprintf(key, sizeof key, "%s.%s", table, k ? k : "?");
            lua_pop(L, 1);
            return bad(r, key, "is unknown");
        }
    }
    return 0;
}

static int read_hhmm(struct reader *r, const char *key, int *out)
{
    int hh, mm;
    const char *s = lua_tostring(r->L, -1);
    if (!s || clock_parse_hhmm(s, &hh, &mm) != 0)
        return bad(r, key, "must be a local time \"HH:MM\"");
    *out = hh * 60 + mm;
    return 0;
}

static int read_quiet(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        c->quiet_enabled = 0;
        return 0;
    }
    if (!lua_istable(L, -1))
        return bad(r, "quiet_hours", "must be {from = \"21:30\", to = \"08:30\"} or false");
    static const char *const known[] = {"from", "to", NULL};
    if (check_keys(r, "quiet_hours", known) != 0)
        return -1;
    lua_getfield(L, -1, "from");
    int rc = read_hhmm(r, "quiet_hours.from", &c->quiet_from);
    lua_pop(L, 1);
    if (rc)
        return -1;
    lua_getfield(L, -1, "to");
    rc = read_hhmm(r, "quiet_hours.to", &c->quiet_to);
    lua_pop(L, 1);
    c->quiet_enabled = 1;
    return rc;
}

/* Reads t[field] with fn when present. */
#define FIELD(field, stmt)                                  \
    do {                                                    \
        if (lua_getfield(L, -1, field) != LUA_TNIL) {       \
            int rc_ = (stmt);                               \
            if (rc_) {                                      \
                lua_pop(L, 1);                              \
                return -1;                                  \
            }                                               \
        }                                                   \
        lua_pop(L, 1);                                      \
    } while (0)

static const char *const CAP_PERIODS[] = {"day", "week", "month", "rolling", NULL};

/* The limits of one scope: { day = 1, week = 3, month = 8, rolling = {within = days(7), max = 2} }. */
static int read_scope_caps(struct reader *r, struct config *c, const char *key, const char *scope,
                           const char *segment)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, key, "must be a table of limits {day = n, week = n, month = n, rolling = {within = s, max = n}}");
    char sub[200];
    snprintf(sub, sizeof sub, "%s", key);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *p = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        char field[260];
        snprintf(field, sizeof field, "%s.%s", sub, p);
        int period = -1;
        for (int i = 0; CAP_PERIODS[i]; i++)
            if (strcmp(CAP_PERIODS[i], p) == 0)
                period = i;
        if (period < 0) {
            lua_pop(L, 2);
            return bad(r, field, "is not a period (day, week, month, rolling)");
        }
        int limit = 0;
        tend_time within = 0;
        if (period == CAP_ROLLING) {
            double w = 0, m = -1;
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "within");
                w = lua_tonumber(L, -1);
                lua_getfield(L, -2, "max");
                m = lua_isinteger(L, -1) ? (double)lua_tointeger(L, -1) : -1;
                lua_pop(L, 2);
            }
            if (w < 60 || m < 0) {
                lua_pop(L, 2);
                return bad(r, field, "must be {within = seconds (at least minutes(1)), max = n}");
            }
            within = (tend_time)w;
            limit = (int)m;
        } else if (read_int(r, field, &limit) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        caps_add(c, scope, segment, (enum config_cap_period)period, limit, within);
        lua_pop(L, 1);
    }
    return 0;
}

/* caps = { marketing = {day = 1, week = 3}, sms = {week = 2}, call = {month = 1} };
 * the v1 form { day = 1, week = 3 } still means marketing; false: no caps. */
static int read_caps(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    caps_free(c);
    c->cap_day = c->cap_week = 0;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
        return 0;
    if (!lua_istable(L, -1))
        return bad(r, "caps", "must be {marketing = {day = 1, week = 3}, <channel> = {...}} or false");
    int v1 = 0;
    for (int i = 0; CAP_PERIODS[i]; i++) {
        lua_getfield(L, -1, CAP_PERIODS[i]);
        v1 |= !lua_isnil(L, -1);
        lua_pop(L, 1);
    }
    if (v1)
        return read_scope_caps(r, c, "caps", "marketing", NULL);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return bad(r, "caps", "keys must be \"marketing\" or channel names");
        }
        char key[200];
        snprintf(key, sizeof key, "caps.%s", lua_tostring(L, -2));
        if (read_scope_caps(r, c, key, lua_tostring(L, -2), NULL) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    for (int i = 0; i < c->ncaps; i++)
        if (strcmp(c->caps[i].scope, "marketing") == 0 && !c->caps[i].segment) {
            if (c->caps[i].period == CAP_DAY)
                c->cap_day = c->caps[i].limit;
            if (c->caps[i].period == CAP_WEEK)
                c->cap_week = c->caps[i].limit;
        }
    return 0;
}

/* segment_caps = { vip = { marketing = { week = 5 } } }: limits that replace
 * the same scope and period of `caps` for the segment's members. */
static int read_segment_caps(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "segment_caps", "must be {<segment> = {<channel or marketing> = {week = n, ...}}}");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *segment = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!segment || !lua_istable(L, -1)) {
            lua_pop(L, 2);
            return bad(r, "segment_caps", "must map segment names to {<channel or marketing> = {week = n}}");
        }
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            char key[300];
            snprintf(key, sizeof key, "segment_caps.%s.%s", segment,
                     lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
            int named = lua_type(L, -2) == LUA_TSTRING;
            if (!named || read_scope_caps(r, c, key, lua_tostring(L, -2), segment) != 0) {
                lua_pop(L, 4);
                return named ? -1 : bad(r, key, "must be a channel name or marketing");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int read_duration(struct reader *r, const char *key, tend_time *out)
{
    double v;
    if (read_number(r, key, 1, &v) != 0)
        return -1;
    *out = (tend_time)v;
    return 0;
}

static int read_lifecycle(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "lifecycle", "must be a table");
    static const char *const known[] = {"silent", "churned", "dead", "active_orders", NULL};
    if (check_keys(r, "lifecycle", known) != 0)
        return -1;
    FIELD("silent", read_duration(r, "lifecycle.silent", &c->silent_after));
    FIELD("churned", read_duration(r, "lifecycle.churned", &c->churned_after));
    FIELD("dead", read_duration(r, "lifecycle.dead", &c->dead_after));
    FIELD("active_orders", read_int(r, "lifecycle.active_orders", &c->active_orders));
    if (!(c->silent_after < c->churned_after && c->churned_after < c->dead_after))
        return bad(r, "lifecycle", "needs silent < churned < dead");
    return 0;
}

static int read_rfm(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "rfm", "must be a table");
    static const char *const known[] = {"r", "f", "m", NULL};
    if (check_keys(r, "rfm", known) != 0)
        return -1;
    FIELD("r", read_thresholds(r, "rfm.r", c->rfm_r));
    FIELD("f", read_thresholds(r, "rfm.f", c->rfm_f));
    FIELD("m", read_thresholds(r, "rfm.m", c->rfm_m));
    return 0;
}

static int read_orders(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "orders", "must be a table");
    static const char *const known[] = {"paid", "refunded", "amount", NULL};
    if (check_keys(r, "orders", known) != 0)
        return -1;
    FIELD("paid", read_strings(r, "orders.paid", &c->paid_types));
    FIELD("refunded", read_strings(r, "orders.refunded", &c->refund_types));
    FIELD("amount", read_string(r, "orders.amount", &c->amount_field));
    return 0;
}

static int read_limits(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "limits", "must be a table");
    static const char *const known[] = {"memory", "instructions", "time", "load", "sends", "emits",
        "starts", "chain", NULL};
    if (check_keys(r, "limits", known) != 0)
        return -1;
    double v;
    /* the counts: whole numbers >= 1 */
    static const struct { const char *key, *name; size_t off; } counts[] = {
        {"sends", "limits.sends", offsetof(struct config, max_sends)},
        {"emits", "limits.emits", offsetof(struct config, max_emits)},
        {"starts", "limits.starts", offsetof(struct config, max_starts)},
        {"chain", "limits.chain", offsetof(struct config, max_chain)}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (lua_getfield(L, -1, counts[i].key) != LUA_TNIL) {
            if (read_number(r, counts[i].name, 1, &v) != 0)
                return lua_pop(L, 1), -1;
            if (v != (double)(int)v)
                return lua_pop(L, 1), bad(r, counts[i].name, "must be a whole number");
            *(int *)((char *)c + counts[i].off) = (int)v;
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, -1, "time") != LUA_TNIL) {   /* seconds */
        if (read_number(r, "limits.time", 0.01, &v) != 0)
            return lua_pop(L, 1), -1;
        c->time_limit_ms = (long)(v * 1000);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "load") != LUA_TNIL) {
        if (read_number(r, "limits.load", 1024, &v) != 0)
            return lua_pop(L, 1), -1;
        c->load_limit = (size_t)v;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "memory") != LUA_TNIL) {
        if (read_number(r, "limits.memory", 1 << 20, &v) != 0)
            return lua_pop(L, 1), -1;
        c->memory_limit = (size_t)v;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "instructions") != LUA_TNIL) {
        if (read_number(r, "limits.instructions", 10000, &v) != 0)
            return lua_pop(L, 1), -1;
        c->instruction_limit = (long)v;
    }
    lua_pop(L, 1);
    return 0;
}

static int read_sync(struct reader *r, struct config *c)
{
    const char *s = lua_tostring(r->L, -1);
    if (s && strcmp(s, "full") == 0)
        c->synchronous_normal = 0;
    else if (s && strcmp(s, "normal") == 0)
        c->synchronous_normal = 1;
    else
        return bad(r, "synchronous", "must be \"full\" or \"normal\"");
    return 0;
}

static int read_unknown(struct reader *r, struct config *c)
{
    const char *s = lua_tostring(r->L, -1);
    if (s && strcmp(s, "create") == 0)
        c->reject_unknown = 0;
    else if (s && strcmp(s, "reject") == 0)
        c->reject_unknown = 1;
    else
        return bad(r, "unknown_customers", "must be \"create\" or \"reject\"");
    return 0;
}

static int read_timezone(struct reader *r, struct config *c)
{
    if (read_string(r, "timezone", &c->timezone) != 0)
        return -1;
    if (!clock_tz_valid(c->timezone))
        return bad(r, "timezone", "is not a zone in the tz database");
    return 0;
}

/* branch liquid: money's currency, the unsubscribe link's base and secret */
static int read_currency(struct reader *r, struct config *c)
{
    if (read_string(r, "currency", &c->currency) != 0)
        return -1;
    size_t n = strlen(c->currency);
    for (size_t i = 0; i < n; i++)
        if (c->currency[i] < 'A' || c->currency[i] > 'Z')
            n = 0;
    if (n != 3)
        return bad(r, "currency", "must be an ISO 4217 code in capitals, like \"CNY\" or \"USD\"");
    return 0;
}

static int read_public_url(struct reader *r, struct config *c)
{
    if (read_string(r, "public_url", &c->public_url) != 0)
        return -1;
    if (strncmp(c->public_url, "http://", 7) != 0 && strncmp(c->public_url, "https://", 8) != 0)
        return bad(r, "public_url", "must start with https:// (or http://)");
    size_t n = strlen(c->public_url);
    while (n && c->public_url[n - 1] == '/')
        c->public_url[--n] = '\0';
    return 0;
}

static int read_secret(struct reader *r, struct config *c)
{
    if (read_string(r, "unsubscribe_secret", &c->unsubscribe_secret) != 0)
        return -1;
    if (strlen(c->unsubscribe_secret) < 16)
        return bad(r, "unsubscribe_secret", "must be at least 16 characters");
    return 0;
}

static int read_channels(struct reader *r)
{
    if (!lua_istable(r->L, -1))
        return bad(r, "channels", "must be a table of channel definitions");
    lua_pushnil(r->L);
    while (lua_next(r->L, -2)) {
        char msg[300];
        if (lua_type(r->L, -2) != LUA_TSTRING) {
            lua_pop(r->L, 2);
            return bad(r, "channels", "must name each channel (channels = { sms = {...} })");
        }
        const char *name = lua_tostring(r->L, -2);
        if (channel_check(r->L, -1, name, msg, sizeof msg) != 0) {
            lua_pop(r->L, 2);
            snprintf(r->err, r->errlen, "%s: %s", r->source, msg);
            return -1;
        }
        lua_pop(r->L, 1);
    }
    lua_pushvalue(r->L, -1);
    lua_rawsetp(r->L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
    return 0;
}

/* branch loop2: the page cache is most of the memory tend holds; the
 * OS's file cache serves what falls out of it */
static int read_cache(struct reader *r, struct config *c)
{
    if (read_int(r, "cache_mb", &c->cache_mb) != 0)
        return -1;
    if (c->cache_mb < 1 || c->cache_mb > 65536)
        return bad(r, "cache_mb", "must be 1 to 65536 (MiB)");
    return 0;
}

static int read_batch(struct reader *r, struct config *c)
{
    if (read_int(r, "delivery_batch", &c->delivery_batch) != 0)
        return -1;
    if (c->delivery_batch < 1)
        return bad(r, "delivery_batch", "must be at least 1");
    return 0;
}

static int read_seconds(struct reader *r, const char *key, double *out)
{
    double v;
    if (read_number(r, key, 0, &v) != 0)
        return -1;
    if (v <= 0 || v > 86400)
        return bad(r, key, "must be a number of seconds > 0 and at most a day");
    *out = v;
    return 0;
}

static int read_server(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "server", "must be a table");
    static const char *const known[] = {"max_connections", "idle_timeout", "header_timeout", "request_timeout",
                                        NULL};
    if (check_keys(r, "server", known) != 0)
        return -1;
    FIELD("max_connections", read_int(r, "server.max_connections", &c->max_connections));
    if (c->max_connections < 1)
        return bad(r, "server.max_connections", "must be at least 1");
    FIELD("idle_timeout", read_seconds(r, "server.idle_timeout", &c->idle_timeout));
    FIELD("header_timeout", read_seconds(r, "server.header_timeout", &c->header_timeout));
    FIELD("request_timeout", read_seconds(r, "server.request_timeout", &c->request_timeout));
    return 0;
}

/* holidays = { shop_day = "09-15", members_day = "2nd tue" } */
static int read_holidays(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "holidays", "must be a table of name = \"MM-DD\" | \"lunar MM-DD\" | \"2nd tue\"");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        char why[300];
        if (!name || lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 2);
            return bad(r, "holidays", "must map names to date rules (strings)");
        }
        if (calendar_add(c->holidays, name, lua_tostring(L, -1), why, sizeof why) != 0) {
            lua_pop(L, 2);
            snprintf(r->err, r->errlen, "%s: setting 'holidays': %s", r->source, why);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int read_ready_backlog(struct reader *r, struct config *c)
{
    if (read_int(r, "ready_backlog", &c->ready_backlog) != 0)
        return -1;
    if (c->ready_backlog < 0)
        return bad(r, "ready_backlog", "must be 0 or more");
    return 0;
}

/* retention = { instances = days(90), events = days(180) } (branch scale):
 * each at least a day, so deduplication by event id spans a day at least. */
static int read_retain(struct reader *r, const char *key, tend_time *out)
{
    double v;
    if (read_number(r, key, 0, &v) != 0)
        return -1;
    if (v < 86400)
        return bad(r, key, "must be at least days(1)");
    *out = (tend_time)v;
    return 0;
}

static int read_retention(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1))
        return bad(r, "retention", "must be a table {instances = days(n), events = days(n)}");
    static const char *const known[] = {"instances", "events", NULL};
    if (check_keys(r, "retention", known) != 0)
        return -1;
    FIELD("instances", read_retain(r, "retention.instances", &c->retain_instances));
    FIELD("events", read_retain(r, "retention.events", &c->retain_events));
    return 0;
}

static int read_all(struct reader *r, struct config *c)
{
    lua_State *L = r->L;
    FIELD("db", read_string(r, "db", &c->db));
    FIELD("timezone", read_timezone(r, c));
    FIELD("listen", read_string(r, "listen", &c->listen));
    FIELD("synchronous", read_sync(r, c));
    FIELD("unknown_customers", read_unknown(r, c));
    FIELD("quiet_hours", read_quiet(r, c));
    FIELD("caps", read_caps(r, c));
    FIELD("lifecycle", read_lifecycle(r, c));
    FIELD("rfm", read_rfm(r, c));
    FIELD("orders", read_orders(r, c));
    FIELD("http_allow", read_strings(r, "http_allow", &c->http_allow));
    FIELD("limits", read_limits(r, c));
    FIELD("channels", read_channels(r));
    FIELD("delivery_batch", read_batch(r, c));
    FIELD("cache_mb", read_cache(r, c));
    FIELD("holidays", read_holidays(r, c));
    FIELD("segment_caps", read_segment_caps(r, c));
    FIELD("currency", read_currency(r, c));
    FIELD("public_url", read_public_url(r, c));
    FIELD("unsubscribe_secret", read_secret(r, c));
    FIELD("ready_backlog", read_ready_backlog(r, c));
    FIELD("server", read_server(r, c));
    FIELD("shutdown_grace", read_seconds(r, "shutdown_grace", &c->shutdown_grace));
    FIELD("retention", read_retention(r, c));
    return 0;
}

int config_read(struct config *c, lua_State *L, int idx, const char *source, char *err, size_t errlen)
{
    struct reader r = {L, source, err, errlen};
    lua_pushvalue(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        snprintf(err, errlen, "%s: must return a table of settings", source);
        return -1;
    }
    static const char *const known[] = {
        "db", "timezone", "listen", "synchronous", "unknown_customers", "quiet_hours", "caps",
        "lifecycle", "rfm", "orders", "http_allow", "limits", "channels", "delivery_batch",
        "ready_backlog", "currency", "public_url", "unsubscribe_secret", "holidays", "segment_caps", "server",
        "shutdown_grace", "retention", "cache_mb", NULL};
    int rc = -1;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = 0;
        for (const char *const *p = known; k && *p; p++)
            ok |= strcmp(*p, k) == 0;
        if (!ok) {
            snprintf(err, errlen, "%s: unknown setting '%s'", source, k ? k : luaL_typename(L, -1));
            lua_pop(L, 2);
            return -1;
        }
    }
    rc = read_all(&r, c);
    lua_pop(L, 1);
    return rc;
}

int config_lists(const char *s, char **list)
{
    for (char **p = list; p && *p; p++)
        if (strcmp(*p, s) == 0)
            return 1;
    return 0;
}

void config_push_channels(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
}

/* --- where in tend.lua an error is ------------------------------------------- */

/* Offset just past `word` as a key (`word =` or `["word"] =`) or as a quoted
 * value ("word" or 'word') at or after `from`, or -1. */
static long find_token(const char *text, long from, const char *word, int as_key)
{
    size_t wl = strlen(word);
    for (const char *p = strstr(text + from, word); wl && p; p = strstr(p + 1, word)) {
        char before = p > text ? p[-1] : ' ', after = p[wl];
        const char *q = p + wl;
        if ((before == '"' || before == '\'') && after == before) {
            q++;
            if (!as_key)
                return q - text;
            while (*q == ']' || *q == ' ' || *q == '\t')
                q++;
        } else if (!as_key || isalnum((unsigned char)before) || before == '_' || isalnum((unsigned char)after) ||
                   after == '_') {
            continue;
        }
        while (*q == ' ' || *q == '\t')
            q++;
        if (!as_key || *q == '=')
            return q - text;
    }
    return -1;
}

/* The line a message's last quoted name is at: a value ('25:00-26:00') as
 * written in quotes, or a setting path ('caps.sms.fortnight') followed key
 * by key; 0 when not found. */
static int line_of(const char *text, const char *message)
{
    const char *last = NULL, *end = NULL;
    for (const char *p = strchr(message, '\''); p; p = strchr(end + 1, '\'')) {
        const char *q = strchr(p + 1, '\'');
        if (!q)
            break;
        last = p + 1;
        end = q;
    }
    if (!last || end == last)
        return 0;
    char token[200];
    snprintf(token, sizeof token, "%.*s", (int)(end - last), last);
    long at = find_token(text, 0, token, 0);
    if (at < 0) {   /* a setting path: each key after the one before */
        at = 0;
        char *save = NULL;
        for (char *key = strtok_r(token, ".", &save); key && at >= 0; key = strtok_r(NULL, ".", &save))
            at = find_token(text, at, key, 1);
    }
    if (at < 0)
        return 0;
    int line = 1;
    for (long i = 0; i < at; i++)
        line += text[i] == '\n';
    return line;
}

char *config_error_at(const char *path, const char *shown, const char *message)
{
    size_t len;
    char *text = util_read_file(path, &len);
    int line = text ? line_of(text, message) : 0;
    free(text);
    return line ? xasprintf("%s:%d: %s", shown, line, message) : xasprintf("%s: %s", shown, message);
}
