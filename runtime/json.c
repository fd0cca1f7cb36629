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

/* --- reading stored JSON straight into Lua --------------------------------
 * A recursive descent over text tend printed (cJSON's compact form): any
 * surprise returns -1 and the caller takes the validating cJSON path, so
 * this only ever gives what json_push would. */

struct reader {
    const char *p, *end;
    int depth;
    strbuf str;                 /* a string with escapes, decoded */
    const char *s;              /* the last string read: in the text, or str.s */
    size_t slen;
    int templ;                  /* build a template (json_template_new), not the value */
};

/* A template's stand-in for a nil an array sets (a JSON null element). */
static const char TEMPLATE_NIL = 0;

static void skip_ws(struct reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A string at r->p (the opening quote) into r->s and r->slen; -1 when it
 * is not one this path takes: \u escapes other than plain BMP, bytes below
 * 0x20. One without escapes (most) is left where it is in the text, not
 * copied into r->str first: it holds no NUL (bytes below 0x20 fail). */
static int read_string(struct reader *r)
{
    const char *p = r->p + 1, *run = p;
    while (p < r->end && *p != '"' && *p != '\\') {
        if ((unsigned char)*p < 0x20)
            return -1;
        p++;
    }
    if (p < r->end && *p == '"') {
        r->s = run;
        r->slen = (size_t)(p - run);
        r->p = p + 1;
        return 0;
    }
    strbuf_reset(&r->str);
    while (p < r->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            p++;
            continue;
        }
        strbuf_add(&r->str, run, (size_t)(p - run));
        if (p + 1 >= r->end)
            return -1;
        char esc = p[1], out;
        p += 2;
        switch (esc) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            unsigned u;
            if (r->end - p < 4 || hex4(p, &u) != 0 || u == 0 || (u >= 0xD800 && u <= 0xDFFF))
                return -1;   /* NUL and surrogate pairs: cJSON's path decides */
            p += 4;
            char utf[3];
            size_t n;
            if (u < 0x80) {
                utf[0] = (char)u;
                n = 1;
            } else if (u < 0x800) {
                utf[0] = (char)(0xC0 | (u >> 6));
                utf[1] = (char)(0x80 | (u & 0x3F));
                n = 2;
            } else {
                utf[0] = (char)(0xE0 | (u >> 12));
                utf[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                utf[2] = (char)(0x80 | (u & 0x3F));
                n = 3;
            }
            strbuf_add(&r->str, utf, n);
            run = p;
            continue;
        }
        default:
            return -1;
        }
        strbuf_putc(&r->str, out);
        run = p;
    }
    if (p >= r->end)
        return -1;
    strbuf_add(&r->str, run, (size_t)(p - run));
    r->s = r->str.s;
    r->slen = r->str.len;
    r->p = p + 1;
    return 0;
}

static int read_value(lua_State *L, struct reader *r);

