/* Unit tests for runtime/bytecode.c: the globals and code lines the Lua
 * compiler sees in a chunk, without running it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytecode.h"
#include "util.h"

struct seen {
    strbuf globals;     /* "name@line r|w " ... */
    int lines[64];
};

static void on_global(void *ud, const char *name, int line, int is_write)
{
    struct seen *s = ud;
    strbuf_printf(&s->globals, "%s@%d%s ", name, line, is_write ? "w" : "");
}

static void on_line(void *ud, int line)
{
    struct seen *s = ud;
    if (line >= 0 && line < 64)
        s->lines[line]++;
}

static char *globals_of(const char *src, struct seen *s)
{
    memset(s, 0, sizeof *s);
    strbuf_init(&s->globals);
    struct bytecode_visitor v = {on_global, on_line, s};
    char err[256] = "";
    int rc = bytecode_walk(src, strlen(src), "t.lua", &v, err, sizeof err);
    if (rc != 0)
        fail_msg("walk failed: %s", err);
    return s->globals.s ? s->globals.s : "";
}

/* Locals, parameters, loop variables, fields and table keys are not globals;
 * reads inside nested functions are, at their own lines. */
static void test_globals_by_scope(void **state)
{
    (void)state;
    struct seen s;
    const char *src =
        "local function helper(x) return x end\n"            /* 1 */
        "journey \"gift\" {\n"                                /* 2 */
        "  on = \"order.paid\",\n"                            /* 3 */
        "  run = function(c, ev)\n"                           /* 4 */
        "    for i, v in ipairs(ev.items) do helper(v) end\n" /* 5 */
        "    local coupon = coupon_isue(c, { value = 20 })\n" /* 6 */
        "    send(\"sms\", c, \"gift\", { coupon = coupon })\n"   /* 7 */
        "    counter = (counter or 0) + 1\n"                  /* 8 */
        "  end,\n"
        "}\n";
    char *g = globals_of(src, &s);
    /* nested functions are visited before the code that encloses them */
    assert_string_equal(g, "ipairs@5 coupon_isue@6 send@7 counter@8 counter@8w journey@2 ");
    assert_true(s.lines[5] > 0);
    assert_true(s.lines[6] > 0);
    strbuf_free(&s.globals);
}

static void test_syntax_error_named(void **state)
{
    (void)state;
    char err[256] = "";
    struct bytecode_visitor v = {NULL, NULL, NULL};
    assert_int_equal(bytecode_walk("x = = 1", 7, "bad.lua", &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad.lua:1:"));
}

/* Lines with no code (comments, blank lines) are never visited. */
static void test_code_lines(void **state)
{
    (void)state;
    struct seen s;
    globals_of("-- a comment\n\nlocal a = 1\n-- another\nreturn a\n", &s);
    assert_int_equal(s.lines[2], 0);
    assert_true(s.lines[3] > 0);
    assert_int_equal(s.lines[4], 0);
    assert_true(s.lines[5] > 0);
    strbuf_free(&s.globals);
}

/* Past a function's 256th constant the compiler indexes `_ENV` through
 * registers; those globals are still found, and fields of locals past the
 * 256th constant are still not globals. */
static void test_globals_past_256_constants(void **state)
{
    (void)state;
    strbuf src;
    strbuf_init(&src);
    strbuf_printf(&src, "local words = {\n");                       /* 1 */
    for (int i = 0; i < 300; i++)
        strbuf_printf(&src, "'w%d',", i);
    strbuf_printf(&src, "\n}\n");                                   /* 2, 3 */
    strbuf_printf(&src, "local n = sned(words[1])\n");              /* 4 */
    strbuf_printf(&src, "words.extra = { key = n }\n");             /* 5 */
    strbuf_printf(&src, "counter = (counter or 0) + n\n");          /* 6 */
    strbuf_printf(&src, "local t = words; t.more = tostring(n) .. words.extra.key\n"); /* 7 */
    strbuf_printf(&src, "return function() return late_name end\n");  /* 8 */
    struct seen s;
    char *g = globals_of(src.s, &s);
    assert_string_equal(g, "late_name@8 sned@4 counter@6 counter@6w tostring@7 ");
    strbuf_free(&s.globals);
    strbuf_free(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_globals_by_scope),
        cmocka_unit_test(test_syntax_error_named),
        cmocka_unit_test(test_code_lines),
        cmocka_unit_test(test_globals_past_256_constants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
