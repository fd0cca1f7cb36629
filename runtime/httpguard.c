/* httpguard — connection limit, head checks and timeouts for evhttp (see
 * httpguard.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "httpguard.h"
#include "util.h"

/* After refusing a request whose body is on its way, the connection reads
 * and drops that body, and goes on after evhttp closed it (a lingering
 * close, below) until the client closes, nothing has come for
 * LINGER_SECONDS, or LINGER_MAX_SECONDS have passed: closing a socket with
 * unread bytes resets it, and the client, still sending, would lose the
 * answer waiting in its receive buffer. */
#define LINGER_SECONDS 2.0
#define LINGER_MAX_SECONDS 30.0

enum conn_state {
    C_FRESH,        /* accepted; its evhttp connection not known yet */
    C_IDLE,         /* between requests: nothing of the next one read */
    C_HEAD,         /* reading a request head */
    C_BODY,         /* head checked; evhttp reads the body */
    C_ROUTED,       /* at the router until it answers */
    C_REFUSED,      /* head refused: the router answers the refusal */
    C_DOOMED        /* over the limit with nothing to evict: closed by its timer */
};

struct conn {
    httpguard *g;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;
    evutil_socket_t fd;
    enum conn_state state;
    struct event *timer;        /* attach, then the header/request deadline */
    struct timeval first_byte;  /* of the request being read */
    strbuf line;                /* the head line being read */
    size_t head_len;            /* bytes of the head so far */
    int lines;                  /* complete lines of the head */
    int lines_seen_by_evhttp;   /* of them, those evhttp may have parsed */
    long long content_length;   /* -1: none */
    int expect_continue;        /* the client waits for 100 Continue before its body */
    int linger;                 /* refused with a body coming: drop it, then close */
    int refusal_routed;         /* the refusal's stand-in request reached the router */
    int refused_code;
    char refused_reason[160];
    struct conn *prev, *next;   /* in g->idle, g->reading or g->fresh */
    struct conn **list;
};

/* A refused connection evhttp has closed: a duplicate of its descriptor
 * (the socket stays open, its write side shut) read and dropped until the
 * client closes or goes quiet. */
struct lingering {
    httpguard *g;
    evutil_socket_t fd;
    struct event *ev;
    struct timeval since;
    struct lingering *prev, *next;
};

struct httpguard {
    struct event_base *base;
    struct evhttp *http;
    struct httpguard_limits lim;
    httpguard_log_fn log;
    void *log_ud;
    int count;                  /* open connections, fresh ones included */
    struct conn *idle, *idle_tail, *reading, *reading_tail, *fresh;
    struct conn **by_fd;        /* attached connections by descriptor */
    size_t nfd;
    int rewriting;              /* the guard itself edits an input buffer */
    struct evconnlistener *listener;
    struct event *resume;       /* re-enables the listener after accept() failed */
    int paused;
    struct lingering *lingering;   /* at most max_connections */
    int nlingering;
    struct httpguard *next_guard;
};

/* The live guards. libevent calls a listener's error callback with the
 * listener's argument, which evhttp owns (its evhttp): the guard is found
 * by it. */
static httpguard *guards;

static httpguard *guard_of_http(void *http)
{
    for (httpguard *g = guards; g; g = g->next_guard)
        if (g->http == http)
            return g;
    return NULL;
}

static void logf_(httpguard *g, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(httpguard *g, const char *level, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g->log)
        g->log(g->log_ud, level, msg);
}

/* --- lists ------------------------------------------------------------------ */

static struct conn **tail_of(httpguard *g, struct conn **list)
{
    return list == &g->idle ? &g->idle_tail : list == &g->reading ? &g->reading_tail : NULL;
}

static void unlink_conn(struct conn *c)
{
    if (!c->list)
        return;
    struct conn **tail = tail_of(c->g, c->list);
    if (c->prev)
        c->prev->next = c->next;
    else
        *c->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (tail)
        *tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
}

