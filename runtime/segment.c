/* segment — customer filters compiled to SQL (see segment.h).
 *
 * The compiler walks the filter table once and writes two things side by
 * side: the SQL text and the values its `?` placeholders stand for, in the
 * same order. Nothing a script wrote ever becomes SQL text: field names are
 * looked up in a fixed table and the column name written is ours, values and
 * JSON paths are parameters. So the worst a hostile filter can do is fail to
 * compile.
 *
 * Three-valued logic. SQL's NULL makes `city = 'A'` neither true nor false
 * for a customer with no city. AND and OR keep "NULL" meaning "not matched"
 * all the way up to WHERE (which drops NULL rows), so they need nothing; NOT
 * is the one operator that would turn "not matched" into "still unknown", so
 * every negation is written NOT COALESCE((x), 0): a customer with no city
 * matches not_("A"), as a marketer expects.
 *
 * The walk runs inside lua_pcall: it reads the filter with raw accesses only
 * (a script's metamethods never run), but pushing a key can still hit a
 * memory error, and segment_compile promises never to raise. Every C
 * allocation hangs off the compiler struct, so a Lua error unwinding the walk
 * leaks nothing. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "helpers.h"
#include "segment.h"
#include "util.h"

#define MAX_DEPTH  16       /* nested tables, any/all and not_ wrappers */
#define MAX_PARAMS 30000    /* SQLite's default limit is 32766; leave callers room */
#define MAX_PATH   200      /* bytes after "attrs." */
#define NAME_SHOWN 64       /* a field name longer than this is cut in messages */

/* --- fields ------------------------------------------------------------- */

enum kind { K_TEXT, K_NUM, K_TIME, K_TAGS, K_ATTRS, K_BOUGHT };

static const struct field {
    const char *name;
    enum kind kind;
} fields[] = {
    {"id", K_TEXT}, {"name", K_TEXT}, {"phone", K_TEXT}, {"email", K_TEXT},
    {"city", K_TEXT}, {"region", K_TEXT}, {"timezone", K_TEXT}, {"birthday", K_TEXT},
    {"first_seen_at", K_TIME}, {"first_order_at", K_TIME}, {"last_order_at", K_TIME},
    {"orders_count", K_NUM}, {"total_spent", K_NUM}, {"last_active_at", K_TIME},
    {"lifecycle", K_TEXT}, {"r", K_NUM}, {"f", K_NUM}, {"m", K_NUM}, {"blocked", K_NUM},
    {"tags", K_TAGS}, {"bought", K_BOUGHT}, {NULL, K_TEXT}};

/* What each kind of field wants, for "'x' needs <this>, got ..." */
static const char *const kind_wants[] = {
    [K_TEXT] = "a string",
    [K_NUM] = "a number",
    [K_TIME] = "a time (epoch seconds, ISO-8601 with an offset, or ago(...))",
    [K_TAGS] = "a tag (a string)",
    [K_ATTRS] = "a string, number or boolean",
    [K_BOUGHT] = "{ sku = ... | category = ..., within = seconds, at_least = n }",
};

/* The field a condition is on. */
struct fieldref {
    const char *key;        /* as written, for messages */
    int keylen;
    enum kind kind;
    const char *column;     /* "city"; NULL for attrs */
    char path[MAX_PATH * 2 + 8];    /* attrs: the JSON path, $."baby"."age" */
};

/* --- operators ---------------------------------------------------------- */

enum op { OP_AT_LEAST, OP_AT_MOST, OP_BETWEEN, OP_BEFORE, OP_AFTER, OP_ONE_OF, OP_HAS,
          OP_NOT, OP_ANY, OP_ALL, OP_BOUGHT, OP_COUNT, OP_EQ = OP_COUNT };

static const char *const op_names[OP_COUNT] = {
    "at_least", "at_most", "between", "before", "after", "one_of", "has", "not", "any", "all",
    "bought"};

/* SQL comparison for the ordering operators and equality. */
static const char *op_sql(enum op op)
{
    switch (op) {
    case OP_AT_LEAST: return ">=";
    case OP_AT_MOST:  return "<=";
    case OP_BEFORE:   return "<";
    case OP_AFTER:    return ">";
    default:          return "=";
    }
}

/* --- the compiled query ------------------------------------------------- */

enum ptype { P_INT, P_REAL, P_TEXT };

struct param {
    enum ptype type;
    int64_t i;
    double d;
    char *s;                /* P_TEXT, owned; may hold NUL bytes */
    int len;
};

struct segment_query {
    char *where;
    char *count_sql;        /* a faster COUNT for a filter that is one bought condition, or NULL */
    struct param *params;
    int nparams;
    /* A filter whose top level requires a tag is driven from the tag index
     * (customer_tags_tag: tag, customer, last_order_at): drive_where is the
     * same filter over `dt`, a customer_tags row, joined to customers only
     * when it reads another field (drive_join). NULL when not driven. */
    char *drive_where;
    struct param *drive_params;
    int drive_nparams, drive_join;
};

/* A value read from the filter, not yet a parameter: s points into Lua
 * memory (or buf), valid while the value stays on the Lua stack. */
struct value {
    enum ptype type;
    int64_t i;
    double d;
    const char *s;
    size_t len;
    char buf[48];
};

