/* bounded — budgeted string patterns and charged library functions (see
 * bounded.h).
 *
 * Layout: the matcher (a backtracking matcher over the pattern text, as
 * the manual describes patterns, with a step count), the four pattern
 * functions on top of it, string.rep, and the charged wrappers. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "bounded.h"
#include "sandbox.h"

#define ESC '%'
#define SPECIALS "^$*+?.([%-"
#define MAX_CAPTURES 32         /* LUA_MAXCAPTURES */
#define MAX_DEPTH 200           /* nested matcher calls: "pattern too complex" past it */
#define CHARGE_EVERY 4096       /* steps between two charges */

#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

struct matcher {
    const char *src, *src_end;  /* the subject */
    const char *p_end;          /* end of the pattern */
    lua_State *L;
    int level;                  /* captures open or closed so far */
    int depth;
    long steps;                 /* not yet charged */
    struct {
        const char *init;
        ptrdiff_t len;          /* or CAP_UNFINISHED / CAP_POSITION */
    } capture[MAX_CAPTURES];
};

static void step(struct matcher *m, long n)
{
    m->steps += 2 * n;   /* a step costs about two VM instructions */
    if (m->steps >= CHARGE_EVERY) {
        long s = m->steps;
        m->steps = 0;
        sandbox_charge(m->L, (double)s);
    }
}

static void settle(struct matcher *m)
{
    long s = m->steps;
    m->steps = 0;
    if (s)
        sandbox_charge(m->L, (double)s);
}

static void reset(struct matcher *m)
{
    m->level = 0;
    m->depth = 0;
}

/* %a %d ...: 1 if c is in class cl (upper case: the complement). */
static int in_class(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break;   /* deprecated, still accepted */
    default: return cl == c;
    }
    if (isupper(cl))
        r = !r;
    return r != 0;
}

