/* clock — the two clocks, the calendar, time zones, ISO-8601 and cron.
 *
 * Time zones are read straight from TZif files (RFC 8536) rather than through
 * TZ + tzset + localtime: glibc keeps one zone per process, and tend answers
 * questions about many customers' zones in the same breath. A zone is parsed
 * once into a table of transitions plus the POSIX TZ rule from the file's
 * footer, which covers every instant after the table ends (Debian's "slim"
 * files stop their tables in 2007 and rely on it).
 *
 * Everything works on two kinds of int64 seconds: instants (UTC, tend_time)
 * and wall times (the local clock reading, counted as if it were UTC). A
 * zone's job is to turn one into the other.
 *
 * The zone cache is a list that only grows, read without a lock: a zone is
 * complete before it is published at the head (release; a reader loads the
 * head with acquire) and never changes after, and the loads of new zones
 * take a mutex, so `tend import`'s reading thread checks zones while the
 * engine's thread reads them. A handful of zones are ever in use. */
#include "clock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Instants beyond about ±95,000 years are refused: that keeps every year in
 * an int and every intermediate sum far from int64 overflow. */
#define TIME_LIMIT  ((tend_time)3000000000000LL)
#define TRANS_LIMIT ((tend_time)1 << 62)
#define NEVER       INT64_MAX

/* No real zone has ever been more than a day off UTC; anything beyond this
 * in a file is corruption, and the bound lets searches use fixed windows. */
#define MAX_UTC_OFFSET (26 * 3600)
/* A window that contains every offset period a given wall time could fall
 * in, with room for a day-long gap (Samoa skipped 2011-12-30 entirely). */
#define ZONE_WINDOW (4 * TEND_DAY)

#define MAX_TZIF_BYTES (256 * 1024)
#define DEFAULT_TZDIR  "/usr/share/zoneinfo"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static void PRINTF_LIKE(3, 4) seterr(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (err == NULL || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int in_range(tend_time t) { return t >= -TIME_LIMIT && t <= TIME_LIMIT; }

/* C division truncates toward zero; calendars need floor for dates before
 * 1970 and for negative offsets. */
static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

static int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

/* --- clocks ------------------------------------------------------------- */

struct tclock {
    int is_virtual;
    tend_time now;      /* virtual clocks only */
};

static tclock *clock_alloc(int is_virtual, tend_time now) {
    tclock *c = malloc(sizeof *c);
    if (c != NULL) *c = (tclock){is_virtual, now};
    return c;
}

tclock *clock_new_real(void) { return clock_alloc(0, 0); }
tclock *clock_new_virtual(tend_time start) { return clock_alloc(1, start); }
void clock_free(tclock *c) { free(c); }
int clock_is_virtual(const tclock *c) { return c != NULL && c->is_virtual; }

tend_time clock_now(const tclock *c) {
    if (c != NULL && c->is_virtual) return c->now;
    return (tend_time)time(NULL);
}

void clock_set(tclock *c, tend_time t) {
    /* Timers already fired at the old time; going back would fire them again. */
    if (c != NULL && c->is_virtual && t > c->now) c->now = t;
}

/* --- calendar (proleptic Gregorian) ------------------------------------- */

int clock_is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int clock_days_in_month(int y, int m) {
    static const unsigned char days[12] = {31,28,31,30,31,30,31,31,30,31,30,31};
    if (m < 1 || m > 12) return 0;
    return days[m - 1] + (m == 2 && clock_is_leap(y));
}

/* Howard Hinnant's algorithm: years are counted from March, so the leap day
 * is the last day of a year and every month but February has a fixed place;
 * 400-year eras make the rest a lookup. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t clock_days_from_civil(int y, int m, int d) {
    /* Months outside 1..12 roll into neighbouring years and days are simply
     * added, so callers can write "month + 1" or "day 32" without normalising. */
    int64_t months = (int64_t)m - 1;
    return days_from_civil((int64_t)y + floor_div(months, 12),
                           floor_mod(months, 12) + 1, d);
}

void clock_civil_from_days(int64_t days, int *y, int *m, int *d) {
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int weekday(int64_t days) { return (int)floor_mod(days + 4, 7); } /* 1970-01-01 was a Thursday */

/* --- POSIX TZ rules (the TZif footer) ----------------------------------- */

/* One end of a daylight-saving rule. */
struct tz_rule {
    char kind;      /* 'J': day 1..365, Feb 29 never counted; 'D': day 0..365;
                     * 'M': month.week.weekday, week 5 meaning "last" */
    int n;          /* the day for J and D, the month for M */
    int week, wday;
    int32_t secs;   /* local time of day of the change; RFC 8536 lets it be
                     * negative or past 24h to express "the day before at ..." */
};

struct tz_posix {
    int32_t std_off, dst_off;   /* seconds east of UTC */
    int has_dst;
    struct tz_rule start, end;  /* into and out of daylight time */
};

/* A number in lo..hi; stops early so absurd digit strings cannot overflow. */
static const char *posix_num(const char *s, int lo, int hi, int *out) {
    int v = 0;
    if (!isdigit((unsigned char)*s)) return NULL;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (*s++ - '0');
        if (v > hi) return NULL;
    }
    if (v < lo) return NULL;
    *out = v;
    return s;
}