typedef struct compiler {
    lua_State *L;
    tend_time now;
    strbuf sql;
    struct param *params;
    int nparams, cap;
    /* Scratch for sorting each table's field names (a stack shared by the
     * levels of the walk, so a Lua error leaves nothing to free but this). */
    struct key { const char *s; size_t len; } *keys;
    size_t nkeys, keycap;
    int failed;
    char err[320];
    /* the last bought condition's text: [bought_start, bought_end) of sql */
    size_t bought_start, bought_end;
    int bought_conds;
    int bought_ever;        /* the last bought condition has no within and no at_least */
    /* Driving from the tag index: drivable is set by the first pass when the
     * top level requires a tag; the second pass (drive) writes the filter
     * over dt, its first top-level tag as dt.tag = ?; top_tag is set while
     * a top-level positive tag condition compiles; uses_customers when a
     * condition reads a field the tag row does not carry. */
    int drivable, drive, top_tag, drive_taken, uses_customers;
    /* The last not_'s text, [neg_start, neg_end) of sql; negs: how many;
     * other_fields: a condition reads a field with no index partial on IS
     * NOT NULL (see partial_column), a tag, attrs or bought. */
    size_t neg_start, neg_end;
    int negs, other_fields;
} compiler;

__attribute__((format(printf, 2, 3)))
static int fail(compiler *c, const char *fmt, ...)
{
    int n = snprintf(c->err, sizeof c->err, "segment: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, sizeof c->err - (size_t)n, fmt, ap);
    va_end(ap);
    c->failed = 1;
    return -1;
}

static int shown(size_t len) { return len > NAME_SHOWN ? NAME_SHOWN : (int)len; }

/* Every level of the walk goes through here: the depth limit also stops a
 * table that contains itself. */
static int enter(compiler *c, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(c, "filter nested deeper than %d levels", MAX_DEPTH);
    if (!lua_checkstack(c->L, 8))
        return fail(c, "filter too large");
    return 0;
}

static int wrong_type(compiler *c, const struct fieldref *f, const char *got)
{
    return fail(c, "'%.*s' needs %s, got %s", f->keylen, f->key, kind_wants[f->kind], got);
}

/* --- emitting SQL and parameters ---------------------------------------- */

static void put(compiler *c, const char *s) { strbuf_puts(&c->sql, s); }

static void add_param(compiler *c, const struct param *p)
{
    if (c->nparams == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->params = xrealloc(c->params, (size_t)c->cap * sizeof *c->params);
    }
    c->params[c->nparams++] = *p;
}

/* Writes one `?` and records the value it stands for (copying text out of
 * Lua memory: the query outlives the filter table). */
static void emit_value(compiler *c, const struct value *v)
{
    struct param p = {.type = v->type, .i = v->i, .d = v->d};
    if (v->type == P_TEXT) {
        p.s = xmalloc(v->len + 1);
        memcpy(p.s, v->s, v->len);
        p.s[v->len] = '\0';
        p.len = (int)v->len;
    }
    put(c, "?");
    add_param(c, &p);
}

static void emit_text(compiler *c, const char *s)
{
    struct value v = {.type = P_TEXT, .s = s, .len = strlen(s)};
    emit_value(c, &v);
}

/* The columns whose indexes hold only the customers that have them
 * (schema.c, migration start7_partial_indexes). */
static int partial_column(const char *column)
{
    return column && (!strcmp(column, "city") || !strcmp(column, "region") || !strcmp(column, "last_order_at"));
}

/* The field's SQL expression. */
static void emit_lhs(compiler *c, const struct fieldref *f)
{
    if (f->kind == K_ATTRS || !partial_column(f->column))
        c->other_fields = 1;
    if (c->drive && f->kind == K_TIME && strcmp(f->column, "last_order_at") == 0) {
        put(c, "dt.last_order_at");
        return;
    }
    c->uses_customers = 1;
    if (f->kind != K_ATTRS) {
        strbuf_printf(&c->sql, "customers.%s", f->column);
        return;
    }
    put(c, "json_extract(customers.attrs, ");
    emit_text(c, f->path);
    put(c, ")");
}

/* SQLite orders every number before every string, so without this an
 * attribute holding "unknown" would pass at_least(1). Columns have one type;
 * only JSON attributes need the check. Ends with " AND ". */
static void emit_json_guard(compiler *c, const struct fieldref *f, enum ptype t)
{
    c->uses_customers = 1;
    c->other_fields = 1;
    put(c, "json_type(customers.attrs, ");
    emit_text(c, f->path);
    put(c, t == P_TEXT ? ") = 'text' AND " : ") IN ('integer', 'real') AND ");
}

static void emit_tag_exists(compiler *c)
{
    c->other_fields = 1;
    put(c, c->drive ? "EXISTS (SELECT 1 FROM customer_tags WHERE customer_tags.customer = dt.customer"
                      " AND customer_tags.tag "
                    : "EXISTS (SELECT 1 FROM customer_tags WHERE customer_tags.customer = customers.id"
                      " AND customer_tags.tag ");
}

/* --- reading values ----------------------------------------------------- */

/* Lua's own tostring for numbers, so phone = 13800000000 means "13800000000"
 * and 2.0 means "2.0" as the script would print it. */
static void number_text(lua_State *L, int idx, struct value *v)
{
    if (lua_isinteger(L, idx)) {
        snprintf(v->buf, sizeof v->buf, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        snprintf(v->buf, sizeof v->buf, "%.14g", (double)lua_tonumber(L, idx));
        if (v->buf[strspn(v->buf, "-0123456789")] == '\0')
            strcat(v->buf, ".0");
    }
    v->type = P_TEXT;
    v->s = v->buf;
    v->len = strlen(v->buf);
}

static int read_number(compiler *c, const struct fieldref *f, int idx, struct value *v)
{
    lua_State *L = c->L;
    if (lua_isinteger(L, idx)) {
        v->type = P_INT;
        v->i = lua_tointeger(L, idx);
    } else {
        v->type = P_REAL;
        v->d = lua_tonumber(L, idx);
        if (isnan(v->d))   /* SQLite would bind it as NULL: never equal, never less */
            return wrong_type(c, f, "NaN");
    }
    if (f->kind == K_TEXT || f->kind == K_TAGS)
        number_text(L, idx, v);
    return 0;
}

static int read_string(compiler *c, const struct fieldref *f, int idx, struct value *v)
{
    size_t len;
    const char *s = lua_tolstring(c->L, idx, &len);
    if (len > INT_MAX)
        return fail(c, "a value for '%.*s' is too long", f->keylen, f->key);
    if (f->kind == K_NUM)
        return wrong_type(c, f, "string");
    if (f->kind == K_TIME) {
        tend_time t;
        char why[160];
        if (strlen(s) != len || clock_parse_time(s, &t, why, sizeof why) != 0)
            return fail(c, "'%.*s' needs %s, got the string \"%.*s\"", f->keylen, f->key,
                        kind_wants[K_TIME], shown(len), s);
        v->type = P_INT;
        v->i = t;
        return 0;
    }
    v->type = P_TEXT;
    v->s = s;
    v->len = len;
    return 0;
}

/* Reads the value at idx as a parameter for field f, checking its type. */
static int read_value(compiler *c, const struct fieldref *f, int idx, struct value *v)
{
    lua_State *L = c->L;
    tend_time t;
    if (helpers_resolve_relative(L, idx, c->now, &t)) {
        if (f->kind != K_TIME && f->kind != K_ATTRS)
            return wrong_type(c, f, "a relative time");
        v->type = P_INT;
        v->i = t;
        return 0;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        return read_number(c, f, idx, v);
    case LUA_TSTRING:
        return read_string(c, f, idx, v);
    case LUA_TBOOLEAN:
        if (f->kind != K_NUM && f->kind != K_ATTRS)
            break;
        v->type = P_INT;   /* blocked = true; JSON true reads back as 1 too */
        v->i = lua_toboolean(L, idx);
        return 0;
    case LUA_TTABLE:
        return wrong_type(c, f, helpers_is_filter(L, idx)
                                    ? "a filter operator"
                                    : "table (a list of values is written one_of(...))");
    default:
        break;
    }
    return wrong_type(c, f, luaL_typename(L, idx));
}

/* --- field conditions --------------------------------------------------- */

/* The node's operator; fails on a forged or unknown one. */
static int node_op(compiler *c, int idx, enum op *op)
{
    lua_State *L = c->L;
    lua_pushliteral(L, "op");
    lua_rawget(L, idx);
    size_t len = 0;
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int found = -1;
    for (int i = 0; name && i < OP_COUNT; i++)
        if (strlen(op_names[i]) == len && memcmp(op_names[i], name, len) == 0)
            found = i;
    if (found < 0) {
        if (name)
            fail(c, "unknown operator '%.*s'", shown(len), name);
        else
            fail(c, "a filter operator without a name");
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    *op = (enum op)found;
    return 0;
}

/* The node's item count, 0 when it has none. */
static int node_len(lua_State *L, int idx)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    return n > MAX_PARAMS ? MAX_PARAMS + 1 : (int)n;
}

static int field_cond(compiler *c, const struct fieldref *f, int idx, int depth);

/* field = value, field >= at_least's value, ... */
static int field_compare(compiler *c, const struct fieldref *f, enum op op, int idx)
{
    struct value v;
    if (read_value(c, f, idx, &v) != 0)
        return -1;
    if (f->kind == K_TAGS && c->drive && c->top_tag && !c->drive_taken) {
        c->drive_taken = 1;   /* the driving tag: a range of the index, not a lookup a row */
        put(c, "dt.tag = ");
        emit_value(c, &v);
        return 0;
    }
    if (f->kind == K_TAGS) {
        emit_tag_exists(c);
        put(c, "= ");
        emit_value(c, &v);
        put(c, ")");
        return 0;
    }
    int guard = f->kind == K_ATTRS && op != OP_EQ;
    if (guard) {
        put(c, "(");
        emit_json_guard(c, f, v.type);
    }
    emit_lhs(c, f);
    strbuf_printf(&c->sql, " %s ", op_sql(op));
    emit_value(c, &v);
    if (guard)
        put(c, ")");
    return 0;
}

/* at_least/at_most/before/after(node[1]) and between(node[1], node[2]). */
static int field_order(compiler *c, const struct fieldref *f, enum op op, int node)
{
    lua_State *L = c->L;
    if ((op == OP_BEFORE || op == OP_AFTER) && f->kind != K_TIME && f->kind != K_ATTRS)
        return fail(c, "%s() compares times, and '%.*s' is not a time field",
                    op_names[op], f->keylen, f->key);
    if (op != OP_BETWEEN) {
        lua_rawgeti(L, node, 1);
        int rc = field_compare(c, f, op, lua_gettop(L));
        lua_pop(L, 1);
        return rc;
    }
    lua_rawgeti(L, node, 1);
    lua_rawgeti(L, node, 2);
    struct value lo, hi;
    int rc = -1;
    if (read_value(c, f, lua_gettop(L) - 1, &lo) != 0 || read_value(c, f, lua_gettop(L), &hi) != 0)
        goto done;
    if ((lo.type == P_TEXT) != (hi.type == P_TEXT)) {
        fail(c, "between() on '%.*s' needs two numbers or two strings", f->keylen, f->key);
        goto done;
    }
    put(c, "(");
    if (f->kind == K_ATTRS)
        emit_json_guard(c, f, lo.type);
    emit_lhs(c, f);
    put(c, " BETWEEN ");
    emit_value(c, &lo);
    put(c, " AND ");
    emit_value(c, &hi);
    put(c, ")");
    rc = 0;
done:
    lua_pop(L, 2);
    return rc;
}

/* Writes node's values as "?, ?, ?". */
static int emit_list(compiler *c, const struct fieldref *f, int node, int n)
{
    lua_State *L = c->L;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, node, i);
        struct value v;
        if (read_value(c, f, lua_gettop(L), &v) != 0) {
            lua_pop(L, 1);
            return -1;
        }
        if (i > 1)
            put(c, ", ");
        emit_value(c, &v);
        lua_pop(L, 1);
    }
    return 0;
}

