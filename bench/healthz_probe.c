/* bench/healthz_probe — how long `tend run` takes to answer /healthz while
 * it works, seen from outside as a load balancer sees it.
 *
 *   build/release/bench_healthz_probe URL [--every-ms MS] [--scrape-ms MS]
 *                                         [--token T] [--for-s S]
 *
 * Starts GET URL/healthz every MS milliseconds (default 10) on a fixed
 * schedule, whether or not earlier probes have been answered: a loop that
 * stalls for 5 s shows as 500 slow probes, not one (no coordinated
 * omission). At most 2,000 probes are in flight; a probe not started because
 * of that cap is counted as "skipped". With --scrape-ms, also GET
 * URL/metrics (Bearer T) every MS, one scrape at a time, as Prometheus does.
 * libcurl multi, one thread, a new connection per probe.
 *
 * Runs until SIGTERM or SIGINT (or S seconds), then prints
 *   healthz: N probes: p50 X ms, p99 Y ms, max Z ms; F failed (U unanswered at the end), K skipped
 *   metrics: N scrapes: p50 X ms, p99 Y ms, max Z ms; F failed
 *   lag: N probes: p50 X ms, p99 Y ms, max Z ms; 0 failed
 * A probe still unanswered at the end counts, as failed, with the time it
 * has waited. "lag" is how late this program itself started each probe
 * against its schedule: on a loaded machine the probe waits for a core as
 * tend does, and a late probe is the machine's, not tend's.
 * Probes are sent to 127.0.0.1 only: the URL must start with
 * http://127.0.0.1: (the bench never reaches off the machine). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_IN_FLIGHT 2000
#define PROBE_TIMEOUT_MS 120000L

struct probe {
    double started;
    int scrape;
    CURL *h;
    struct probe *prev, *next;   /* the list of probes in flight */
};

static struct probe *flying;

struct samples {
    double *v;
    size_t n, cap;
    long failed;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void add_sample(struct samples *s, double ms)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            perror("bench_healthz_probe");
            exit(1);
        }
    }
    s->v[s->n++] = ms;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const struct samples *s, double p)
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static void finish(CURLM *m, struct probe *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        flying = p->next;
    if (p->next)
        p->next->prev = p->prev;
    curl_multi_remove_handle(m, p->h);
    curl_easy_cleanup(p->h);
    free(p);
}

static CURL *start(CURLM *m, const char *url, const char *auth, int scrape, struct curl_slist *hdr)
{
    CURL *h = curl_easy_init();
    struct probe *p = malloc(sizeof *p);
    if (!h || !p) {
        fprintf(stderr, "bench_healthz_probe: out of memory\n");
        exit(1);
    }
    p->started = now_ms();
    p->scrape = scrape;
    p->h = h;
    p->prev = NULL;
    p->next = flying;
    if (flying)
        flying->prev = p;
    flying = p;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_PRIVATE, p);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, PROBE_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (auth)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_multi_add_handle(m, h);
    return h;
}

/* Records every finished transfer; counts the probes and scrapes done. */
static void collect(CURLM *m, struct samples *health, struct samples *scrapes, int *probes_done, int *scrapes_done)
{
    int running, left;
    *probes_done = *scrapes_done = 0;
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct probe *p;
        long code = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        struct samples *s = p->scrape ? scrapes : health;
        add_sample(s, now_ms() - p->started);
        if (msg->data.result != CURLE_OK || code != 200)
            s->failed++;
        ++*(p->scrape ? scrapes_done : probes_done);
        finish(m, p);
    }
}

static void report(const char *what, struct samples *s, const char *extra)
{
    qsort(s->v, s->n, sizeof *s->v, by_value);
    printf("%s: %zu %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %ld failed%s\n", what, s->n,
           strcmp(what, "metrics") != 0 ? "probes" : "scrapes", pct(s, 0.5), pct(s, 0.99),
           s->n ? s->v[s->n - 1] : 0, s->failed, extra);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strncmp(argv[1], "http://127.0.0.1:", 17) != 0) {
        fprintf(stderr, "usage: bench_healthz_probe http://127.0.0.1:PORT [--every-ms MS] [--scrape-ms MS]"
                        " [--token T] [--for-s S]\n");
        return 2;
    }
    double every = 10, scrape_every = 0, for_ms = 0;
    const char *token = "";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--every-ms"))
            every = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--scrape-ms"))
            scrape_every = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--token"))
            token = argv[i + 1];
        else if (!strcmp(argv[i], "--for-s"))
            for_ms = atof(argv[i + 1]) * 1e3;
        else {
            fprintf(stderr, "bench_healthz_probe: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (every <= 0) {
        fprintf(stderr, "bench_healthz_probe: --every-ms must be > 0\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char health_url[512], metrics_url[512], auth[600];
    snprintf(health_url, sizeof health_url, "%s/healthz", argv[1]);
    snprintf(metrics_url, sizeof metrics_url, "%s/metrics", argv[1]);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);

    CURLM *m = curl_multi_init();
    struct samples health = {0}, scrapes = {0}, lag = {0};
    long skipped = 0;
    int in_flight = 0, scraping = 0;
    double t0 = now_ms(), next = t0, next_scrape = t0;
    while (!stop && !(for_ms > 0 && now_ms() - t0 >= for_ms)) {
        double t = now_ms();
        while (next <= t) {
            if (in_flight < MAX_IN_FLIGHT) {
                add_sample(&lag, t - next);
                start(m, health_url, NULL, 0, NULL);
                in_flight++;
            } else {
                skipped++;
            }
            next += every;
        }
        if (scrape_every > 0 && !scraping && next_scrape <= t) {
            start(m, metrics_url, auth, 1, hdr);
            scraping = 1;
            next_scrape = t + scrape_every;
        }
        int probes_done, scrapes_done;
        collect(m, &health, &scrapes, &probes_done, &scrapes_done);
        in_flight -= probes_done;
        if (scrapes_done)
            scraping = 0;
        double wait = next - now_ms();
        if (scrape_every > 0 && !scraping && next_scrape - now_ms() < wait)
            wait = next_scrape - now_ms();
        if (wait > 0)
            curl_multi_poll(m, NULL, 0, (int)(wait + 0.999), NULL);
    }
    /* give the probes in flight 2 s to be answered; the rest count with
     * what they have waited */
    double drain_until = now_ms() + 2000;
    while (flying && now_ms() < drain_until) {
        int probes_done, scrapes_done;
        collect(m, &health, &scrapes, &probes_done, &scrapes_done);
        if (flying)
            curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    long unanswered = 0;
    while (flying) {
        struct samples *s = flying->scrape ? &scrapes : &health;
        add_sample(s, now_ms() - flying->started);
        s->failed++;
        unanswered += !flying->scrape;
        finish(m, flying);
    }
    char extra[96];
    snprintf(extra, sizeof extra, " (%ld unanswered at the end), %ld skipped", unanswered, skipped);
    report("healthz", &health, extra);
    if (scrape_every > 0)
        report("metrics", &scrapes, "");
    report("lag", &lag, "");
    curl_multi_cleanup(m);
    curl_slist_free_all(hdr);
    curl_global_cleanup();
    free(health.v);
    free(scrapes.v);
    free(lag.v);
    return 0;
}
