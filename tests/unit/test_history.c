/* Unit tests for runtime/history.c and the history a wake stores (instance.c).
 *
 *  - the line form reads back what was written: kinds, hashes, times,
 *    pending waits with and without deadlines, descriptions with quotes,
 *    newlines and control bytes, JSON results; and converts to and from the
 *    JSON array form losslessly; a damaged line is refused and skipped;
 *  - an instance whose history is still the JSON array of an older store
 *    replays it (the tag after its first wait happens once), is stored back
 *    in the line form, and one whose recorded hash no longer matches fails
 *    as a divergence;
 *  - json_push_stored gives the same Lua values as the validating
 *    json_push_text for every kind of value a history or trigger holds
 *    (nulls in arrays and objects, escapes, integers and floats, nesting),
 *    and text its fast path refuses still reads or fails as before;
 *  - a 150-step journey seals its older lines into history_chunks, keeps a
 *    short row, completes a wait_for recorded after the seal, and its
 *    timeline shows every step with its time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "engine.h"
#include "history.h"
#include "json.h"
#include "instance.h"
#include "step.h"
#include "timeline.h"
#include "fixture.h"

static void test_lines_read_back(void **state)
{
    (void)state;
    strbuf b;
    strbuf_init(&b);
    history_append(&b, "wait", 0x68d34a7a, 1767225600, 0, 0, "86400", "1767312000", 10);
    history_append(&b, "wait_for", 0x1f, 1767225601, 1, 1767300000, "order.paid", NULL, 0);
    history_append(&b, "http_get", 0, -1, 1, 0, "http://x/\"q\"\n\t\x01\\", NULL, 0);
    const char *r = "{\"body\":\"a\\nb\",\"status\":200}";
    history_append(&b, "send", -1, 5, 0, 0, "", r, strlen(r));

    size_t off = 0;
    struct history_entry e;
    assert_int_equal(history_next(b.s, b.len, &off, &e), 1);
    assert_int_equal(e.kind_len, 4);
    assert_memory_equal(e.kind, "wait", 4);
    assert_true(e.has_hash);
    assert_int_equal(e.hash, 0x68d34a7a);
    assert_true(e.has_t);
    assert_int_equal(e.t, 1767225600);
    assert_false(e.pending);
    assert_int_equal(e.result_len, 10);
    assert_memory_equal(e.result, "1767312000", 10);

    assert_int_equal(history_next(b.s, b.len, &off, &e), 1);
    assert_true(e.pending);
    assert_int_equal(e.deadline, 1767300000);
    assert_null(e.result);
    char *d = history_desc(&e);
    assert_string_equal(d, "order.paid");
    free(d);

    assert_int_equal(history_next(b.s, b.len, &off, &e), 1);
    assert_true(e.pending);
    assert_int_equal(e.deadline, 0);
    assert_false(e.has_t);
    assert_true(e.has_hash);
    assert_int_equal(e.hash, 0);
    d = history_desc(&e);
    assert_string_equal(d, "http://x/\"q\"\n\t\x01\\");
    free(d);

    assert_int_equal(history_next(b.s, b.len, &off, &e), 1);
    assert_false(e.has_hash);
    assert_int_equal(e.result_len, strlen(r));
    assert_memory_equal(e.result, r, strlen(r));
    assert_int_equal(history_next(b.s, b.len, &off, &e), 0);

    /* the JSON form and back: the same text */
    cJSON *j = history_to_json(b.s, b.len);
    assert_int_equal(cJSON_GetArraySize(j), 4);
    cJSON *first = cJSON_GetArrayItem(j, 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(first, "h")), "68d34a7a");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(first, "t")), "1767225600");
    assert_int_equal((long long)cJSON_GetNumberValue(cJSON_GetObjectItem(first, "r")), 1767312000);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "p")));
    strbuf again;
    strbuf_init(&again);
    assert_int_equal(history_from_json(j, &again), 4);
    assert_string_equal(again.s, b.s);
    cJSON_Delete(j);
    strbuf_free(&again);
    strbuf_free(&b);
}

/* history lines, receipt bodies and log entries print strings with
 * strbuf_json_string: byte for byte what cJSON prints for the same text, so
 * what was written as cJSON before reads back the same */
