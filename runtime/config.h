/* config — tend.lua: the settings of one installation.
 *
 * tend.lua sits in the script directory and returns a table (it runs in the
 * sandbox, so days(), hours() work). Every key is checked: a misspelt one is
 * an error naming it, never silently ignored. Channels keep their Lua table
 * (they may hold functions: an http body builder, a task assignment rule);
 * the channel module reads it from the registry (config_push_channels).
 *
 * Ownership: config_init() fills a struct whose strings belong to it;
 * config_free() releases them. */
#ifndef TEND_CONFIG_H
#define TEND_CONFIG_H

#include <stddef.h>

#include <lua.h>

#include "calendar.h"
#include "clock.h"

/* One limit of `caps` or `segment_caps` (policy.c applies them). */
enum config_cap_period { CAP_DAY, CAP_WEEK, CAP_MONTH, CAP_ROLLING };
struct config_cap {
    char *scope;                /* "marketing", or a channel name */
    char *segment;              /* NULL; or the segment whose members get this limit instead */
    enum config_cap_period period;
    int limit;                  /* sends per customer in the period */
    tend_time within;           /* CAP_ROLLING: any span of this length */
};

struct config {
    char *db;                   /* database path ("tend.db", relative to the dir) */
    char *timezone;             /* default customer zone ("UTC") */
    char *listen;               /* "127.0.0.1:8725" */
    int synchronous_normal;     /* synchronous=NORMAL instead of FULL */
    int reject_unknown;         /* events for unknown customers are rejected */

    int quiet_enabled;          /* quiet hours on (default 21:30–08:30) */
    int quiet_from, quiet_to;   /* minutes of the local day */
    int cap_day, cap_week;      /* marketing sends per customer (1, 3); 0 = no cap */
    struct config_cap *caps;    /* every cap (marketing's day/week among them), then segment_caps */
    int ncaps;

    tend_time silent_after, churned_after, dead_after;  /* lifecycle, by recency */
    int active_orders;          /* orders that make a recent customer 'active' */
    double rfm_r[4], rfm_f[4], rfm_m[4];   /* score thresholds (see customer.h) */

    char **paid_types;          /* event types that are paid orders (NULL-terminated) */
    char **refund_types;        /* ... refunds */
    char *amount_field;         /* the order's amount in the event ("total") */

    char **http_allow;          /* hosts http_get may reach (NULL-terminated) */
    size_t memory_limit;        /* Lua state cap, bytes */
    long instruction_limit;     /* per entry into Lua */
    long time_limit_ms;         /* wall time per entry into Lua */
    size_t load_limit;          /* bytes load() compiles */
    int max_sends, max_emits, max_starts;   /* live ones per resume of a run */
    int max_chain;              /* instances and emits in one start/emit chain */
    int delivery_batch;         /* outbox rows claimed per dispatch pass */
    int cache_mb;               /* branch loop2: SQLite's page cache, MiB */

    /* tend run's HTTP server (`server = {...}`) and its stop (branch server) */
    int max_connections;        /* open client connections at most */
    double idle_timeout;        /* seconds a connection may stay silent */
    double header_timeout;      /* seconds from a request's first byte to its head's end */
    double request_timeout;     /* ... to its body's end */
    double shutdown_grace;      /* seconds SIGTERM waits for transfers in flight */
    calendar *holidays;         /* `holidays` added to the built-in ones (calendar.h) */

    /* branch liquid */
    char *currency;             /* ISO 4217 code for the money filter ("CNY") */
    char *public_url;           /* base of links to tend itself (unsubscribe); NULL = from listen */
    char *unsubscribe_secret;   /* HMAC key of unsubscribe tokens; NULL = env or generated */
    int ready_backlog;         /* /readyz fails past this many unprocessed events */

    /* branch scale: `retention = { instances = days(90), events = days(180) }`
     * (retention.h); 0 = kept for ever, the default */
    tend_time retain_instances; /* seconds a finished instance is kept */
    tend_time retain_events;    /* seconds a processed event is kept */
};

/* Defaults for a fresh machine. */
void config_init(struct config *c);
void config_free(struct config *c);

/* Reads the table at idx into c. On error returns -1 with a message naming
 * the key ("tend.lua: unknown setting 'quiet_hour'"). The `channels` table
 * is stored in the registry for config_push_channels. */
int config_read(struct config *c, lua_State *L, int idx, const char *source, char *err, size_t errlen);

/* 1 if the NULL-terminated list has s (paid_types, refund_types...). */
int config_lists(const char *s, char **list);

/* Pushes the channels table from the last config_read (an empty table if none). */
void config_push_channels(lua_State *L);

/* A load error about tend.lua at `path` as "SHOWN:LINE: message", the line
 * being where the message's last quoted name is written (a value such as
 * '25:00-26:00', or a setting path such as 'caps.sms.fortnight' followed key
 * by key); "SHOWN: message" when it cannot be found. Returns a malloc'd
 * string (caller frees). */
char *config_error_at(const char *path, const char *shown, const char *message);

#endif
