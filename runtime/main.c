/* main — the `tend` command line: parses the subcommand and hands over.
 *
 * Each subcommand is a function taking (argc, argv) with argv[0] the
 * subcommand's name, returning the process exit status: 0 success, 1 a
 * failure of what was asked (a failing test, a script error), 2 misuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "testrun.h"

#define TEND_VERSION "0.1.0"

static const char usage[] =
    "usage: tend <command> [options]\n"
    "\n"
    "commands:\n"
    "  test [PATH...]       run *_test.lua files sandboxed on a simulated clock\n"
    "\n"
    "  tend --help          this text\n"
    "  tend --version       the version\n"
    "\n"
    "Run `tend <command> --help` for a command's options.\n";

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

static int cmd_test(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: tend test [-v] [PATH...]\n"
               "Runs every *_test.lua under each PATH (default: .), each file in its own\n"
               "sandbox. Prints TAP and a final line `N passed, N failed`; exits 1 on any\n"
               "failure. -v prints whole tracebacks.\n");
        return 0;
    }
    struct testrun_options o = {.out = stdout};
    const char **paths = calloc((size_t)argc, sizeof *paths);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            o.verbose = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "tend test: unknown option %s\n", argv[i]);
            free(paths);
            return 2;
        } else {
            paths[n++] = argv[i];
        }
    }
    int rc = testrun_paths(paths, n, &o);
    free(paths);
    return rc;
}

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"test", cmd_test},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tend %s\n", TEND_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            int rc = commands[i].run(argc - 1, argv + 1);
            clock_shutdown();
            return rc;
        }
    }
    fprintf(stderr, "tend: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