/* one_of(a, b): the field is any of them; for tags, the customer has any. */
static int field_one_of(compiler *c, const struct fieldref *f, int node)
{
    int n = node_len(c->L, node);
    if (n == 0)
        return fail(c, "one_of() for '%.*s' needs at least one value", f->keylen, f->key);
    if (f->kind == K_TAGS)
        emit_tag_exists(c);
    else
        emit_lhs(c, f);
    put(c, " IN (");
    if (emit_list(c, f, node, n) != 0)
        return -1;
    put(c, f->kind == K_TAGS ? "))" : ")");
    return 0;
}

/* has(a, b): the customer has every listed tag. */
static int field_has(compiler *c, const struct fieldref *f, int node)
{
    lua_State *L = c->L;
    if (f->kind != K_TAGS)
        return fail(c, "has() applies to tags, not to '%.*s' (use one_of(...) or a value)",
                    f->keylen, f->key);
    int n = node_len(L, node);
    if (n == 0)
        return fail(c, "has() needs at least one tag");
    if (n > 1)
        put(c, "(");
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            put(c, " AND ");
        lua_rawgeti(L, node, i);
        int rc = field_compare(c, f, OP_EQ, lua_gettop(L));
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    if (n > 1)
        put(c, ")");
    return 0;
}

/* not_(x) on a field: NOT COALESCE, so a NULL field matches (see the top). */
static int field_not(compiler *c, const struct fieldref *f, int node, int depth)
{
    lua_State *L = c->L;
    lua_rawgeti(L, node, 1);
    c->negs++;
    c->neg_start = c->sql.len;
    put(c, "NOT COALESCE((");
    int top_tag = c->top_tag;
    c->top_tag = 0;   /* not_("vip") cannot drive */
    int rc = field_cond(c, f, lua_gettop(L), depth + 1);
    c->top_tag = top_tag;
    put(c, "), 0)");
    c->neg_end = c->sql.len;
    lua_pop(L, 1);
    return rc;
}

