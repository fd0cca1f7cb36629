/* testrun — `tend test` (see testrun.h). */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>

#include "bundle.h"
#include "calendar.h"
#include "coverage.h"
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
    regex_t filter;
    int filtered;
    int n, passed, failed, skipped;
    int case_tripped;   /* a case hit a limit: the file's error is that case's */
    coverage *cov;
    /* JUnit: the current file's <testcase>s and counts, then every suite */
    const char *file;
    strbuf cases, suites;
    int file_tests, file_failures, file_skipped;
    double file_time;
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

static void pathlist_free(struct pathlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
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

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- output formats -------------------------------------------------------- */

/* A TAP description: '#' would start a directive ("# TODO" turns a failure
 * into a pass) and a newline would end the line, so both are escaped. */
static void tap_name(strbuf *out, const char *name)
{
    for (const char *p = name; *p; p++) {
        if (*p == '\\' || *p == '#')
            strbuf_printf(out, "\\%c", *p);
        else if (*p == '\n')
            strbuf_puts(out, "\\n");
        else if (*p == '\r')
            strbuf_puts(out, "\\r");
        else
            strbuf_putc(out, *p);
    }
}

/* XML-escaped text; in an attribute a newline must be a reference. */
static void xml_escaped(strbuf *out, const char *s, int attribute)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '<': strbuf_puts(out, "&lt;"); break;
        case '>': strbuf_puts(out, "&gt;"); break;
        case '&': strbuf_puts(out, "&amp;"); break;
        case '"': strbuf_puts(out, "&quot;"); break;
        case '\n': strbuf_puts(out, attribute ? "&#10;" : "\n"); break;
        case '\t': strbuf_putc(out, '\t'); break;
        default:
            if (*p < 0x20)
                strbuf_putc(out, '?');   /* not representable in XML 1.0 */
            else
                strbuf_putc(out, (char)*p);
        }
    }
}

static void xml_text(strbuf *out, const char *s)
{
    xml_escaped(out, s, 1);
}

/* The "file:line" an error message starts with, or 0 length. */
static size_t location_of(const char *msg)
{
    size_t n = strcspn(msg, ": \n");
    if (msg[n] != ':' || !(msg[n + 1] >= '0' && msg[n + 1] <= '9'))
        return 0;
    n++;
    while (msg[n] >= '0' && msg[n] <= '9')
        n++;
    return msg[n] == ':' ? n : 0;
}

/* The TAP 13 YAML block of a failure: the message, where it happened, the
 * traceback lines that point into the user's code (the C frames and the test
 * library's own frames say nothing a marketer can act on), then what the
 * sims saw go wrong while the case ran. */
static void failure_yaml(struct testrun *tr, lua_State *L, const char *msg, strbuf *out)
{
    size_t first = strcspn(msg, "\n");
    strbuf_puts(out, "  ---\n  message: ");
    strbuf_yaml_quoted(out, msg, first);
    strbuf_putc(out, '\n');
    size_t at = location_of(msg);
    if (at) {
        strbuf_puts(out, "  at: ");
        strbuf_yaml_quoted(out, msg, at);
        strbuf_putc(out, '\n');
    }
    int header = 0, in_trace = 0;
    for (const char *p = msg + first; *p;) {
        p += *p == '\n';
        size_t len = strcspn(p, "\n");
        const char *text = p;
        while (*text == '\t' || *text == ' ')
            text++;
        size_t tlen = len - (size_t)(text - p);
        int keep = tlen > 0;
        if (tlen == 16 && strncmp(text, "stack traceback:", 16) == 0) {
            in_trace = 1;
            keep = 0;
        } else if (in_trace && !tr->opts->verbose) {
            char *line = xstrndup(text, tlen);
            keep = !(strncmp(line, "[C]", 3) == 0 || strstr(line, "stdlib/tend/") ||
                     strstr(line, "(...tail calls...)"));
            free(line);
        }
        if (keep) {
            if (!header)
                strbuf_puts(out, "  traceback: |\n");
            header = 1;
            strbuf_puts(out, "    ");
            strbuf_add(out, text, tlen);
            strbuf_putc(out, '\n');
        }
        p += len;
    }
    sim_diagnose(L, out, "  ");
    strbuf_puts(out, "  ...\n");
}

