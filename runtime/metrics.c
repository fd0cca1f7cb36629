/* metrics — see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LABELS 2

/* Upper bounds in seconds: from a loopback provider's milliseconds to a
 * message that waited out the night's quiet hours. */
static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                         10,    30,   60,    300,  900, 3600, 14400, 86400};
#define NBUCKETS (sizeof latency_buckets / sizeof latency_buckets[0])

struct family_spec {
    const char *name, *type, *help;
    const char *labels[MAX_LABELS];
};

static const struct family_spec specs[M_FAMILIES] = {
    [M_EVENTS_INGESTED] = {"tend_events_ingested_total", "counter",
                           "Events accepted and stored (duplicates by id not counted).", {NULL}},
    [M_EVENTS_REJECTED] = {"tend_events_rejected_total", "counter",
                           "Events refused at ingest (malformed, invalid, too large).", {NULL}},
    [M_EVENTS_PROCESSED] = {"tend_events_processed_total", "counter",
                            "Events whose customer fields, journeys and waits were processed.", {NULL}},
    [M_INSTANCES_STARTED] = {"tend_instances_started_total", "counter", "Journey instances started.",
                             {"journey"}},
    [M_INSTANCES_WOKEN] = {"tend_instances_woken_total", "counter",
                           "Journey instances woken by a timer or an event.", {NULL}},
    [M_SENDS] = {"tend_sends_total", "counter",
                 "send() outcomes by channel and status (queued, deferred, capped, suppressed, failed).",
                 {"channel", "status"}},
    [M_DELIVERIES] = {"tend_deliveries_total", "counter", "Messages that left through their channel.",
                      {"channel"}},
    [M_DELIVERY_FAILURES] = {"tend_delivery_failures_total", "counter",
                             "Delivery attempts that failed (retried later or dead-lettered).", {"channel"}},
    [M_DEAD_LETTERS] = {"tend_dead_letters_total", "counter", "Messages moved to dead letters.",
                        {"channel"}},
    [M_HTTP_REQUESTS] = {"tend_http_requests_total", "counter", "HTTP API requests answered, by status code.",
                         {"code"}},
    [M_DELIVERY_LATENCY] = {"tend_delivery_latency_seconds", "histogram",
                            "Seconds from a message's due time (queued, or the end of its deferral) "
                            "to its delivery; the due time has whole-second resolution.",
                            {"channel"}},
    [M_WAKE_LATENESS] = {"tend_wake_lateness_seconds", "histogram",
                         "Seconds from a timer's due time to the wake of its instance.", {NULL}},
};

struct series {
    char *labels[MAX_LABELS];
    double value;                   /* counter: the total; histogram: the sum */
    unsigned long long count;       /* histogram observations */
    unsigned long long buckets[NBUCKETS];
};

struct family_data {
    struct series *s;
    int n, cap;
};

struct metrics {
    struct family_data f[M_FAMILIES];
};

metrics *metrics_new(void)
{
    return xcalloc(1, sizeof(metrics));
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    for (int f = 0; f < M_FAMILIES; f++) {
        for (int i = 0; i < m->f[f].n; i++)
            for (int l = 0; l < MAX_LABELS; l++)
                free(m->f[f].s[i].labels[l]);
        free(m->f[f].s);
    }
    free(m);
}

static int nlabels(enum metric_family f)
{
    int n = 0;
    while (n < MAX_LABELS && specs[f].labels[n])
        n++;
    return n;
}

/* The series with these label values, made on first use. */
static struct series *series_of(metrics *m, enum metric_family f, const char *const *labels)
{
    struct family_data *d = &m->f[f];
    int nl = nlabels(f);
    for (int i = 0; i < d->n; i++) {
        int same = 1;
        for (int l = 0; l < nl && same; l++)
            same = !strcmp(d->s[i].labels[l], labels && labels[l] ? labels[l] : "");
        if (same)
            return &d->s[i];
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 8;
        d->s = xrealloc(d->s, (size_t)d->cap * sizeof *d->s);
    }
    struct series *s = &d->s[d->n++];
    memset(s, 0, sizeof *s);
    for (int l = 0; l < nl; l++)
        s->labels[l] = xstrdup(labels && labels[l] ? labels[l] : "");
    return s;
}

