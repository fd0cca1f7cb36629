/* fuzz_segment — segment filters compiled to SQL. The input is a Lua
 * expression (`{ city = "A", total_spent = at_least(10) }`), evaluated in a
 * fresh script environment under the sandbox's limits; a table is compiled
 * by segment_compile and run against a store holding a few customers.
 * Invariant: a filter that compiles runs — a store error would mean the
 * compiler wrote SQL that does not parse or binds the wrong parameters. */
#include <lua.h>

#include "customer.h"
#include "fuzz.h"
#include "segment.h"

static engine *e;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *dir = fuzz_tempdir("segment");
    e = fuzz_engine(dir, clock_new_virtual(FUZZ_T0), NULL);
    free(dir);
    static const char *const rows[] = {
        "{\"id\":\"c1\",\"name\":\"Lingling\",\"city\":\"Shanghai\",\"orders_count\":3,\"total_spent\":299.5,"
        "\"last_order_at\":1772000000,\"birthday\":\"1990-05-01\",\"tags\":[\"vip\",\"gold\"],"
        "\"attrs\":{\"baby\":{\"age\":2},\"tier\":\"2\"}}",
        "{\"id\":\"c2\",\"name\":\"Wei\",\"region\":\"East\",\"blocked\":true,\"attrs\":{\"tier\":3}}",
        "{\"id\":\"c3\"}",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cJSON *c = cJSON_Parse(rows[i]);
        char err[300];
        int created;
        if (!c || customer_upsert(e, c, 0, &created, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_segment: customer %zu: %s\n", i, err);
            abort();
        }
        cJSON_Delete(c);
    }
    return 0;
}

static void on_id(const char *id, void *ud)
{
    (void)ud;
    FUZZ_REQUIRE(id && *id, "an empty id in a page");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;   /* a filter is a line or two; long inputs only slow the search */
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    strbuf src;
    strbuf_init(&src);
    strbuf_puts(&src, "return ");
    strbuf_add(&src, (const char *)data, size);
    sandbox_new_env(e->sb, NULL);
    if (sandbox_load(e->sb, src.s, src.len, "filter", -1) == LUA_OK &&
        sandbox_pcall(e->sb, L, 0, 1) == LUA_OK) {
        char err[300];
        segment_query *q = segment_compile(L, -1, engine_now(e), err, sizeof err);
        if (q) {
            int64_t n = segment_count(e->st, q);
            FUZZ_REQUIRE(n >= 0 && n <= 3, "count %lld for %s: %s", (long long)n, segment_query_where(q),
                         store_errmsg(e->st));
            int got = segment_page(e->st, q, "", 2, on_id, NULL);
            FUZZ_REQUIRE(got >= 0 && got <= 2, "page of %d: %s", got, store_errmsg(e->st));
            FUZZ_REQUIRE(segment_matches(e->st, q, "c1") >= 0, "matches: %s", store_errmsg(e->st));
            segment_query_free(q);
        } else {
            FUZZ_REQUIRE(err[0], "a filter refused with no reason");
        }
    }
    lua_settop(L, top);
    strbuf_free(&src);
    return 0;
}
