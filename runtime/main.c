/* main — the `tend` command line: parses the subcommand and hands over.
 *
 * Each subcommand is a function taking (argc, argv) with argv[0] the
 * subcommand's name, returning the process exit status: 0 success, 1 a
 * failure of what was asked (a failing test, a script error, a rejected
 * row), 2 misuse. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "calendar.h"
#include "catalog.h"
#include "clock.h"
#include "customer.h"
#include "engine.h"
#include "event.h"
#include "importer.h"
#include "lint.h"
#include "logger.h"
#include "mime.h"
#include "netloop.h"
#include "segment.h"
#include "server.h"
#include "simulate.h"
#include "skeleton.h"
#include "status.h"
#include "task.h"
#include "testrun.h"
#include "timeline.h"
#include "util.h"
#include "version.h"


static const char usage[] =
    "usage: tend <command> [options]\n"
    "\n"
    "commands:\n"
    "  run [DIR]            the server: load scripts, ingest, schedule, deliver\n"
    "  test [PATH...]       run *_test.lua files sandboxed on a simulated clock\n"
    "  check [DIR]          load and validate scripts and templates, lint messages\n"
    "  import FILE          customers from CSV or NDJSON (--products: the catalog)\n"
    "  ingest FILE|-        events from NDJSON\n"
    "  segment NAME         count and sample of a segment\n"
    "  simulate DIR --days N --customers F --events F   forecast sends and cost\n"
    "  status               journeys, instances by state and step, outbox\n"
    "  new journey NAME     a commented journey NAME.lua and its passing test\n"
    "  backup FILE          a consistent copy of the store, safe while `tend run` runs\n"
    "  tasks                staff tasks [--assignee A] [--status S] [--overdue]\n"
    "  task ID STATUS       close a task: done, failed or cancelled [--outcome TEXT]\n"
    "  customer ID          the customer's timeline: events, journeys, messages, coupons, tasks\n"
    "\n"
    "  tend --help          this text\n"
    "  tend --version       the version\n"
    "\n"
    "Commands that use a store take --dir DIR (default: $TEND_DIR or .), the\n"
    "directory of tend.lua and the scripts, and --db FILE (default: $TEND_DB, else\n"
    "tend.lua's `db`). Run `tend <command> --help` for more.\n";

/* --- shared option handling ---------------------------------------------- */

struct opts {
    const char *dir;
    const char *args[16];
    int nargs;
    int help;
    int no_process;
    int products;
    int sample;
    int verbose;
    int json;
    const char *days, *customers, *events, *start, *messages;
    const char *filter, *junit, *coverage;
    const char *db, *listen;
    const char *assignee, *status, *outcome, *note, *limit, *before, *after;
    int overdue;
};

/* Why the store file `db` (given with --db or TEND_DB) cannot be written,
 * or NULL: the file must be writable if it exists, its directory if not. */
static const char *db_problem(const char *db, char *buf, size_t n)
{
    if (!strcmp(db, ":memory:"))
        return NULL;
    if (access(db, F_OK) == 0)
        return access(db, R_OK | W_OK) == 0 ? NULL : (snprintf(buf, n, "%s", strerror(errno)), buf);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", db);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(buf, n, "its directory: %s", strerror(errno));
        return buf;
    }
    return NULL;
}

/* Why `listen` is not HOST:PORT with a port of 1-65535, or NULL. */
static const char *listen_problem(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return "must be HOST:PORT, e.g. 127.0.0.1:8725";
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 1 || port > 65535)
        return "the port must be a number from 1 to 65535";
    return NULL;
}