void metrics_add(metrics *m, enum metric_family family, const char *const *labels, double n)
{
    if (m)
        series_of(m, family, labels)->value += n;
}

void metrics_observe(metrics *m, enum metric_family family, const char *const *labels, double value)
{
    if (!m || !isfinite(value))
        return;
    if (value < 0)
        value = 0;
    struct series *s = series_of(m, family, labels);
    s->value += value;
    s->count++;
    for (size_t b = 0; b < NBUCKETS; b++)
        if (value <= latency_buckets[b])
            s->buckets[b]++;
}

double metrics_value(metrics *m, enum metric_family family, const char *const *labels)
{
    struct family_data *d = &m->f[family];
    int nl = nlabels(family);
    for (int i = 0; i < d->n; i++) {
        int same = 1;
        for (int l = 0; l < nl && same; l++)
            same = !strcmp(d->s[i].labels[l], labels && labels[l] ? labels[l] : "");
        if (same)
            return d->s[i].value;
    }
    return 0;
}

void metrics_label_value(strbuf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            strbuf_putc(out, '\\'), strbuf_putc(out, *v);
        else if (*v == '\n')
            strbuf_puts(out, "\\n");
        else
            strbuf_putc(out, *v);
    }
}

void metrics_header(strbuf *out, const char *name, const char *type, const char *help)
{
    strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_number(strbuf *out, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        strbuf_printf(out, "%.0f", v);
    else
        strbuf_printf(out, "%.6g", v);
}

/* One sample line: NAME[SUFFIX]{labels[,le="LE"]} VALUE. */
static void put_sample(strbuf *out, enum metric_family f, const struct series *s, const char *suffix,
                       const char *le, double value)
{
    int nl = nlabels(f);
    strbuf_printf(out, "%s%s", specs[f].name, suffix);
    if (nl || le) {
        strbuf_putc(out, '{');
        for (int l = 0; l < nl; l++) {
            strbuf_printf(out, "%s%s=\"", l ? "," : "", specs[f].labels[l]);
            metrics_label_value(out, s->labels[l]);
            strbuf_putc(out, '"');
        }
        if (le)
            strbuf_printf(out, "%sle=\"%s\"", nl ? "," : "", le);
        strbuf_putc(out, '}');
    }
    strbuf_putc(out, ' ');
    put_number(out, value);
    strbuf_putc(out, '\n');
}

void metrics_render(metrics *m, strbuf *out)
{
    /* a family without labels shows a zero sample from the start */
    static struct series zero;
    const struct family_data only_zero = {&zero, 1, 1};
    for (int fi = 0; fi < M_FAMILIES; fi++) {
        enum metric_family f = (enum metric_family)fi;
        const struct family_spec *sp = &specs[f];
        metrics_header(out, sp->name, sp->type, sp->help);
        const struct family_data *d = &m->f[f];
        int hist = !strcmp(sp->type, "histogram");
        if (d->n == 0 && nlabels(f) == 0)
            d = &only_zero;
        for (int i = 0; i < d->n; i++) {
            const struct series *s = &d->s[i];
            if (!hist) {
                put_sample(out, f, s, "", NULL, s->value);
                continue;
            }
            char le[32];
            for (size_t b = 0; b < NBUCKETS; b++) {
                snprintf(le, sizeof le, "%g", latency_buckets[b]);
                put_sample(out, f, s, "_bucket", le, (double)s->buckets[b]);
            }
            put_sample(out, f, s, "_bucket", "+Inf", (double)s->count);
            put_sample(out, f, s, "_sum", NULL, s->value);
            put_sample(out, f, s, "_count", NULL, (double)s->count);
        }
    }
}

double metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