/* [+-]hh[:mm[:ss]]. Hours go to 167 because RFC 8536 rule times may. */
static const char *posix_secs(const char *s, int32_t *out) {
    int sign = 1, h, m = 0, sec = 0;
    if (*s == '+' || *s == '-') sign = *s++ == '-' ? -1 : 1;
    if ((s = posix_num(s, 0, 167, &h)) == NULL) return NULL;
    if (*s == ':' && (s = posix_num(s + 1, 0, 59, &m)) == NULL) return NULL;
    if (*s == ':' && (s = posix_num(s + 1, 0, 59, &sec)) == NULL) return NULL;
    *out = sign * (h * 3600 + m * 60 + sec);
    return s;
}

/* An abbreviation: letters, or anything alphanumeric/sign inside <...>.
 * Only its extent matters; tend never shows abbreviations. */
static const char *posix_name(const char *s) {
    const char *p;
    if (*s == '<') {
        for (p = ++s; isalnum((unsigned char)*p) || *p == '+' || *p == '-'; p++) {}
        return *p == '>' && p > s ? p + 1 : NULL;
    }
    for (p = s; isalpha((unsigned char)*p); p++) {}
    return p - s >= 3 ? p : NULL;
}

static const char *posix_rule(const char *s, struct tz_rule *r) {
    r->secs = 2 * 3600;     /* POSIX: changes happen at 02:00 unless told */
    r->week = r->wday = 0;
    if (*s == 'J') {
        r->kind = 'J';
        s = posix_num(s + 1, 1, 365, &r->n);
    } else if (*s == 'M') {
        r->kind = 'M';
        s = posix_num(s + 1, 1, 12, &r->n);
        if (s != NULL) s = *s == '.' ? posix_num(s + 1, 1, 5, &r->week) : NULL;
        if (s != NULL) s = *s == '.' ? posix_num(s + 1, 0, 6, &r->wday) : NULL;
    } else {
        r->kind = 'D';
        s = posix_num(s, 0, 365, &r->n);
    }
    if (s != NULL && *s == '/') s = posix_secs(s + 1, &r->secs);
    return s;
}

static int offset_ok(int32_t off) { return off >= -MAX_UTC_OFFSET && off <= MAX_UTC_OFFSET; }

static int posix_parse(const char *s, struct tz_posix *p) {
    int32_t west;
    memset(p, 0, sizeof *p);
    if ((s = posix_name(s)) == NULL || (s = posix_secs(s, &west)) == NULL) return -1;
    p->std_off = -west;     /* POSIX counts hours west of Greenwich */
    if (*s == '\0') return offset_ok(p->std_off) ? 0 : -1;
    if ((s = posix_name(s)) == NULL) return -1;
    p->has_dst = 1;
    p->dst_off = p->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        if ((s = posix_secs(s, &west)) == NULL) return -1;
        p->dst_off = -west;
    }
    /* A zone with daylight time but no rule gets the US rule, as in tzcode. */
    if (*s == '\0') s = ",M3.2.0,M11.1.0";
    if (*s++ != ',' || (s = posix_rule(s, &p->start)) == NULL) return -1;
    if (*s++ != ',' || (s = posix_rule(s, &p->end)) == NULL) return -1;
    return *s == '\0' && offset_ok(p->std_off) && offset_ok(p->dst_off) ? 0 : -1;
}

/* Days since the epoch of the day a rule names in `year`. */
static int64_t rule_day(const struct tz_rule *r, int year) {
    int64_t jan1 = clock_days_from_civil(year, 1, 1);
    if (r->kind == 'J') return jan1 + r->n - 1 + (clock_is_leap(year) && r->n >= 60);
    if (r->kind == 'D') return jan1 + r->n;
    int64_t first = clock_days_from_civil(year, r->n, 1);
    int64_t day = first + floor_mod(r->wday - weekday(first), 7) + 7 * (r->week - 1);
    while (day >= first + clock_days_in_month(year, r->n)) day -= 7;
    return day;
}

struct tz_change {
    tend_time at;
    int to_dst;
};

/* The rule's changes for the years around t, in time order. A rule time is
 * within a week of its day, so a year either side (two after, for "next")
 * always brackets t. The start time is read on the standard clock and the
 * end time on the daylight clock, each being the one in force just before. */
static int posix_changes(const struct tz_posix *p, tend_time t, struct tz_change ch[8]) {
    int y, m, d, n = 0;
    clock_civil_from_days(floor_div(t + p->std_off, TEND_DAY), &y, &m, &d);
    for (int year = y - 1; year <= y + 2; year++) {
        ch[n].at = rule_day(&p->start, year) * TEND_DAY + p->start.secs - p->std_off;
        ch[n++].to_dst = 1;
        ch[n].at = rule_day(&p->end, year) * TEND_DAY + p->end.secs - p->dst_off;
        ch[n++].to_dst = 0;
    }
    /* Insertion sort; on a tie the end sorts first so that a zero-length
     * standard period (the "DST all year" idiom, e.g. ,0/0,J365/25) reads
     * as daylight time, as tzcode does. */
    for (int i = 1; i < n; i++) {
        struct tz_change c = ch[i];
        int j = i;
        while (j > 0 && (ch[j-1].at > c.at || (ch[j-1].at == c.at && ch[j-1].to_dst > c.to_dst))) {
            ch[j] = ch[j-1];
            j--;
        }
        ch[j] = c;
    }
    return n;
}