/* [set]: p at '[', close at its ']'. */
static int in_set(int c, const char *p, const char *close)
{
    int yes = 1;
    if (p[1] == '^') {
        yes = 0;
        p++;
    }
    while (++p < close) {
        if (*p == ESC) {
            p++;
            if (in_class(c, (unsigned char)*p))
                return yes;
        } else if (p[1] == '-' && p + 2 < close) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

/* The end of the single-character class starting at p. */
static const char *class_end(struct matcher *m, const char *p)
{
    char c = *p++;
    if (c == ESC) {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < m->p_end && *p == '^')
            p++;
        do {   /* the first character is never the closing ']' */
            if (p >= m->p_end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == ESC && p < m->p_end)
                p++;
        } while (p >= m->p_end || *p != ']');
        return p + 1;
    }
    return p;
}

static int single(struct matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case ESC: return in_class(c, (unsigned char)p[1]);
    case '[': return in_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *match(struct matcher *m, const char *s, const char *p);

static const char *balance(struct matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->p_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != *p)
        return NULL;
    char open = p[0], close = p[1];
    int depth = 1;
    const char *start = s;
    while (++s < m->src_end) {
        if (*s == close) {
            if (--depth == 0) {
                step(m, s - start);
                return s + 1;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    step(m, s - start);
    return NULL;
}

static const char *max_expand(struct matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (single(m, s + n, p, ep))
        n++;
    step(m, n);
    for (; n >= 0; n--) {   /* the longest first, then back off one by one */
        const char *r = match(m, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

static const char *min_expand(struct matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r)
            return r;
        if (!single(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->capture[m->level].init = s;
    m->capture[m->level].len = what;
    m->level++;
    const char *r = match(m, s, p);
    if (!r)
        m->level--;
    return r;
}

static const char *close_capture(struct matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->capture[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->capture[l].len = s - m->capture[l].init;
    const char *r = match(m, s, p);
    if (!r)
        m->capture[l].len = CAP_UNFINISHED;
    return r;
}

static const char *back_reference(struct matcher *m, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->capture[l].len == CAP_UNFINISHED)
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    ptrdiff_t len = m->capture[l].len;
    if (len < 0)   /* a position capture matches nothing */
        return NULL;
    step(m, len);
    if (m->src_end - s >= len && memcmp(m->capture[l].init, s, (size_t)len) == 0)
        return s + len;
    return NULL;
}

/* Matches pattern p against the subject at s: the end of the match, or NULL.
 * Plain items loop here; quantifiers and captures recurse. */
static const char *match(struct matcher *m, const char *s, const char *p)
{
    if (++m->depth > MAX_DEPTH)
        luaL_error(m->L, "pattern too complex");
    step(m, 1);
    const char *r = s;
    while (p < m->p_end) {
        if (*p == '(') {
            r = p + 1 < m->p_end && p[1] == ')' ? open_capture(m, s, p + 2, CAP_POSITION)
                                                : open_capture(m, s, p + 1, CAP_UNFINISHED);
            goto out;
        }
        if (*p == ')') {
            r = close_capture(m, s, p + 1);
            goto out;
        }
        if (*p == '$' && p + 1 == m->p_end) {
            r = s == m->src_end ? s : NULL;
            goto out;
        }
        if (*p == ESC && p + 1 < m->p_end) {
            if (p[1] == 'b') {
                s = balance(m, s, p + 2);
                if (!s) {
                    r = NULL;
                    goto out;
                }
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (p >= m->p_end || *p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = class_end(m, p);
                int prev = s == m->src ? 0 : (unsigned char)s[-1];
                int cur = s < m->src_end ? (unsigned char)*s : 0;
                if (!in_set(prev, p, ep - 1) && in_set(cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                r = NULL;
                goto out;
            }
            if (isdigit((unsigned char)p[1])) {
                s = back_reference(m, s, (unsigned char)p[1]);
                if (!s) {
                    r = NULL;
                    goto out;
                }
                p += 2;
                continue;
            }
        }
        const char *ep = class_end(m, p);
        int ok = single(m, s, p, ep);
        char q = ep < m->p_end ? *ep : 0;
        if (q == '?') {
            if (ok && (r = match(m, s + 1, ep + 1)))
                goto out;
            p = ep + 1;
            continue;
        }
        if (q == '+') {
            r = ok ? max_expand(m, s + 1, p, ep) : NULL;
            goto out;
        }
        if (q == '*') {
            r = max_expand(m, s, p, ep);
            goto out;
        }
        if (q == '-') {
            r = min_expand(m, s, p, ep);
            goto out;
        }
        if (!ok) {
            r = NULL;
            goto out;
        }
        s++;
        p = ep;
        step(m, 1);
    }
    r = s;
out:
    m->depth--;
    return r;
}

/* --- captures ----------------------------------------------------------- */

static void push_capture(struct matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));   /* the whole match */
        return;
    }
    ptrdiff_t len = m->capture[i].len;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, (m->capture[i].init - m->src) + 1);
    else
        lua_pushlstring(m->L, m->capture[i].init, (size_t)len);
}

/* Pushes the captures (the whole match when there are none and s is set). */
static int push_captures(struct matcher *m, const char *s, const char *e)
{
    int n = m->level == 0 && s ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

static void matcher_init(struct matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                         size_t lp)
{
    m->L = L;
    m->src = s;
    m->src_end = s + ls;
    m->p_end = p + lp;
    m->steps = 0;
    reset(m);
}

/* --- find, match, gmatch, gsub ------------------------------------------ */

/* A relative initial position (negative: from the end), as 1-based. */
static size_t start_at(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int no_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr(SPECIALS, p[i]))
            return 0;
    return 1;
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_at(luaL_optinteger(L, 3, 1), ls);
    if (init > ls + 1) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        /* memmem is linear (two-way), whatever the needle */
        sandbox_charge(L, (double)(ls - init + 1) * 2);
        const char *hit = memmem(s + init - 1, ls - init + 1, p, lp);
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)((hit - s) + lp));
        return 2;
    }
    struct matcher m;
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    matcher_init(&m, L, s, ls, p, lp);
    const char *s1 = s + init - 1;
    do {
        reset(&m);
        const char *e = match(&m, s1, p);
        if (e) {
            settle(&m);
            if (find) {
                lua_pushinteger(L, (s1 - s) + 1);
                lua_pushinteger(L, e - s);
                return push_captures(&m, NULL, NULL) + 2;
            }
            return push_captures(&m, s1, e);
        }
    } while (s1++ < m.src_end && !anchor);
    settle(&m);
    luaL_pushfail(L);
    return 1;
}

static int b_find(lua_State *L)
{
    return find_aux(L, 1);
}

static int b_match(lua_State *L)
{
    return find_aux(L, 0);
}

/* gmatch's iterator. Upvalues: subject, pattern, next position (0-based),
 * end of the last match (-1: none). '^' is not an anchor here. */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    struct matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    for (const char *src = s + pos; src <= m.src_end; src++) {
        reset(&m);
        const char *e = match(&m, src, p);
        if (e && (last < 0 || e != s + last)) {
            settle(&m);
            lua_pushinteger(L, e - s);
            lua_copy(L, -1, lua_upvalueindex(3));
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&m, src, e);
        }
    }
    settle(&m);
    lua_pushinteger(L, (lua_Integer)ls + 1);   /* done: later calls find nothing */
    lua_replace(L, lua_upvalueindex(3));
    return 0;
}

static int b_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t from = start_at(luaL_optinteger(L, 3, 1), ls) - 1;   /* 0-based */
    if (from > ls)
        from = ls + 1;   /* past the end: nothing matches */
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)from);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* Appends repl (a string) for the match s..e, with %0-%9 and %%. */
static void add_string(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t l;
    const char *r = lua_tolstring(L, 3, &l);
    const char *end = r + l;
    while (r < end) {
        const char *esc = memchr(r, ESC, (size_t)(end - r));
        if (!esc) {
            luaL_addlstring(b, r, (size_t)(end - r));
            break;
        }
        luaL_addlstring(b, r, (size_t)(esc - r));
        esc++;
        if (esc < end && *esc == ESC) {
            luaL_addchar(b, ESC);
        } else if (esc < end && isdigit((unsigned char)*esc)) {
            if (*esc == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_capture(m, *esc - '1', s, e);
                luaL_tolstring(L, -1, NULL);
                lua_remove(L, -2);
                luaL_addvalue(b);
            }
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", ESC);
        }
        r = esc + 1;
    }
}

