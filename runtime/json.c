/* json — Lua <-> cJSON (see json.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json.h"
#include "util.h"
#include "validate.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 if the table at idx has exactly the keys 1..n with n > 0. */
static int is_array(lua_State *L, int idx, lua_Integer *n)
{
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    if (len == 0)
        return 0;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > len) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n = len;
    return count == len;
}

static cJSON *from_lua(lua_State *L, int idx, int depth, int strict, strbuf *path, char *err, size_t errlen);
static cJSON *check_text(lua_State *L, int idx, int is_key, strbuf *path, char *err, size_t errlen);

static cJSON *fail(strbuf *path, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s%s%s", path->len ? path->s : "", path->len ? ": " : "", what);
    return NULL;
}

static cJSON *object_from_lua(lua_State *L, int idx, int depth, int strict, strbuf *path, char *err,
                              size_t errlen)
{
    /* Keys are gathered and sorted first: encoding must not depend on the
     * hash order of this run. */
    size_t n = 0, cap = 8;
    const char **keys = xmalloc(cap * sizeof *keys);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            free(keys);
            lua_pop(L, 1);
            return fail(path, err, errlen, "table has a non-string key (mixed or sparse array?)");
        }
        if (strict && !check_text(L, -1, 1, path, err, errlen)) {
            free(keys);
            lua_pop(L, 1);
            return NULL;
        }
        if (n == cap)
            keys = xrealloc(keys, (cap *= 2) * sizeof *keys);
        keys[n++] = lua_tostring(L, -1);   /* the string stays in the table */
    }
    qsort(keys, n, sizeof *keys, cmp_str);
    cJSON *obj = cJSON_CreateObject();
    size_t mark = path->len;
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, idx, keys[i]);
        if (mark)
            strbuf_putc(path, '.');
        strbuf_puts(path, keys[i]);
        cJSON *v = from_lua(L, lua_gettop(L), depth + 1, strict, path, err, errlen);
        path->len = mark;
        if (path->s)
            path->s[mark] = 0;
        lua_pop(L, 1);
        if (!v) {
            cJSON_Delete(obj);
            free(keys);
            return NULL;
        }
        cJSON_AddItemToObject(obj, keys[i], v);
    }
    free(keys);
    return obj;
}

/* In strict mode (input: emit, c:set) a string must be text: a NUL would be
 * cut off by cJSON without a word, invalid UTF-8 would make invalid JSON.
 * Returns a non-NULL marker when the string at idx is fine. */
static cJSON *check_text(lua_State *L, int idx, int is_key, strbuf *path, char *err, size_t errlen)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    char why[120];
    if (validate_text(s, n, 0, why, sizeof why) == 0)
        return (cJSON *)s;
    char what[200];
    snprintf(what, sizeof what, "%s%s", is_key ? "a key " : "", why);
    return fail(path, err, errlen, what);
}

static cJSON *from_lua(lua_State *L, int idx, int depth, int strict, strbuf *path, char *err, size_t errlen)
{
    if (depth > JSON_MAX_DEPTH)
        return fail(path, err, errlen, "nested too deeply (a cycle?)");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull();
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d))
            return fail(path, err, errlen, "number is not finite");
        return cJSON_CreateNumber(d);
    }
    case LUA_TSTRING:
        if (strict && !check_text(L, idx, 0, path, err, errlen))
            return NULL;
        return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: {
        lua_checkstack(L, 6);
        lua_Integer n;
        if (!is_array(L, idx, &n))
            return object_from_lua(L, idx, depth, strict, path, err, errlen);
        cJSON *arr = cJSON_CreateArray();
        size_t mark = path->len;
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            strbuf_printf(path, "[%lld]", (long long)i);
            cJSON *v = from_lua(L, lua_gettop(L), depth + 1, strict, path, err, errlen);
            path->len = mark;
            if (path->s)
                path->s[mark] = 0;
            lua_pop(L, 1);
            if (!v) {
                cJSON_Delete(arr);
                return NULL;
            }
            cJSON_AddItemToArray(arr, v);
        }
        return arr;
    }
    default: {
        char what[64];
        snprintf(what, sizeof what, "a %s cannot be stored as JSON", luaL_typename(L, idx));
        return fail(path, err, errlen, what);
    }
    }
}