static int posix_is_dst(const struct tz_posix *p, tend_time t) {
    struct tz_change ch[8];
    int n = posix_changes(p, t, ch), dst = !ch[0].to_dst;
    for (int i = 0; i < n && ch[i].at <= t; i++) dst = ch[i].to_dst;
    return dst;
}

static tend_time posix_next_change(const struct tz_posix *p, tend_time t) {
    struct tz_change ch[8];
    int n = posix_changes(p, t, ch);
    for (int i = 0; i < n; i++)
        if (ch[i].at > t) return ch[i].at;
    return NEVER;
}

/* --- zones: TZif files and the cache ------------------------------------ */

struct tz_type {
    int32_t off;        /* seconds east of UTC */
    uint8_t is_dst;
};

struct tz_zone {
    struct tz_zone *next;       /* cache list */
    const char *name;
    size_t namelen;             /* strlen(name): zone_find compares it first */
    size_t ntrans, ntypes;
    int64_t *trans;             /* ascending instants at which a type begins */
    uint8_t *trans_type;        /* the type beginning at trans[i] */
    struct tz_type *types;
    int has_footer;             /* footer rules every instant from the last transition on */
    struct tz_posix footer;
};

static _Atomic(struct tz_zone *) zone_cache;
static pthread_mutex_t zone_loading = PTHREAD_MUTEX_INITIALIZER;

/* One allocation per zone (struct, arrays, name) so freeing is one call. */
static struct tz_zone *zone_alloc(const char *name, size_t ntrans, size_t ntypes) {
    size_t namelen = strlen(name) + 1;
    size_t size = sizeof(struct tz_zone) + ntrans * sizeof(int64_t)
                + ntypes * sizeof(struct tz_type) + ntrans + namelen;
    struct tz_zone *z = calloc(1, size);
    if (z == NULL) return NULL;
    char *p = (char *)(z + 1);
    z->trans = (int64_t *)p;                     p += ntrans * sizeof(int64_t);
    z->types = (struct tz_type *)p;              p += ntypes * sizeof(struct tz_type);
    z->trans_type = (uint8_t *)p;                p += ntrans;
    z->name = memcpy(p, name, namelen);
    z->namelen = namelen - 1;
    z->ntrans = ntrans;
    z->ntypes = ntypes;
    return z;
}

/* TZif is big-endian throughout. */
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p) {
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

#define TZIF_HEADER 44

static int tzif_header(const unsigned char *p, size_t n, struct tzif_counts *c, int *version) {
    if (n < TZIF_HEADER || memcmp(p, "TZif", 4) != 0) return -1;
    *version = p[4] == 0 ? 1 : p[4] - '0';
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chars = be32(p + 40);
    /* Type indices are one byte, and there must be a type for "before the first transition". */
    return c->type >= 1 && c->type <= 256 ? 0 : -1;
}

static uint64_t tzif_block_size(const struct tzif_counts *c, int timesize) {
    return (uint64_t)c->time * (uint64_t)(timesize + 1) + (uint64_t)c->type * 6 + c->chars
         + (uint64_t)c->leap * (uint64_t)(timesize + 4) + c->isstd + c->isut;
}

/* The footer is "\n<POSIX TZ>\n" after the 64-bit block; empty means "none". */
static int tzif_footer(const unsigned char *p, const unsigned char *end, struct tz_zone *z) {
    char tz[256];
    if (p >= end || *p != '\n') return 0;   /* tolerated: the table alone rules */
    p++;
    const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || nl - p >= (long)sizeof tz) return -1;
    if (nl == p) return 0;
    memcpy(tz, p, (size_t)(nl - p));
    tz[nl - p] = '\0';
    /* An unreadable rule is an error: guessing would give wrong future times. */
    if (posix_parse(tz, &z->footer) < 0) return -1;
    z->has_footer = 1;
    return 0;
}

/* Fills z's tables from one data block, checking what later lookups rely
 * on: sorted transitions, valid type indices, sane offsets. Leap-second
 * records are skipped: tend_time is POSIX time, which has none. */
static int tzif_tables(const unsigned char *p, const struct tzif_counts *c, int timesize,
                       struct tz_zone *z) {
    int64_t *trans = z->trans;
    uint8_t *trans_type = z->trans_type;
    struct tz_type *types = z->types;
    for (size_t i = 0; i < c->time; i++, p += timesize) {
        trans[i] = timesize == 8 ? be64(p) : (int32_t)be32(p);
        /* zic writes -2^59 for "the beginning of time"; anything near 2^63
         * would overflow the offset arithmetic, and means a broken file. */
        if (trans[i] < -TRANS_LIMIT || trans[i] > TRANS_LIMIT) return -1;
        if (i > 0 && trans[i] <= trans[i-1]) return -1;
    }
    for (size_t i = 0; i < c->time; i++)
        if ((trans_type[i] = *p++) >= c->type) return -1;
    for (size_t i = 0; i < c->type; i++, p += 6) {
        types[i].off = (int32_t)be32(p);
        types[i].is_dst = p[4] != 0;
        if (!offset_ok(types[i].off)) return -1;
    }
    return 0;
}