/* Appends (idle, reading: oldest first) or pushes (fresh). */
static void link_conn(struct conn *c, struct conn **list)
{
    unlink_conn(c);
    struct conn **tail = tail_of(c->g, list);
    c->list = list;
    if (tail) {
        c->prev = *tail;
        if (*tail)
            (*tail)->next = c;
        else
            *list = c;
        *tail = c;
    } else {
        c->next = *list;
        if (*list)
            (*list)->prev = c;
        *list = c;
    }
}

static struct conn *conn_of(httpguard *g, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || (size_t)fd >= g->nfd || !g->by_fd[fd] || g->by_fd[fd]->bev != bev)
        return NULL;
    return g->by_fd[fd];
}

/* --- timers ------------------------------------------------------------------ */

static struct timeval timeval_of(double seconds)
{
    if (seconds < 0.001)
        seconds = 0.001;
    return (struct timeval){(long)seconds, (long)((seconds - (long)seconds) * 1e6)};
}

static void arm(struct conn *c, double seconds)
{
    struct timeval tv = timeval_of(seconds);
    evtimer_add(c->timer, &tv);
}

static double since_first_byte(const struct conn *c)
{
    struct timeval now;
    event_base_gettimeofday_cached(c->g->base, &now);
    return (double)(now.tv_sec - c->first_byte.tv_sec) + (now.tv_usec - c->first_byte.tv_usec) / 1e6;
}

/* --- lingering close ------------------------------------------------------------ */

static void linger_end(struct lingering *l)
{
    httpguard *g = l->g;
    if (l->prev)
        l->prev->next = l->next;
    else
        g->lingering = l->next;
    if (l->next)
        l->next->prev = l->prev;
    event_free(l->ev);
    evutil_closesocket(l->fd);
    free(l);
    g->nlingering--;
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct lingering *l = arg;
    if (what & EV_TIMEOUT) {
        linger_end(l);
        return;
    }
    char sink[16384];
    for (int i = 0; i < 64; i++) {   /* at most 1 MiB a turn: others get the loop */
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        linger_end(l);   /* the client closed (0), or the socket failed */
        return;
    }
    struct timeval now;
    event_base_gettimeofday_cached(l->g->base, &now);
    double left = LINGER_MAX_SECONDS - ((double)(now.tv_sec - l->since.tv_sec) +
                                        (now.tv_usec - l->since.tv_usec) / 1e6);
    if (left <= 0) {
        linger_end(l);
        return;
    }
    struct timeval tv = timeval_of(left < LINGER_SECONDS ? left : LINGER_SECONDS);
    event_add(l->ev, &tv);   /* the quiet time counts from the last bytes */
}

/* evhttp is closing a connection whose refusal was written while its body
 * still comes: a duplicate descriptor keeps the socket, and the body is
 * read and dropped from it. Without room (max_connections lingering) it
 * closes at once, as evhttp would. */
static void linger_start(httpguard *g, evutil_socket_t fd)
{
    if (g->nlingering >= g->lim.max_connections)
        return;
    evutil_socket_t dup_fd = dup(fd);   /* shares the file description: non-blocking too */
    if (dup_fd < 0)
        return;
    struct lingering *l = xcalloc(1, sizeof *l);
    l->g = g;
    l->fd = dup_fd;
    l->ev = event_new(g->base, dup_fd, EV_READ, on_linger, l);
    event_base_gettimeofday_cached(g->base, &l->since);
    l->next = g->lingering;
    if (l->next)
        l->next->prev = l;
    g->lingering = l;
    g->nlingering++;
    struct timeval tv = timeval_of(LINGER_SECONDS);
    event_add(l->ev, &tv);
}

/* --- closing ---------------------------------------------------------------- */

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct conn *c = arg;
    httpguard *g = c->g;
    if (c->state == C_REFUSED && c->linger == 2 && c->fd >= 0)
        linger_start(g, c->fd);   /* evhttp closes the descriptor after this */
    unlink_conn(c);
    if (c->fd >= 0 && (size_t)c->fd < g->nfd && g->by_fd[c->fd] == c)
        g->by_fd[c->fd] = NULL;
    event_free(c->timer);
    strbuf_free(&c->line);
    free(c);
    g->count--;
}

