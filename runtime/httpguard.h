/* httpguard — what stands between the network and libevent's HTTP server.
 *
 * libevent 2.1's evhttp has no connection limit, no header timeout, and
 * answers every request it cannot parse (a body over the limit, an unknown
 * method, a broken header) with an HTML page of its own, with no hook to
 * change it. The guard watches every connection of one evhttp:
 *
 * - it counts connections (evhttp_set_bevcb makes each one's bufferevent,
 *   evhttp_connection_set_closecb tells when it goes) and keeps at most
 *   max_connections open: a new connection beyond the limit closes the one
 *   idle the longest (else the oldest one still sending its request; else
 *   itself), so descriptors stay for the store and the providers and a
 *   flood of idle sockets cannot lock a client out;
 * - it reads each request head before libevent parses it (a callback on the
 *   connection's input buffer runs before evhttp's read callback) and checks
 *   it as libevent would, stricter: the request line, the method (GET POST
 *   PUT DELETE PATCH HEAD OPTIONS), the version, header lines, the head's
 *   size, Content-Length against the body limit, Transfer-Encoding and
 *   Expect. A refused head is replaced, in the buffer, by the end of an
 *   empty request, so evhttp hands it to the router, which asks
 *   httpguard_arrived() and answers with the guard's code and reason in
 *   JSON, closing the connection. So libevent's own error pages are never
 *   reached. A refused request whose body is still coming (a 413) gets a
 *   lingering close: after evhttp closed it, the guard keeps a duplicate
 *   of its descriptor and reads and drops the body until the client closes
 *   or sends nothing for 2 s (30 s at most), so the client, still sending,
 *   is not reset and reads the answer;
 * - it closes a connection whose head has not arrived header_timeout after
 *   its first byte, or whose whole request has not arrived request_timeout
 *   after it; idle keep-alive connections are closed by evhttp's own
 *   timeout (evhttp_set_timeout, idle_timeout);
 * - accept() failures (EMFILE) pause the listener for a second instead of
 *   being retried (and logged) in a tight loop.
 *
 * Ownership: the guard belongs to the caller (httpguard_free, after
 * evhttp_free). Its per-connection records are freed when their connection
 * closes. Log lines go through the caller's function. */
#ifndef TEND_HTTPGUARD_H
#define TEND_HTTPGUARD_H

#include <stddef.h>

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;

typedef struct httpguard httpguard;

struct httpguard_limits {
    int max_connections;        /* open client connections at most */
    double idle_timeout;        /* seconds without a byte (evhttp's timeout) */
    double header_timeout;      /* seconds from a request's first byte to its head's end */
    double request_timeout;     /* seconds from a request's first byte to its body's end */
    size_t max_head;            /* request line and headers, bytes */
    size_t max_body;            /* Content-Length, bytes */
};

typedef void (*httpguard_log_fn)(void *ud, const char *level, const char *msg);

/* Installs itself on `http` (bev callback, timeouts, header and body size).
 * Never NULL. */
httpguard *httpguard_new(struct event_base *base, struct evhttp *http, const struct httpguard_limits *lim,
                         httpguard_log_fn log, void *log_ud);
void       httpguard_free(httpguard *g);

/* Watches accept() errors of a bound socket, and stops or resumes it. */
void httpguard_watch_listener(httpguard *g, struct evhttp_bound_socket *bound);
void httpguard_pause_listening(httpguard *g, int paused);

/* The router calls this first for every request. 1 when the guard refused
 * it: *code and *reason say why (the router answers them and closes);
 * 0 for a request to route. */
int httpguard_arrived(httpguard *g, struct evhttp_request *req, int *code, const char **reason);

/* Open client connections now. */
int httpguard_connections(const httpguard *g);

#endif
