/* testrun — `tend test` (see testrun.h). */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "helpers.h"
#include "sandbox.h"
#include "sim.h"
#include "testrun.h"
#include "util.h"

/* A test file may drive whole simulated months; its own Lua code is light,
 * but give it room before the budget calls it a runaway. */
#define TEST_INSTRUCTIONS 500000000L

struct testrun {
    const struct testrun_options *opts;
    int n, passed, failed;
    int case_tripped;   /* a case hit a limit: the file's error is that case's */
};

struct pathlist {
    char **v;
    size_t n, cap;
};

static void pathlist_add(struct pathlist *l, char *p)
{
    if (l->n == l->cap)
        l->v = xrealloc(l->v, (l->cap = l->cap ? l->cap * 2 : 16) * sizeof *l->v);
    l->v[l->n++] = p;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(const char *path, struct pathlist *out)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = util_path_join(path, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            collect(p, out);
            free(p);
        } else if (util_ends_with(e->d_name, "_test.lua")) {
            pathlist_add(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
}

/* Prints an error as TAP diagnostics: the message, then the traceback lines
 * that point into the user's code (the C frames and the test library's own
 * frames say nothing a marketer can act on). */
static void print_diag(FILE *out, const char *msg, int verbose)
{
    const char *p = msg;
    int first = 1, in_trace = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = xstrndup(p, len);
        const char *text = line;
        while (*text == '\t' || *text == ' ')
            text++;
        int keep = 1;
        if (!first && !verbose) {
            if (strcmp(text, "stack traceback:") == 0) {
                in_trace = 1;
                keep = 0;
            } else if (in_trace && (strncmp(text, "[C]", 3) == 0 || strstr(text, "stdlib/tend/") ||
                                    strstr(text, "(...tail calls...)"))) {
                keep = 0;
            }
        }
        if (keep)
            fprintf(out, "#   %s%s\n", in_trace && !verbose ? "at " : "", text);
        free(line);
        first = 0;
        p += len + (nl ? 1 : 0);
    }
}

static int report(lua_State *L)
{
    struct testrun *tr = lua_touserdata(L, lua_upvalueindex(1));
    sandbox *sb = sandbox_of(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    int status = sandbox_pcall(sb, L, 0, 0);
    FILE *out = tr->opts->out;
    tr->n++;
    if (status == LUA_OK) {
        tr->passed++;
        fprintf(out, "ok %d - %s\n", tr->n, name);
    } else {
        tr->failed++;
        fprintf(out, "not ok %d - %s\n", tr->n, name);
        print_diag(out, lua_tostring(L, -1), tr->opts->verbose);
        if (sandbox_tripped(sb)) {
            /* A limit stays tripped for the whole entry: the rest of the
             * file cannot run, so stop it here. */
            tr->case_tripped = 1;
            fflush(out);
            return lua_error(L);
        }
    }
    fflush(out);
    return 0;
}

static void run_file(struct testrun *tr, const char *path)
{
    FILE *out = tr->opts->out;
    fprintf(out, "# %s\n", path);
    tclock *clk = clock_new_virtual((tend_time)time(NULL));
    struct sandbox_options so = {.instruction_limit = TEST_INSTRUCTIONS, .clock = clk};
    sandbox *sb = sandbox_new(&so);
    lua_State *L = sandbox_state(sb);
    helpers_register(sb);
    lua_pushlightuserdata(L, tr);
    lua_pushcclosure(L, report, 1);
    sandbox_set_global(sb, "__tend_report", 1);
    char *copy = xstrdup(path);
    sim_register(sb, dirname(copy));
    sandbox_new_env(sb, dirname(copy));
    free(copy);
    tr->case_tripped = 0;
    int status = sandbox_load_file(sb, path, -1);
    if (status == LUA_OK)
        status = sandbox_pcall(sb, L, 0, 0);
    if (status != LUA_OK && !tr->case_tripped) {
        tr->n++;
        tr->failed++;
        fprintf(out, "not ok %d - %s\n", tr->n, path);
        print_diag(out, lua_tostring(L, -1), tr->opts->verbose);
    }
    fflush(out);
    sandbox_free(sb);
    clock_free(clk);
}

int testrun_paths(const char *const *paths, int npaths, const struct testrun_options *opts)
{
    struct pathlist files = {0};
    static const char *const here[] = {"."};
    if (npaths == 0) {
        paths = here;
        npaths = 1;
    }
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            fprintf(stderr, "tend test: %s: %s\n", paths[i], strerror(errno));
            for (size_t j = 0; j < files.n; j++)
                free(files.v[j]);
            free(files.v);
            return 2;
        }
        if (S_ISDIR(st.st_mode)) {
            size_t from = files.n;
            collect(paths[i], &files);
            qsort(files.v + from, files.n - from, sizeof *files.v, cmp_path);
        } else {
            pathlist_add(&files, xstrdup(paths[i]));
        }
    }
    struct testrun tr = {.opts = opts};
    fprintf(opts->out, "TAP version 13\n");
    for (size_t i = 0; i < files.n; i++) {
        run_file(&tr, files.v[i]);
        free(files.v[i]);
    }
    free(files.v);
    fprintf(opts->out, "1..%d\n%d passed, %d failed\n", tr.n, tr.passed, tr.failed);
    fflush(opts->out);
    return tr.failed ? 1 : 0;
}
