/* channel — channel declarations and costs (see channel.h). */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "mime.h"
#include "config.h"
#include "policy.h"
#include "template.h"

static const char *const KIND_NAMES[] = {"file", "http", "smtp", "task", "capture"};

const char *channel_kind_name(enum channel_kind k)
{
    return KIND_NAMES[k];
}

/* A script's `channel "x" {}` wins over tend.lua's channels.x. */
void channel_push(engine *e, const char *name, struct channel_info *info)
{
    lua_State *L = sandbox_state(e->sb);
    info->kind = CHANNEL_FILE;
    info->price = 0;
    info->per_segment = 0;
    catalog_push_all(e, "channels");
    if (lua_getfield(L, -1, name) == LUA_TNIL) {
        lua_pop(L, 1);
        config_push_channels(L);
        lua_getfield(L, -1, name);
        lua_remove(L, -2);
    }
    lua_remove(L, -2);
    if (!lua_istable(L, -1))
        return;
    lua_getfield(L, -1, "type");
    const char *type = lua_tostring(L, -1);
    for (int k = 0; type && k < 5; k++)
        if (strcmp(type, KIND_NAMES[k]) == 0)
            info->kind = (enum channel_kind)k;
    lua_getfield(L, -2, "price");
    info->price = lua_tonumber(L, -1);
    lua_getfield(L, -3, "per");
    info->per_segment = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "segment") == 0;
    lua_pop(L, 3);
}

/* Each setting and the Lua types it takes. */
static const struct setting {
    const char *key;
    int types[3];
} SETTINGS[] = {
    {"type", {LUA_TSTRING, -1, -1}},      {"url", {LUA_TSTRING, -1, -1}},
    {"method", {LUA_TSTRING, -1, -1}},    {"headers", {LUA_TTABLE, -1, -1}},
    {"body", {LUA_TFUNCTION, -1, -1}},    {"success", {LUA_TTABLE, -1, -1}},
    {"price", {LUA_TNUMBER, -1, -1}},     {"per", {LUA_TSTRING, -1, -1}},
    {"concurrency", {LUA_TNUMBER, -1, -1}}, {"rate", {LUA_TNUMBER, -1, -1}},
    {"timeout", {LUA_TNUMBER, -1, -1}},   {"connect_timeout", {LUA_TNUMBER, -1, -1}},
    {"max_attempts", {LUA_TNUMBER, -1, -1}}, {"to", {LUA_TSTRING, -1, -1}},
    {"max_backoff", {LUA_TNUMBER, -1, -1}},
    {"from", {LUA_TSTRING, -1, -1}},      {"username", {LUA_TSTRING, -1, -1}},
    {"password", {LUA_TSTRING, -1, -1}},  {"path", {LUA_TSTRING, -1, -1}},
    {"assign", {LUA_TSTRING, LUA_TTABLE, LUA_TFUNCTION}},
    {"blocked_words", {LUA_TTABLE, -1, -1}}, {"max_segments", {LUA_TNUMBER, -1, -1}},
    {"description", {LUA_TSTRING, -1, -1}}, {"envelope_from", {LUA_TSTRING, -1, -1}},
    /* which customer field reaches the customer here: "phone", "email",
     * "attrs.openid" (`to` is its v1 name) */
    {"address", {LUA_TSTRING, -1, -1}},
    /* a provider's callback body → receipt(s) (receipt.c) */
    {"receipt", {LUA_TFUNCTION, -1, -1}},
    {"window", {LUA_TSTRING, LUA_TTABLE, -1}}, {"days", {LUA_TSTRING, -1, -1}},
};

int channel_check(lua_State *L, int idx, const char *name, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "channel '%s' must be a table of settings", name);
        return -1;
    }
    lua_getfield(L, idx, "type");
    const char *type = lua_tostring(L, -1);
    int known = 0;
    for (int k = 0; type && k < 5; k++)
        known |= strcmp(type, KIND_NAMES[k]) == 0;
    lua_pop(L, 1);
    if (!known) {
        if (type)
            snprintf(err, errlen, "channel '%s': type '%s' is not one of http, smtp, file, task, capture",
                     name, type);
        else
            snprintf(err, errlen, "channel '%s': 'type' is required (http, smtp, file, task or capture)", name);
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const struct setting *s = NULL;
        for (size_t i = 0; k && i < sizeof SETTINGS / sizeof SETTINGS[0]; i++)
            if (strcmp(SETTINGS[i].key, k) == 0)
                s = &SETTINGS[i];
        if (!s) {
            if (k)
                snprintf(err, errlen, "channel '%s': unknown setting '%s'", name, k);
            else
                snprintf(err, errlen, "channel '%s': settings are named (a %s key)", name,
                         luaL_typename(L, -2));
            lua_pop(L, 2);
            return -1;
        }
        int t = lua_type(L, -1);
        if (t != s->types[0] && t != s->types[1] && t != s->types[2]) {
            snprintf(err, errlen, "channel '%s': setting '%s' cannot be a %s", name, k, lua_typename(L, t));
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, idx, "per");
    const char *per = lua_tostring(L, -1);
    lua_pop(L, 1);
    struct policy_window w;
    char why[200];
    if (policy_read_window(L, idx, &w, why, sizeof why) != 0) {
        snprintf(err, errlen, "channel '%s': %s", name, why);
        return -1;
    }
    if (per && strcmp(per, "message") != 0 && strcmp(per, "segment") != 0) {
        snprintf(err, errlen, "channel '%s': 'per' must be \"message\" or \"segment\"", name);
        return -1;
    }
    /* smtp: `from` may carry a display name; both must hold one address
     * (a ${VAR} is filled in at send time, so it is checked then) */
    static const char *const addrs[] = {"from", "envelope_from"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, idx, addrs[i]);
        const char *v = lua_tostring(L, -1);
        char n[256], a[256], why[200];
        int bad = v && !strstr(v, "${") && mime_parse_from(v, n, sizeof n, a, sizeof a, why, sizeof why) != 0;
        lua_pop(L, 1);
        if (bad) {
            snprintf(err, errlen, "channel '%s': %s", name, why);
            if (i == 1)
                snprintf(err, errlen, "channel '%s': 'envelope_from' '%s' is not an address", name, v);
            return -1;
        }
    }
    return 0;
}

void channel_cost(engine *e, const char *name, const char *text, int *segments, double *cost)
{
    struct channel_info info;
    channel_push(e, name, &info);
    lua_pop(sandbox_state(e->sb), 1);
    struct sms_info sms;
    sms_measure(text ? text : "", &sms);
    *segments = sms.segments;
    *cost = info.price * (info.per_segment ? sms.segments : 1);
}
