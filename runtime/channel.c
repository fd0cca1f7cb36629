/* channel — channel declarations and costs (see channel.h). */
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "config.h"
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