static int parse(int argc, char **argv, struct opts *o, const char *cmd)
{
    memset(o, 0, sizeof *o);
    o->dir = getenv("TEND_DIR") ? getenv("TEND_DIR") : ".";
    o->db = getenv("TEND_DB") && *getenv("TEND_DB") ? getenv("TEND_DB") : NULL;
    o->listen = getenv("TEND_LISTEN") && *getenv("TEND_LISTEN") ? getenv("TEND_LISTEN") : NULL;
    o->sample = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **value = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            o->help = 1;
            continue;
        }
        if (!strcmp(a, "-v")) {
            o->verbose = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--overdue")) {
            o->overdue = 1;
            continue;
        }
        if (!strcmp(a, "--no-process")) {
            o->no_process = 1;
            continue;
        }
        if (!strcmp(a, "--log-format") || !strcmp(a, "--log-level")) {
            char err[160];
            if (i + 1 >= argc)
                goto missing;
            const char *v = argv[++i];
            if (logger_configure(a[6] == 'f' ? v : NULL, a[6] == 'l' ? v : NULL, err, sizeof err) != 0) {
                fprintf(stderr, "tend %s: %s\n", cmd, err);
                return -1;
            }
            continue;
        }
        if (!strcmp(a, "--products")) {
            o->products = 1;
            continue;
        }
        if (!strcmp(a, "--dir") || !strcmp(a, "-d"))
            value = &o->dir;
        else if (!strcmp(a, "--days"))
            value = &o->days;
        else if (!strcmp(a, "--customers"))
            value = &o->customers;
        else if (!strcmp(a, "--events"))
            value = &o->events;
        else if (!strcmp(a, "--start"))
            value = &o->start;
        else if (!strcmp(a, "--messages"))
            value = &o->messages;
        else if (!strcmp(a, "-k"))
            value = &o->filter;
        else if (!strcmp(a, "--junit"))
            value = &o->junit;
        else if (!strcmp(a, "--coverage"))
            value = &o->coverage;
        else if (!strcmp(a, "--db"))
            value = &o->db;
        else if (!strcmp(a, "--assignee"))
            value = &o->assignee;
        else if (!strcmp(a, "--status"))
            value = &o->status;
        else if (!strcmp(a, "--outcome"))
            value = &o->outcome;
        else if (!strcmp(a, "--note"))
            value = &o->note;
        else if (!strcmp(a, "--limit"))
            value = &o->limit;
        else if (!strcmp(a, "--before"))
            value = &o->before;
        else if (!strcmp(a, "--after"))
            value = &o->after;
        else if (!strcmp(a, "--listen") && !strcmp(cmd, "run"))
            value = &o->listen;
        else if (!strcmp(a, "--sample")) {
            if (i + 1 >= argc)
                goto missing;
            o->sample = atoi(argv[++i]);
            continue;
        }
        if (value) {
            if (i + 1 >= argc)
                goto missing;
            *value = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "tend %s: unknown option %s\n", cmd, a);
            return -1;
        }
        if (o->nargs == 16) {
            fprintf(stderr, "tend %s: too many arguments\n", cmd);
            return -1;
        }
        o->args[o->nargs++] = a;
    }
    char why[300];
    const char *bad;
    if (o->db && (bad = db_problem(o->db, why, sizeof why))) {
        fprintf(stderr, "tend %s: store %s cannot be written: %s\n", cmd, o->db, bad);
        return -1;
    }
    if (o->listen && (bad = listen_problem(o->listen))) {
        fprintf(stderr, "tend %s: listen address '%s': %s\n", cmd, o->listen, bad);
        return -1;
    }
    return 0;
missing:
    fprintf(stderr, "tend %s: %s needs a value\n", cmd, argv[argc - 1]);
    return -1;
}

static void log_stderr(void *ud, const char *level, const char *msg)
{
    (void)ud;
    logger_write(level, msg);
}

/* Opens the store of `dir` on the real clock; loads its scripts when asked.
 * Prints what went wrong and returns NULL on failure. */
static engine *open_dir(const char *cmd, const char *dir, tclock *clk, int load, const char *db)
{
    struct engine_options o = {.dir = dir, .db_path = db, .clock = clk, .log = log_stderr};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    if (!e) {
        fprintf(stderr, "tend %s: %s\n", cmd, err ? err : "cannot open");
        free(err);
        return NULL;
    }
    if (load) {
        char *errors = NULL;
        int n = engine_load_dir(e, &errors);
        if (n != 0) {
            fprintf(stderr, "%s", errors ? errors : "");
            fprintf(stderr, "tend %s: %d script error%s; nothing was changed\n", cmd, n < 0 ? 1 : n,
                    n == 1 ? "" : "s");
            free(errors);
            engine_close(e);
            return NULL;
        }
    }
    return e;
}

