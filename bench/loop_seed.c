/* bench/loop_seed — a store for the closing-the-loop benchmarks: N sent
 * messages in the outbox (keys "k<i>") and N staff tasks, written with the
 * store's own schema in one transaction by recursive SQL.
 *
 *   build/release/bench_loop_seed DB N
 *
 * bench/run.sh then starts `tend run` on it, posts receipts for those
 * messages as NDJSON batches and pages through the tasks. */
#include <stdio.h>
#include <stdlib.h>

#include "store.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_loop_seed DB N\n");
        return 2;
    }
    long long n = atoll(argv[2]);
    char *err = NULL;
    store *st = store_open(argv[1], NULL, &err);
    if (!st) {
        fprintf(stderr, "bench_loop_seed: %s\n", err);
        return 1;
    }
    char sql[2048];
    snprintf(sql, sizeof sql,
             "BEGIN;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld)"
             " INSERT INTO outbox (journey, customer, channel, template, category, body, status, due_at, created_at,"
             " sent_at, idem_key) SELECT 'bench', 'c' || (i %% 100000), 'sms', 'hello', 'transactional',"
             " '{\"text\":\"hello\"}', 'sent', 1767225600, 1767225600, 1767225600, 'k' || i FROM n;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld)"
             " INSERT INTO tasks (customer, journey, assignee, note, status, created_at, kind, due_at)"
             " SELECT 'c' || (i %% 100000), 'bench', CASE i %% 3 WHEN 0 THEN 'alice' WHEN 1 THEN 'bob' ELSE 'wei' END,"
             " 'call', CASE WHEN i %% 10 = 0 THEN 'done' ELSE 'open' END, 1767225600, 'call', 1767312000 FROM n;"
             "COMMIT;",
             n, n);
    if (store_exec(st, sql) != 0) {
        fprintf(stderr, "bench_loop_seed: %s\n", store_errmsg(st));
        store_close(st);
        return 1;
    }
    store_close(st);
    return 0;
}
