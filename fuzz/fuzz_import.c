/* fuzz_import — `tend import` rows: the input is imported once as CSV and
 * once as NDJSON (from a file, as the command does), each inside a
 * transaction undone afterwards. Invariants: every rejection names a line;
 * nothing stored has a NUL-cut, multi-line or non-UTF-8 name or email, or a
 * time outside 1970..9999. */
#include "customer.h"
#include "fuzz.h"
#include "importer.h"
#include "validate.h"

static engine *e;
static char *csv_path, *ndjson_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *dir = fuzz_tempdir("import");
    e = fuzz_engine(dir, clock_new_virtual(FUZZ_T0), NULL);
    csv_path = util_path_join(dir, "rows.csv");
    ndjson_path = util_path_join(dir, "rows.ndjson");
    free(dir);
    return 0;
}

static void on_reject(void *ud, long line, const char *reason)
{
    (void)ud;
    FUZZ_REQUIRE(line > 0 && reason && *reason, "line %ld", line);
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void check_stored(void)
{
    store_stmt *s = store_sql(e->st, "SELECT id, name, email FROM customers");
    while (store_step(s) == STORE_ROW) {
        for (int col = 0; col < 3; col++) {
            const char *v = store_col_text(s, col);
            if (!v)
                continue;
            size_t n = (size_t)store_col_bytes(s, col);
            FUZZ_REQUIRE(validate_text(v, n, VALIDATE_SINGLE_LINE, NULL, 0) == 0, "column %d stored as '%s'",
                         col, v);
        }
        const char *email = store_col_text(s, 2);
        FUZZ_REQUIRE(!email || validate_email(email, NULL, 0) == 0, "email stored as '%s'", email);
    }
    FUZZ_REQUIRE(store_count(e->st, "SELECT COUNT(*) FROM customers WHERE first_seen_at < 0 OR"
                                    " first_seen_at > 253402300799 OR last_order_at < 0 OR"
                                    " last_order_at > 253402300799") == 0,
                 "a time outside 1970..9999 was stored");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *paths[2] = {csv_path, ndjson_path};
    for (int i = 0; i < 2; i++) {
        write_file(paths[i], data, size);
        if (store_begin(e->st) != 0)
            abort();
        struct import_report rep;
        char err[300];
        importer_run(e, paths[i], on_reject, NULL, &rep, err, sizeof err);
        check_stored();
        store_rollback(e->st);
    }
    return 0;
}