static void close_conn(struct conn *c)
{
    if (c->evcon)
        evhttp_connection_free(c->evcon);   /* on_close frees c */
}

/* --- checking a head ---------------------------------------------------- */

/* The refusal replaces what evhttp has not parsed yet with the end of an
 * empty request: a whole request line when evhttp has not read the first
 * line, else the blank line that ends the head (and, if evhttp already
 * took a Content-Length, that many filler bytes for it to read). */
static void refuse(struct conn *c, struct evbuffer *in, int code, const char *reason)
{
    httpguard *g = c->g;
    c->refused_code = code;
    snprintf(c->refused_reason, sizeof c->refused_reason, "%s", reason);
    g->rewriting = 1;
    evbuffer_drain(in, evbuffer_get_length(in));
    /* a socket bufferevent keeps its input's end frozen but while it reads */
    evbuffer_unfreeze(in, 0);
    if (c->lines_seen_by_evhttp == 0) {
        evbuffer_add_printf(in, "GET / HTTP/1.1\r\n\r\n");
    } else {
        evbuffer_add(in, "\r\n", 2);
        for (long long n = c->content_length; n > 0;) {
            static const char filler[1024];
            size_t k = n > (long long)sizeof filler ? sizeof filler : (size_t)n;
            evbuffer_add(in, filler, k);
            n -= (long long)k;
        }
    }
    evbuffer_freeze(in, 0);
    g->rewriting = 0;
    c->state = C_REFUSED;
    c->refusal_routed = 0;
    c->linger = !c->expect_continue && (c->content_length > 0 || code == 413 || code == 411);
    evtimer_del(c->timer);
    unlink_conn(c);
}

static int is_tchar(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The request line, as evhttp_parse_request_line reads it. 0 or a code. */
static int check_request_line(char *line, size_t len, const char **reason)
{
    while (len && line[len - 1] == ' ')
        line[--len] = 0;
    char *sp = memchr(line, ' ', len), *last = strrchr(line, ' ');
    if (len < 14 || !sp || last == sp) {
        *reason = "malformed request line (expected METHOD /path HTTP/1.1)";
        return 400;
    }
    for (char *p = line; p < sp; p++)
        if (!is_tchar((unsigned char)*p)) {
            *reason = "malformed request line (the method is not a token)";
            return 400;
        }
    size_t mlen = (size_t)(sp - line);
    static const char *const allowed[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL};
    int known = 0;
    for (const char *const *m = allowed; *m; m++)
        known |= strlen(*m) == mlen && memcmp(*m, line, mlen) == 0;
    int major, minor;
    char extra;
    int n = sscanf(last + 1, "HTTP/%d.%d%c", &major, &minor, &extra);
    if (n != 2) {
        *reason = "malformed request line (the version is not HTTP/1.x)";
        return 400;
    }
    if (major != 1) {
        *reason = "only HTTP/1.0 and HTTP/1.1 are served";
        return 505;
    }
    if (!known) {
        *reason = "method not implemented (GET, POST, PUT, DELETE, PATCH, HEAD and OPTIONS are)";
        return 501;
    }
    *last = 0;
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(sp + 1, EVHTTP_URI_NONCONFORMANT);
    *last = ' ';
    if (!u) {
        *reason = "malformed request target";
        return 400;
    }
    evhttp_uri_free(u);
    return 0;
}

/* One header line (without its end of line). 0 or a code. */
static int check_header(struct conn *c, char *line, size_t len, const char **reason)
{
    if (*line == ' ' || *line == '\t') {
        if (c->lines < 2) {
            *reason = "malformed header (a continuation line with no header before it)";
            return 400;
        }
        return 0;
    }
    char *colon = memchr(line, ':', len);
    if (!colon || colon == line) {
        *reason = "malformed header line (expected Name: value)";
        return 400;
    }
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p)) {
            *reason = "malformed header name";
            return 400;
        }
    size_t nlen = (size_t)(colon - line);
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vlen = strlen(v);
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        v[--vlen] = 0;
    if (nlen == 14 && !strncasecmp(line, "Content-Length", 14)) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno || n < 0 || !strchr("0123456789", *v)) {
            *reason = "malformed Content-Length";
            return 400;
        }
        if (c->content_length >= 0 && c->content_length != n) {
            *reason = "two different Content-Length headers";
            return 400;
        }
        if ((unsigned long long)n > c->g->lim.max_body) {
            *reason = "the body is too large";
            return 413;
        }
        c->content_length = n;
    } else if (nlen == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
        if (strcasecmp(v, "identity") != 0) {
            *reason = "send the body with a Content-Length (Transfer-Encoding is not accepted)";
            return 411;
        }
    } else if (nlen == 6 && !strncasecmp(line, "Expect", 6)) {
        if (strcasecmp(v, "100-continue") != 0) {
            *reason = "only Expect: 100-continue is understood";
            return 417;
        }
        c->expect_continue = 1;
    }
    return 0;
}