static struct tz_zone *tzif_parse(const char *name, const unsigned char *p, size_t n) {
    const unsigned char *end = p + n;
    struct tzif_counts c;
    int version, timesize = 4;
    if (tzif_header(p, n, &c, &version) < 0) return NULL;
    p += TZIF_HEADER;
    if (version >= 2) {
        /* The 32-bit block is only there for old readers; skip to the 64-bit one. */
        uint64_t skip = tzif_block_size(&c, 4);
        if (skip > (uint64_t)(end - p)) return NULL;
        p += skip;
        if (tzif_header(p, (size_t)(end - p), &c, &version) < 0) return NULL;
        p += TZIF_HEADER;
        timesize = 8;
    }
    uint64_t size = tzif_block_size(&c, timesize);
    if (size > (uint64_t)(end - p)) return NULL;
    struct tz_zone *z = zone_alloc(name, c.time, c.type);
    if (z == NULL) return NULL;
    if (tzif_tables(p, &c, timesize, z) < 0 ||
        (timesize == 8 && tzif_footer(p + size, end, z) < 0)) {
        free(z);
        return NULL;
    }
    return z;
}

static struct tz_zone *zone_load(const char *name) {
    const char *dir = getenv("TZDIR");
    char path[4096];
    if (dir == NULL || *dir == '\0') dir = DEFAULT_TZDIR;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    unsigned char *buf = malloc(MAX_TZIF_BYTES);
    size_t n = buf != NULL ? fread(buf, 1, MAX_TZIF_BYTES, f) : 0;
    fclose(f);
    /* A directory reads as nothing; an oversized file is not a zone. */
    struct tz_zone *z = n > 0 && n < MAX_TZIF_BYTES ? tzif_parse(name, buf, n) : NULL;
    free(buf);
    return z;
}

/* UTC is built in so that it works on a machine without tzdata. */
static int is_utc_name(const char *name) {
    return strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0 || strcmp(name, "GMT") == 0;
}

static struct tz_zone *zone_utc(const char *name) {
    struct tz_zone *z = zone_alloc(name, 0, 1);
    if (z != NULL) z->types[0] = (struct tz_type){0, 0};
    return z;
}

/* The name becomes a path under TZDIR: refuse anything that could leave it. */
static int zone_name_ok(const char *name) {
    size_t len = strlen(name);
    return len > 0 && len < 256 && name[0] != '/' && strstr(name, "..") == NULL;
}

/* The length first: a store's customers name a few dozen zones, most
 * sharing their first letters ("America/"), and each lookup (the local hour
 * of every event) compared the name with every zone before it in full. */
static struct tz_zone *zone_find(struct tz_zone *z, const char *name) {
    size_t len = strlen(name);
    for (; z != NULL; z = z->next)
        if (z->namelen == len && memcmp(z->name, name, len) == 0) return z;
    return NULL;
}

/* Failures are not cached: the zone may be installed later, and a cache of
 * bad names would grow with whatever garbage customers send. */
static const struct tz_zone *zone_get(const char *name) {
    if (name == NULL) return NULL;
    struct tz_zone *z = zone_find(atomic_load_explicit(&zone_cache, memory_order_acquire), name);
    if (z != NULL || !zone_name_ok(name)) return z;
    pthread_mutex_lock(&zone_loading);
    struct tz_zone *head = atomic_load_explicit(&zone_cache, memory_order_relaxed);
    z = zone_find(head, name);      /* another thread may have loaded it meanwhile */
    if (z == NULL) {
        z = is_utc_name(name) ? zone_utc(name) : zone_load(name);
        if (z != NULL) {
            z->next = head;
            atomic_store_explicit(&zone_cache, z, memory_order_release);
        }
    }
    pthread_mutex_unlock(&zone_loading);
    return z;
}

/* At exit, with no other thread left. */
void clock_shutdown(void) {
    struct tz_zone *z = atomic_exchange(&zone_cache, NULL);
    while (z != NULL) {
        struct tz_zone *next = z->next;
        free(z);
        z = next;
    }
}

/* --- zones: instants and wall times ------------------------------------- */

/* Number of transitions at or before t. */
static size_t trans_upto(const struct tz_zone *z, tend_time t) {
    size_t lo = 0, hi = z->ntrans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static int footer_rules(const struct tz_zone *z, tend_time t) {
    return z->has_footer && (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]);
}

static struct tz_type zone_type_at(const struct tz_zone *z, tend_time t) {
    if (footer_rules(z, t)) {
        const struct tz_posix *p = &z->footer;
        int dst = p->has_dst && posix_is_dst(p, t);
        return (struct tz_type){dst ? p->dst_off : p->std_off, (uint8_t)dst};
    }
    size_t i = trans_upto(z, t);
    /* Before the first transition, RFC 8536 says type 0 applies. */
    return z->types[i == 0 ? 0 : z->trans_type[i - 1]];
}

/* The first transition strictly after t, or NEVER. */
static tend_time zone_next_change(const struct tz_zone *z, tend_time t) {
    if (z->ntrans > 0 && t < z->trans[z->ntrans - 1]) return z->trans[trans_upto(z, t)];
    if (z->has_footer && z->footer.has_dst) return posix_next_change(&z->footer, t);
    return NEVER;
}