static int read_number(lua_State *L, struct reader *r)
{
    const char *s = r->p;
    if (*s == '+')
        return -1;
    int digits_only = 1;   /* -?[0-9]+ */
    for (; r->p < r->end; r->p++) {
        char c = *r->p;
        if (c >= '0' && c <= '9')
            continue;
        if (c == '-' && r->p == s)
            continue;
        if (c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E')
            break;
        digits_only = 0;
    }
    size_t n = (size_t)(r->p - s);
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    /* A plain integer of up to 15 digits (an `at`, most amounts) is exact
     * in a double, so strtod's value is this one, pushed as an integer as
     * below (-0 as 0 either way): ~500 instructions of strtod saved. */
    size_t neg = *s == '-';
    if (digits_only && n > neg && n - neg <= 15) {
        lua_Integer v = 0;
        for (const char *d = s + neg; d < r->p; d++)
            v = v * 10 + (*d - '0');
        lua_pushinteger(L, neg ? -v : v);
        return 0;
    }
    memcpy(buf, s, n);
    buf[n] = 0;
    char *stop;
    double d = strtod(buf, &stop);
    if (*stop || !isfinite(d))
        return -1;
    /* as json_push: integral and exact in a double, an integer */
    if (d == floor(d) && d >= -9007199254740992.0 && d <= 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
    return 0;
}

static int read_container(lua_State *L, struct reader *r, int is_array)
{
    if (++r->depth > JSON_MAX_DEPTH)
        return -1;
    r->p++;
    /* an object sized for a typical event: grown from empty it rehashed
     * at 1, 2, 4 and 8 members (~1k instructions each, a third of pushing
     * a 5-field trigger event). A list grows as before (a sized array part
     * would change what # says of a list with a null in it). */
    lua_createtable(L, 0, is_array ? 0 : 8);
    lua_Integer i = 1, m = 0;   /* m: a template's entries */
    skip_ws(r);
    if (r->p < r->end && *r->p == (is_array ? ']' : '}')) {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(r);
        if (!is_array) {
            if (r->p >= r->end || *r->p != '"' || read_string(r) != 0)
                return -1;
            lua_pushlstring(L, r->s, r->slen);
            skip_ws(r);
            if (r->p >= r->end || *r->p++ != ':')
                return -1;
            skip_ws(r);
        }
        if (read_value(L, r) != 0)
            return -1;
        if (r->templ && is_array) {
            /* the template records each set as key, value, in order */
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlightuserdata(L, (void *)&TEMPLATE_NIL);
            }
            lua_rawseti(L, -2, m + 2);
            lua_pushinteger(L, i++);
            lua_rawseti(L, -2, m + 1);
            m += 2;
        } else if (is_array) {
            lua_rawseti(L, -2, i++);   /* a null leaves a hole, as json_push */
        } else if (lua_isnil(L, -1)) {
            lua_pop(L, 2);             /* a null member is no field */
        } else if (r->templ) {
            lua_rawseti(L, -3, m + 2);
            lua_rawseti(L, -2, m + 1);
            m += 2;
        } else {
            lua_rawset(L, -3);
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == (is_array ? ']' : '}')) {
            r->p++;
            r->depth--;
            return 0;
        }
        return -1;
    }
}

static int read_value(lua_State *L, struct reader *r)
{
    if (r->p >= r->end || !lua_checkstack(L, 4))
        return -1;
    switch (*r->p) {
    case '{': return read_container(L, r, 0);
    case '[': return read_container(L, r, 1);
    case '"':
        if (read_string(r) != 0 || memchr(r->s, 0, r->slen))
            return -1;
        lua_pushlstring(L, r->s, r->slen);
        return 0;
    case 't':
    case 'f':
    case 'n': {
        static const char *const words[] = {"true", "false", "null"};
        for (int w = 0; w < 3; w++) {
            size_t n = strlen(words[w]);
            if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[w], n) == 0) {
                r->p += n;
                if (w == 2)
                    lua_pushnil(L);
                else
                    lua_pushboolean(L, w == 0);
                return 0;
            }
        }
        return -1;
    }
    default:
        return read_number(L, r);
    }
}

/* Reads all of text onto L (a template of it when templ): 0, or -1 with
 * nothing pushed when the fast reader does not take it. */
static int read_whole(lua_State *L, const char *text, size_t len, int templ)
{
    int top = lua_gettop(L);
    struct reader r = {text, text + len, 0, {0}, NULL, 0, templ};
    skip_ws(&r);
    int rc = read_value(L, &r);
    skip_ws(&r);
    strbuf_free(&r.str);
    if (rc == 0 && r.p == r.end)
        return 0;
    lua_settop(L, top);
    return -1;
}

int json_push_stored(lua_State *L, const char *text, size_t len, char *err, size_t errlen)
{
    if (read_whole(L, text, len, 0) == 0)
        return 0;
    return json_push_text(L, text, len, err, errlen);
}

int json_template_new(lua_State *L, const char *text, size_t len)
{
    return read_whole(L, text, len, 1);
}

/* The container template t (an absolute index) replayed into a new table. */
static void push_from_template(lua_State *L, int t)
{
    luaL_checkstack(L, 4, "json template");
    lua_newtable(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, t);
    for (lua_Integer j = 1; j < n; j += 2) {
        int key = lua_rawgeti(L, t, j);
        int value = lua_rawgeti(L, t, j + 1);
        if (value == LUA_TTABLE) {
            push_from_template(L, lua_gettop(L));
            lua_remove(L, -2);
        } else if (value == LUA_TLIGHTUSERDATA) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
        if (key == LUA_TNUMBER) {   /* an array's element, set as read_container sets it */
            lua_rawseti(L, -3, lua_tointeger(L, -2));
            lua_pop(L, 1);
        } else {
            lua_rawset(L, -3);
        }
    }
}

void json_template_push(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TTABLE)
        push_from_template(L, lua_absindex(L, idx));
    else
        lua_pushvalue(L, idx);   /* a scalar text: the value itself */
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
