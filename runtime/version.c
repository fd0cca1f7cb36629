/* version — see version.h. */
#include "version.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <lua.h>

#include "store.h"

void version_get(struct versions *v)
{
    v->tend = TEND_VERSION;
    /* LUA_RELEASE is "Lua 5.4.6": the number alone */
    v->lua = LUA_RELEASE + 4;
    v->sqlite = store_library_version();
    v->curl = curl_version_info(CURLVERSION_NOW)->version;
    v->libevent = event_get_version();
}