/* The lowest and highest offsets in force between two instants. */
static void zone_offset_bounds(const struct tz_zone *z, tend_time from, tend_time to,
                               int32_t *lo, int32_t *hi) {
    *lo = *hi = zone_type_at(z, from).off;
    for (tend_time t = zone_next_change(z, from); t <= to; t = zone_next_change(z, t)) {
        int32_t off = zone_type_at(z, t).off;
        if (off < *lo) *lo = off;
        if (off > *hi) *hi = off;
    }
}

/* Wall time → instant. Walks the offset periods that could hold `wall`
 * oldest first, so in an overlap the first fit is the earlier instant. A
 * wall time that falls between one period's last reading and the next one's
 * first is in a gap, and is read with the offset from before the gap, which
 * moves it forward by the gap's length. */
static tend_time zone_from_wall(const struct tz_zone *z, tend_time wall) {
    tend_time t = wall - ZONE_WINDOW;
    for (int guard = 0; guard < 64; guard++) {
        int32_t off = zone_type_at(z, t).off;
        tend_time end = zone_next_change(z, t), at = wall - off;
        if (at >= t && at < end) return at;
        if (end > wall + ZONE_WINDOW) break;
        if (end + off <= wall && wall < end + zone_type_at(z, end).off) return at;
        t = end;
    }
    return wall - zone_type_at(z, wall).off;   /* only for a nonsensical table */
}

static void split_wall(tend_time wall, struct clock_local *out) {
    int64_t days = floor_div(wall, TEND_DAY);
    int secs = (int)(wall - days * TEND_DAY);
    clock_civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = secs / 3600;
    out->minute = secs / 60 % 60;
    out->second = secs % 60;
    out->wday = weekday(days);
    out->yday = (int)(days - clock_days_from_civil(out->year, 1, 1));
}

int clock_tz_valid(const char *tz) { return zone_get(tz) != NULL; }

int clock_to_local(tend_time t, const char *tz, struct clock_local *out) {
    const struct tz_zone *z = zone_get(tz);
    if (z == NULL || !in_range(t)) return -1;
    struct tz_type type = zone_type_at(z, t);
    split_wall(t + type.off, out);
    out->utc_offset = type.off;
    out->is_dst = type.is_dst;
    return 0;
}

int clock_from_local(const char *tz, int year, int month, int day,
                     int hour, int minute, int second, tend_time *out) {
    const struct tz_zone *z = zone_get(tz);
    if (z == NULL) return -1;
    /* int64 throughout: any int fields fit, and normalisation is just addition. */
    tend_time wall = (clock_days_from_civil(year, month, 1) + day - 1) * TEND_DAY
                   + (int64_t)hour * TEND_HOUR + (int64_t)minute * TEND_MINUTE + second;
    if (!in_range(wall)) return -1;
    *out = zone_from_wall(z, wall);
    return 0;
}

int clock_next_local(tend_time after, const char *tz, int hh, int mm, tend_time *out) {
    const struct tz_zone *z = zone_get(tz);
    if (z == NULL || !in_range(after) || hh < 0 || hh > 23 || mm < 0 || mm > 59) return -1;
    int64_t today = floor_div(after + zone_type_at(z, after).off, TEND_DAY);
    /* Start from yesterday: a gap straddling midnight can push yesterday's
     * hh:mm past `after`. Each day's hh:mm maps no earlier than the last's. */
    for (int64_t day = today - 1; day <= today + 3; day++) {
        tend_time t = zone_from_wall(z, day * TEND_DAY + hh * TEND_HOUR + mm * TEND_MINUTE);
        if (t > after) {
            *out = t;
            return 0;
        }
    }
    return -1;
}

int clock_parse_hhmm(const char *s, int *hh, int *mm) {
    if (s == NULL || strlen(s) != 5 || s[2] != ':') return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && !isdigit((unsigned char)s[i])) return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59) return -1;
    *hh = h, *mm = m;
    return 0;
}

/* --- text --------------------------------------------------------------- */

/* Exactly `width` digits. */
static const char *scan_digits(const char *s, int width, int *out) {
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!isdigit((unsigned char)s[i])) return NULL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return s + width;
}

/* YYYY-MM-DD, a real date. On failure writes why into `why`. */
static const char *scan_date(const char *s, int *y, int *m, int *d, char *why, size_t n) {
    const char *p = scan_digits(s, 4, y);
    if (p != NULL && *p == '-') p = scan_digits(p + 1, 2, m); else p = NULL;
    if (p != NULL && *p == '-') p = scan_digits(p + 1, 2, d); else p = NULL;
    if (p == NULL) {
        seterr(why, n, "expected YYYY-MM-DD");
    } else if (*m < 1 || *m > 12) {
        seterr(why, n, "month %d out of range", *m);
        p = NULL;
    } else if (*d < 1 || *d > clock_days_in_month(*y, *m)) {
        seterr(why, n, "day %d out of range for %04d-%02d", *d, *y, *m);
        p = NULL;
    }
    return p;
}