/* --- bought ------------------------------------------------------------- */

/* A whole number read raw from the spec at idx, key k; 1 found, 0 absent. */
static int spec_int(compiler *c, int idx, const char *k, lua_Integer min, lua_Integer *out)
{
    lua_State *L = c->L;
    lua_pushstring(L, k);
    int t = lua_rawget(L, idx);
    int ok = 0;
    if (t != LUA_TNIL) {
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < min) {
            lua_pop(L, 1);
            return fail(c, "bought: '%s' must be a whole number of at least %lld%s", k, (long long)min,
                        strcmp(k, "within") == 0 ? " (seconds: days(30))" : "");
        }
        *out = v;
    }
    lua_pop(L, 1);
    return t != LUA_TNIL;
}

/* bought = { sku = s | category = k, within = seconds, at_least = n }: the
 * customer is among those the bought table has for that key: a range of the
 * index bought_recent, narrowed by last_at for `within`; with at_least, a
 * range of the partial index bought_repeat (kind, key, orders, prev_at),
 * the facts of two orders or more. at_least = 2 within a window is prev_at
 * (the latest order but one) in it; a larger count within a window needs
 * the lines: the customer's order_items, by their key, only for the
 * customers the facts leave. Alone, bought ever counts from bought_counts
 * (segment_compile). */
static int bought_cond(compiler *c, int idx)
{
    lua_State *L = c->L;
    if (!lua_istable(L, idx) || helpers_is_filter(L, idx))
        return fail(c, "bought needs %s, got %s", kind_wants[K_BOUGHT],
                    lua_istable(L, idx) ? "a filter operator" : luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        size_t len = 0;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        static const char *const known[] = {"sku", "category", "within", "at_least", NULL};
        int found = 0;
        for (int i = 0; k && known[i]; i++)
            found |= strlen(known[i]) == len && memcmp(known[i], k, len) == 0;
        if (!found) {
            if (k)
                fail(c, "bought: unknown key '%.*s' (known: sku, category, within, at_least)", shown(len), k);
            else
                fail(c, "bought: keys are sku, category, within and at_least");
            lua_pop(L, 1);
            return -1;
        }
    }
    const char *col = NULL;
    int kind = 0;
    struct value key = {.type = P_TEXT};
    static const char *const keys[] = {"sku", "category"};
    for (int i = 0; i < 2; i++) {
        lua_pushstring(L, keys[i]);
        int t = lua_rawget(L, idx);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        if (col) {
            lua_pop(L, 1);
            return fail(c, "bought: give sku or category, not both");
        }
        if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
            snprintf(key.buf, sizeof key.buf, "%lld", (long long)lua_tointeger(L, -1));
            key.s = key.buf;
            key.len = strlen(key.buf);
        } else if (t == LUA_TSTRING) {
            key.s = lua_tolstring(L, -1, &key.len);   /* kept alive: the spec holds it */
        } else {
            lua_pop(L, 1);
            return fail(c, "bought: '%s' must be a string, got %s", keys[i], lua_typename(L, t));
        }
        lua_pop(L, 1);
        col = keys[i];
        kind = i;
    }
    if (!col)
        return fail(c, "bought needs sku = ... or category = ...");
    lua_Integer within = 0, at_least = 1;
    int has_within = spec_int(c, idx, "within", 1, &within);
    if (has_within < 0 || spec_int(c, idx, "at_least", 1, &at_least) < 0)
        return -1;
    struct value v_kind = {.type = P_INT, .i = kind}, v_since = {.type = P_INT, .i = c->now - within},
                 v_least = {.type = P_INT, .i = at_least};
    c->bought_conds++;
    c->other_fields = 1;
    c->bought_start = c->sql.len;
    put(c, c->drive ? "dt.customer IN (SELECT b.customer FROM bought b WHERE b.kind = "
                    : "customers.id IN (SELECT b.customer FROM bought b WHERE b.kind = ");
    emit_value(c, &v_kind);
    put(c, " AND b.key = ");
    emit_value(c, &key);
    if (at_least > 1) {
        /* the literal 2 is what lets SQLite read the partial index
         * bought_repeat (WHERE orders >= 2); prev_at >= since: two of the
         * orders with the key are within the window */
        put(c, " AND b.orders >= 2 AND b.orders >= ");
        emit_value(c, &v_least);
        if (has_within) {
            put(c, " AND b.prev_at >= ");
            emit_value(c, &v_since);
        }
    } else if (has_within) {
        put(c, " AND b.last_at >= ");
        emit_value(c, &v_since);
    }
    c->bought_ever = !has_within && at_least == 1;
    if (has_within && at_least > 2) {
        strbuf_printf(&c->sql, " AND (SELECT COUNT(DISTINCT i.order_id) FROM order_items i"
                               " WHERE i.customer = b.customer AND i.%s = ", col);
        emit_value(c, &key);
        put(c, " AND i.at >= ");
        emit_value(c, &v_since);
        put(c, ") >= ");
        emit_value(c, &v_least);
    }
    put(c, ")");
    c->bought_end = c->sql.len;
    return 0;
}