static void test_json_string_as_cjson(void **state)
{
    (void)state;
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = 0;
    const char *texts[] = {"", "plain", "q\"b\\n\n\r\t\b\f\x01\x1f\x7f", "\xe4\xbd\xa0\xe5\xa5\xbd", all};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        cJSON *str = cJSON_CreateString(texts[i]);
        char *want = cJSON_PrintUnformatted(str);
        strbuf b;
        strbuf_init(&b);
        strbuf_add(&b, "x", 1);
        strbuf_json_string(&b, texts[i], strlen(texts[i]));
        assert_string_equal(b.s + 1, want);
        strbuf_free(&b);
        free(want);
        cJSON_Delete(str);
    }
}

static void test_damaged_line_skipped(void **state)
{
    (void)state;
    const char *text = "wait zz 1 - \"1\" 2\nnow 1a 5 - \"\" 5\n";
    size_t off = 0;
    struct history_entry e;
    assert_int_equal(history_next(text, strlen(text), &off, &e), -1);
    assert_int_equal(history_next(text, strlen(text), &off, &e), 1);
    assert_memory_equal(e.kind, "now", 3);
    assert_false(history_is_json(text));
    assert_true(history_is_json(" [{\"k\":\"now\"}]"));
}

/* Lua's view of a value: a canonical dump (sorted keys, typed numbers). */
static const char DUMP[] =
    "local function dump(v)\n"
    "  if type(v) ~= 'table' then return math.type(v) and (math.type(v) .. ':' .. tostring(v))"
    " or (type(v) .. ':' .. tostring(v)) end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = dump(k) .. '=' .. dump(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    "return dump";

static char *dump_top(lua_State *L)
{
    lua_pushvalue(L, 1);   /* dump */
    lua_insert(L, -2);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    char *s = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return s;
}

static void test_stored_json_as_validated(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, DUMP), LUA_OK);
    static const char *const texts[] = {
        "{\"a\":1,\"b\":[1,null,3],\"c\":\"x\\ny\\u00e9\\u4e2d\\\"\\\\/\",\"d\":1.5,\"e\":null,\"f\":true}",
        "{\"g\":{\"h\":-0,\"i\":[[],{}]},\"big\":12345678901234567890,\"n\":1e3,\"m\":-2.5E-3}",
        "[\"\\ud83d\\ude00\", false, 9007199254740993, \"\\t\"]",
        /* plain integers (read without strtod up to 15 digits) and strings
         * without escapes (read in place) beside the ones that are not */
        "{\"i\":123456789012345,\"j\":-123456789012345,\"k\":1234567890123456,\"l\":-0,\"m\":0,"
        "\"n\":007,\"o\":-9007199254740993,\"\":\"\",\"p\":\"a\\nb\",\"q\":\"\\n\",\"r\":[0,-1,25]}",
        "[-]", "[1-2]", "[--1]", "[-1-]", "[12e]", "{\"a\":\"x\x01\"}",
        " 42 ", "\"plain\"", "null", "[1,2,]", "{\"a\" 1}", "1e400", "\"\\u0000\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char e1[200] = "", e2[200] = "";
        int top = lua_gettop(L);
        int a = json_push_text(L, texts[i], strlen(texts[i]), e1, sizeof e1);
        char *want = a == 0 ? dump_top(L) : NULL;
        int b = json_push_stored(L, texts[i], strlen(texts[i]), e2, sizeof e2);
        char *got = b == 0 ? dump_top(L) : NULL;
        if (a != b || (want && strcmp(want, got) != 0) || strcmp(e1, e2) != 0)
            fail_msg("%s: validated %d %s (%s), stored %d %s (%s)", texts[i], a, want, e1, b, got, e2);
        assert_int_equal(lua_gettop(L), top);
        free(want);
        free(got);
    }
    lua_close(L);
}

/* --- stored histories ----------------------------------------------------- */

#define T0 1767225600   /* 2026-01-01 00:00 UTC */

static const char SCRIPT[] =
    "journey \"three\" { run = function(c) wait(days(1)) c:tag(\"woken\") wait(days(1)) end }\n"
    "journey \"long\" { run = function(c)\n"
    "  for i = 1, 150 do wait(hours(1)) end\n"
    "  c:tag(\"long\")\n"
    "  local ev = wait_for(\"ping\", { timeout = days(1) })\n"
    "  if ev then c:tag(\"pinged\") end\n"
    "end }\n";

static int setup(void **state)
{
    *state = fixture_open("hist", T0, "{\"synchronous\": \"normal\"}", SCRIPT);
    return 0;
}

static int teardown(void **state)
{
    fixture_close(*state);
    return 0;
}

static int64_t count(engine *e, const char *sql)
{
    return store_count(e->st, sql);
}