static cJSON *lua_tree(lua_State *L, int idx, int strict, char *err, size_t errlen)
{
    strbuf path;
    strbuf_init(&path);
    cJSON *j = from_lua(L, lua_absindex(L, idx), 0, strict, &path, err, errlen);
    strbuf_free(&path);
    return j;
}

static char *encode(lua_State *L, int idx, int strict, char *err, size_t errlen)
{
    cJSON *j = lua_tree(L, idx, strict, err, errlen);
    if (!j)
        return NULL;
    char *s = json_print(j);
    cJSON_Delete(j);
    return s;
}

static const char *push_encoded(lua_State *L, int idx, int strict, char *err, size_t errlen)
{
    char *text = encode(L, idx, strict, err, errlen);
    if (!text)
        return NULL;
    lua_pushstring(L, text);
    free(text);
    return lua_tostring(L, -1);
}

const char *json_push_encoded(lua_State *L, int idx, char *err, size_t errlen)
{
    return push_encoded(L, idx, 0, err, errlen);
}

const char *json_push_input(lua_State *L, int idx, char *err, size_t errlen)
{
    return push_encoded(L, idx, 1, err, errlen);
}

cJSON *json_from_lua(lua_State *L, int idx, char *err, size_t errlen)
{
    return lua_tree(L, idx, 0, err, errlen);
}

cJSON *json_from_lua_input(lua_State *L, int idx, char *err, size_t errlen)
{
    return lua_tree(L, idx, 1, err, errlen);
}

int json_int(const cJSON *j, long long *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (d != floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0)
        return -1;
    *out = (long long)d;
    return 0;
}

void json_push(lua_State *L, const cJSON *j)
{
    lua_checkstack(L, 4);
    if (!j || cJSON_IsNull(j) || cJSON_IsInvalid(j)) {
        lua_pushnil(L);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        long long i;
        if (json_int(j, &i) == 0)
            lua_pushinteger(L, (lua_Integer)i);
        else
            lua_pushnumber(L, j->valuedouble);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            json_push(L, c);
            lua_rawseti(L, -2, i++);
        }
    } else {
        lua_newtable(L);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (cJSON_IsNull(c))
                continue;
            json_push(L, c);
            lua_setfield(L, -2, c->string);
        }
    }
}

cJSON *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "invalid JSON: contains a NUL byte");
        return NULL;
    }
    /* Before cJSON: it would recurse down any depth, turn "\u0000" into a
     * cut string and 1e400 into inf (printed as null), and pass bad UTF-8. */
    if (validate_json_text(text, len, JSON_MAX_DEPTH, err, errlen) != 0)
        return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        if (at >= len) {
            snprintf(err, errlen, "invalid JSON: unexpected end of input");
        } else {
            /* the bytes as text that is safe to echo: not UTF-8 or a
             * control character becomes '?' */
            char near[16];
            validate_printable(text + at, len - at < 10 ? len - at : 10, near, sizeof near);
            snprintf(err, errlen, "invalid JSON at byte %zu near '%s'", at + 1, near);
        }
        return NULL;
    }
    /* cJSON stops at the end of the first value; anything but blanks after
     * it means the text was not one JSON value. */
    size_t used = (size_t)(end - text);
    while (used < len && (text[used] == ' ' || text[used] == '\t' || text[used] == '\n' ||
                          text[used] == '\r'))
        used++;
    if (used < len) {
        snprintf(err, errlen, "invalid JSON at byte %zu: text after the value", used + 1);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int json_push_text(lua_State *L, const char *text, size_t len, char *err, size_t errlen)
{
    cJSON *j = json_parse(text, len, err, errlen);
    if (!j)
        return -1;
    json_push(L, j);
    cJSON_Delete(j);
    return 0;
}

char *json_print(const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        fputs("tend: out of memory\n", stderr);
        abort();
    }
    return s;
}

char *json_encode(lua_State *L, int idx, char *err, size_t errlen)
{
    return encode(L, idx, 0, err, errlen);
}

const cJSON *json_path(const cJSON *obj, const char *path)
{
    const cJSON *cur = obj;
    char key[256];
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, key) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return cur;
}