/* The argument of a bought{...} node at idx. */
static int bought_node(compiler *c, int node)
{
    lua_rawgeti(c->L, node, 1);
    int rc = bought_cond(c, lua_gettop(c->L));
    lua_pop(c->L, 1);
    return rc;
}

/* The condition `f = <value at idx>`, the value being a plain value or an
 * operator node. */
static int field_cond(compiler *c, const struct fieldref *f, int idx, int depth)
{
    if (enter(c, depth) != 0)
        return -1;
    if (!helpers_is_filter(c->L, idx))
        return f->kind == K_BOUGHT ? bought_cond(c, idx) : field_compare(c, f, OP_EQ, idx);
    enum op op;
    if (node_op(c, idx, &op) != 0)
        return -1;
    if (f->kind == K_BOUGHT && op != OP_NOT && op != OP_BOUGHT)
        return fail(c, "%s() does not apply to bought (use bought = { sku = ..., within = ... } or not_)",
                    op_names[op]);
    switch (op) {
    case OP_NOT:
        return field_not(c, f, idx, depth);
    case OP_BOUGHT:
        if (f->kind != K_BOUGHT)
            return fail(c, "'%.*s' = bought{...}: bought is a condition of its own; put it in the "
                        "filter's list or write bought = {...}", f->keylen, f->key);
        return bought_node(c, idx);
    case OP_ANY:
    case OP_ALL:
        return fail(c, "'%.*s' = %s{...}: any/all combine whole filters; put it in the "
                    "filter's list, e.g. %s{ {%.*s = 1}, {...} }", f->keylen, f->key,
                    op_names[op], op_names[op], f->keylen, f->key);
    case OP_ONE_OF:
        return field_one_of(c, f, idx);
    case OP_HAS:
        return field_has(c, f, idx);
    default:
        if (f->kind == K_TAGS)
            return fail(c, "%s() does not apply to tags (use a tag, has, one_of or not_)",
                        op_names[op]);
        return field_order(c, f, op, idx);
    }
}

/* --- field names -------------------------------------------------------- */

static int is_path_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* "baby.age" → $."baby"."age". Each key is quoted so a key such as "0" or
 * "a-b" names an object member; the character check keeps quotes out. */
static int attrs_path(compiler *c, struct fieldref *f, const char *p, size_t len)
{
    if (len == 0 || len > MAX_PATH)
        return fail(c, "'%.*s': an attribute path is attrs.<key>[.<key>...] (keys of "
                    "letters, digits, _ and -, at most %d bytes)", f->keylen, f->key, MAX_PATH);
    char *out = f->path;
    out += sprintf(out, "$.\"");
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '.' && i > 0 && i + 1 < len && p[i + 1] != '.') {
            out += sprintf(out, "\".\"");
        } else if (is_path_char(p[i])) {
            *out++ = p[i];
        } else {
            return fail(c, "'%.*s' is not a valid attribute path (keys of letters, digits, _ "
                        "and -, separated by single dots)", f->keylen, f->key);
        }
    }
    strcpy(out, "\"");
    return 0;
}

static int unknown_field(compiler *c, const char *key, size_t len)
{
    strbuf known;
    strbuf_init(&known);
    for (const struct field *fd = fields; fd->name; fd++)
        strbuf_printf(&known, "%s, ", fd->name);
    strbuf_puts(&known, "attrs.<path>");
    fail(c, "field '%.*s' is not a customer field (known: %s)", shown(len), key, known.s);
    strbuf_free(&known);
    return -1;
}

static int lookup_field(compiler *c, const char *key, size_t len, struct fieldref *f)
{
    f->key = key;
    f->keylen = shown(len);
    f->column = NULL;
    if (len >= 5 && memcmp(key, "attrs", 5) == 0 && (len == 5 || key[5] == '.')) {
        f->kind = K_ATTRS;
        return attrs_path(c, f, key + 6, len > 5 ? len - 6 : 0);
    }
    for (const struct field *fd = fields; fd->name; fd++) {
        if (strlen(fd->name) == len && memcmp(fd->name, key, len) == 0) {
            f->kind = fd->kind;
            f->column = fd->name;
            return 0;
        }
    }
    return unknown_field(c, key, len);
}

