/* netloop — libcurl multi on libevent (see netloop.h).
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and
 * when to call it back (CURLMOPT_TIMERFUNCTION); libevent watches them and
 * calls curl_multi_socket_action. After each action the finished transfers
 * are read and handed to their owners. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "netloop.h"
#include "pool.h"
#include "util.h"

/* --- libcurl's memory ----------------------------------------------------
 * Only the thread that called netloop_global_init keeps blocks: any other
 * thread libcurl runs (its threaded resolver) ends without draining its
 * lists, so what it frees goes back to malloc. A block may still move
 * between threads: each carries its size (pool.h). */
static _Thread_local int curl_keeps;

static int curl_size(size_t n)
{
    return n > (size_t)0x7fffff00 ? -1 : (int)n;
}

static void *curl_malloc_cb(size_t n)
{
    return curl_size(n) < 0 ? NULL : pool_malloc((int)n);
}

static void curl_free_cb(void *p)
{
    pool_free_as(p, curl_keeps);
}

static void *curl_realloc_cb(void *p, size_t n)
{
    return curl_size(n) < 0 ? NULL : pool_realloc_as(p, (int)n, curl_keeps);
}

static char *curl_strdup_cb(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = curl_malloc_cb(n);
    return p ? memcpy(p, s, n) : NULL;
}

static void *curl_calloc_cb(size_t k, size_t n)
{
    if (n && k > SIZE_MAX / n)
        return NULL;
    void *p = curl_malloc_cb(k * n);
    return p ? memset(p, 0, k * n) : NULL;
}

CURLcode netloop_global_init(long flags)
{
    if (!POOL_ON)
        return curl_global_init(flags);
    curl_keeps = 1;
    return curl_global_init_mem(flags, curl_malloc_cb, curl_free_cb, curl_realloc_cb, curl_strdup_cb,
                                curl_calloc_cb);
}

/* One transfer in flight; its easy handle's CURLOPT_PRIVATE. */
struct job {
    CURL *easy;
    netloop_done_fn done;
    void *ud;
    struct job *prev, *next;
};

struct netloop {
    struct event_base *base;
    CURLM *multi;
    long max_host;              /* CURLMOPT_MAX_HOST_CONNECTIONS */
    int unlimited;              /* made with 0: libcurl's default, no limit */
    struct event *timer;        /* libcurl's timeout */
    struct job *jobs;
    int in_flight;
    /* Sockets libcurl stopped watching (CURL_POLL_REMOVE) whose events are
     * kept, still watched, until the loop's next turn (sweep): a kept-alive
     * connection whose transfer ended is nearly always given the next one
     * in the same turn, and then watched again as it was, with no
     * epoll_ctl to remove it and none to add it back (two a message, strace)
     * and no event freed and made again. A socket libcurl closes leaves at
     * once (on_close_socket), so a kept event always belongs to the open
     * socket of its number. */
    struct kept {
        curl_socket_t s;
        struct event *ev;
    } *kept;
    int nkept, capkept;
    struct event *sweep;
};

static void unlink_job(struct netloop *n, struct job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        n->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    n->in_flight--;
}

static void check_multi(struct netloop *n)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(n->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode result = m->data.result;
        struct job *j = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
        curl_multi_remove_handle(n->multi, easy);
        unlink_job(n, j);
        netloop_done_fn done = j->done;
        void *ud = j->ud;
        free(j);
        done(easy, result, ud);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct netloop *n = arg;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(n->multi, fd, flags, &running);
    check_multi(n);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct netloop *n = arg;
    int running;
    curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi(n);
}

/* The kept event of socket s, taken out of the list (NULL: none). */
static struct event *unkeep(struct netloop *n, curl_socket_t s)
{
    for (int i = n->nkept - 1; i >= 0; i--)
        if (n->kept[i].s == s) {
            struct event *ev = n->kept[i].ev;
            n->kept[i] = n->kept[--n->nkept];
            return ev;
        }
    return NULL;
}

/* The loop's turn after sockets were kept: those not watched again go. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct netloop *n = arg;
    for (int i = 0; i < n->nkept; i++)
        event_free(n->kept[i].ev);
    n->nkept = 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: libcurl closes a socket (after removing
 * it): its kept event goes first, while the descriptor is still open. */