/* --- commands ------------------------------------------------------------- */

static int cmd_test(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "test") != 0)
        return 2;
    if (o.help) {
        printf("usage: tend test [-v] [-k PATTERN] [--junit FILE] [--coverage FILE] [PATH...]\n"
               "Runs every *_test.lua under each PATH (default: .), each file in its own\n"
               "sandbox. Prints TAP 13 (a failure's diagnostics in a YAML block: the message,\n"
               "where, the sims' failed instances and warn/error log lines) and a final line\n"
               "`N passed, N failed`; exits 1 on any failure.\n"
               "  -v               whole tracebacks\n"
               "  -k PATTERN       only the cases whose name matches PATTERN (POSIX extended regex)\n"
               "  --junit FILE     also write JUnit XML to FILE (one testsuite per file)\n"
               "  --coverage FILE  write the lines of the journey scripts the tests ran (lcov)\n"
               "Exits 2 on a missing path, an invalid PATTERN or an unwritable FILE.\n");
        return 0;
    }
    struct testrun_options to = {.out = stdout, .verbose = o.verbose, .filter = o.filter, .junit = o.junit,
                                 .coverage = o.coverage};
    return testrun_paths(o.args, o.nargs, &to);
}

static void print_lint(void *ud, int error, const char *where, const char *message)
{
    (void)ud;
    printf("%s: %s: %s\n", where, error ? "error" : "warning", message);
}

static int cmd_check(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "check") != 0)
        return 2;
    if (o.help) {
        printf("usage: tend check [DIR] [--db FILE]\n"
               "Loads tend.lua and every script of DIR (default: .) in the sandbox, then lints\n"
               "templates and sends. Prints each finding as file:line: error|warning: message;\n"
               "exits 1 on any error. The store (tend.lua's db, or --db), when it exists, is\n"
               "only read: anniversary fields holding no date are warnings.\n");
        return 0;
    }
    const char *dir = o.nargs ? o.args[0] : o.dir;
    tclock *clk = clock_new_real();
    struct engine_options eo = {.dir = dir, .db_path = ":memory:", .clock = clk, .log = log_stderr};
    char *err = NULL;
    engine *e = engine_open(&eo, &err);
    if (!e) {
        printf("%s\n", err ? err : "cannot open");
        free(err);
        clock_free(clk);
        return 1;
    }
    char *errors = NULL;
    int n = engine_load_dir(e, &errors);
    int status = 0;
    if (n != 0) {
        printf("%s", errors ? errors : "");
        free(errors);
        status = 1;
    } else {
        int warnings = 0;
        int lint_errors = lint_run(e, o.db, print_lint, NULL, &warnings);
        if (lint_errors)
            status = 1;
        printf("%s: %d error%s, %d warning%s\n", dir, lint_errors, lint_errors == 1 ? "" : "s",
               warnings, warnings == 1 ? "" : "s");
    }
    engine_close(e);
    clock_free(clk);
    return status;
}

static int cmd_status(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "status") != 0)
        return 2;
    if (o.help) {
        printf("usage: tend status [--dir DIR] [--json]\n"
               "Journeys with instances by state and by step, conversions, sends and cost;\n"
               "the outbox by status; channels.\n");
        return 0;
    }
    int json = o.json;
    tclock *clk = clock_new_real();
    engine *e = open_dir("status", o.dir, clk, 0, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    cJSON *r = status_report(e);
    int rc = 0;
    if (!r) {
        fprintf(stderr, "tend status: store: %s\n", store_errmsg(e->st));
        rc = 1;
    } else if (json) {
        char *text = cJSON_Print(r);
        printf("%s\n", text);
        free(text);
    } else {
        status_print(r, stdout);
    }
    cJSON_Delete(r);
    engine_close(e);
    clock_free(clk);
    return rc;
}

static void print_reject(void *ud, long line, const char *reason)
{
    fprintf(stderr, "%s:%ld: %s\n", (const char *)ud, line, reason);
}