/* --- filters ------------------------------------------------------------ */

static int filter_item(compiler *c, int idx, int depth, const char *what);

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    int r = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static void push_key(compiler *c, const char *s, size_t len)
{
    if (c->nkeys == c->keycap) {
        c->keycap = c->keycap ? c->keycap * 2 : 16;
        c->keys = xrealloc(c->keys, c->keycap * sizeof *c->keys);
    }
    c->keys[c->nkeys++] = (struct key){s, len};
}

/* Sorts the table's keys: field names onto c->keys (sorted, so the same
 * filter always compiles to the same SQL whatever Lua's hash order), list
 * positions counted into *nitems, which must run 1..n. */
static int scan_keys(compiler *c, int idx, lua_Integer *nitems)
{
    lua_State *L = c->L;
    size_t base = c->nkeys;
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);   /* no conversion: already a string */
            push_key(c, s, len);
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            count++;
            if (lua_tointeger(L, -1) > max)
                max = lua_tointeger(L, -1);
        } else {
            int num = lua_type(L, -1) == LUA_TNUMBER;
            fail(c, "a filter's keys are field names and list positions 1..n, not %s",
                 !num ? luaL_typename(L, -1)
                 : lua_isinteger(L, -1) ? "a position below 1" : "a fractional number");
            lua_pop(L, 1);
            return -1;
        }
    }
    if (max != count)
        return fail(c, "a filter's list must run 1..n with no gaps");
    if (c->nkeys - base > 1)
        qsort(c->keys + base, c->nkeys - base, sizeof *c->keys, key_cmp);
    *nitems = count;
    return 0;
}

static void join(compiler *c, int i, int n, const char *sep)
{
    if (n > 1)
        put(c, i == 0 ? "(" : sep);
}

/* A tag condition that requires one tag: a plain value or has(...). */
static int positive_tags(compiler *c, int idx)
{
    if (!helpers_is_filter(c->L, idx))
        return lua_type(c->L, idx) == LUA_TSTRING || lua_type(c->L, idx) == LUA_TNUMBER;
    lua_pushliteral(c->L, "op");
    lua_rawget(c->L, idx);
    int has = lua_type(c->L, -1) == LUA_TSTRING && strcmp(lua_tostring(c->L, -1), "has") == 0;
    lua_pop(c->L, 1);
    return has;
}

