/* script — loading scripts and their versions (see script.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "dates.h"
#include "history.h"
#include "instance.h"
#include "json.h"
#include "policy.h"
#include "script.h"
#include "util.h"

char *script_version(const char *src, size_t len, char *buf)
{
    snprintf(buf, 17, "%016llx", (unsigned long long)util_hash64(src, len));
    return buf;
}

/* Runs one file's text as a new version; appends any error to `errors`. */
static void load_one(engine *e, const char *path, const char *src, size_t len, const char *dir,
                     int64_t generation, strbuf *errors, int *nerr)
{
    lua_State *L = sandbox_state(e->sb);
    char version[17];
    script_version(src, len, version);
    store_stmt *s = store_sql(e->st, "INSERT INTO scripts (hash, path, source, loaded_at) VALUES (?, ?, ?, ?)"
                                     " ON CONFLICT(hash) DO UPDATE SET path = excluded.path,"
                                     " loaded_at = excluded.loaded_at");
    store_bind_text(s, 1, version, -1);
    store_bind_text(s, 2, path, -1);
    store_bind_text(s, 3, src, (int)len);
    store_bind_int(s, 4, generation);
    if (store_run(s) != 0) {
        strbuf_printf(errors, "%s: store: %s\n", path, store_errmsg(e->st));
        (*nerr)++;
        return;
    }
    sandbox_new_env(e->sb, dir);
    int status = sandbox_load(e->sb, src, len, path, -1);
    lua_remove(L, -2);
    if (status == LUA_OK)
        status = catalog_run_script(e, path, version, 0);
    if (status != LUA_OK) {
        /* the first line is "file:line: message"; a traceback follows */
        const char *msg = lua_tostring(L, -1);
        const char *nl = msg ? strchr(msg, '\n') : NULL;
        strbuf_add(errors, msg ? msg : "error", nl ? (size_t)(nl - msg) : strlen(msg ? msg : "error"));
        strbuf_putc(errors, '\n');
        (*nerr)++;
        lua_pop(L, 1);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct source {
    char *path, *text, *dir;
    size_t len;
};

static int finish_load(engine *e, struct source *files, int n, char **errors)
{
    strbuf err;
    strbuf_init(&err);
    int nerr = 0;
    int64_t generation = 0;
    store_meta_get_int(e->st, "script_generation", &generation);
    generation++;
    int rc = store_begin(e->st);
    if (rc == 0)
        rc = store_meta_set_int(e->st, "script_generation", generation);
    for (int i = 0; rc == 0 && i < n; i++)
        load_one(e, files[i].path, files[i].text, files[i].len, files[i].dir, generation, &err, &nerr);
    if (rc != 0) {
        strbuf_printf(&err, "store: %s\n", store_errmsg(e->st));
        nerr++;
    }
    if (nerr == 0) {
        catalog_commit(e);
        /* Versions no waiting instance uses are dropped by the retention
         * sweep (retention.h), not here: this load never scans instances. */
        if (store_commit(e->st) != 0) {
            strbuf_printf(&err, "store: %s\n", store_errmsg(e->st));
            nerr++;
        } else if (dates_sync(e) != 0) {
            strbuf_printf(&err, "store: date triggers: %s\n", store_errmsg(e->st));
            nerr++;
        }
        char why[300];
        if (policy_validate(e, why, sizeof why) != 0) {   /* caps name channels and segments scripts declare */
            char *path = e->dir ? util_path_join(e->dir, "tend.lua") : NULL;
            char *at = config_error_at(path ? path : "", "tend.lua", why);
            strbuf_printf(&err, "%s\n", at);
            free(at);
            free(path);
            nerr++;
        }
    } else {
        catalog_abort(e);
        if (store_in_batch(e->st))
            store_rollback(e->st);
    }
    for (int i = 0; i < n; i++) {
        free(files[i].path);
        free(files[i].text);
        free(files[i].dir);
    }
    *errors = nerr ? strbuf_take(&err) : NULL;
    strbuf_free(&err);
    return nerr;
}

static int read_source(const char *path, struct source *out, char **errors)
{
    out->text = util_read_file(path, &out->len);
    if (!out->text) {
        *errors = xasprintf("%s: cannot read: %s\n", path, strerror(errno));
        return -1;
    }
    out->path = xstrdup(path);
    const char *slash = strrchr(path, '/');
    out->dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
    return 0;
}

int script_load_files(engine *e, const char *const *paths, int n, char **errors)
{
    return script_load_set(e, paths, n, NULL, NULL, 0, errors);
}

int script_load_set(engine *e, const char *const *paths, int n, const char *name, const char *src, size_t len,
                    char **errors)
{
    struct source *files = xcalloc((size_t)n + 1, sizeof *files);
    for (int i = 0; i < n; i++) {
        if (read_source(paths[i], &files[i], errors) != 0) {
            for (int j = 0; j < i; j++) {
                free(files[j].path);
                free(files[j].text);
                free(files[j].dir);
            }
            free(files);
            return -1;
        }
    }
    if (src)
        files[n++] = (struct source){xstrdup(name), xstrndup(src, len), e->dir ? xstrdup(e->dir) : NULL, len};
    int rc = finish_load(e, files, n, errors);
    free(files);
    return rc;
}

int script_load_dir(engine *e, const char *dir, char **errors)
{
    DIR *d = opendir(dir);
    if (!d) {
        *errors = xasprintf("%s: cannot open: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        const char *name = ent->d_name;
        if (name[0] == '.' || !util_ends_with(name, ".lua") || strcmp(name, "tend.lua") == 0 ||
            util_ends_with(name, "_test.lua"))
            continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = util_path_join(dir, name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    int rc = script_load_files(e, (const char *const *)names, n, errors);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int script_load_source(engine *e, const char *name, const char *src, size_t len, char **errors)
{
    struct source one = {xstrdup(name), xstrndup(src, len), e->dir ? xstrdup(e->dir) : NULL, len};
    return finish_load(e, &one, 1, errors);
}

int script_load_version(engine *e, const char *version)
{
    lua_State *L = sandbox_state(e->sb);
    store_stmt *s = store_sql(e->st, "SELECT path, source FROM scripts WHERE hash = ?");
    store_bind_text(s, 1, version, -1);
    if (store_step(s) != STORE_ROW)
        return -1;
    char *path = xstrdup(store_col_text(s, 0));
    size_t len = (size_t)store_col_bytes(s, 1);
    char *src = xstrndup(store_col_text(s, 1), len);
    store_reset(s);
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
    sandbox_new_env(e->sb, dir);
    int status = sandbox_load(e->sb, src, len, path, -1);
    lua_remove(L, -2);
    if (status == LUA_OK)
        status = catalog_run_script(e, path, version, 1);
    if (status != LUA_OK) {
        engine_logf(e, "error", "old version %s of %s: %s", version, path, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    free(dir);
    free(src);
    free(path);
    return status == LUA_OK ? 0 : -1;
}

/* --- migration --------------------------------------------------------- */

/* The history as migrate() sees it: {kind, args, result} per step. */
static void push_history(lua_State *L, const cJSON *history)
{
    lua_createtable(L, cJSON_GetArraySize(history), 0);
    int i = 1;
    const cJSON *h;
    cJSON_ArrayForEach(h, history) {
        lua_createtable(L, 0, 4);
        json_push(L, cJSON_GetObjectItemCaseSensitive(h, "k"));
        lua_setfield(L, -2, "kind");
        json_push(L, cJSON_GetObjectItemCaseSensitive(h, "a"));
        lua_setfield(L, -2, "args");
        json_push(L, cJSON_GetObjectItemCaseSensitive(h, "r"));
        lua_setfield(L, -2, "result");
        lua_rawseti(L, -2, i++);
    }
}

/* A history returned by migrate(): entries keep their kind and result; the
 * argument hash is gone, so replay checks only the kind of each. */
static cJSON *history_from(lua_State *L, int idx, const cJSON *old, char *err, size_t errlen)
{
    cJSON *h = cJSON_CreateArray();
    int n = (int)lua_rawlen(L, idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (!lua_istable(L, -1) || lua_getfield(L, -1, "kind") != LUA_TSTRING) {
            snprintf(err, errlen, "migrate: entry %d needs a kind", i);
            lua_settop(L, idx);
            cJSON_Delete(h);
            return NULL;
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "k", lua_tostring(L, -1));
        lua_getfield(L, -2, "result");
        if (!lua_isnil(L, -1)) {
            cJSON *r = json_from_lua(L, -1, err, errlen);
            if (!r) {
                cJSON_Delete(e);
                cJSON_Delete(h);
                lua_settop(L, idx);
                return NULL;
            }
            cJSON_AddItemToObject(e, "r", r);
        }
        /* A pending wait_for keeps its deadline and stays pending. */
        const cJSON *same = cJSON_GetArrayItem(old, i - 1);
        if (same && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(same, "p")) &&
            strcmp(cJSON_GetObjectItemCaseSensitive(same, "k")->valuestring, lua_tostring(L, -2)) == 0) {
            cJSON_AddTrueToObject(e, "p");
            cJSON_AddItemToObject(e, "d", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(same, "d"), 1));
        }
        cJSON_AddStringToObject(e, "a", "migrated");
        cJSON_AddItemToArray(h, e);
        lua_settop(L, idx);
    }
    return h;
}

int script_migrate(engine *e, char **version, char **owned, struct run_ctx *ctx)
{
    lua_State *L = sandbox_state(e->sb);
    const char *current = catalog_current_version(e, ctx->journey);
    if (!current || strcmp(current, *version) == 0)
        return 0;
    int top = lua_gettop(L);
    if (!catalog_push_journey(e, ctx->journey, current) || lua_getfield(L, -1, "migrate") != LUA_TFUNCTION) {
        lua_settop(L, top);
        return 0;
    }
    cJSON *history = history_to_json(ctx->hist.s, ctx->hist.len);
    lua_pushinteger(L, ctx->steps);
    push_history(L, history);
    if (sandbox_pcall(e->sb, L, 2, 1) != LUA_OK) {
        engine_logf(e, "error", "journey '%s': migrate failed, instance %lld stays on its version: %s",
                    ctx->journey, (long long)ctx->id, lua_tostring(L, -1));
        lua_settop(L, top);
        cJSON_Delete(history);
        return 0;
    }
    cJSON *moved = NULL;
    char err[200];
    if (lua_istable(L, -1)) {
        moved = history_from(L, lua_gettop(L), history, err, sizeof err);
        if (!moved)
            engine_logf(e, "error", "journey '%s': %s", ctx->journey, err);
    } else if (lua_toboolean(L, -1)) {
        moved = cJSON_Duplicate(history, 1);
    }
    lua_settop(L, top);
    cJSON_Delete(history);
    if (!moved)
        return 0;
    strbuf_reset(&ctx->hist);
    ctx->steps = history_from_json(moved, &ctx->hist);
    ctx->pos = 0;
    ctx->replay_at = 0;
    ctx->hist_rewrite = 1;
    cJSON_Delete(moved);
    ctx->appended++;
    free(*owned);
    *version = *owned = xstrdup(current);
    store_stmt *s = store_sql(e->st, "UPDATE instances SET version = ? WHERE id = ?");
    store_bind_text(s, 1, *version, -1);
    store_bind_int(s, 2, ctx->id);
    return store_run(s);
}
