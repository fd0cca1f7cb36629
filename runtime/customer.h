/* customer — customer rows: the known fields, attrs, tags, and the fields
 * tend maintains from events.
 *
 * Known fields: id name phone email city region timezone birthday blocked,
 * tags (a set of strings) and attrs (a JSON object for everything else).
 * Maintained fields: first_seen_at first_order_at last_order_at orders_count
 * total_spent last_active_at (an import may set these too, to bring history
 * along), and the derived lifecycle and RFM scores r f m (never set from
 * outside: they follow from the others and the clock).
 *
 * Lifecycle, by the age of the last order (or of first_seen_at for a
 * customer with none): at least `dead` → dead, `churned` → churned,
 * `silent` → silent; otherwise active with `active_orders` or more orders,
 * repeat with 2 or more, new below. RFM: r from the days since the last order
 * (≤ rfm.r[1..4] → 5..2, else 1), f from orders_count (≥ rfm.f[1..4] → 5..2),
 * m from total_spent (≥ rfm.m[1..4] → 5..2). Time moves these without any
 * event, so customer_sweep() re-derives the customers who crossed a threshold
 * since the last sweep (range scans on last_order_at: no full-table pass).
 *
 * All writes go through the engine's store in the caller's transaction.
 * Returned cJSON trees and strings are the caller's. */
#ifndef TEND_CUSTOMER_H
#define TEND_CUSTOMER_H

#include <cjson/cJSON.h>
#include <lua.h>

#include "engine.h"
#include "util.h"

#define CUSTOMER_ID_MAX 128

/* Flags for customer_upsert. */
enum {
    CUSTOMER_TEXT_VALUES = 1,   /* values may be text ("12", "true"): CSV */
};

/* Creates or updates the customer described by `obj` (which must have "id").
 * Fields present overwrite; absent ones are left alone; attrs merge key by
 * key (null deletes a key); tags replace the set. An unknown or computed
 * field, a bad zone, date or number is an error naming the field; nothing is
 * written then. *created tells which it was. */
int customer_upsert(engine *e, const cJSON *obj, int flags, int *created, char *err, size_t errlen);

/* customer_upsert in two halves, for a caller that checks rows on one
 * thread and writes them on another (importer.c). customer_check reads only
 * `obj` (no engine, no store, nothing shared but clock.c's zone cache,
 * which is safe to share), so it may run on any thread; it fails with the
 * reason customer_upsert would give and writes nothing. The checked row
 * points at obj's keys and strings, which must outlive customer_write;
 * attrs_text is the row's own (customer_checked_free, after the write or
 * instead of it). customer_write is the rest of customer_upsert, on the
 * engine's thread; its only failure is the store's ("store: ..."). */
struct customer_value {
    int present, null;
    int64_t i;
    double d;
    const char *s;
    int len;                    /* s's length in bytes */
};
#define CUSTOMER_FIELDS 19
struct customer_checked {
    struct customer_value v[CUSTOMER_FIELDS];
    const char *id;
    const cJSON *tags;          /* NULL: the set is left as it is */
    char *attrs_text;           /* the attrs to merge, as JSON (owned), or NULL */
    int first_seen_given;
};
int customer_check(const cJSON *obj, int flags, struct customer_checked *c, char *err, size_t errlen);
/* What a bulk writer (importer.c) carries from one customer_write to the
 * next; zeroed to start, owned by the caller, holding nothing to free.
 * `insert` is the customer INSERT, kept after its first use (store_sql_again).
 * `new_tags`, which the caller sets: the store had no tag rows when the
 * caller's transaction began and the triggers that copy last_order_at
 * into tag rows are off in it, so the tags of a customer this write
 * creates are inserted without first deleting that customer's tag rows
 * (there are none), with the last_order_at the customer is created with;
 * once a customer is updated after that (the triggers being off), the
 * caller writes its customer's last_order_at into every tag row before it
 * commits. A customer that existed already has its tags replaced as
 * always. */
struct customer_writer {
    store_stmt *insert;
    store_stmt *insert_many;    /* customer_write_many's, kept after its first use */
    int new_tags;
};
/* `w` may be NULL (customer_upsert's). */
int customer_write(engine *e, struct customer_checked *c, struct customer_writer *w, int *created,
                   char *err, size_t errlen);
/* CUSTOMER_INSERT_ROWS rows, each of a customer not in the store, created
 * by one INSERT (the rows in order): a statement's own start, cursors and
 * reset cost about as much as a row's insert when paid row by row. For a
 * bulk writer whose table has no indexes to keep (a first import,
 * importer.c), where a taken id is rare. Returns CUSTOMER_INSERT_ROWS (all
 * created; then customer_write_new_tags writes each row's tags), 0 when
 * some row's id is in the store already (or twice among the rows), or a
 * constraint refused a row: then nothing was written and the caller writes
 * the rows one by one with customer_write; -1 on the store's failure. */
