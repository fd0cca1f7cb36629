/* fuzz_event — event JSON: json_parse's scan (depth, \u0000, UTF-8, 1e400),
 * event validation, and NDJSON ingest (rolled back after each input).
 * Invariants: what json_parse accepts prints back as valid UTF-8 with no
 * NUL and parses again; an event event_check accepts has a time inside
 * 1970..9999 once stored. */
#include "event.h"
#include "fuzz.h"
#include "json.h"
#include "validate.h"

static engine *e;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char config[] = "return { unknown_customers = 'create', quiet_hours = false }\n";
    char *dir = fuzz_tempdir("event");
    char *path = util_path_join(dir, "tend.lua");
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    free(path);
    e = fuzz_engine(dir, clock_new_virtual(FUZZ_T0), NULL);
    free(dir);
    return 0;
}

static void on_reject(void *ud, long line, const char *reason)
{
    (void)ud;
    FUZZ_REQUIRE(line > 0 && reason && *reason, "line %ld", line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[400];
    cJSON *ev = json_parse(text, size, err, sizeof err);
    if (ev) {
        char *out = json_print(ev);
        size_t n = strlen(out);
        FUZZ_REQUIRE(validate_utf8(out, n) == n, "printed JSON is not UTF-8: %s", out);
        cJSON *again = json_parse(out, n, err, sizeof err);
        FUZZ_REQUIRE(again != NULL, "printed JSON does not parse: %s: %s", err, out);
        cJSON_Delete(again);
        free(out);
        if (event_check(e, ev, err, sizeof err) != 0)
            FUZZ_REQUIRE(err[0], "a refused event with no reason");
        cJSON_Delete(ev);
    } else {
        FUZZ_REQUIRE(err[0], "a refused text with no reason");
    }
    /* the same bytes as NDJSON, stored inside a transaction that is undone */
    if (size <= 1 << 16 && store_begin(e->st) == 0) {
        struct ingest_report rep;
        event_ingest_ndjson(e, text, size, on_reject, NULL, &rep);
        FUZZ_REQUIRE(store_count(e->st, "SELECT COUNT(*) FROM events WHERE at < 0 OR at > 253402300799") == 0,
                     "an event stored with a time outside 1970..9999");
        store_rollback(e->st);
    }
    return 0;
}