/* One result: TAP on the output, a <testcase> for JUnit. */
static void result(struct testrun *tr, const char *name, int ok, const char *skip, const char *yaml,
                   const char *msg, double secs)
{
    FILE *out = tr->opts->out;
    strbuf line;
    strbuf_init(&line);
    tr->n++;
    strbuf_printf(&line, "%s %d - ", ok ? "ok" : "not ok", tr->n);
    tap_name(&line, name);
    if (skip)
        strbuf_puts(&line, " # SKIP");
    fprintf(out, "%s\n%s", line.s, yaml ? yaml : "");
    fflush(out);
    strbuf_free(&line);
    if (skip)
        tr->skipped++;
    else if (ok)
        tr->passed++;
    else
        tr->failed++;

    tr->file_tests++;
    tr->file_time += secs;
    strbuf_puts(&tr->cases, "    <testcase classname=\"");
    xml_text(&tr->cases, tr->file);
    strbuf_puts(&tr->cases, "\" name=\"");
    xml_text(&tr->cases, name);
    strbuf_printf(&tr->cases, "\" time=\"%.3f\"", secs);
    if (skip) {
        tr->file_skipped++;
        strbuf_puts(&tr->cases, "><skipped/></testcase>\n");
    } else if (!ok) {
        tr->file_failures++;
        char *first = xstrndup(msg, strcspn(msg, "\n"));
        strbuf_puts(&tr->cases, "><failure message=\"");
        xml_text(&tr->cases, first);
        strbuf_puts(&tr->cases, "\" type=\"failure\">");
        xml_escaped(&tr->cases, yaml, 0);
        strbuf_puts(&tr->cases, "</failure></testcase>\n");
        free(first);
    } else {
        strbuf_puts(&tr->cases, "/>\n");
    }
}

/* --- running ----------------------------------------------------------------- */

/* __tend_report(name, fn [, skip]): runs one case (t.case, t.skip). */
static int report(lua_State *L)
{
    struct testrun *tr = lua_touserdata(L, lua_upvalueindex(1));
    sandbox *sb = sandbox_of(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int skip = lua_toboolean(L, 3);
    if (tr->filtered && regexec(&tr->filter, name, 0, NULL, 0) != 0)
        return 0;
    if (skip) {
        result(tr, name, 1, "skip", NULL, NULL, 0);
        return 0;
    }
    sim_case_begin(L);
    double t0 = seconds_now();
    lua_pushvalue(L, 2);
    int status = sandbox_pcall(sb, L, 0, 0);
    double secs = seconds_now() - t0;
    if (status == LUA_OK) {
        result(tr, name, 1, NULL, NULL, NULL, secs);
        return 0;
    }
    const char *msg = lua_tostring(L, -1);
    strbuf yaml;
    strbuf_init(&yaml);
    failure_yaml(tr, L, msg, &yaml);
    result(tr, name, 0, NULL, yaml.s, msg, secs);
    strbuf_free(&yaml);
    if (sandbox_tripped(sb)) {
        /* A limit stays tripped for the whole entry: the rest of the
         * file cannot run, so stop it here. */
        tr->case_tripped = 1;
        return lua_error(L);
    }
    lua_pop(L, 1);
    return 0;
}

/* __tend_source(module) → the text of an embedded stdlib module, or nil
 * (t.source_of: the editor definitions are checked against the runtime). */
static int module_source(lua_State *L)
{
    const struct bundle_module *m = bundle_find(luaL_checkstring(L, 1));
    if (!m)
        return 0;
    lua_pushlstring(L, m->source, m->len);
    return 1;
}

static void run_file(struct testrun *tr, const char *path)
{
    FILE *out = tr->opts->out;
    fprintf(out, "# %s\n", path);
    tr->file = path;
    strbuf_reset(&tr->cases);
    tr->file_tests = tr->file_failures = tr->file_skipped = 0;
    tr->file_time = 0;
    tclock *clk = clock_new_virtual((tend_time)time(NULL));
    /* A case's wall time includes its sims, which run under their own
     * sandboxes' limits: the test file's clock limit only stops a hang. */
    struct sandbox_options so = {.instruction_limit = TEST_INSTRUCTIONS, .clock = clk,
                                 .time_limit_ms = 600000};
    sandbox *sb = sandbox_new(&so);
    lua_State *L = sandbox_state(sb);
    helpers_register(sb);
    calendar_lua_register(sandbox_state(sb), NULL, "UTC");   /* holiday_date() in tests: built-in names */
    lua_pushlightuserdata(L, tr);
    lua_pushcclosure(L, report, 1);
    sandbox_set_global(sb, "__tend_report", 1);
    lua_pushcfunction(L, module_source);
    sandbox_set_global(sb, "__tend_source", 1);
    char *copy = xstrdup(path);
    sim_register(sb, dirname(copy), tr->cov);
    sandbox_new_env(sb, dirname(copy));
    free(copy);
    tr->case_tripped = 0;
    sim_case_begin(L);
    double t0 = seconds_now();
    int status = sandbox_load_file(sb, path, -1);
    if (status == LUA_OK)
        status = sandbox_pcall(sb, L, 0, 0);
    if (status != LUA_OK && !tr->case_tripped) {
        /* the file itself failed (a syntax error, an error outside any
         * case): one failed case named after the file */
        const char *msg = lua_tostring(L, -1);
        strbuf yaml;
        strbuf_init(&yaml);
        failure_yaml(tr, L, msg, &yaml);
        result(tr, path, 0, NULL, yaml.s, msg, seconds_now() - t0);
        strbuf_free(&yaml);
    }
    fflush(out);
    sandbox_free(sb);
    clock_free(clk);

    strbuf_puts(&tr->suites, "  <testsuite name=\"");
    xml_text(&tr->suites, path);
    strbuf_printf(&tr->suites, "\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"%d\" time=\"%.3f\">\n",
                  tr->file_tests, tr->file_failures, tr->file_skipped, tr->file_time);
    strbuf_puts(&tr->suites, tr->cases.s ? tr->cases.s : "");
    strbuf_puts(&tr->suites, "  </testsuite>\n");
}

/* Opens an output file named by an option, or says why not. */
static FILE *open_output(const char *option, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "tend test: %s %s: %s\n", option, path, strerror(errno));
    return f;
}