/* The head is complete: evhttp reads the body (if any) and routes it. */
static void head_done(struct conn *c)
{
    if (c->line.cap > 1024)   /* a long header line's buffer is not kept per connection */
        strbuf_free(&c->line);
    unlink_conn(c);
    if (c->content_length > 0) {
        c->state = C_BODY;
        link_conn(c, &c->g->reading);
        arm(c, c->g->lim.request_timeout - since_first_byte(c));
    } else {
        c->state = C_ROUTED;
        evtimer_del(c->timer);
    }
}

/* Feeds the head's bytes [from, from + n) of `in`, line by line, until the
 * head ends or is refused. */
static void feed(struct conn *c, struct evbuffer *in, size_t from, size_t n)
{
    httpguard *g = c->g;
    c->lines_seen_by_evhttp = c->lines;
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(in, &p, from, EVBUFFER_PTR_SET) != 0)
        return;
    char chunk[4096];
    while (n && c->state == C_HEAD) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        ev_ssize_t got = evbuffer_copyout_from(in, &p, chunk, k);
        if (got <= 0)
            return;
        evbuffer_ptr_set(in, &p, (size_t)got, EVBUFFER_PTR_ADD);
        n -= (size_t)got;
        for (ev_ssize_t i = 0; i < got && c->state == C_HEAD; i++) {
            if (++c->head_len > g->lim.max_head) {
                refuse(c, in, 431, "the request head is too large");
                return;
            }
            if (chunk[i] != '\n') {
                strbuf_putc(&c->line, chunk[i]);
                continue;
            }
            size_t len = c->line.len;
            if (len && c->line.s[len - 1] == '\r')
                c->line.s[--len] = 0;
            char *line = c->line.s ? c->line.s : (char *)"";
            const char *reason = NULL;
            int code = 0;
            if (memchr(line, '\r', len) || memchr(line, 0, len)) {
                code = 400;
                reason = "a control character in the request head";
            } else if (c->lines == 0) {
                code = check_request_line(line, len, &reason);
            } else if (len == 0) {
                c->lines++;
                strbuf_reset(&c->line);
                head_done(c);
                return;
            } else {
                code = check_header(c, line, len, &reason);
            }
            if (code) {
                refuse(c, in, code, reason);
                return;
            }
            c->lines++;
            strbuf_reset(&c->line);
        }
    }
}

static void start_head(struct conn *c)
{
    c->state = C_HEAD;
    c->head_len = 0;
    c->lines = c->lines_seen_by_evhttp = 0;
    c->content_length = -1;
    c->expect_continue = 0;
    strbuf_reset(&c->line);
    event_base_gettimeofday_cached(c->g->base, &c->first_byte);
    link_conn(c, &c->g->reading);
    arm(c, c->g->lim.header_timeout);
}

/* --- attaching and the limit ------------------------------------------------------ */

static void attach(struct conn *c);