static int cmd_import(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "import") != 0)
        return 2;
    if (o.help || o.nargs != 1) {
        printf("usage: tend import [--dir DIR] [--products] FILE|-\n"
               "Creates or updates customers from CSV (header row) or NDJSON. Prints\n"
               "`imported N, updated N, rejected N`; each rejected row goes to stderr as\n"
               "FILE:LINE: reason. Exits 1 if any row was rejected.\n"
               "--products: the product catalog instead (sku, name, category, price,\n"
               "usage_days, related — several skus separated by | or ;).\n");
        return o.help ? 0 : 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("import", o.dir, clk, 1, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    struct import_report rep = {0};
    char err[400] = "";
    int rc = (o.products ? importer_run_products : importer_run)(e, o.args[0], print_reject, (void *)o.args[0],
                                                                &rep, err, sizeof err);
    printf("imported %lld, updated %lld, rejected %lld\n", (long long)rep.imported, (long long)rep.updated,
           (long long)rep.rejected);
    if (rc != 0)
        fprintf(stderr, "tend import: %s\n", err);
    engine_close(e);
    clock_free(clk);
    return rc != 0 || rep.rejected ? 1 : 0;
}

static int cmd_ingest(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "ingest") != 0)
        return 2;
    if (o.help || o.nargs != 1) {
        printf("usage: tend ingest [--dir DIR] [--no-process] FILE|-\n"
               "Stores events from NDJSON (one object a line), then processes them: customer\n"
               "fields, journeys, waits, goals, and whatever falls due now. Prints\n"
               "`accepted N, duplicates N, rejected N`; each rejected line goes to stderr as\n"
               "FILE:LINE: reason. Exits 1 if any line was rejected. --no-process only stores.\n");
        return o.help ? 0 : 2;
    }
    const char *path = o.args[0];
    /* read as a stream in bounded pieces: memory stays flat for any size */
    FILE *in = !strcmp(path, "-") ? stdin : fopen(path, "rb");
    int first = in ? fgetc(in) : EOF;   /* a directory fails here, before the store opens */
    if (!in || (first == EOF && ferror(in))) {
        fprintf(stderr, "tend ingest: %s: %s\n", path, strerror(errno));
        if (in && in != stdin)
            fclose(in);
        return 1;
    }
    if (first != EOF)
        ungetc(first, in);
    tclock *clk = clock_new_real();
    engine *e = open_dir("ingest", o.dir, clk, !o.no_process, o.db);
    if (!e) {
        if (in != stdin)
            fclose(in);
        clock_free(clk);
        return 1;
    }
    struct ingest_report rep;
    int rc = event_ingest_stream(e, in, print_reject, (void *)path, &rep);
    if (in != stdin)
        fclose(in);
    printf("accepted %lld, duplicates %lld, rejected %lld\n", (long long)rep.accepted,
           (long long)rep.duplicates, (long long)rep.rejected);
    fflush(stdout);
    if (rc == 0 && !o.no_process && engine_run_due(e, engine_now(e)) < 0)
        rc = -1;
    engine_close(e);
    clock_free(clk);
    return rc != 0 || rep.rejected ? 1 : 0;
}

struct sample {
    engine *e;
    int left;
};

static void print_sample(const char *id, void *ud)
{
    struct sample *s = ud;
    if (s->left-- <= 0)
        return;
    cJSON *c = customer_json(s->e, id);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
    const cJSON *city = cJSON_GetObjectItemCaseSensitive(c, "city");
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(c, "lifecycle");
    printf("  %-16s %-20s %-12s %s\n", id, cJSON_IsString(name) ? name->valuestring : "",
           cJSON_IsString(city) ? city->valuestring : "", cJSON_IsString(lc) ? lc->valuestring : "");
    cJSON_Delete(c);
}