#define CUSTOMER_INSERT_ROWS 32
int customer_write_many(engine *e, struct customer_checked *const *rows, struct customer_writer *w);
/* The tags of a row customer_write_many created, as customer_write writes
 * a created customer's; its only failure is the store's ("store: ..."). */
int customer_write_new_tags(engine *e, const struct customer_checked *c, const struct customer_writer *w,
                            char *err, size_t errlen);
void customer_checked_free(struct customer_checked *c);

/* 1 if the customer exists, 0 if not, -1 on error. */
int customer_exists(engine *e, const char *id);

/* Applies an event to the maintained fields (orders, refunds, activity)
 * and the derived ones (lifecycle, RFM), by the event's own time, so a
 * backfill lands where it belongs; creates the customer first seen at `at`
 * when there is none. One read and one write of the row (an INSERT of the
 * applied row for a new customer), naming only the indexed columns the
 * event changes. Writes the customer's stored zone ("" for
 * none; not checked) into tz, which the caller needs next. 0 or -1. */
int customer_apply_event(engine *e, const char *id, const char *type, tend_time at,
                         const cJSON *event, char *tz, size_t tzlen);

/* The customer as JSON: every field, tags as an array, attrs as an object;
 * NULL when there is no such customer. */
cJSON *customer_json(engine *e, const char *id);

/* Pushes the customer as a Lua table (tags as a set {vip = true}), or nil;
 * returns 1 if found. */
int customer_push(engine *e, lua_State *L, const char *id);

/* The customer's zone: its own, else the configured default (malloc'd). */
char *customer_timezone(engine *e, const char *id);

/* c:set{...} — known fields and attrs.<key>; same checks as upsert. */
int customer_set(engine *e, const char *id, const cJSON *fields, char *err, size_t errlen);
int customer_tag(engine *e, const char *id, const char *tag, int on);

/* The tags a due pass adds (instance_run_due), kept back and written
 * CUSTOMER_KEPT_TAGS to a statement: a tag row is three B-tree inserts
 * whose statement's own start, cursors and trigger frame cost more than
 * the row when paid row by row. Kept rows are written before the next
 * statement the store hands out (store_set_pending), except the due
 * pass's own instance, history and timer writes (store_sql_beside), so
 * everything that reads the store sees them as if written at c:tag. On
 * the caller's stack, reached through e->kept_tags. */
#define CUSTOMER_KEPT_TAGS 64
struct customer_kept_tags {
    engine *e;
    int n, cap;
    int failed;                 /* a write of kept rows failed: the pass must roll back */
    int held;                   /* customer_tags_hold: no row is written but by customer_tags_write */
    /* each row's customer id and tag: offsets and lengths in `text`, which
     * holds them all (one buffer a pass, not two copies a row); room for
     * CUSTOMER_KEPT_TAGS, more while held */
    struct { size_t customer, tag; int customer_len, tag_len; } *v;
    strbuf text;
    char *sql[7];               /* the INSERT for 2^i rows, built once a pass */
};
/* Starts keeping c:tag rows in k (zeroed by the caller). */
void customer_tags_keep(engine *e, struct customer_kept_tags *k);
/* Writes the kept rows and stops keeping (dropping any left when a write
 * failed); 0, or -1 when this or an earlier write of them failed. */
int customer_tags_end(engine *e);
/* While held (on), the kept rows are not written when CUSTOMER_KEPT_TAGS
 * are kept, nor before the store's next statement: only by
 * customer_tags_write, which the holder (a due batch whose writes wait for
 * the commit before it, instance.c) runs before that statement itself.
 * customer_tags_write: 0, or -1 when this or an earlier write failed. */
void customer_tags_hold(engine *e, int on);
int customer_tags_write(engine *e);
/* Marks a customer blocked (gets nothing at all) or not. */
int customer_block(engine *e, const char *id, int blocked);

const char *customer_lifecycle(const struct config *c, int64_t orders, tend_time last_order,
                               tend_time first_seen, tend_time now);
void customer_rfm(const struct config *c, int64_t orders, double spent, tend_time last_order,
                  tend_time now, int *r, int *f, int *m);

/* Re-derives lifecycle and r for customers whose last order crossed a
 * threshold in (since, now]. Returns how many rows changed, -1 on error. */
int customer_sweep(engine *e, tend_time since, tend_time now);

/* Registers the customer handle metatable, customers(), segment_count()
 * and at_local(). */
void customer_lua_register(engine *e);
/* Pushes a handle for customer `id` (rows are read lazily). */
void customer_push_handle(engine *e, lua_State *L, const char *id);
/* The id of the handle at idx, or NULL if it is not one. */
const char *customer_handle_id(lua_State *L, int idx);

#endif