static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    if (c->g->rewriting || info->n_added == 0)
        return;
    if (c->state == C_FRESH)
        attach(c);
    size_t len = evbuffer_get_length(in);
    switch (c->state) {
    case C_IDLE:
        start_head(c);
        /* fall through */
    case C_HEAD:
        feed(c, in, len - info->n_added, info->n_added);
        break;
    case C_REFUSED:   /* before the stand-in request is parsed, bytes after it wait */
        if (!c->refusal_routed)
            break;
        /* fall through */
    case C_DOOMED:
        c->g->rewriting = 1;
        evbuffer_drain(in, len);
        c->g->rewriting = 0;
        break;
    default:
        break;
    }
}

/* evhttp writes an answer: the connection's next request (maybe already
 * read, pipelined) is watched from here on. evhttp parses that one only
 * after this answer is written, so it is checked now. */
static void on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    (void)out;
    struct conn *c = arg;
    if (info->n_added && c->state == C_REFUSED && c->linger == 1) {
        c->linger = 2;   /* the refusal is being written: the body is dropped until the close */
        struct evbuffer *in = bufferevent_get_input(c->bev);
        c->g->rewriting = 1;
        evbuffer_drain(in, evbuffer_get_length(in));
        c->g->rewriting = 0;
        arm(c, LINGER_SECONDS);
    }
    if (info->n_added == 0 || c->state != C_ROUTED)
        return;
    c->state = C_IDLE;
    link_conn(c, &c->g->idle);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len) {
        start_head(c);
        feed(c, in, 0, len);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->state == C_FRESH) {
        attach(c);
        if (c->state != C_DOOMED)
            return;
    }
    if (c->state == C_HEAD || c->state == C_BODY || c->state == C_DOOMED || c->state == C_REFUSED) {
        if (c->state == C_HEAD || c->state == C_BODY)
            logf_(c->g, "debug", "closed a connection: its request did not arrive in time (%s)",
                  c->state == C_HEAD ? "header_timeout" : "request_timeout");
        close_conn(c);
    }
}

/* The evhttp connection is known once evhttp has set its callbacks (their
 * argument is the connection): from then on its close is seen. Over the
 * limit, the connection idle the longest goes, else the oldest still
 * reading a request, else this one. */
static void attach(struct conn *c)
{
    httpguard *g = c->g;
    void *arg = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &arg);
    unlink_conn(c);
    if (!arg) {   /* not set up by evhttp: nothing to watch (freed at the end) */
        c->state = C_ROUTED;
        link_conn(c, &g->fresh);
        return;
    }
    c->evcon = arg;
    c->fd = bufferevent_getfd(c->bev);
    evhttp_connection_set_closecb(c->evcon, on_close, c);
    if (c->fd >= 0) {
        if ((size_t)c->fd >= g->nfd) {
            size_t n = g->nfd ? g->nfd : 1024;
            while (n <= (size_t)c->fd)
                n *= 2;
            g->by_fd = xrealloc(g->by_fd, n * sizeof *g->by_fd);
            memset(g->by_fd + g->nfd, 0, (n - g->nfd) * sizeof *g->by_fd);
            g->nfd = n;
        }
        g->by_fd[c->fd] = c;
    }
    c->state = C_IDLE;
    link_conn(c, &g->idle);
    if (g->count <= g->lim.max_connections)
        return;
    /* the longest idle whose last answer is written (a few looked at) */
    struct conn *victim = NULL;
    int looked = 0;
    for (struct conn *v = g->idle; v && !victim && looked < 64; v = v->next, looked++)
        if (v != c && evbuffer_get_length(bufferevent_get_output(v->bev)) == 0)
            victim = v;
    if (!victim)
        victim = g->reading;
    if (victim) {
        logf_(g, "warn", "max_connections (%d) reached: closed the connection %s the longest",
              g->lim.max_connections, victim->state == C_IDLE ? "idle" : "reading a request");
        close_conn(victim);
    } else {
        logf_(g, "warn", "max_connections (%d) reached, every connection busy: refused a new one",
              g->lim.max_connections);
        unlink_conn(c);
        c->state = C_DOOMED;
        arm(c, 0);
    }
}

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    httpguard *g = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    struct conn *c = xcalloc(1, sizeof *c);
    c->g = g;
    c->bev = bev;
    c->fd = -1;
    c->state = C_FRESH;
    c->content_length = -1;
    strbuf_init(&c->line);
    c->timer = evtimer_new(base, on_timer, c);
    evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
    link_conn(c, &g->fresh);
    g->count++;
    arm(c, 0);   /* evhttp sets the connection up before this fires */
    return bev;
}