static int on_close_socket(void *clientp, curl_socket_t s)
{
    struct netloop *n = clientp;
    struct event *ev = unkeep(n, s);
    if (ev)
        event_free(ev);
    return close(s);
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per socket, re-armed for
 * what libcurl wants to wait for. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct netloop *n = userp;
    struct event *ev = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ev) {
            /* kept until the next turn (see struct netloop); an event on
             * it meanwhile is a stray action libcurl ignores */
            if (n->nkept == n->capkept)
                n->kept = xrealloc(n->kept, (size_t)(n->capkept = n->capkept ? 2 * n->capkept : 64) * sizeof *n->kept);
            n->kept[n->nkept++] = (struct kept){s, ev};
            if (!evtimer_pending(n->sweep, NULL)) {
                struct timeval now = {0, 0};
                evtimer_add(n->sweep, &now);
            }
            curl_multi_assign(n->multi, s, NULL);
        }
        return 0;
    }
    if (!ev && (ev = unkeep(n, s)) != NULL)
        curl_multi_assign(n->multi, s, ev);
    short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (ev && event_get_events(ev) == kind && event_pending(ev, EV_READ | EV_WRITE, NULL))
        return 0;   /* watched as asked already: no epoll change */
    if (ev) {
        event_del(ev);
        event_assign(ev, n->base, s, kind, on_socket_event, n);
    } else {
        ev = event_new(n->base, s, kind, on_socket_event, n);
        curl_multi_assign(n->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct netloop *n = userp;
    if (timeout_ms < 0) {
        evtimer_del(n->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(n->timer, &tv);
    return 0;
}

struct netloop *netloop_new(struct event_base *base, long max_host_connections)
{
    struct netloop *n = xcalloc(1, sizeof *n);
    n->base = base;
    n->multi = curl_multi_init();
    if (!n->multi) {
        free(n);
        return NULL;
    }
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n);
    n->unlimited = max_host_connections <= 0;
    netloop_raise_host_connections(n, max_host_connections);
    n->timer = evtimer_new(base, on_timeout, n);
    n->sweep = evtimer_new(base, on_sweep, n);
    return n;
}

void netloop_raise_host_connections(struct netloop *n, long at_least)
{
    if (!n || n->unlimited || at_least <= n->max_host)
        return;
    n->max_host = at_least;
    curl_multi_setopt(n->multi, CURLMOPT_MAX_HOST_CONNECTIONS, at_least);
    /* libcurl's default cache is 4 connections per handle added: when
     * few transfers are in flight (between bursts) it would close kept
     * connections and open them again for the next burst. */
    curl_multi_setopt(n->multi, CURLMOPT_MAXCONNECTS, 4 * at_least);
}

void netloop_free(struct netloop *n)
{
    if (!n)
        return;
    while (n->jobs) {
        struct job *j = n->jobs;
        curl_multi_remove_handle(n->multi, j->easy);
        unlink_job(n, j);
        free(j);
    }
    /* The cleanup closes cached connections, which may call the socket and
     * timer callbacks: the timer event goes after it. */
    curl_multi_cleanup(n->multi);
    on_sweep(-1, 0, n);
    event_free(n->sweep);
    free(n->kept);
    event_free(n->timer);
    free(n);
}

int netloop_add(struct netloop *n, CURL *easy, netloop_done_fn done, void *ud)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->easy = easy;
    j->done = done;
    j->ud = ud;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, j);
    /* the connections it makes tell us when they close (a kept event) */
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, n);
    if (curl_multi_add_handle(n->multi, easy) != CURLM_OK) {
        free(j);
        return -1;
    }
    j->next = n->jobs;
    if (n->jobs)
        n->jobs->prev = j;
    n->jobs = j;
    n->in_flight++;
    return 0;
}

void netloop_remove(struct netloop *n, CURL *easy)
{
    struct job *j = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
    if (!j)
        return;
    curl_multi_remove_handle(n->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    unlink_job(n, j);
    free(j);
}

void netloop_kick(struct netloop *n)
{
    int running;
    curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi(n);
}

int netloop_in_flight(const struct netloop *n)
{
    return n ? n->in_flight : 0;
}

struct event_base *netloop_base(const struct netloop *n)
{
    return n->base;
}

int netloop_wait(struct netloop *n, int (*busy)(void *ud), void *ud, int timeout_ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (busy(ud)) {
        event_base_loop(n->base, EVLOOP_ONCE);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return -1;
    }
    return 0;
}