/* A plain table: every field condition and every list item holds. */
static int filter_table(compiler *c, int idx, int depth)
{
    lua_State *L = c->L;
    size_t base = c->nkeys;
    lua_Integer nitems = 0;
    if (scan_keys(c, idx, &nitems) != 0)
        return -1;
    int nkeys = (int)(c->nkeys - base), n = nkeys + (int)nitems;
    if (n == 0)
        put(c, "1");
    for (int i = 0; i < nkeys; i++) {
        struct key k = c->keys[base + (size_t)i];   /* a copy: nested levels may move keys */
        struct fieldref f;
        if (lookup_field(c, k.s, k.len, &f) != 0)
            return -1;
        join(c, i, n, " AND ");
        lua_pushlstring(L, k.s, k.len);
        lua_rawget(L, idx);
        /* tags = "vip" or has("vip", ...) at the top: every match has that
         * tag row, so the tag index can drive the query */
        c->top_tag = depth == 0 && f.kind == K_TAGS && positive_tags(c, lua_gettop(L));
        if (c->top_tag)
            c->drivable = 1;
        int rc = field_cond(c, &f, lua_gettop(L), depth + 1);
        c->top_tag = 0;
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    for (lua_Integer i = 1; i <= nitems; i++) {
        join(c, nkeys + (int)i - 1, n, " AND ");
        lua_rawgeti(L, idx, i);
        int rc = filter_item(c, lua_gettop(L), depth + 1, "an item of a filter's list");
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    if (n > 1)
        put(c, ")");
    c->nkeys = base;
    return 0;
}

/* any{...} / all{...}: a list of filters joined by OR / AND. */
static int filter_group(compiler *c, int node, enum op op, int depth)
{
    lua_State *L = c->L;
    int n = node_len(L, node);
    if (n == 0)
        put(c, op == OP_ANY ? "0" : "1");   /* the empty OR / AND */
    for (int i = 1; i <= n; i++) {
        join(c, i - 1, n, op == OP_ANY ? " OR " : " AND ");
        lua_rawgeti(L, node, i);
        int rc = filter_item(c, lua_gettop(L), depth + 1,
                             op == OP_ANY ? "an item of any{...}" : "an item of all{...}");
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    if (n > 1)
        put(c, ")");
    return 0;
}

/* not_{ ... }: the nested filter does not match. */
static int filter_not(compiler *c, int node, int depth)
{
    lua_State *L = c->L;
    lua_rawgeti(L, node, 1);
    c->negs++;
    c->neg_start = c->sql.len;
    put(c, "NOT COALESCE((");
    int rc = filter_item(c, lua_gettop(L), depth + 1, "the argument of not_ in a filter's list");
    put(c, "), 0)");
    c->neg_end = c->sql.len;
    lua_pop(L, 1);
    return rc;
}

/* A filter: a plain table, or an any/all/not_ node over filters. */
static int filter_item(compiler *c, int idx, int depth, const char *what)
{
    lua_State *L = c->L;
    if (enter(c, depth) != 0)
        return -1;
    if (!lua_istable(L, idx))
        return fail(c, "%s must be a filter table, got %s", what, luaL_typename(L, idx));
    if (!helpers_is_filter(L, idx))
        return filter_table(c, idx, depth);
    enum op op;
    if (node_op(c, idx, &op) != 0)
        return -1;
    switch (op) {
    case OP_ANY:
    case OP_ALL:
        return filter_group(c, idx, op, depth);
    case OP_NOT:
        return filter_not(c, idx, depth);
    case OP_BOUGHT:
        return bought_node(c, idx);
    default:
        return fail(c, "%s(...) needs a field: write { field = %s(...) }", op_names[op],
                    op_names[op]);
    }
}

/* --- compiling ---------------------------------------------------------- */

static int compile_protected(lua_State *L)
{
    compiler *c = lua_touserdata(L, 1);
    if (filter_item(c, 2, 0, "a segment filter") == 0 && c->nparams > MAX_PARAMS)
        fail(c, "filter has %d values; at most %d are allowed", c->nparams, MAX_PARAMS);
    return 0;
}

static void free_params(struct param *p, int n)
{
    for (int i = 0; i < n; i++)
        free(p[i].s);
    free(p);
}

/* One walk of the filter at idx into c (c->failed says how it went). */
static void compile_pass(compiler *c, int idx)
{
    lua_State *L = c->L;
    strbuf_init(&c->sql);
    int top = lua_gettop(L);
    int status = LUA_ERRMEM;
    /* Nothing here allocates in Lua before lua_pcall: a light C function,
     * a light userdata and a copy of a value. */
    if (lua_checkstack(L, 3)) {
        lua_pushcfunction(L, compile_protected);
        lua_pushlightuserdata(L, c);
        lua_pushvalue(L, idx);
        status = lua_pcall(L, 2, 0, 0);
    }
    if (status != LUA_OK) {
        const char *msg = lua_gettop(L) > top ? lua_tostring(L, -1) : NULL;
        fail(c, "%s", msg ? msg : "not enough memory");
    }
    lua_settop(L, top);
    free(c->keys);
    c->keys = NULL;
}

segment_query *segment_compile(lua_State *L, int idx, tend_time now, char *err, size_t errlen)
{
    compiler c = {.L = L, .now = now};
    idx = lua_absindex(L, idx);
    compile_pass(&c, idx);
    if (c.failed) {
        if (err && errlen)
            snprintf(err, errlen, "%s", c.err);
        strbuf_free(&c.sql);
        free_params(c.params, c.nparams);
        return NULL;
    }
    segment_query *q = xmalloc(sizeof *q);
    q->count_sql = NULL;
    /* A filter that is one bought condition and nothing else counts from
     * the bought table alone: one row per customer and key, and a customer
     * row exists for every fact (lines are stored after the event made the
     * customer; customers are never deleted without their facts). This
     * skips a lookup in customers per match (10x at 10M customers). */
    static const char in_head[] = "customers.id IN (";
    /* Bought ever (no within, no at_least): the customers with a fact for
     * the key, kept in bought_counts by triggers; its parameters are the
     * condition's own (kind, key). */
    static const char ever_count[] = "COALESCE((SELECT n.customers FROM bought_counts n WHERE n.kind = ? AND n.key = ?), 0)";
    if (c.bought_conds == 1 && c.bought_start == 0 && c.bought_end == c.sql.len)
        q->count_sql = c.bought_ever ? xasprintf("SELECT %s", ever_count)
                                     : xasprintf("SELECT COUNT(*) FROM (%.*s)", (int)(c.sql.len - sizeof in_head),
                                                 c.sql.s + sizeof in_head - 1);
    /* not_(bought{...}) alone: every customer but those, by the same
     * reasoning (one scan of the smallest customers index, not a lookup in
     * the facts per customer: 50x at 2M customers). */
    static const char not_head[] = "NOT COALESCE((", not_tail[] = "), 0)";
    if (c.bought_conds == 1 && c.bought_start == sizeof not_head - 1 &&
        c.bought_end == c.sql.len - (sizeof not_tail - 1) && memcmp(c.sql.s, not_head, sizeof not_head - 1) == 0)
        q->count_sql = c.bought_ever
            ? xasprintf("SELECT (SELECT COUNT(*) FROM customers) - %s", ever_count)
            : xasprintf("SELECT (SELECT COUNT(*) FROM customers) - (SELECT COUNT(*) FROM (%.*s))",
                        (int)(c.bought_end - c.bought_start - sizeof in_head),
                        c.sql.s + c.bought_start + sizeof in_head - 1);
    /* A filter that is one not_ over city, region and last_order_at alone
     * counts as every customer but those it negates: a COUNT(*) of the
     * negation itself would read every customer row, since the indexes on
     * those columns hold only the customers that have them (a customer
     * with no city matches not_("A")); the count of what is negated is a
     * search of them, and the total a scan of the smallest full index.
     * NOT COALESCE((x), 0) holds exactly where x is not true, so the two
     * counts differ by it; the parameters are the filter's, in order. */
    static const char neg_head[] = "NOT COALESCE((", neg_tail[] = "), 0)";
    if (!q->count_sql && c.negs == 1 && !c.other_fields && c.neg_start == 0 && c.neg_end == c.sql.len)
        q->count_sql = xasprintf("SELECT (SELECT COUNT(*) FROM customers) - (SELECT COUNT(*) FROM customers WHERE %.*s)",
                                 (int)(c.sql.len - (sizeof neg_head - 1) - (sizeof neg_tail - 1)),
                                 c.sql.s + sizeof neg_head - 1);
    q->where = strbuf_take(&c.sql);
    q->params = c.params;
    q->nparams = c.nparams;
    q->drive_where = NULL;
    q->drive_params = NULL;
    q->drive_nparams = q->drive_join = 0;
    if (c.drivable) {
        /* The same filter again, over the tag row: it compiled once, so it
         * compiles again (a failure here only loses the faster plan). */
        compiler d = {.L = L, .now = now, .drive = 1};
        compile_pass(&d, idx);
        if (!d.failed && d.drive_taken) {
            q->drive_where = strbuf_take(&d.sql);
            q->drive_params = d.params;
            q->drive_nparams = d.nparams;
            q->drive_join = d.uses_customers;
        } else {
            strbuf_free(&d.sql);
            free_params(d.params, d.nparams);
        }
    }
    return q;
}

void segment_query_free(segment_query *q)
{
    if (!q)
        return;
    free(q->where);
    free(q->count_sql);
    free_params(q->params, q->nparams);
    free(q->drive_where);
    free_params(q->drive_params, q->drive_nparams);
    free(q);
}

const char *segment_query_where(const segment_query *q) { return q->where; }
int segment_query_nparams(const segment_query *q) { return q->nparams; }
const char *segment_query_count_sql(const segment_query *q) { return q->count_sql; }

static int bind_params(const struct param *params, int n, store_stmt *s, int first)
{
    for (int i = 0; i < n; i++) {
        const struct param *p = &params[i];
        int rc = p->type == P_INT    ? store_bind_int(s, first + i, p->i)
                 : p->type == P_REAL ? store_bind_double(s, first + i, p->d)
                                     : store_bind_text(s, first + i, p->s, p->len);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int segment_query_bind(const segment_query *q, store_stmt *s, int first)
{
    return bind_params(q->params, q->nparams, s, first);
}

/* --- running ------------------------------------------------------------ */

/* Prepares head + where + tail with the where's parameters bound from 1. */
static store_stmt *prepare(store *st, const segment_query *q, const char *head, const char *tail)
{
    char *sql = xasprintf("%s%s%s", head, q->where, tail);
    store_stmt *s = store_prepare(st, sql);
    free(sql);
    if (s && segment_query_bind(q, s, 1) != 0) {
        store_finalize(s);
        return NULL;
    }
    return s;
}

/* head + the driven filter + tail, over customer_tags dt (joined to
 * customers when the filter reads them), parameters bound from 1. A count
 * takes the planner's index (tag, last_order_at for a time range); a page
 * is customer_tags_tag, already in customer order, whatever the planner
 * thinks of a sort. */
static store_stmt *prepare_driven(store *st, const segment_query *q, const char *head, const char *index,
                                  const char *tail)
{
    char *sql = xasprintf("%s FROM customer_tags dt%s%s WHERE (%s)%s", head, index,
                          q->drive_join ? " JOIN customers ON customers.id = dt.customer" : "",
                          q->drive_where, tail);
    store_stmt *s = store_prepare(st, sql);
    free(sql);
    if (s && bind_params(q->drive_params, q->drive_nparams, s, 1) != 0) {
        store_finalize(s);
        return NULL;
    }
    return s;
}

int64_t segment_count(store *st, const segment_query *q)
{
    /* A tag row exists only for a customer who exists (tags are written
     * with or after their customer; customers are never deleted), so
     * counting tag rows without the join counts customers. */
    store_stmt *s = q->drive_where ? prepare_driven(st, q, "SELECT COUNT(*)", "", "")
                  : q->count_sql ? store_prepare(st, q->count_sql)
                                 : prepare(st, q, "SELECT COUNT(*) FROM customers WHERE ", "");
    if (s && !q->drive_where && q->count_sql && segment_query_bind(q, s, 1) != 0) {
        store_finalize(s);
        s = NULL;
    }
    if (!s)
        return -1;
    int64_t n = store_step(s) == STORE_ROW ? store_col_int(s, 0) : -1;
    store_finalize(s);
    return n;
}

/* The whole page is read and the statement finalized before fn sees the
 * first id: fn may then write to the store (start a journey, tag the
 * customer) with no read statement open under it — store_commit resets busy
 * statements, which would otherwise restart this one from the top. */
int segment_page(store *st, const segment_query *q, const char *after, int limit,
                 segment_id_fn fn, void *ud)
{
    if (limit <= 0)
        return 0;
    /* Driven: the tag index in customer order is already the page order. */
    store_stmt *s = q->drive_where
        ? prepare_driven(st, q, "SELECT dt.customer", " INDEXED BY customer_tags_tag",
                         " AND dt.customer > ? ORDER BY dt.customer LIMIT ?")
        : prepare(st, q, "SELECT id FROM customers WHERE (", ") AND id > ? ORDER BY id LIMIT ?");
    if (!s)
        return -1;
    int np = q->drive_where ? q->drive_nparams : q->nparams;
    store_bind_text(s, np + 1, after ? after : "", -1);
    store_bind_int(s, np + 2, limit);
    strbuf ids;   /* NUL-separated */
    strbuf_init(&ids);
    int n = 0, rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        const char *id = store_col_text(s, 0);
        strbuf_add(&ids, id ? id : "", id ? strlen(id) + 1 : 1);
        n++;
    }
    store_finalize(s);
    if (rc == STORE_ERROR) {
        strbuf_free(&ids);
        return -1;
    }
    for (size_t off = 0; off < ids.len; off += strlen(ids.s + off) + 1)
        fn(ids.s + off, ud);
    strbuf_free(&ids);
    return n;
}

int segment_matches(store *st, const segment_query *q, const char *id)
{
    store_stmt *s = prepare(st, q, "SELECT 1 FROM customers WHERE (", ") AND id = ?");
    if (!s)
        return -1;
    store_bind_text(s, q->nparams + 1, id, -1);
    int rc = store_step(s);
    store_finalize(s);
    return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}