int clock_parse_date(const char *s, int *y, int *m, int *d, char *err, size_t errlen) {
    char why[96];
    int yy, mm, dd;
    if (s == NULL || *s == '\0') {
        seterr(err, errlen, "empty date");
        return -1;
    }
    const char *p = scan_date(s, &yy, &mm, &dd, why, sizeof why);
    if (p != NULL && *p != '\0') seterr(why, sizeof why, "unexpected \"%.16s\" after the date", p);
    if (p == NULL || *p != '\0') {
        seterr(err, errlen, "\"%.64s\": %s", s, why);
        return -1;
    }
    *y = yy, *m = mm, *d = dd;
    return 0;
}

/* Seconds since the epoch, optionally negative, optionally with a fraction
 * that is dropped (tend has no use for sub-second precision). */
static int parse_epoch(const char *s, tend_time *out, char *why, size_t n) {
    int neg = *s == '-';
    int64_t v = 0;
    const char *p = s + neg;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > TIME_LIMIT) {
            seterr(why, n, "out of range");
            return -1;
        }
    }
    if (*p == '.' && isdigit((unsigned char)p[1]))
        for (p++; isdigit((unsigned char)*p); p++) {}
    if (p == s + neg || *p != '\0') {
        seterr(why, n, "not a number of seconds");
        return -1;
    }
    *out = neg ? -v : v;
    return 0;
}

/* "Z", "+hh:mm" or "+hhmm" → seconds east. */
static const char *scan_offset(const char *s, int *off, char *why, size_t n) {
    int sign, h, m;
    if (*s == 'Z') {
        *off = 0;
        return s + 1;
    }
    if (*s != '+' && *s != '-') {
        seterr(why, n, *s ? "bad UTC offset" : "no UTC offset (add Z or +hh:mm)");
        return NULL;
    }
    sign = *s++ == '-' ? -1 : 1;
    if ((s = scan_digits(s, 2, &h)) == NULL ||
        (s = scan_digits(s + (*s == ':'), 2, &m)) == NULL) {
        seterr(why, n, "bad UTC offset (expected +hh:mm)");
        return NULL;
    }
    if (h > 23 || m > 59) {
        seterr(why, n, "UTC offset out of range");
        return NULL;
    }
    *off = sign * (h * 3600 + m * 60);
    return s;
}

/* Date, 'T' or ' ', hh:mm[:ss], offset. */
static int parse_iso(const char *s, tend_time *out, char *why, size_t n) {
    int y, mo, d, h, mi, sec = 0, off;
    const char *p = scan_date(s, &y, &mo, &d, why, n);
    if (p == NULL) return -1;
    if (*p != 'T' && *p != ' ') {
        seterr(why, n, *p ? "expected 'T' after the date" : "no time of day");
        return -1;
    }
    if ((p = scan_digits(p + 1, 2, &h)) == NULL || *p != ':' ||
        (p = scan_digits(p + 1, 2, &mi)) == NULL ||
        (*p == ':' && (p = scan_digits(p + 1, 2, &sec)) == NULL)) {
        seterr(why, n, "expected hh:mm or hh:mm:ss");
        return -1;
    }
    if (h > 23 || mi > 59 || sec > 59) {
        const char *what = h > 23 ? "hour" : mi > 59 ? "minute" : "second";
        seterr(why, n, "%s %d out of range", what, h > 23 ? h : mi > 59 ? mi : sec);
        return -1;
    }
    if ((p = scan_offset(p, &off, why, n)) == NULL) return -1;
    if (*p != '\0') {
        seterr(why, n, "unexpected \"%.16s\" after the offset", p);
        return -1;
    }
    *out = days_from_civil(y, mo, d) * TEND_DAY + h * TEND_HOUR + mi * TEND_MINUTE + sec - off;
    return 0;
}

int clock_parse_time(const char *s, tend_time *out, char *err, size_t errlen) {
    char why[96];
    if (s == NULL || *s == '\0') {
        seterr(err, errlen, "empty time");
        return -1;
    }
    /* A date starts with four digits and a dash; anything else all-digit is epoch seconds. */
    size_t lead = strspn(s + (*s == '-'), "0123456789");
    int is_date = *s != '-' && lead == 4 && s[4] == '-';
    if ((is_date ? parse_iso(s, out, why, sizeof why) : parse_epoch(s, out, why, sizeof why)) < 0) {
        seterr(err, errlen, "\"%.64s\": %s", s, why);
        return -1;
    }
    return 0;
}

/* Local time for formatting; an unknown zone, or an offset with seconds (only
 * pre-1900 local mean time) that "+hh:mm" cannot carry, falls back to UTC so
 * the text still names the right instant. */
static int format_local(tend_time t, const char *tz, struct clock_local *lt) {
    int utc = tz == NULL || strcmp(tz, "UTC") == 0;
    if (!utc && (clock_to_local(t, tz, lt) < 0 || lt->utc_offset % 60 != 0)) utc = 1;
    if (utc && clock_to_local(t, "UTC", lt) < 0) return -1;
    return utc;
}