static char *column(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    assert_int_equal(store_step(s), STORE_ROW);
    char *v = xstrdup(store_col_text(s, 0) ? store_col_text(s, 0) : "");
    store_reset(s);
    return v;
}

static void advance(struct fixture *f, tend_time by)
{
    clock_set(f->clock, engine_now(f->e) + by);
    while (instance_run_due(f->e, engine_now(f->e), 100) > 0)
        ;
}

/* An older store's JSON history: the first wait as main recorded it. */
static void set_json_history(engine *e, int64_t id, const char *hash_of)
{
    char *sql = xasprintf("UPDATE instances SET history = '[{\"k\":\"wait\",\"h\":\"%x\",\"a\":\"86400\","
                          "\"t\":\"%d\",\"r\":%d}]', step = 1 WHERE id = %lld",
                          step_hash(hash_of), T0, T0 + 86400, (long long)id);
    assert_int_equal(store_exec(e->st, sql), 0);
    free(sql);
}

static void test_json_history_replays(void **state)
{
    struct fixture *f = *state;
    char err[200];
    int64_t id = instance_start(f->e, "three", "c1", NULL, 1, err, sizeof err);
    assert_true(id > 0);
    set_json_history(f->e, id, "86400");
    advance(f, 86400);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'c1' AND tag = 'woken'"), 1);
    assert_int_equal(count(f->e, "SELECT step FROM instances WHERE state = 'waiting'"), 3);
    char *h = column(f->e, "SELECT history FROM instances");
    assert_false(history_is_json(h));
    char *want = xasprintf("wait %x %d - \"86400\" %d\n", step_hash("86400"), T0, T0 + 86400);
    assert_memory_equal(h, want, strlen(want));
    free(want);
    free(h);
    advance(f, 86400);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE state = 'done' AND step = 3"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'woken'"), 1);
}

static void test_json_history_divergence(void **state)
{
    struct fixture *f = *state;
    char err[200];
    int64_t id = instance_start(f->e, "three", "c2", NULL, 1, err, sizeof err);
    assert_true(id > 0);
    set_json_history(f->e, id, "3600");   /* recorded as wait(3600) */
    advance(f, 86400);
    char *e = column(f->e, "SELECT error FROM instances WHERE state = 'failed'");
    assert_non_null(strstr(e, "diverged from its history at step 1: the script now calls wait(86400) where "
                              "the history recorded wait(86400) (they read the same: what differs is hashed"));
    free(e);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags"), 0);
}

static void test_long_history_sealed(void **state)
{
    struct fixture *f = *state;
    char err[200];
    int64_t id = instance_start(f->e, "long", "c3", NULL, 1, err, sizeof err);
    assert_true(id > 0);
    for (int i = 0; i < 150; i++)
        advance(f, 3600);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND step = 152"), 1);
    assert_true(count(f->e, "SELECT COUNT(*) FROM history_chunks") >= 2);
    assert_true(count(f->e, "SELECT length(history) FROM instances") < 4096);
    cJSON *ping = cJSON_Parse("{\"type\": \"ping\", \"customer\": \"c3\"}");
    assert_int_equal(instance_route_event(f->e, "c3", "ping", engine_now(f->e), ping), 0);
    cJSON_Delete(ping);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE state = 'done' AND step = 153"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE tag IN ('long', 'pinged')"), 2);

    assert_int_equal(store_exec(f->e->st, "INSERT INTO customers (id) VALUES ('c3')"), 0);
    cJSON *t = timeline_customer(f->e, "c3", T0 + 400 * 86400, 10);
    assert_non_null(t);
    const cJSON *x, *inst = NULL;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(t, "entries")) {
        if (cJSON_GetObjectItem(x, "steps"))
            inst = x;
    }
    assert_non_null(inst);
    const cJSON *steps = cJSON_GetObjectItem(inst, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 153);
    const cJSON *st;
    int with_time = 0;
    cJSON_ArrayForEach(st, steps)
        with_time += cJSON_GetObjectItem(st, "at") != NULL;
    assert_int_equal(with_time, 153);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 151), "step")),
                        "wait_for");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 151), "result"));   /* the ping */
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 151), "pending"));
    cJSON_Delete(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_read_back),
        cmocka_unit_test(test_json_string_as_cjson),
        cmocka_unit_test(test_damaged_line_skipped),
        cmocka_unit_test(test_stored_json_as_validated),
        cmocka_unit_test_setup_teardown(test_json_history_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_history_divergence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_history_sealed, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clock_shutdown();
    return rc;
}
