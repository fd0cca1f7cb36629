/* fuzz_http — the HTTP API as a client reaches it: `tend run`'s server
 * (server_run, in a thread, on 127.0.0.1) gets one request per input over a
 * real connection. The input is shaped so most of it reaches the router:
 *   byte 0        method (low 3 bits), no token (bit 3);
 *   up to '\n'    the path ("/v1/..." added when it does not start with
 *                 '/'); control bytes and spaces are %-encoded, the rest
 *                 (a literal %00, bytes that are not UTF-8) is sent as is;
 *   the rest      the body (Content-Length set).
 * Invariants: every request is answered within 10 s with an HTTP status
 * line, and the answer's body is valid UTF-8 (no echo of bytes that are
 * not text). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "server.h"
#include "validate.h"

static int port;

static const char SCRIPT[] =
    "template 'note' { category = 'transactional', sms = '{{ name | default: \"friend\" }}: {{ what }}' }\n"
    "segment 'vip' { where = { tags = has('vip') } }\n"
    "segment 'spenders' { where = { total_spent = at_least(100) } }\n"
    "journey 'paid' { on = 'order.paid', run = function(c, ev) send('sms', c, 'note', { what = ev.order }) end }\n";

static void *serve(void *arg)
{
    engine *e = arg;
    server_run(e);
    fprintf(stderr, "fuzz_http: the server stopped\n");
    abort();
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("fuzz_http: a free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (errno == EINTR) {   /* libFuzzer's SIGALRM: the connect goes on; wait for it */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r, soerr = 0;
        socklen_t len = sizeof soerr;
        while ((r = poll(&p, 1, 10000)) < 0 && errno == EINTR)
            ;
        if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
            return fd;
    }
    close(fd);
    return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("TEND_API_TOKEN", "fuzz", 1);
    port = free_port();
    char *dir = fuzz_tempdir("http");
    char *path = util_path_join(dir, "tend.lua");
    FILE *f = fopen(path, "w");
    fprintf(f, "return { listen = '127.0.0.1:%d', unknown_customers = 'create', quiet_hours = false }\n", port);
    fclose(f);
    free(path);
    engine *e = fuzz_engine(dir, clock_new_virtual(FUZZ_T0), SCRIPT);
    free(dir);
    pthread_t t;
    if (pthread_create(&t, NULL, serve, e) != 0)
        abort();
    pthread_detach(t);
    for (int i = 0; i < 1000; i++) {   /* 10 s */
        int fd = connect_server();
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(10000);
    }
    fprintf(stderr, "fuzz_http: the server did not listen on port %d\n", port);
    abort();
}

static const char *const methods[8] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "GET"};

static void request_of(const uint8_t *data, size_t size, strbuf *req)
{
    int flags = size ? data[0] : 0;
    size_t i = size ? 1 : 0;
    strbuf_printf(req, "%s ", methods[flags & 7]);
    if (i >= size || data[i] != '/')
        strbuf_puts(req, "/v1/");
    for (size_t k = 0; i < size && data[i] != '\n' && k < 2000; i++, k++) {
        if (data[i] <= ' ' || data[i] == 0x7f)
            strbuf_printf(req, "%%%02X", data[i]);
        else
            strbuf_putc(req, (char)data[i]);
    }
    if (i < size)
        i++;   /* the '\n' */
    strbuf_printf(req, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                  flags & 8 ? "" : "Authorization: Bearer fuzz\r\n", size - i);
    strbuf_add(req, (const char *)data + i, size - i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    strbuf req, resp;
    strbuf_init(&req);
    strbuf_init(&resp);
    request_of(data, size, &req);
    int fd = connect_server();
    FUZZ_REQUIRE(fd >= 0, "cannot connect: %s", strerror(errno));
    size_t sent = 0;
    while (sent < req.len) {
        ssize_t n = send(fd, req.s + sent, req.len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;   /* the server may answer (413, 400) and close early */
        sent += (size_t)n;
    }
    char buf[8192];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 10000);
        if (r < 0 && errno == EINTR)
            continue;   /* the timer may fire again: 10 s of real silence still ends it via -timeout */
        FUZZ_REQUIRE(r > 0, "no answer (or no close) within 10 s; %zu bytes came: %.200s; to: %.200s",
                     resp.len, resp.len ? resp.s : "", req.s);
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        strbuf_add(&resp, buf, (size_t)n);
    }
    close(fd);
    FUZZ_REQUIRE(resp.len > 9 && strncmp(resp.s, "HTTP/1.1 ", 9) == 0, "no status line to: %.200s",
                 req.s);
    const char *body = strstr(resp.s, "\r\n\r\n");
    if (body) {
        body += 4;
        size_t n = resp.len - (size_t)(body - resp.s);
        FUZZ_REQUIRE(validate_utf8(body, n) == n, "an answer that is not UTF-8: %.300s", resp.s);
    }
    strbuf_free(&req);
    strbuf_free(&resp);
    return 0;
}
