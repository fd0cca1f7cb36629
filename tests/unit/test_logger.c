/* Unit tests for runtime/logger.c, against runtime/logger.h: the text and
 * JSON line formats, level filtering, a multi-line message as one line (the
 * whole text only at debug), and repeats rate-limited to one line plus a
 * count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logger.h"

static FILE *out;

static int setup(void **state)
{
    (void)state;
    out = tmpfile();
    assert_non_null(out);
    logger_set_stream(out);
    char err[200];
    assert_int_equal(logger_configure("text", "info", err, sizeof err), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    logger_flush(1);
    logger_set_stream(NULL);
    fclose(out);
    return 0;
}

/* Everything written since the last call. */
static char *written(void)
{
    static long pos;
    fflush(out);
    long end = ftell(out);
    if (end < pos)
        pos = 0;
    char *s = calloc(1, (size_t)(end - pos) + 1);
    fseek(out, pos, SEEK_SET);
    size_t n = fread(s, 1, (size_t)(end - pos), out);
    s[n] = 0;
    fseek(out, end, SEEK_SET);
    pos = end;
    return s;
}

/* Forgets what was written so far. */
static void skip_written(void)
{
    free(written());
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_text_line(void **state)
{
    (void)state;
    skip_written();
    logger_write("warn", "disk is slow");
    char *s = written();
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z warn disk is slow\n$",
                             REG_EXTENDED), 0);
    assert_int_equal(regexec(&re, s, 0, NULL, 0), 0);
    regfree(&re);
    free(s);
}

static void test_json_line(void **state)
{
    (void)state;
    char err[200];
    assert_int_equal(logger_configure("json", NULL, err, sizeof err), 0);
    skip_written();
    logger_write("error", "a \"quoted\"\ttab");
    logger_write("log", "care.lua:3: hello");
    char *s = written();
    assert_non_null(strstr(s, "\"level\":\"error\",\"msg\":\"a \\\"quoted\\\"\\ttab\"}\n"));
    assert_non_null(strstr(s, "\"level\":\"info\",\"msg\":\"care.lua:3: hello\",\"source\":\"script\"}"));
    assert_int_equal(strncmp(s, "{\"ts\":\"", 7), 0);
    assert_int_equal(count_lines(s), 2);
    free(s);
    assert_int_equal(logger_configure("text", NULL, err, sizeof err), 0);
}

static void test_levels(void **state)
{
    (void)state;
    char err[200];
    assert_int_equal(logger_configure(NULL, "warn", err, sizeof err), 0);
    skip_written();
    logger_write("info", "not shown");
    logger_write("debug", "not shown either");
    logger_write("error", "shown");
    char *s = written();
    assert_null(strstr(s, "not shown"));
    assert_non_null(strstr(s, "error shown"));
    free(s);
    assert_int_equal(logger_configure(NULL, "loud", err, sizeof err), -1);
    assert_non_null(strstr(err, "--log-level must be debug, info, warn or error"));
    assert_int_equal(logger_configure("xml", NULL, err, sizeof err), -1);
    assert_int_equal(logger_configure(NULL, "info", err, sizeof err), 0);
}

static void test_traceback_only_at_debug(void **state)
{
    (void)state;
    char err[200];
    skip_written();
    logger_write("error", "instance 7 failed: care.lua:9: boom\nstack traceback:\n\tcare.lua:9: in run");
    char *s = written();
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "error instance 7 failed: care.lua:9: boom\n"));
    assert_null(strstr(s, "traceback"));
    free(s);
    assert_int_equal(logger_configure(NULL, "debug", err, sizeof err), 0);
    logger_write("error", "instance 8 failed: care.lua:9: boom\nstack traceback:\n\tcare.lua:9: in run");
    s = written();
    assert_int_equal(count_lines(s), 2);   /* the first line, then the whole at debug, escaped */
    assert_non_null(strstr(s, "debug instance 8 failed: care.lua:9: boom\\nstack traceback:\\n"));
    free(s);
    assert_int_equal(logger_configure(NULL, "info", err, sizeof err), 0);
}

static void test_repeats_rate_limited(void **state)
{
    (void)state;
    skip_written();
    for (int i = 0; i < 100000; i++)
        logger_write("error", "accept(): Too many open files");
    logger_write("error", "something else");
    char *s = written();
    assert_int_equal(count_lines(s), 2);
    free(s);
    logger_flush(1);
    s = written();
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "(99999 more like this in 10 s, suppressed) accept(): Too many open files"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_traceback_only_at_debug),
        cmocka_unit_test(test_repeats_rate_limited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
