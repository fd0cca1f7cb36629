/* pool — small allocations kept for reuse on per-thread free lists.
 *
 * For libraries that allocate and free many small blocks per unit of work:
 * SQLite (the store's sqlite3_mem_methods; the system SQLite has no
 * lookaside, so every cursor, register and record is a malloc) and libcurl
 * (netloop_global_init: ~35 allocations and ~120 frees a request). A block
 * of up to POOL_LARGEST bytes goes, when freed, onto the freeing thread's
 * list for its size class (16-byte steps; at most POOL_KEEP_BYTES a
 * thread) and is handed out by that thread's next allocation of the class;
 * larger blocks are malloc's. Each block carries its size in front
 * (POOL_HEAD bytes, which keeps malloc's 16-byte alignment), so any thread
 * may free any block, and a block must be freed by pool_free (or
 * pool_free_as), never by free(). A thread that kept blocks gives them
 * back with pool_drain before it ends, or they stay allocated.
 *
 * POOL_ON is 0 under AddressSanitizer, which must see every allocation and
 * free: callers then use the system allocator directly. The lists are the
 * thread's own (no locks); they hold no store's or engine's state. */
#ifndef TEND_POOL_H
#define TEND_POOL_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ON 0
#endif
#endif
#ifndef POOL_ON
#define POOL_ON 1
#endif

/* A block of n bytes (n <= 0: the smallest), NULL when out of memory. The
 * int sizes are SQLite's xMalloc/xRealloc's. */
void *pool_malloc(int n);
/* Frees p (NULL is allowed), kept on this thread's list when it fits. */
void  pool_free(void *p);
/* pool_free, keeping the block only if `keep` (0: back to the system, for
 * a thread that will not drain its lists before it ends). */
void  pool_free_as(void *p, int keep);
/* Resizes p (NULL: pool_malloc), as pool_free_as keeps the block it left. */
void *pool_realloc_as(void *p, int n, int keep);
void *pool_realloc(void *p, int n);
/* The usable size of p (0 for NULL), and what pool_malloc(n) gives. */
int   pool_size(void *p);
int   pool_roundup(int n);
/* Frees the blocks this thread keeps. */
void  pool_drain(void);
/* The bytes of the blocks this thread keeps on its lists. */
size_t pool_kept(void);

#endif