char *clock_format(tend_time t, const char *tz, char *buf, size_t n) {
    struct clock_local lt;
    char offset[16] = "Z";
    int utc = format_local(t, tz, &lt);
    if (n == 0) return buf;
    if (utc < 0) {
        buf[0] = '\0';
        return buf;
    }
    if (!utc) {
        int a = lt.utc_offset < 0 ? -lt.utc_offset : lt.utc_offset;
        snprintf(offset, sizeof offset, "%c%02d:%02d", lt.utc_offset < 0 ? '-' : '+',
                 a / 3600, a / 60 % 60);
    }
    /* The digits by hand when they are the usual ones (what the snprintf
     * below writes for them): a wait_until formats its time at every
     * start and replay, and the snprintf was most of that. */
    size_t olen = strlen(offset);
    if (lt.year >= 0 && lt.year <= 9999 && n > 19 + olen) {
        const int two[5] = {lt.month, lt.day, lt.hour, lt.minute, lt.second};
        const char sep[5] = {'-', 'T', ':', ':', '\0'};
        int ok = 1;
        for (int i = 0; i < 5; i++)
            ok = ok && two[i] >= 0 && two[i] <= 99;
        if (ok) {
            char *p = buf;
            *p++ = (char)('0' + lt.year / 1000);
            *p++ = (char)('0' + lt.year / 100 % 10);
            *p++ = (char)('0' + lt.year / 10 % 10);
            *p++ = (char)('0' + lt.year % 10);
            *p++ = '-';
            for (int i = 0; i < 5; i++) {
                *p++ = (char)('0' + two[i] / 10);
                *p++ = (char)('0' + two[i] % 10);
                if (sep[i])
                    *p++ = sep[i];
            }
            memcpy(p, offset, olen + 1);
            return buf;
        }
    }
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d%s",
             lt.year, lt.month, lt.day, lt.hour, lt.minute, lt.second, offset);
    return buf;
}

char *clock_format_date(tend_time t, const char *tz, char *buf, size_t n) {
    struct clock_local lt;
    if (n == 0) return buf;
    if (clock_to_local(t, tz != NULL ? tz : "UTC", &lt) < 0 &&
        clock_to_local(t, "UTC", &lt) < 0) {
        buf[0] = '\0';
        return buf;
    }
    snprintf(buf, n, "%04d-%02d-%02d", lt.year, lt.month, lt.day);
    return buf;
}

/* --- cron --------------------------------------------------------------- */

static const char *const month_names[] = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct cron_field {
    const char *what;
    int lo, hi;         /* accepted values */
    int star_hi;        /* what `*` covers: weekday 7 is only an alias */
    const char *const *names;   /* names[i] is value lo + i */
};

static const struct cron_field cron_fields[5] = {
    {"minute", 0, 59, 59, NULL},
    {"hour", 0, 23, 23, NULL},
    {"day-of-month", 1, 31, 31, NULL},
    {"month", 1, 12, 12, month_names},
    {"day-of-week", 0, 7, 6, wday_names},
};

static const char *cron_name(const char *s, const struct cron_field *f, int *out) {
    int count = f->star_hi - f->lo + 1;     /* names cover what `*` covers */
    char word[3];
    /* Exactly three letters: checked one by one so a short name stops at its end. */
    for (int i = 0; i < 3; i++) {
        if (!isalpha((unsigned char)s[i])) return NULL;
        word[i] = (char)tolower((unsigned char)s[i]);
    }
    if (isalpha((unsigned char)s[3])) return NULL;
    for (int i = 0; i < count; i++)
        if (memcmp(word, f->names[i], 3) == 0) {
            *out = f->lo + i;
            return s + 3;
        }
    return NULL;
}

/* One value: a number, or for month and weekday a three-letter name. */
static const char *cron_value(const char *s, const struct cron_field *f, int *out,
                              char *why, size_t n) {
    const char *p = s;
    int v = 0;
    if (f->names != NULL && isalpha((unsigned char)*s) && (p = cron_name(s, f, out)) != NULL)
        return p;
    for (p = s; isdigit((unsigned char)*p) && v < 1000; p++) v = v * 10 + (*p - '0');
    if (p == s) {
        seterr(why, n, "%s: expected a number at \"%.12s\"", f->what, s);
        return NULL;
    }
    if (v < f->lo || v > f->hi) {
        seterr(why, n, "%s %d out of range %d-%d", f->what, v, f->lo, f->hi);
        return NULL;
    }
    *out = v;
    return p;
}

/* One list item: `*`, `a` or `a-b`, optionally with `/step` (not after a
 * single value: "5/15" means different things to different crons). */
static int cron_item(const char *s, const char *end, const struct cron_field *f,
                     uint64_t *bits, char *why, size_t n) {
    int a, b, step = 1, single = 0;
    if (*s == '*') {
        a = f->lo;
        b = f->star_hi;
        s++;
    } else {
        if ((s = cron_value(s, f, &a, why, n)) == NULL) return -1;
        b = a;
        single = *s != '-';
        if (*s == '-' && (s = cron_value(s + 1, f, &b, why, n)) == NULL) return -1;
        if (b < a) {
            seterr(why, n, "%s range %d-%d is backwards", f->what, a, b);
            return -1;
        }
    }
    if (*s == '/') {
        const char *p = ++s;
        for (step = 0; isdigit((unsigned char)*s) && step < 1000; s++) step = step * 10 + (*s - '0');
        if (single || s == p || step < 1 || step > f->hi - f->lo + 1) {
            seterr(why, n, "%s: bad step \"%.*s\"", f->what, (int)(end - p), p);
            return -1;
        }
    }
    if (s != end) {
        seterr(why, n, "%s: unexpected \"%.*s\"", f->what, (int)(end - s), s);
        return -1;
    }
    for (int v = a; v <= b; v += step) *bits |= (uint64_t)1 << v;
    return 0;
}

