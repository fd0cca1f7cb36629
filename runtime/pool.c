/* pool — small allocations kept for reuse (see pool.h for the contract).
 *
 * Why per-thread lists by size class: the blocks SQLite and libcurl make
 * while a statement runs or a transfer is set up and torn down come and go
 * in bursts larger than glibc's per-thread cache (7 blocks a size), so most
 * went through its arenas (coalescing, unlinking): a list head per class,
 * on the thread that frees, hands them back in a few instructions. The
 * bytes kept are capped per thread, so a burst of frees cannot grow the
 * process past what it held at its peak by more than POOL_KEEP_BYTES a
 * thread. */
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define POOL_STEP 16
#define POOL_CLASSES 512                    /* classes of 16, 32, ... 8192 bytes */
#define POOL_LARGEST (POOL_STEP * POOL_CLASSES)
#define POOL_KEEP_BYTES (2 << 20)           /* kept at most, per thread */
#define POOL_HEAD 16

struct pool_block {
    struct pool_block *next;
};

static _Thread_local struct pool_lists {
    struct pool_block *head[POOL_CLASSES];
    size_t kept;                /* bytes on the lists */
} pool;

static size_t *pool_size_of(void *p)
{
    return (size_t *)(void *)((char *)p - POOL_HEAD);
}

int pool_roundup(int n)
{
    return n > 0 && n <= POOL_LARGEST ? (n + POOL_STEP - 1) / POOL_STEP * POOL_STEP : n;
}

void *pool_malloc(int n)
{
    size_t size = (size_t)pool_roundup(n > 0 ? n : 1);
    if (size <= POOL_LARGEST) {
        size_t c = size / POOL_STEP - 1;
        struct pool_block *b = pool.head[c];
        if (b) {
            pool.head[c] = b->next;
            pool.kept -= size;
            return b;
        }
    }
    char *p = malloc(POOL_HEAD + size);
    if (!p)
        return NULL;
    *(size_t *)(void *)p = size;
    return p + POOL_HEAD;
}

void pool_free_as(void *p, int keep)
{
    if (!p)
        return;
    size_t size = *pool_size_of(p);
    if (keep && size <= POOL_LARGEST) {
        size_t c = size / POOL_STEP - 1;
        if (pool.kept + size <= POOL_KEEP_BYTES) {
            struct pool_block *b = p;
            b->next = pool.head[c];
            pool.head[c] = b;
            pool.kept += size;
            return;
        }
    }
    free(pool_size_of(p));
}

void pool_free(void *p)
{
    pool_free_as(p, 1);
}

int pool_size(void *p)
{
    return p ? (int)*pool_size_of(p) : 0;
}

void *pool_realloc_as(void *p, int n, int keep)
{
    if (!p)
        return pool_malloc(n);
    size_t old = *pool_size_of(p);
    if ((size_t)pool_roundup(n) == old)
        return p;
    if (old > POOL_LARGEST && n > POOL_LARGEST) {
        char *q = realloc(pool_size_of(p), POOL_HEAD + (size_t)n);
        if (!q)
            return NULL;
        *(size_t *)(void *)q = (size_t)n;
        return q + POOL_HEAD;
    }
    void *q = pool_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old < (size_t)n ? old : (size_t)n);
    pool_free_as(p, keep);
    return q;
}

void *pool_realloc(void *p, int n)
{
    return pool_realloc_as(p, n, 1);
}

void pool_drain(void)
{
    for (int c = 0; c < POOL_CLASSES; c++) {
        while (pool.head[c]) {
            struct pool_block *b = pool.head[c];
            pool.head[c] = b->next;
            free(pool_size_of(b));
        }
    }
    pool.kept = 0;
}

size_t pool_kept(void)
{
    return pool.kept;
}