static int finish_output(FILE *f, const char *option, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "tend test: %s %s: %s\n", option, path, strerror(errno));
        return -1;
    }
    return 0;
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
            pathlist_free(&files);
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
    if (opts->filter) {
        int rc = regcomp(&tr.filter, opts->filter, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[200];
            regerror(rc, &tr.filter, why, sizeof why);
            fprintf(stderr, "tend test: -k '%s': %s\n", opts->filter, why);
            pathlist_free(&files);
            return 2;
        }
        tr.filtered = 1;
    }
    FILE *junit = NULL, *lcov = NULL;
    if ((opts->junit && !(junit = open_output("--junit", opts->junit))) ||
        (opts->coverage && !(lcov = open_output("--coverage", opts->coverage)))) {
        if (junit)
            fclose(junit);
        if (tr.filtered)
            regfree(&tr.filter);
        pathlist_free(&files);
        return 2;
    }
    if (lcov)
        tr.cov = coverage_new();
    strbuf_init(&tr.cases);
    strbuf_init(&tr.suites);
    fprintf(opts->out, "TAP version 13\n");
    for (size_t i = 0; i < files.n; i++)
        run_file(&tr, files.v[i]);
    fprintf(opts->out, "1..%d\n%d passed, %d failed", tr.n, tr.passed, tr.failed);
    if (tr.skipped)
        fprintf(opts->out, ", %d skipped", tr.skipped);
    fprintf(opts->out, "\n");
    fflush(opts->out);
    int status = tr.failed ? 1 : 0;
    if (junit) {
        fprintf(junit, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"%d\" failures=\"%d\""
                       " skipped=\"%d\">\n%s</testsuites>\n",
                tr.n, tr.failed, tr.skipped, tr.suites.s ? tr.suites.s : "");
        if (finish_output(junit, "--junit", opts->junit) != 0)
            status = 2;
    }
    if (lcov) {
        char err[200];
        int wrote = coverage_write(tr.cov, lcov, err, sizeof err);
        if (wrote != 0)
            fprintf(stderr, "tend test: --coverage %s: %s\n", opts->coverage, err);
        if (finish_output(lcov, "--coverage", opts->coverage) != 0 || wrote != 0)
            status = 2;
        coverage_free(tr.cov);
    }
    strbuf_free(&tr.cases);
    strbuf_free(&tr.suites);
    if (tr.filtered)
        regfree(&tr.filter);
    pathlist_free(&files);
    return status;
}
