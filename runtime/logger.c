/* logger — timestamped, levelled, rate-limited log lines (see logger.h). */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logger.h"
#include "util.h"

#define SLOTS 64            /* distinct repeating lines tracked at once */
#define MAX_MSG 8192        /* longer messages are cut, and say so */

enum { L_DEBUG, L_INFO, L_WARN, L_ERROR };

struct repeat {
    uint64_t key;           /* 0: free */
    double window;          /* when the current interval began (monotonic s) */
    double last;            /* last seen */
    long suppressed;
    int level;
    char *sample;           /* the text, for the summary line */
};

static struct {
    int json;
    int min_level;
    FILE *out;
    struct repeat slots[SLOTS];
} lg = {0, L_INFO, NULL, {{0}}};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int level_of(const char *name)
{
    if (!name)
        return L_INFO;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (!strcmp(name, "warning"))
        return L_WARN;
    return L_INFO;   /* "log" (scripts) and anything else */
}

int logger_configure(const char *format, const char *level, char *err, size_t errlen)
{
    if (format) {
        if (strcmp(format, "text") && strcmp(format, "json")) {
            snprintf(err, errlen, "--log-format must be text or json, not '%s'", format);
            return -1;
        }
        lg.json = !strcmp(format, "json");
    }
    if (level) {
        int i;
        for (i = 0; i < 4 && strcmp(level, level_names[i]); i++)
            ;
        if (i == 4) {
            snprintf(err, errlen, "--log-level must be debug, info, warn or error, not '%s'", level);
            return -1;
        }
        lg.min_level = i;
    }
    return 0;
}

void logger_set_stream(FILE *f)
{
    lg.out = f;
}

int logger_enabled(const char *level)
{
    return level_of(level) >= lg.min_level;
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes one entry; `suppressed` > 0 makes it a summary of repeats. */
static void emit(int level, const char *source, const char *msg, size_t n, long suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    time_t secs = ts.tv_sec;
    gmtime_r(&secs, &tm);
    char when[80];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
    int cut = n > MAX_MSG;
    if (cut)
        n = MAX_MSG;
    strbuf b;
    strbuf_init(&b);
    if (lg.json) {
        strbuf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_names[level]);
        strbuf_json_string(&b, msg, n);
        if (cut)
            strbuf_puts(&b, ",\"cut\":true");
        if (source)
            strbuf_printf(&b, ",\"source\":\"%s\"", source);
        if (suppressed)
            strbuf_printf(&b, ",\"suppressed\":%ld,\"interval\":%d", suppressed, LOGGER_INTERVAL);
        strbuf_putc(&b, '}');
    } else {
        strbuf_printf(&b, "%s %s ", when, level_names[level]);
        if (suppressed)
            strbuf_printf(&b, "(%ld more like this in %d s, suppressed) ", suppressed, LOGGER_INTERVAL);
        for (size_t i = 0; i < n; i++) {
            if (msg[i] == '\n')
                strbuf_puts(&b, "\\n");
            else
                strbuf_putc(&b, msg[i] == '\r' ? ' ' : msg[i]);
        }
        if (cut)
            strbuf_puts(&b, " ...(cut)");
    }
    strbuf_putc(&b, '\n');
    FILE *out = lg.out ? lg.out : stderr;
    fwrite(b.s, 1, b.len, out);
    fflush(out);
    strbuf_free(&b);
}

static void summarize(struct repeat *r)
{
    if (r->suppressed > 0)
        emit(r->level, NULL, r->sample, strlen(r->sample), r->suppressed);
    r->suppressed = 0;
}

/* 1 when this entry is a repeat inside its interval (counted, not written). */
static int repeated(int level, const char *msg, size_t n)
{
    uint64_t key = util_hash64_add(util_hash64(&level, sizeof level), msg, n) | 1;
    double now = monotonic();
    struct repeat *free_slot = NULL, *oldest = &lg.slots[0];
    for (int i = 0; i < SLOTS; i++) {
        struct repeat *r = &lg.slots[i];
        if (r->key == key) {
            r->last = now;
            if (now - r->window < LOGGER_INTERVAL) {
                r->suppressed++;
                return 1;
            }
            summarize(r);
            r->window = now;
            return 0;
        }
        if (!r->key && !free_slot)
            free_slot = r;
        if (r->last < oldest->last)
            oldest = r;
    }
    struct repeat *r = free_slot ? free_slot : oldest;
    summarize(r);
    free(r->sample);
    r->key = key;
    r->window = r->last = now;
    r->level = level;
    r->sample = xstrndup(msg, n < 300 ? n : 300);
    return 0;
}

void logger_write(const char *level, const char *msg)
{
    int lv = level_of(level);
    const char *source = level && !strcmp(level, "log") ? "script" : NULL;
    if (!msg)
        msg = "";
    size_t n = strlen(msg);
    const char *nl = memchr(msg, '\n', n);
    if (lv >= lg.min_level) {
        size_t first = nl ? (size_t)(nl - msg) : n;
        if (!repeated(lv, msg, first))
            emit(lv, source, msg, first, 0);
    }
    /* the whole text (a traceback) only at debug */
    if (nl && lg.min_level == L_DEBUG)
        emit(L_DEBUG, source, msg, n, 0);
}

void logger_flush(int force)
{
    double now = monotonic();
    for (int i = 0; i < SLOTS; i++) {
        struct repeat *r = &lg.slots[i];
        if (r->key && r->suppressed && (force || now - r->window >= LOGGER_INTERVAL)) {
            summarize(r);
            r->window = now;
        }
    }
}