static int cron_list(const char *s, const char *end, const struct cron_field *f,
                     uint64_t *bits, char *why, size_t n) {
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma != NULL ? comma : end;
        if (stop == s) {
            seterr(why, n, "%s: empty list item", f->what);
            return -1;
        }
        if (cron_item(s, stop, f, bits, why, n) < 0) return -1;
        if (comma == NULL) return 0;
        s = comma + 1;
    }
}

int cron_parse(const char *expr, cron_expr *out, char *err, size_t errlen) {
    const char *start[5], *end[5], *p = expr != NULL ? expr : "";
    uint64_t bits[5] = {0};
    char why[96];
    int count = 0;
    while (*p != '\0') {
        p += strspn(p, " \t");
        if (*p == '\0') break;
        if (count < 5) start[count] = p;
        p += strcspn(p, " \t");
        if (count < 5) end[count] = p;
        count++;
    }
    if (count != 5) {
        seterr(err, errlen, "cron \"%.64s\": expected 5 fields, got %d", expr ? expr : "", count);
        return -1;
    }
    for (int i = 0; i < 5; i++)
        if (cron_list(start[i], end[i], &cron_fields[i], &bits[i], why, sizeof why) < 0) {
            seterr(err, errlen, "cron \"%.64s\": %s", expr, why);
            return -1;
        }
    memset(out, 0, sizeof *out);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);  /* 7 is Sunday */
    out->mday_star = end[2] - start[2] == 1 && *start[2] == '*';
    out->wday_star = end[4] - start[4] == 1 && *start[4] == '*';
    return 0;
}

static int cron_day_matches(const cron_expr *c, int mday, int wday) {
    int dom = (c->mdays >> mday) & 1, dow = (c->wdays >> wday) & 1;
    /* Vixie cron: a `*` field matches every day, so AND leaves the other in
     * charge; two restricted fields widen each other. */
    if (c->mday_star || c->wday_star) return dom && dow;
    return dom || dow;
}

/* The search state. Candidates are wall times, visited in wall order, but
 * DST gaps make their instants non-monotonic, so instead of stopping at the
 * first hit the search keeps a best instant and bounds: a wall time w maps
 * to w - off for some offset in force near it, so w - min_off <= after
 * cannot be after `after`, and w - max_off >= best cannot beat best. */
struct cron_search {
    const cron_expr *c;
    const struct tz_zone *z;
    tend_time after, best;
    int32_t min_off;    /* lowest offset near `after` */
    int32_t max_off;    /* highest offset near `best` */
    int found;
};

/* Returns 1 when no later wall time can improve on the best found. */
static int cron_try(struct cron_search *s, tend_time wall) {
    if (wall - s->min_off <= s->after) return 0;
    if (s->found && wall - s->max_off >= s->best) return 1;
    tend_time t = zone_from_wall(s->z, wall);
    if (t > s->after && (!s->found || t < s->best)) {
        int32_t lo;
        s->best = t;
        s->found = 1;
        zone_offset_bounds(s->z, t - ZONE_WINDOW, t + ZONE_WINDOW, &lo, &s->max_off);
    }
    return 0;
}

static int cron_scan_day(struct cron_search *s, tend_time day_wall) {
    for (int h = 0; h < 24; h++) {
        tend_time hour_wall = day_wall + h * TEND_HOUR;
        if (!((s->c->hours >> h) & 1)) continue;
        if (hour_wall + TEND_HOUR - 1 - s->min_off <= s->after) continue;
        for (int m = 0; m < 60; m++)
            if (((s->c->minutes >> m) & 1) && cron_try(s, hour_wall + m * TEND_MINUTE))
                return 1;
    }
    return 0;
}

int cron_next(const cron_expr *c, tend_time after, const char *tz, tend_time *out) {
    struct cron_search s = {c, zone_get(tz), after, 0, 0, 0, 0};
    int32_t hi;
    if (s.z == NULL || !in_range(after)) return -1;
    zone_offset_bounds(s.z, after - ZONE_WINDOW, after + ZONE_WINDOW, &s.min_off, &hi);
    /* From yesterday (a gap can push its times past `after`), up to 5 years on. */
    int64_t day = floor_div(after + zone_type_at(s.z, after).off, TEND_DAY) - 1;
    int64_t last = day + 5 * 366 + 1;
    while (day <= last) {
        int y, m, d;
        tend_time day_wall = day * TEND_DAY;
        if (s.found && day_wall - s.max_off >= s.best) break;
        clock_civil_from_days(day, &y, &m, &d);
        if (!((c->months >> m) & 1)) {      /* skip the rest of the month */
            day = clock_days_from_civil(y, m + 1, 1);
            continue;
        }
        if (cron_day_matches(c, d, weekday(day)) &&
            day_wall + TEND_DAY - 1 - s.min_off > after && cron_scan_day(&s, day_wall))
            break;
        day++;
    }
    if (!s.found) return -1;
    *out = s.best;
    return 0;
}