/* --- the listener ------------------------------------------------------------------ */

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    httpguard *g = arg;
    if (g->listener && !g->paused)
        evconnlistener_enable(g->listener);
}

static void on_accept_error(struct evconnlistener *lev, void *http)
{
    int err = EVUTIL_SOCKET_ERROR();
    httpguard *g = guard_of_http(http);
    if (!g)
        return;
    logf_(g, "error", "accept(): %s; not accepting new connections for 1 s", evutil_socket_error_to_string(err));
    evconnlistener_disable(lev);
    struct timeval tv = {1, 0};
    evtimer_add(g->resume, &tv);
}

void httpguard_watch_listener(httpguard *g, struct evhttp_bound_socket *bound)
{
    g->listener = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(g->listener, on_accept_error);
}

void httpguard_pause_listening(httpguard *g, int paused)
{
    g->paused = paused;
    if (!g->listener)
        return;
    if (paused)
        evconnlistener_disable(g->listener);
    else
        evconnlistener_enable(g->listener);
}

/* --- the router's side ------------------------------------------------------------- */

int httpguard_arrived(httpguard *g, struct evhttp_request *req, int *code, const char **reason)
{
    struct conn *c = conn_of(g, req);
    if (!c)
        return 0;
    evtimer_del(c->timer);
    unlink_conn(c);
    if (c->state == C_REFUSED) {
        c->refusal_routed = 1;
        *code = c->refused_code;
        *reason = c->refused_reason;
        if (!c->linger)   /* nothing more comes: closed once answered */
            evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        return 1;
    }
    c->state = C_ROUTED;
    return 0;
}

int httpguard_connections(const httpguard *g)
{
    return g->count;
}

httpguard *httpguard_new(struct event_base *base, struct evhttp *http, const struct httpguard_limits *lim,
                         httpguard_log_fn log, void *log_ud)
{
    httpguard *g = xcalloc(1, sizeof *g);
    g->base = base;
    g->http = http;
    g->lim = *lim;
    g->log = log;
    g->log_ud = log_ud;
    g->resume = evtimer_new(base, on_resume, g);
    g->next_guard = guards;
    guards = g;
    evhttp_set_bevcb(http, on_new_connection, g);
    struct timeval idle = {(long)lim->idle_timeout, (long)((lim->idle_timeout - (long)lim->idle_timeout) * 1e6)};
    evhttp_set_timeout_tv(http, &idle);
    /* libevent's own limits sit above the guard's, so the guard refuses
     * first and in JSON */
    evhttp_set_max_headers_size(http, (ev_ssize_t)lim->max_head * 4 + 65536);
    evhttp_set_max_body_size(http, (ev_ssize_t)lim->max_body);
    return g;
}

void httpguard_free(httpguard *g)
{
    if (!g)
        return;
    for (httpguard **p = &guards; *p; p = &(*p)->next_guard)
        if (*p == g) {
            *p = g->next_guard;
            break;
        }
    /* evhttp_free closed the attached connections; fresh ones remain */
    while (g->fresh) {
        struct conn *c = g->fresh;
        unlink_conn(c);
        event_free(c->timer);
        strbuf_free(&c->line);
        free(c);
    }
    while (g->idle || g->reading) {
        struct conn *c = g->idle ? g->idle : g->reading;
        unlink_conn(c);
        event_free(c->timer);
        strbuf_free(&c->line);
        free(c);
    }
    while (g->lingering)
        linger_end(g->lingering);
    event_free(g->resume);
    free(g->by_fd);
    free(g);
}