static void add_value(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;
    if (type == LUA_TNUMBER || type == LUA_TSTRING) {
        add_string(m, b, s, e);
        return;
    }
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {   /* nil or false: keep the original */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int b_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *last = NULL;
    int type = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                            type == LUA_TTABLE, 3, "string/function/table");
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct matcher m;
    matcher_init(&m, L, src, ls, p, lp);
    lua_Integer n = 0;
    int changed = 0;
    while (n < max) {
        reset(&m);
        const char *e = match(&m, src, p);
        if (e && e != last) {
            n++;
            changed = 1;
            add_value(&m, &b, src, e, type);
            src = last = e;
        } else if (src < m.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    settle(&m);
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(m.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* --- string.rep ----------------------------------------------------------- */

static int b_rep(lua_State *L)
{
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {   /* nothing to build, however many times */
        lua_pushliteral(L, "");
        return 1;
    }
    double total = (double)l * (double)n + (double)lsep * (double)(n - 1);
    if (total > (double)INT_MAX)   /* Lua's own limit for one string.rep */
        return luaL_error(L, "resulting string too large");
    sandbox_reserve(L, total);
    size_t size = (size_t)total, unit = l + lsep;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, size);
    memcpy(out, s, l);
    if (n > 1)
        memcpy(out + l, sep, lsep);
    /* doubling: each copy takes everything built so far */
    size_t done = n > 1 ? unit : l;
    while (done < size) {
        size_t k = done <= size - done ? done : size - done;
        memcpy(out + done, out, k);
        done += k;
    }
    luaL_pushresultsize(&b, size);
    return 1;
}

/* --- charged wrappers ------------------------------------------------------ */

/* A closure around the original (upvalue 1) that charges first. */
static int call_original(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static double length_of(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TTABLE ? (double)lua_rawlen(L, idx) : 0;
}

static double range(lua_State *L, int i_arg, int j_arg, double dflt_j)
{
    double i = lua_isnoneornil(L, i_arg) ? 1 : (double)lua_tonumber(L, i_arg);
    double j = lua_isnoneornil(L, j_arg) ? dflt_j : (double)lua_tonumber(L, j_arg);
    return j >= i ? j - i + 1 : 0;
}

static int w_move(lua_State *L)
{
    sandbox_charge(L, 4 * range(L, 2, 3, 0));
    return call_original(L);
}

static int w_concat(lua_State *L)
{
    sandbox_charge(L, 4 * range(L, 3, 4, length_of(L, 1)));
    return call_original(L);
}

static int w_unpack(lua_State *L)
{
    sandbox_charge(L, 2 * range(L, 2, 3, length_of(L, 1)));
    return call_original(L);
}

/* insert(t, pos, v) and remove(t, pos) shift the elements after pos */
static int w_shift(lua_State *L)
{
    double n = length_of(L, 1);
    double pos = lua_gettop(L) >= 3 || (lua_gettop(L) == 2 && lua_isinteger(L, 2))
                     ? (double)lua_tonumber(L, 2) : n;
    sandbox_charge(L, 2 * (n > pos ? n - pos : 0));
    return call_original(L);
}

static int w_sort(lua_State *L)
{
    double n = length_of(L, 1);
    sandbox_charge(L, n > 1 ? 4 * n * log2(n) : 0);
    return call_original(L);
}

static int w_by_length(lua_State *L)
{
    size_t len = 0;
    if (lua_type(L, 1) == LUA_TSTRING)
        lua_tolstring(L, 1, &len);
    sandbox_charge(L, (double)len / 8);
    return call_original(L);
}

/* string.byte(s, i, j) pushes up to a million results */
static int w_byte(lua_State *L)
{
    size_t len = 0;
    if (lua_type(L, 1) == LUA_TSTRING)
        lua_tolstring(L, 1, &len);
    double i = lua_isnoneornil(L, 2) ? 1 : lua_tonumber(L, 2);
    double j = lua_isnoneornil(L, 3) ? i : lua_tonumber(L, 3);
    if (i < 0)
        i += (double)len + 1;
    if (j < 0)
        j += (double)len + 1;
    sandbox_charge(L, j >= i ? 2 * (j - i + 1) : 0);
    return call_original(L);
}

static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void bounded_install(lua_State *L)
{
    static const luaL_Reg own[] = {
        {"find", b_find}, {"match", b_match}, {"gmatch", b_gmatch}, {"gsub", b_gsub},
        {"rep", b_rep}, {NULL, NULL}};
    lua_getglobal(L, "string");
    luaL_setfuncs(L, own, 0);
    lua_pop(L, 1);
    wrap(L, "string", "byte", w_byte);
    wrap(L, "table", "move", w_move);
    wrap(L, "table", "concat", w_concat);
    wrap(L, "table", "unpack", w_unpack);
    wrap(L, "table", "insert", w_shift);
    wrap(L, "table", "remove", w_shift);
    wrap(L, "table", "sort", w_sort);
    wrap(L, "utf8", "len", w_by_length);
    wrap(L, "utf8", "codepoint", w_by_length);
    wrap(L, "utf8", "offset", w_by_length);
}