static int cmd_segment(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "segment") != 0)
        return 2;
    if (o.help || o.nargs != 1) {
        printf("usage: tend segment [--dir DIR] [--sample N] NAME\n"
               "How many customers the segment NAME (declared in a script) matches, and a\n"
               "sample of them. Prints `N customers` first.\n");
        return o.help ? 0 : 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("segment", o.dir, clk, 1, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    lua_State *L = sandbox_state(e->sb);
    int rc = 1;
    if (!catalog_push_segment(e, o.args[0])) {
        fprintf(stderr, "tend segment: no segment named '%s'\n", o.args[0]);
    } else {
        lua_getfield(L, -1, "where");
        if (lua_isfunction(L, -1) && sandbox_pcall(e->sb, L, 0, 1) != LUA_OK) {
            fprintf(stderr, "tend segment: %s\n", lua_tostring(L, -1));
        } else {
            char err[300];
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            segment_query *q = segment_compile(L, -1, engine_now(e), err, sizeof err);
            int64_t n = q ? segment_count(e->st, q) : -1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (!q) {
                fprintf(stderr, "tend segment: %s\n", err);
            } else if (n < 0) {
                fprintf(stderr, "tend segment: store: %s\n", store_errmsg(e->st));
            } else {
                double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
                printf("%lld customer%s (counted in %.1f ms)\n", (long long)n, n == 1 ? "" : "s", ms);
                struct sample s = {e, o.sample};
                if (o.sample > 0 && n > 0)
                    segment_page(e->st, q, "", o.sample, print_sample, &s);
                rc = 0;
            }
            segment_query_free(q);
        }
    }
    engine_close(e);
    clock_free(clk);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "run") != 0)
        return 2;
    if (o.help) {
        printf("usage: tend run [--listen HOST:PORT] [--db FILE] [--log-format text|json]\n"
               "                [--log-level debug|info|warn|error] [DIR]\n"
               "Loads tend.lua and the scripts of DIR (default: .), then serves the HTTP API on\n"
               "the configured address (default 127.0.0.1:8725), processes events, wakes\n"
               "journeys, runs schedules and delivers messages until SIGINT or SIGTERM (which\n"
               "wait up to shutdown_grace for transfers in flight; a second one stops at once).\n"
               "SIGHUP reloads the scripts (a set that does not load is refused) and reopens\n"
               "file-channel files. Logs go to stderr, one timestamped line per entry.\n"
               "TEND_API_TOKEN is the bearer token the API requires; without it a token is\n"
               "generated and written to DIR/.tend-token. --listen (or TEND_LISTEN) overrides\n"
               "tend.lua's `listen`, --db (or TEND_DB) its `db`.\n");
        return 0;
    }
    const char *dir = o.nargs ? o.args[0] : o.dir;
    tclock *clk = clock_new_real();
    engine *e = open_dir("run", dir, clk, 1, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    if (o.listen) {
        free(e->cfg.listen);
        e->cfg.listen = xstrdup(o.listen);
    }
    int rc = server_run(e);
    engine_close(e);
    clock_free(clk);
    return rc;
}

static int cmd_simulate(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "simulate") != 0)
        return 2;
    if (o.help || o.nargs != 1 || !o.days) {
        printf("usage: tend simulate DIR --days N [--customers FILE] [--events FILE] [--start TIME]\n"
               "                         [--messages FILE]\n"
               "Runs the scripts of DIR on a virtual clock against a throw-away copy of the\n"
               "given customers and events, for N days, every channel captured, and prints\n"
               "the forecast: sends by journey, template and channel, and their cost; the\n"
               "contact load per channel and day (days where caps defer more than 10%% of\n"
               "the sends flagged); a policy audit (marketing in quiet hours, over a cap,\n"
               "after an opt-out, deferred never delivered), exit status 1 if any is not 0.\n"
               "--messages FILE writes every message as NDJSON.\n");
        return o.help ? 0 : 2;
    }
    struct simulate_options so = {.dir = o.args[0], .days = atoi(o.days), .customers = o.customers,
                                  .events = o.events, .start = o.start, .messages = o.messages};
    return simulate_run(&so, stdout);
}

