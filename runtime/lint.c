/* lint — template and send checks for `tend check` (see lint.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bytecode.h"
#include "catalog.h"
#include "channel.h"
#include "dates.h"
#include "json.h"
#include "lint.h"
#include "segment.h"
#include "template.h"
#include "util.h"

struct lint {
    engine *e;
    lint_report_fn report;
    void *ud;
    int errors, warnings;
    const char *where;
};

static void say(struct lint *l, int error, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(struct lint *l, int error, const char *where, const char *fmt, ...)
{
    strbuf b;
    strbuf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    l->report(l->ud, error, where, b.s);
    strbuf_free(&b);
    if (error)
        l->errors++;
    else
        l->warnings++;
}

/* Fields every template can use without the send passing them. */
static int customer_field(const char *root)
{
    static const char *const known[] = {"id", "name", "phone", "email", "city", "region", "timezone",
        "birthday", "first_seen_at", "first_order_at", "last_order_at", "orders_count", "total_spent",
        "last_active_at", "lifecycle", "r", "f", "m", "attrs", NULL};
    for (const char *const *k = known; *k; k++)
        if (strcmp(*k, root) == 0)
            return 1;
    return 0;
}

/* --- the channel's lint settings ----------------------------------------- */

struct channel_lint {
    int sms, max_segments;
    double price;
    char **blocked;
};

