/* Unit tests for runtime/pool.c and libcurl's memory through it
 * (netloop_global_init).
 *
 * What is checked: a freed block is kept on the freeing thread's list and
 * handed out again for its size class; pool_free_as / pool_realloc_as with
 * keep 0 give the block back to the system (nothing kept); libcurl's
 * allocations come from the pool once netloop_global_init has run, kept on
 * the thread that called it and on no other (libcurl's resolver threads end
 * without draining). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include <curl/curl.h>

#include "netloop.h"
#include "pool.h"

static void test_kept_and_reused(void **state)
{
    (void)state;
    pool_drain();
    assert_int_equal(pool_kept(), 0);
    char *p = pool_malloc(100);
    assert_non_null(p);
    assert_int_equal(pool_size(p), 112);
    memset(p, 'x', 100);
    pool_free(p);
    assert_int_equal(pool_kept(), 112);
    char *q = pool_malloc(97);          /* the same class of 112 bytes */
    assert_ptr_equal(q, p);
    assert_int_equal(pool_kept(), 0);
    pool_free(q);
    pool_free(NULL);
    pool_drain();
    assert_int_equal(pool_kept(), 0);
}

static void test_not_kept(void **state)
{
    (void)state;
    pool_drain();
    char *p = pool_malloc(32);
    assert_non_null(p);
    pool_free_as(p, 0);
    assert_int_equal(pool_kept(), 0);
    p = pool_malloc(16);
    memcpy(p, "0123456789abcde", 16);
    char *q = pool_realloc_as(p, 300, 0);   /* moved to a larger class */
    assert_non_null(q);
    assert_memory_equal(q, "0123456789abcde", 16);
    assert_int_equal(pool_kept(), 0);
    char *r = pool_realloc_as(q, 20000, 1); /* past the largest class: malloc's */
    assert_non_null(r);
    assert_memory_equal(r, "0123456789abcde", 16);
    assert_int_equal(pool_kept(), 304);     /* the 300-byte block, kept */
    pool_free(r);
    assert_int_equal(pool_kept(), 304);     /* a large block is never kept */
    pool_drain();
}

/* An easy handle made and cleaned up: libcurl's blocks, freed. */
static void curl_round(void)
{
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, "http://127.0.0.1:9/x");
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_cleanup(h);
    curl_slist_free_all(l);
}

static void *other_thread(void *arg)
{
    size_t *kept = arg;
    curl_round();
    *kept = pool_kept();
    return NULL;
}

static void test_curl_memory(void **state)
{
    (void)state;
    if (!POOL_ON)
        skip();   /* AddressSanitizer: libcurl uses the system allocator */
    assert_int_equal(netloop_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    pool_drain();
    curl_round();
    assert_true(pool_kept() > 0);   /* what libcurl freed came back to this thread */
    size_t there = 1;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &there), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(there, 0);     /* nothing kept on a thread that would not drain */
    curl_global_cleanup();
    pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_and_reused),
        cmocka_unit_test(test_not_kept),
        cmocka_unit_test(test_curl_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