static int cmd_new(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "new") != 0)
        return 2;
    if (o.help || o.nargs != 2 || strcmp(o.args[0], "journey") != 0) {
        FILE *out = o.help ? stdout : stderr;
        fprintf(out, "usage: tend new journey NAME [--dir DIR]\n"
                     "Writes DIR/NAME.lua, a commented journey (a template, an entry event, a\n"
                     "wait and a send), and DIR/NAME_test.lua, its test; both pass `tend test`\n"
                     "and `tend check` as written. An existing file is never overwritten.\n");
        return o.help ? 0 : 2;
    }
    char err[512];
    char *written[2];
    if (skeleton_journey(o.dir, o.args[1], written, err, sizeof err) != 0) {
        fprintf(stderr, "tend new: %s\n", err);
        return skeleton_valid_name(o.args[1]) ? 1 : 2;   /* a bad name is misuse */
    }
    printf("wrote %s\nwrote %s\nnext: tend test %s && tend check %s\n", written[0], written[1], written[1], o.dir);
    free(written[0]);
    free(written[1]);
    return 0;
}

static int cmd_backup(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "backup") != 0)
        return 2;
    if (o.help || o.nargs != 1) {
        printf("usage: tend backup [--dir DIR] [--db FILE] DEST\n"
               "Copies the store to the new file DEST with SQLite's online backup: safe while\n"
               "`tend run` serves (it is held only for moments), consistent as of the end of\n"
               "the copy, and checked before it counts. DEST must not exist.\n");
        return o.help ? 0 : 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("backup", o.dir, clk, 0, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    char err[600];
    int rc = store_backup(e->st, o.args[0], err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "tend backup: %s\n", err);
    else
        printf("backed up %s to %s\n", e->db_path, o.args[0]);
    engine_close(e);
    clock_free(clk);
    return rc != 0;
}

/* A whole number from an option's text within [lo, hi], or -1. */
static long long option_number(const char *text, long long lo, long long hi)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    return *end || errno || v < lo || v > hi ? -1 : v;
}

static int cmd_tasks(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "tasks") != 0)
        return 2;
    if (o.help || o.nargs) {
        printf("usage: tend tasks [--dir DIR] [--assignee A] [--status S] [--overdue] [--after ID]\n"
               "                  [--limit N] [--json]\n"
               "Staff tasks in id order (default: the open ones; --status done|failed|cancelled|all),\n"
               "a page of --limit (default 100) after task --after. --overdue: open and past due.\n");
        return o.help ? 0 : 2;
    }
    long long after = o.after ? option_number(o.after, 0, INT64_MAX) : 0;
    long long limit = o.limit ? option_number(o.limit, 1, 1000) : 100;
    if (after < 0 || limit < 0) {
        fprintf(stderr, "tend tasks: %s\n", after < 0 ? "--after must be a task id" : "--limit must be 1 to 1000");
        return 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("tasks", o.dir, clk, 0, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    struct task_filter f = {.status = o.status ? o.status : "open", .assignee = o.assignee, .overdue = o.overdue};
    cJSON *page = task_page(e, &f, after, (int)limit);
    if (o.json) {
        char *text = cJSON_Print(page);
        printf("%s\n", text);
        free(text);
    } else {
        const cJSON *t;
        int n = 0;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(page, "tasks")) {
            char due[40] = "-";
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "due_at");
            if (d)
                clock_format((tend_time)d->valuedouble, e->cfg.timezone, due, sizeof due);
            const char *who = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "assignee"));
            const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "kind"));
            const char *outcome = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "outcome"));
            printf("%6.0f  %-9s %-6s %-10s %-14s due %s%s  %s%s%s\n",
                   cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "id")),
                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "status")), kind ? kind : "-",
                   who ? who : "-", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "customer")), due,
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "overdue")) ? " (overdue)" : "",
                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "note")),
                   outcome ? " -> " : "", outcome ? outcome : "");
            n++;
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "next");
        printf("%d task%s", n, n == 1 ? "" : "s");
        if (cJSON_IsNumber(next))
            printf("; more with --after %.0f", next->valuedouble);
        putchar('\n');
    }
    cJSON_Delete(page);
    engine_close(e);
    clock_free(clk);
    return 0;
}