static void channel_lint_read(engine *e, const char *name, struct channel_lint *c)
{
    lua_State *L = sandbox_state(e->sb);
    struct channel_info info;
    memset(c, 0, sizeof *c);
    channel_push(e, name, &info);
    c->price = info.price;
    c->sms = strstr(name, "sms") != NULL || info.per_segment;
    c->max_segments = 1;
    if (lua_istable(L, -1)) {
        if (lua_getfield(L, -1, "max_segments") == LUA_TNUMBER)
            c->max_segments = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "blocked_words") == LUA_TTABLE) {
            int n = (int)lua_rawlen(L, -1);
            c->blocked = xcalloc((size_t)n + 1, sizeof *c->blocked);
            for (int i = 1, k = 0; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_isstring(L, -1))
                    c->blocked[k++] = xstrdup(lua_tostring(L, -1));
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void channel_lint_free(struct channel_lint *c)
{
    for (char **p = c->blocked; p && *p; p++)
        free(*p);
    free(c->blocked);
}

/* --- templates ----------------------------------------------------------- */

struct text_ctx {
    struct lint *l;
    const char *where, *template_name, *channel;
};

static void on_finding(enum lint_level level, size_t offset, const char *message, void *ud)
{
    struct text_ctx *t = ud;
    (void)offset;
    say(t->l, level == LINT_ERROR, t->where, "template '%s' (%s): %s", t->template_name, t->channel, message);
}

/* A stand-in for each variable the sample does not give: 8 characters, about
 * a name or a coupon code, so the length is measured on a believable text. */
static void fill_missing(const char *path, int fine, size_t offset, void *ud)
{
    cJSON *obj = ud;
    (void)offset;
    if (fine || strchr(path, '['))
        return;
    char part[128];
    const char *p = path;
    for (;;) {
        size_t n = strcspn(p, ".");
        snprintf(part, sizeof part, "%.*s", (int)n, p);
        cJSON *child = cJSON_GetObjectItemCaseSensitive(obj, part);
        if (!p[n]) {
            if (!child)
                cJSON_AddStringToObject(obj, part, "XXXXXXXX");
            return;
        }
        if (!child)
            child = cJSON_AddObjectToObject(obj, part);
        if (!cJSON_IsObject(child))
            return;
        obj = child;
        p += n + 1;
    }
}

/* The vars a sample render sees: a default customer, the template's
 * `sample = {...}` over it, stand-ins for the rest. */
static cJSON *sample_vars(struct lint *l, const char *text, int sample_idx)
{
    lua_State *L = sandbox_state(l->e->sb);
    cJSON *v = cJSON_Parse("{\"id\":\"c1\",\"name\":\"Alex\",\"phone\":\"13800000000\","
                           "\"email\":\"alex@example.com\",\"city\":\"Shanghai\",\"region\":\"Shanghai\","
                           "\"birthday\":\"1990-05-17\",\"orders_count\":1,\"total_spent\":199,"
                           "\"lifecycle\":\"new\",\"r\":3,\"f\":1,\"m\":2,\"tags\":[],\"attrs\":{}}");
    cJSON_AddStringToObject(v, "timezone", l->e->cfg.timezone);
    if (sample_idx && lua_istable(L, sample_idx)) {
        char err[200];
        cJSON *s = json_from_lua(L, sample_idx, err, sizeof err);
        const cJSON *k;
        cJSON_ArrayForEach(k, s) {
            cJSON_DeleteItemFromObjectCaseSensitive(v, k->string);
            cJSON_AddItemToObject(v, k->string, cJSON_Duplicate(k, 1));
        }
        cJSON_Delete(s);
    }
    template_vars(text, fill_missing, v, NULL, 0);
    return v;
}

static void lint_text(struct lint *l, const char *where, const char *tname, const char *channel,
                      const char *text, int sample_idx)
{
    struct channel_lint c;
    channel_lint_read(l->e, channel, &c);
    struct text_ctx t = {l, where, tname, channel};
    /* Links and words in what the author wrote (an output is one "X", so a
     * placeholder inside a link leaves the link whole); the length of a
     * rendered sample, which is what the customer gets. */
    char *skeleton = template_skeleton(text);
    if (c.sms && skeleton) {
        template_lint_sms(skeleton, (const char *const *)c.blocked, 0, 0, on_finding, &t);
        cJSON *vars = sample_vars(l, text, sample_idx);
        char err[300];
        struct template_env env = {l->e->cfg.timezone, l->e->cfg.currency, engine_now(l->e)};
        template_prog *p = template_compile(text, 0, err, sizeof err);
        char *out = p ? template_run(p, vars, &env, err, sizeof err) : NULL;
        if (out)
            template_lint_sms(out, NULL, c.max_segments, c.price, on_finding, &t);
        else
            say(l, 0, where, "template '%s' (%s): a sample does not render, so its length is not "
                "checked: %s (give the template sample = {...})", tname, channel, err);
        free(out);
        template_free(p);
        cJSON_Delete(vars);
    } else if (c.blocked && skeleton) {
        template_lint_words(skeleton, (const char *const *)c.blocked, on_finding, &t);
    }
    free(skeleton);
    channel_lint_free(&c);
}

static void lint_templates(struct lint *l)
{
    lua_State *L = sandbox_state(l->e->sb);
    int top = lua_gettop(L);
    catalog_push_all(l->e, "templates");
    lua_pushnil(L);
    while (lua_next(L, top + 1)) {
        const char *name = lua_tostring(L, -2);
        char where[300];
        catalog_where(l->e, lua_gettop(L), where, sizeof where);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *k = lua_tostring(L, -2);
            if (strcmp(k, "category") && strcmp(k, "on_cap") && strcmp(k, "priority") && strcmp(k, "name") &&
                strcmp(k, "version") && strcmp(k, "declared_at") && strcmp(k, "sample") &&
                strcmp(k, "compiled")) {
                lua_getfield(L, -3, "sample");
                int sample = lua_istable(L, -1) ? lua_gettop(L) : 0;
                if (lua_isstring(L, -2)) {
                    lint_text(l, where, name, k, lua_tostring(L, -2), sample);
                } else if (lua_istable(L, -2)) {
                    static const char *const parts[] = {"subject", "body", "text", "html"};
                    for (int i = 0; i < 4; i++) {
                        if (lua_getfield(L, -2, parts[i]) == LUA_TSTRING)
                            lint_text(l, where, name, k, lua_tostring(L, -1), sample);
                        lua_pop(L, 1);
                    }
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
}

/* --- send sites ------------------------------------------------------------ */

/* A Lua string literal at p ('..' or ".."); its contents into out. */
static const char *string_literal(const char *p, char *out, size_t n)
{
    char q = *p;
    if (q != '"' && q != '\'')
        return NULL;
    size_t k = 0;
    for (p++; *p && *p != q; p++) {
        if (*p == '\\' || *p == '\n')
            return NULL;   /* escapes: not a plain literal, not knowable */
        if (k + 1 < n)
            out[k++] = *p;
    }
    out[k] = 0;
    return *p == q ? p + 1 : NULL;
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Skips one argument expression up to the ',' or ')' at depth 0. */
static const char *skip_arg(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (*p == '"' || *p == '\'') {
            char q = *p;
            for (p++; *p && *p != q; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return p;
        } else if (*p == '(' || *p == '{' || *p == '[') {
            depth++;
        } else if (*p == ')' || *p == '}' || *p == ']') {
            if (depth == 0)
                return p;
            depth--;
        } else if (*p == ',' && depth == 0) {
            return p;
        }
    }
    return p;
}

/* The top-level keys of a table constructor at p ('{'): "a = ...", ["a"] = ... */
static const char *table_keys(const char *p, strbuf *keys)
{
    p++;
    for (;;) {
        p = skip_space(p);
        if (*p == '}')
            return p + 1;
        char key[128] = "";
        const char *q = p;
        if (isalpha((unsigned char)*q) || *q == '_') {
            size_t k = 0;
            while ((isalnum((unsigned char)*q) || *q == '_') && k + 1 < sizeof key)
                key[k++] = *q++;
            key[k] = 0;
            if (*skip_space(q) != '=' || skip_space(q)[1] == '=')
                key[0] = 0;
        } else if (*q == '[') {
            const char *r = string_literal(skip_space(q + 1), key, sizeof key);
            if (!r)
                key[0] = 0;
        }
        if (key[0]) {
            strbuf_putc(keys, ' ');
            strbuf_puts(keys, key);
            strbuf_putc(keys, ' ');
        }
        p = skip_arg(p);
        if (*p == ',' || *p == ';')
            p++;
        else if (*p == '}')
            return p + 1;
        else
            return NULL;
    }
}

struct send_site {
    struct lint *l;
    const char *where;
    const char *template_name;
    const strbuf *keys;
};

static void check_var(const char *path, int has_default, size_t offset, void *ud)
{
    (void)offset;
    struct send_site *s = ud;
    char root[128];
    size_t n = strcspn(path, ".");
    snprintf(root, sizeof root, "%.*s", (int)n, path);
    if (has_default || customer_field(root))
        return;
    char needle[140];
    snprintf(needle, sizeof needle, " %s ", root);
    if (s->keys->s && strstr(s->keys->s, needle))
        return;
    say(s->l, 1, s->where, "send to template '%s' gives no '%s', but the template uses {{ %s }} (pass it, or "
        "write {{ %s | default: \"...\" }})", s->template_name, root, path, path);
}

static void check_site(struct lint *l, const char *where, const char *channel, const char *tname,
                       const strbuf *keys)
{
    lua_State *L = sandbox_state(l->e->sb);
    int top = lua_gettop(L);
    if (!catalog_push_template(l->e, tname)) {
        say(l, 1, where, "send to unknown template '%s'", tname);
        lua_settop(L, top);
        return;
    }
    int type = lua_getfield(L, -1, channel);
    if (type == LUA_TNIL) {
        say(l, 1, where, "template '%s' has no text for channel '%s'", tname, channel);
    } else if (keys) {
        struct send_site s = {l, where, tname, keys};
        char err[200];
        if (type == LUA_TSTRING) {
            template_vars(lua_tostring(L, -1), check_var, &s, err, sizeof err);
        } else if (type == LUA_TTABLE) {
            static const char *const parts[] = {"subject", "body", "text", "html"};
            for (int i = 0; i < 4; i++) {
                if (lua_getfield(L, -1, parts[i]) == LUA_TSTRING)
                    template_vars(lua_tostring(L, -1), check_var, &s, err, sizeof err);
                lua_pop(L, 1);
            }
        }
    }
    lua_settop(L, top);
}

/* The customer argument of a send written as `x.field`: only c or c.id
 * name a customer; c.name or c.phone is a message to nobody. */
static void check_customer_arg(struct lint *l, const char *path, int line, const char *from, const char *to)
{
    from = skip_space(from);
    while (to > from && (to[-1] == ' ' || to[-1] == '\t' || to[-1] == '\n' || to[-1] == '\r'))
        to--;
    size_t n = (size_t)(to - from);
    char arg[128];
    if (n == 0 || n >= sizeof arg)
        return;
    memcpy(arg, from, n);
    arg[n] = 0;
    char where[300];
    snprintf(where, sizeof where, "%s:%d", path, line);
    static const char ident[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    const char *dot = strchr(arg, '.');
    int name_dot_field = dot && strspn(arg, ident) == (size_t)(dot - arg) && strspn(dot + 1, ident) == strlen(dot + 1);
    if (name_dot_field && strcmp(dot + 1, "id") != 0)
        say(l, 1, where, "send() to %s: the second argument is the customer (%.*s) or its id (%.*s.id), not its %s",
            arg, (int)(dot - arg), arg, (int)(dot - arg), arg, dot + 1);
    else if (isdigit((unsigned char)arg[0]) || arg[0] == '{' || !strcmp(arg, "nil") || !strcmp(arg, "true") ||
             !strcmp(arg, "false"))
        say(l, 1, where, "send() to %s: the second argument is the customer (c) or its id (c.id)", arg);
}

static void lint_sends(struct lint *l, const char *path, const char *src)
{
    const char *p = src;
    int line = 1;
    const char *line_at = src;
    while ((p = strstr(p, "send"))) {
        for (; line_at < p; line_at++)
            line += *line_at == '\n';
        int word_start = p == src || !(isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.' || p[-1] == ':');
        const char *q = skip_space(p + 4);
        p += 4;
        if (!word_start || *q != '(')
            continue;
        char channel[64], tname[128];
        const char *a = string_literal(skip_space(q + 1), channel, sizeof channel);
        if (!a || *skip_space(a) != ',')
            continue;
        const char *cust = skip_space(a) + 1;
        const char *b = skip_arg(cust);    /* the customer */
        if (*b != ',')
            continue;
        check_customer_arg(l, path, line, cust, b);
        const char *c = string_literal(skip_space(b + 1), tname, sizeof tname);
        if (!c)
            continue;
        c = skip_space(c);
        if (*c != ',' && *c != ')')
            continue;   /* "weather_" .. kind: the name is computed, not knowable */
        strbuf keys;
        strbuf_init(&keys);
        int knowable = 0;
        if (*c == ')') {
            knowable = 1;       /* no vars at all */
        } else if (*c == ',' && *skip_space(c + 1) == '{') {
            knowable = table_keys(skip_space(c + 1), &keys) != NULL;
        }
        char where[300];
        snprintf(where, sizeof where, "%s:%d", path, line);
        check_site(l, where, channel, tname, knowable ? &keys : NULL);
        strbuf_free(&keys);
    }
}

/* --- literal arguments of wait() and task() ------------------------------- */

/* The next call of `fn` (a whole word, not a field) at or after p, or NULL;
 * *line follows the line numbers. q is left just after the '('. */
static const char *next_call(const char *src, const char *p, const char *fn, int *line, const char **line_at,
                             const char **args)
{
    size_t n = strlen(fn);
    while ((p = strstr(p, fn))) {
        for (; *line_at < p; (*line_at)++)
            *line += **line_at == '\n';
        int word_start = p == src || !(isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.' || p[-1] == ':');
        const char *q = skip_space(p + n);
        const char *at = p;
        p += n;
        if (word_start && *q == '(' && !(isalnum((unsigned char)at[n]) || at[n] == '_')) {
            *args = skip_space(q + 1);
            return p;
        }
    }
    return NULL;
}

static void lint_waits(struct lint *l, const char *path, const char *src)
{
    const char *p = src, *line_at = src, *arg;
    int line = 1;
    char where[300], text[128];
    while ((p = next_call(src, p, "wait", &line, &line_at, &arg))) {
        snprintf(where, sizeof where, "%s:%d", path, line);
        if (string_literal(arg, text, sizeof text))
            say(l, 1, where, "wait(\"%s\"): wait takes seconds, e.g. wait(days(3)) or wait(hours(2))", text);
        else if (*arg == '-' && isdigit((unsigned char)skip_space(arg + 1)[0]))
            say(l, 1, where, "wait(%.*s): seconds must not be negative", (int)(skip_arg(arg) - arg), arg);
        else if (*arg == ')')
            say(l, 1, where, "wait(): how long? e.g. wait(days(3))");
    }
}

/* task(c, {kind = ..., note = ..., assign = ...}): the keys written out are
 * the ones task() reads. */
static void lint_tasks(struct lint *l, const char *path, const char *src)
{
    const char *p = src, *line_at = src, *arg;
    int line = 1;
    char where[300];
    while ((p = next_call(src, p, "task", &line, &line_at, &arg))) {
        snprintf(where, sizeof where, "%s:%d", path, line);
        const char *after = skip_arg(arg);
        if (after == arg) {
            say(l, 1, where, "task(): the first argument is the customer (c)");
            continue;
        }
        if (*after != ',' || *skip_space(after + 1) != '{')
            continue;
        strbuf keys;
        strbuf_init(&keys);
        if (table_keys(skip_space(after + 1), &keys) && keys.s) {
            char *save = NULL;
            for (char *key = strtok_r(keys.s, " ", &save); key; key = strtok_r(NULL, " ", &save))
                if (strcmp(key, "kind") && strcmp(key, "note") && strcmp(key, "assign") && strcmp(key, "due"))
                    say(l, 1, where, "task: unknown field '%s' (kind, note, assign, due)", key);
        }
        strbuf_free(&keys);
    }
}

/* --- unknown globals ------------------------------------------------------- */

/* Edit distance with adjacent transpositions ("cuopon"), capped at 3. */
static int distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63 || (n > m ? n - m : m - n) > 2)
        return 3;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m] > 3 ? 3 : d[n][m];
}

struct globals_scan {
    struct lint *l;
    const char *path;
    lua_State *L;
    int known;          /* index of the table of known names (name -> true) */
    strbuf seen;        /* " name@line " already reported */
    int pass;           /* 0: collect the file's own assignments, 1: report */
};

static void on_global(void *ud, const char *name, int line, int is_write)
{
    struct globals_scan *g = ud;
    lua_State *L = g->L;
    if (g->pass == 0) {
        if (is_write) {
            lua_pushboolean(L, 1);
            lua_setfield(L, g->known, name);
        }
        return;
    }
    if (is_write || lua_getfield(L, g->known, name) != LUA_TNIL) {
        if (!is_write)
            lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    char key[300];
    snprintf(key, sizeof key, " %s@%d ", name, line);
    if (g->seen.s && strstr(g->seen.s, key))
        return;
    strbuf_puts(&g->seen, key);
    const char *best = NULL;
    int best_d = 3;
    lua_pushnil(L);
    while (lua_next(L, g->known)) {
        lua_pop(L, 1);
        const char *k = lua_tostring(L, -1);
        int d = k ? distance(name, k) : 3;
        if (d < best_d || (d == best_d && best && strcmp(k, best) < 0)) {
            best_d = d;
            best = k;   /* a key of the known table: alive as long as it is */
        }
    }
    char where[300];
    snprintf(where, sizeof where, "%s:%d", g->path, line);
    if (best && (best_d == 1 || (best_d == 2 && strlen(name) > 4)))
        say(g->l, 1, where, "unknown global '%s' (did you mean '%s'?)", name, best);
    else
        say(g->l, 1, where, "unknown global '%s'", name);
}

/* Every global a script reads must be one the sandbox gives its scripts or
 * one the file assigns itself: anything else raises when that line runs. */
static void lint_globals(struct lint *l, const char *path, const char *src)
{
    lua_State *L = sandbox_state(l->e->sb);
    int top = lua_gettop(L);
    sandbox_push_globals(l->e->sb);
    lua_newtable(L);
    int known = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, top + 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, known);
        }
    }
    lua_pushboolean(L, 1);
    lua_setfield(L, known, "_ENV");
    struct globals_scan g = {l, path, L, known, {0}, 0};
    strbuf_init(&g.seen);
    struct bytecode_visitor v = {on_global, NULL, &g};
    char err[400];
    if (bytecode_walk(src, strlen(src), path, &v, err, sizeof err) == 0) {
        g.pass = 1;
        bytecode_walk(src, strlen(src), path, &v, err, sizeof err);
    } else {
        say(l, 0, path, "globals not checked: %s", err);
    }
    strbuf_free(&g.seen);
    lua_settop(L, top);
}

static void lint_scripts(struct lint *l)
{
    int64_t gen = 0;
    store_meta_get_int(l->e->st, "script_generation", &gen);
    store_stmt *s = store_sql(l->e->st, "SELECT path, source FROM scripts WHERE loaded_at = ? ORDER BY path");
    store_bind_int(s, 1, gen);
    struct { char *path, *src; } files[256];
    int n = 0;
    while (store_step(s) == STORE_ROW && n < 256) {
        files[n].path = xstrdup(store_col_text(s, 0));
        files[n].src = xstrdup(store_col_text(s, 1));
        n++;
    }
    for (int i = 0; i < n; i++) {
        lint_globals(l, files[i].path, files[i].src);
        lint_sends(l, files[i].path, files[i].src);
        lint_waits(l, files[i].path, files[i].src);
        lint_tasks(l, files[i].path, files[i].src);
        free(files[i].path);
        free(files[i].src);
    }
}

/* A filter table at idx compiles; else an error at `where` for `what`. */
static void check_filter(struct lint *l, int idx, const char *where, const char *what)
{
    char err[300];
    segment_query *q = segment_compile(sandbox_state(l->e->sb), idx, engine_now(l->e), err, sizeof err);
    if (!q)
        say(l, 1, where, "%s: %s", what, strncmp(err, "segment: ", 9) == 0 ? err + 9 : err);
    segment_query_free(q);
}

/* Every segment compiles: a misspelt field is found before any run needs it. */
static void lint_segments(struct lint *l)
{
    lua_State *L = sandbox_state(l->e->sb);
    int top = lua_gettop(L);
    catalog_push_all(l->e, "segments");
    lua_pushnil(L);
    while (lua_next(L, top + 1)) {
        char where[300], what[200];
        catalog_where(l->e, lua_gettop(L), where, sizeof where);
        const char *name = lua_tostring(L, -2);
        snprintf(what, sizeof what, "segment '%s'", name);
        int t = lua_getfield(L, -1, "where");
        int ok = 1;
        if (t == LUA_TFUNCTION && sandbox_pcall(l->e->sb, L, 0, 1) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            say(l, 1, where, "%s: where(): %.*s", what, (int)strcspn(msg, "\n"), msg);
            ok = 0;
        }
        if (ok)
            check_filter(l, -1, where, what);
        lua_pop(L, 2);
    }
    lua_settop(L, top);
}

/* A journey's audience tables (its own, and a local_cron or holiday
 * trigger's) compile: a misspelt field would only show when a slot fires.
 * An audience function depends on the event and is left to run time. */
static void lint_audiences(struct lint *l)
{
    lua_State *L = sandbox_state(l->e->sb);
    int top = lua_gettop(L);
    catalog_push_all(l->e, "journeys");
    lua_pushnil(L);
    while (lua_next(L, top + 1)) {
        int decl = lua_gettop(L);
        char where[300], what[200];
        catalog_where(l->e, decl, where, sizeof where);
        snprintf(what, sizeof what, "journey '%s': audience", lua_tostring(L, -2));
        if (lua_getfield(L, decl, "audience") == LUA_TTABLE)
            check_filter(l, -1, where, what);
        if (lua_getfield(L, decl, "on") == LUA_TTABLE && lua_getfield(L, -1, "audience") == LUA_TTABLE)
            check_filter(l, -1, where, what);
        lua_settop(L, decl - 1);
    }
    lua_settop(L, top);
}

/* The store as a read-only URI (mode=ro: check never writes it, nor its WAL). */
static char *readonly_uri(const char *path)
{
    strbuf b;
    strbuf_init(&b);
    strbuf_puts(&b, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (isalnum(*p) || strchr("/._-~", *p))
            strbuf_putc(&b, (char)*p);
        else
            strbuf_printf(&b, "%%%02X", *p);
    }
    strbuf_puts(&b, "?mode=ro");
    return b.s;
}

/* Customers an anniversary would never fire for: its field holds a value
 * that is no date. Only the store can show them, so when DIR's store (or
 * --db) exists, its first DATES_SAMPLE customers are read (a bounded time
 * on any store); the finding is at the journey's declaration. */
enum { DATES_SAMPLE = 100000 };

static void lint_dates(struct lint *l, const char *store_path)
{
    engine *e = l->e;
    char *path = store_path ? xstrdup(store_path) : util_path_join(e->dir, e->cfg.db);
    if (access(path, R_OK) != 0) {
        free(path);
        return;
    }
    char *uri = readonly_uri(path);
    store_stmt *a = store_prepare(e->st, "ATTACH ? AS live");
    int attached = a && (store_bind_text(a, 1, uri, -1), store_run(a) == 0);
    store_finalize(a);
    free(uri);
    if (!attached) {
        say(l, 0, path, "cannot read the store to check date fields: %s", store_errmsg(e->st));
        free(path);
        return;
    }
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    catalog_push_dated(e);
    for (int i = 1; lua_istable(L, top + 1) && i <= (int)lua_rawlen(L, top + 1); i++) {
        lua_rawgeti(L, top + 1, i);
        const char *name = lua_tostring(L, -1);
        if (name && catalog_push_current(e, name) && lua_getfield(L, -1, "on") == LUA_TTABLE &&
            lua_getfield(L, -1, "field") == LUA_TSTRING) {
            const char *field = lua_tostring(L, -1);
            char id[80], value[48];
            long bad = dates_count_malformed(e, "live", field, DATES_SAMPLE, id, sizeof id, value, sizeof value);
            if (bad > 0) {
                char where[300];
                catalog_where(e, top + 3, where, sizeof where);
                say(l, 0, where, "journey '%s': anniversary field '%s' is not a date for %ld customer%s in %s "
                    "(e.g. '%s': '%s'; want YYYY-MM-DD, an ISO-8601 time or epoch seconds); they get no anniversary",
                    name, field, bad, bad == 1 ? "" : "s", path, id, value);
            }
        }
        lua_settop(L, top + 1);
    }
    lua_settop(L, top);
    store_exec(e->st, "DETACH live");
    free(path);
}

int lint_run(engine *e, const char *store_path, lint_report_fn report, void *ud, int *warnings)
{
    struct lint l = {e, report, ud, 0, 0, NULL};
    lint_segments(&l);
    lint_audiences(&l);
    lint_templates(&l);
    lint_scripts(&l);
    lint_dates(&l, store_path);
    if (warnings)
        *warnings = l.warnings;
    return l.errors;
}
