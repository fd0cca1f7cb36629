/* metrics — counters and histograms kept as work happens, rendered as the
 * Prometheus text format (version 0.0.4).
 *
 * A leaf: it knows nothing of the engine. Every family it can hold is
 * declared once in metrics.c (name, type, help, buckets), so `/metrics`
 * always shows `# HELP` and `# TYPE` for each, even before the first sample.
 * A series is a family plus its label values; the caller passes the values
 * in the order the family declares its label names. Counting is a lookup in
 * a small table and an add — cheap enough for the send and delivery paths.
 * Values live in memory: they start at zero with the process, as Prometheus
 * counters do (rate() copes with resets).
 *
 * Ownership: metrics_new() returns a registry the caller frees with
 * metrics_free(); label strings are copied. */
#ifndef TEND_METRICS_H
#define TEND_METRICS_H

#include "util.h"

typedef struct metrics metrics;

/* The families (see metrics.c for names, help and labels). */
enum metric_family {
    M_EVENTS_INGESTED,      /* counter */
    M_EVENTS_REJECTED,      /* counter */
    M_EVENTS_PROCESSED,     /* counter */
    M_INSTANCES_STARTED,    /* counter {journey} */
    M_INSTANCES_WOKEN,      /* counter */
    M_SENDS,                /* counter {channel, status}: send() outcomes */
    M_DELIVERIES,           /* counter {channel}: messages that left */
    M_DELIVERY_FAILURES,    /* counter {channel}: failed attempts (retried or dead) */
    M_DEAD_LETTERS,         /* counter {channel} */
    M_HTTP_REQUESTS,        /* counter {code} */
    M_DELIVERY_LATENCY,     /* histogram {channel}: seconds from due to sent */
    M_WAKE_LATENESS,        /* histogram: seconds from a timer's due time to its wake */
    M_FAMILIES
};

metrics *metrics_new(void);
void     metrics_free(metrics *m);

/* Adds n to the series of `family` with the given label values (as many as
 * the family has label names; NULL for none). */
void metrics_add(metrics *m, enum metric_family family, const char *const *labels, double n);
static inline void metrics_inc(metrics *m, enum metric_family family, const char *label)
{
    const char *l[1] = {label};
    metrics_add(m, family, label ? l : NULL, 1);
}

/* Records one observation of a histogram family. */
void metrics_observe(metrics *m, enum metric_family family, const char *const *labels, double value);

/* The current value of a counter series (tests, status). */
double metrics_value(metrics *m, enum metric_family family, const char *const *labels);

/* Appends every family, with its HELP and TYPE lines, to out. */
void metrics_render(metrics *m, strbuf *out);

/* Appends a family that is not kept here (a gauge read from the store when
 * scraped): its HELP and TYPE lines. The caller appends the samples. */
void metrics_header(strbuf *out, const char *name, const char *type, const char *help);

/* Appends `v` as a label value, escaped for the text format (\\ \" \n). */
void metrics_label_value(strbuf *out, const char *v);

/* Seconds since the epoch with a fractional part (real time), for latencies
 * measured against due times kept in whole seconds. */
double metrics_now(void);

#endif