static int cmd_task(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "task") != 0)
        return 2;
    if (o.help || o.nargs != 2) {
        printf("usage: tend task [--dir DIR] ID done|failed|cancelled [--outcome TEXT] [--note TEXT]\n"
               "Closes an open task with its outcome, as PATCH /v1/tasks/ID does: the event\n"
               "task.<status> follows for the task's customer (a running `tend run` processes it\n"
               "at its next pass).\n");
        return o.help ? 0 : 2;
    }
    long long id = option_number(o.args[0], 1, INT64_MAX);
    if (id < 0) {
        fprintf(stderr, "tend task: '%s' is not a task id\n", o.args[0]);
        return 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("task", o.dir, clk, 0, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    char err[300];
    enum task_close_result r = TASK_STORE_ERROR;
    if (store_begin(e->st) == 0) {
        r = task_close(e, id, o.args[1], o.outcome, o.note, err, sizeof err);
        if (r == TASK_CLOSED_NOW && store_commit(e->st) != 0)
            r = TASK_STORE_ERROR;
        else if (r != TASK_CLOSED_NOW)
            store_rollback(e->st);
    }
    if (r == TASK_STORE_ERROR)
        snprintf(err, sizeof err, "store: %s", store_errmsg(e->st));
    if (r == TASK_CLOSED_NOW)
        printf("task %lld %s\n", id, o.args[1]);
    else
        fprintf(stderr, "tend task: %s\n", err);
    engine_close(e);
    clock_free(clk);
    return r == TASK_CLOSED_NOW ? 0 : r == TASK_BAD_REQUEST ? 2 : 1;
}

static int cmd_customer(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o, "customer") != 0)
        return 2;
    if (o.help || o.nargs != 1) {
        printf("usage: tend customer [--dir DIR] ID [--limit N] [--before TIME] [--json]\n"
               "The customer's timeline, newest first: events, journey instances with each\n"
               "recorded step, messages with their receipts, coupons and tasks. A page of --limit\n"
               "(default 50) entries before --before (epoch seconds; the page's end says the next).\n");
        return o.help ? 0 : 2;
    }
    long long before = o.before ? option_number(o.before, 0, INT64_MAX) : 0;
    long long limit = o.limit ? option_number(o.limit, 1, 500) : 50;
    if (before < 0 || limit < 0) {
        fprintf(stderr, "tend customer: %s\n", before < 0 ? "--before must be epoch seconds" : "--limit must be 1 to 500");
        return 2;
    }
    tclock *clk = clock_new_real();
    engine *e = open_dir("customer", o.dir, clk, 0, o.db);
    if (!e) {
        clock_free(clk);
        return 1;
    }
    cJSON *t = timeline_customer(e, o.args[0], before, (int)limit);
    int rc = 0;
    if (!t) {
        fprintf(stderr, "tend customer: no customer '%s'\n", o.args[0]);
        rc = 1;
    } else if (o.json) {
        char *text = cJSON_Print(t);
        printf("%s\n", text);
        free(text);
    } else {
        timeline_print(t, stdout);
    }
    cJSON_Delete(t);
    engine_close(e);
    clock_free(clk);
    return rc;
}

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"run", cmd_run},       {"test", cmd_test},       {"check", cmd_check},
    {"import", cmd_import}, {"ingest", cmd_ingest},   {"segment", cmd_segment},
    {"simulate", cmd_simulate}, {"status", cmd_status},   {"backup", cmd_backup},
    {"tasks", cmd_tasks},   {"task", cmd_task},       {"customer", cmd_customer},
    {"new", cmd_new},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        struct versions v;
        version_get(&v);
        printf("tend %s (Lua %s, SQLite %s, libcurl %s, libevent %s)\n", v.tend, v.lua, v.sqlite, v.curl,
               v.libevent);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            netloop_global_init(CURL_GLOBAL_DEFAULT);
            int rc = commands[i].run(argc - 1, argv + 1);
            curl_global_cleanup();
            clock_shutdown();
            calendar_shutdown();
            mime_shutdown();
            return rc;
        }
    }
    fprintf(stderr, "tend: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
