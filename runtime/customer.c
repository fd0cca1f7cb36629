/* customer — rows, maintained fields and derived scores (see customer.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customer.h"
#include "json.h"
#include "util.h"
#include "validate.h"

enum ftype { F_ID, F_TEXT, F_TZ, F_DATE, F_TIME, F_INT, F_REAL, F_BOOL, F_DERIVED };

struct field {
    const char *name;
    enum ftype type;
};

/* In column order of the SELECTs below (customer_json relies on it). */
static const struct field fields[] = {
    {"id", F_ID},           {"name", F_TEXT},         {"phone", F_TEXT},
    {"email", F_TEXT},      {"city", F_TEXT},         {"region", F_TEXT},
    {"timezone", F_TZ},     {"birthday", F_DATE},     {"first_seen_at", F_TIME},
    {"first_order_at", F_TIME}, {"last_order_at", F_TIME}, {"orders_count", F_INT},
    {"total_spent", F_REAL}, {"last_active_at", F_TIME}, {"blocked", F_BOOL},
    {"lifecycle", F_DERIVED}, {"r", F_DERIVED},      {"f", F_DERIVED},
    {"m", F_DERIVED},
};
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))
enum { I_ID, I_NAME, I_PHONE, I_EMAIL, I_CITY, I_REGION, I_TZ, I_BIRTHDAY, I_FIRST_SEEN,
       I_FIRST_ORDER, I_LAST_ORDER, I_ORDERS, I_SPENT, I_LAST_ACTIVE, I_BLOCKED, I_LIFECYCLE,
       I_R, I_F, I_M };

#define SELECT_COLUMNS                                                                        \
    "id, name, phone, email, city, region, timezone, birthday, first_seen_at, first_order_at," \
    " last_order_at, orders_count, total_spent, last_active_at, blocked, lifecycle, r, f, m, attrs"
#define COL_ATTRS NFIELDS

/* --- derived fields ---------------------------------------------------- */

const char *customer_lifecycle(const struct config *c, int64_t orders, tend_time last_order,
                               tend_time first_seen, tend_time now)
{
    tend_time ref = orders > 0 && last_order ? last_order : first_seen;
    tend_time age = ref ? now - ref : 0;
    if (age >= c->dead_after)
        return "dead";
    if (age >= c->churned_after)
        return "churned";
    if (age >= c->silent_after)
        return "silent";
    if (orders >= c->active_orders)
        return "active";
    if (orders >= 2)
        return "repeat";
    return "new";
}

static int score_at_most(double v, const double t[4])
{
    for (int i = 0; i < 4; i++)
        if (v <= t[i])
            return 5 - i;
    return 1;
}

static int score_at_least(double v, const double t[4])
{
    for (int i = 0; i < 4; i++)
        if (v >= t[i])
            return 5 - i;
    return 1;
}

void customer_rfm(const struct config *c, int64_t orders, double spent, tend_time last_order,
                  tend_time now, int *r, int *f, int *m)
{
    *r = orders > 0 && last_order ? score_at_most((double)(now - last_order) / TEND_DAY, c->rfm_r) : 1;
    *f = score_at_least((double)orders, c->rfm_f);
    *m = score_at_least(spent, c->rfm_m);
}

/* --- values from JSON --------------------------------------------------- */

_Static_assert(NFIELDS == CUSTOMER_FIELDS, "customer.h's CUSTOMER_FIELDS is the count of fields[]");

/* The first byte is compared before strcmp: most names differ there, and a
 * row of a dozen fields otherwise costs ~80 strcmp calls (4% of an import). */
static int field_index(const char *name)
{
    for (int i = 0; i < NFIELDS; i++)
        if (fields[i].name[0] == name[0] && strcmp(fields[i].name, name) == 0)
            return i;
    return -1;
}

static int bad(char *err, size_t errlen, const char *field, const char *what)
{
    snprintf(err, errlen, "field '%s': %s", field, what);
    return -1;
}

static int parse_number_text(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s && !*end && isfinite(*out) ? 0 : -1;
}

/* Converts one JSON value into v for field f (text values allowed when
 * `text`, as a CSV cell is always text). */
static int read_value(const struct field *f, const cJSON *j, int text, struct customer_value *v,
                      char *err, size_t errlen)
{
    v->present = 1;
    if (cJSON_IsNull(j) || (text && cJSON_IsString(j) && !*j->valuestring && f->type != F_TEXT)) {
        if (f->type == F_ID || f->type == F_INT || f->type == F_REAL || f->type == F_BOOL)
            return bad(err, errlen, f->name, "cannot be empty");
        v->null = 1;
        return 0;
    }
    char msg[200];
    switch (f->type) {
    case F_DERIVED:
        return bad(err, errlen, f->name, "is computed by tend and cannot be set");
    case F_ID:
    case F_TEXT:
        if (!cJSON_IsString(j))
            return bad(err, errlen, f->name, "must be a string");
        v->len = (int)strlen(j->valuestring);  /* at most MAX_RECORD (importer.c) or a request's body */
        if (f->type == F_ID && (!v->len || v->len > CUSTOMER_ID_MAX))
            return bad(err, errlen, f->name, "must be 1 to 128 characters");
        if (f == &fields[I_EMAIL] && !*j->valuestring) {
            v->null = 1;    /* "" is how many shops say "no address": cleared, like null */
            return 0;
        }
        if (f == &fields[I_EMAIL] && validate_email(j->valuestring, msg, sizeof msg) != 0)
            return bad(err, errlen, f->name, msg);
        /* Every known text field is one line: names and addresses go into
         * mail headers and SMS, ids into logs. */
        if (validate_text(j->valuestring, (size_t)v->len, VALIDATE_SINGLE_LINE, msg, sizeof msg) != 0)
            return bad(err, errlen, f->name, msg);
        v->s = j->valuestring;
        return 0;
    case F_TZ:
        if (!cJSON_IsString(j))
            return bad(err, errlen, f->name, "must be a time zone name");
        if (!clock_tz_valid(j->valuestring)) {
            snprintf(msg, sizeof msg, "'%s' is not a zone in the tz database", j->valuestring);
            return bad(err, errlen, f->name, msg);
        }
        v->s = j->valuestring;
        v->len = (int)strlen(v->s);
        return 0;
    case F_DATE: {
        int y, m, d;
        if (!cJSON_IsString(j) || clock_parse_date(j->valuestring, &y, &m, &d, msg, sizeof msg) != 0)
            return bad(err, errlen, f->name, "must be a date YYYY-MM-DD");
        v->s = j->valuestring;
        v->len = (int)strlen(v->s);
        return 0;
    }
    case F_TIME:
        if (validate_time_json(j, &v->i, msg, sizeof msg) != 0)
            return bad(err, errlen, f->name, msg);
        return 0;
    case F_INT:
    case F_REAL: {
        double d;
        if (cJSON_IsNumber(j))
            d = j->valuedouble;
        else if (text && cJSON_IsString(j) && parse_number_text(j->valuestring, &d) == 0)
            ;
        else
            return bad(err, errlen, f->name, "must be a number");
        if (!isfinite(d))
            return bad(err, errlen, f->name, "must be a finite number");
        if (d < 0)
            return bad(err, errlen, f->name, "cannot be negative");
        if (f->type == F_INT && d != floor(d))
            return bad(err, errlen, f->name, "must be a whole number");
        if (f->type == F_INT && d > 9007199254740992.0)   /* 2^53: exact in JSON, no overflow */
            return bad(err, errlen, f->name, "is too large");
        v->d = d;
        v->i = (int64_t)d;
        return 0;
    }
    case F_BOOL:
        if (cJSON_IsBool(j)) {
            v->i = cJSON_IsTrue(j);
            return 0;
        }
        if (text && cJSON_IsString(j)) {
            const char *s = j->valuestring;
            if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) {
                v->i = 1;
                return 0;
            }
            if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no")) {
                v->i = 0;
                return 0;
            }
        }
        return bad(err, errlen, f->name, "must be true or false");
    }
    return -1;
}

static void bind_value(store_stmt *s, int idx, const struct field *f, const struct customer_value *v)
{
    if (!v->present || v->null) {
        store_bind_null(s, idx);
        return;
    }
    switch (f->type) {
    case F_REAL:
        store_bind_double(s, idx, v->d);
        break;
    case F_TIME:
    case F_INT:
    case F_BOOL:
        store_bind_int(s, idx, v->i);
        break;
    default:
        /* v->s is the caller's cJSON string (or a CSV cell), which outlives
         * the statement's run: no copy needed; its length is known (SQLite
         * would count it again, byte by byte). */
        store_bind_text_kept(s, idx, v->s, v->len);
    }
}

/* --- writing ------------------------------------------------------------ */

static int write_tags(engine *e, const char *id, const cJSON *tags)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM customer_tags WHERE customer = ?");
    store_bind_text(s, 1, id, -1);
    if (store_run(s) != 0)
        return -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        if (customer_tag(e, id, t->valuestring, 1) != 0)
            return -1;
    }
    return 0;
}

/* The tags of a customer just created, with customer_writer.new_tags: no
 * tag row of it can exist; each carries the last_order_at it was created
 * with (`last`, NULL for none). */
static int write_new_tags(engine *e, const char *id, const cJSON *tags, const struct customer_value *last)
{
    store_stmt *s = store_sql(e->st, "INSERT OR IGNORE INTO customer_tags (customer, tag, last_order_at)"
                                     " VALUES (?, ?, ?)");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        store_bind_text_kept(s, 1, id, -1);
        store_bind_text_kept(s, 2, t->valuestring, -1);
        if (last->present && !last->null)
            store_bind_int(s, 3, last->i);
        if (store_run(s) != 0)
            return -1;
    }
    return 0;
}

#define INSERT_COLUMNS                                                                          \
    "INSERT INTO customers (id, name, phone, email, city, region, timezone, birthday,"         \
    " first_seen_at, first_order_at, last_order_at, orders_count, total_spent,"                \
    " last_active_at, blocked, lifecycle, r, f, m, attrs, updated_at) VALUES "
#define INSERT_ROW "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
#define INSERT_PARAMS 21
#define INSERT_SQL INSERT_COLUMNS INSERT_ROW " ON CONFLICT(id) DO NOTHING"
/* CUSTOMER_INSERT_ROWS rows to a statement (customer_write_many), with no
 * ON CONFLICT: a row whose id is taken fails the whole statement. */
#define INSERT_ROW4 INSERT_ROW "," INSERT_ROW "," INSERT_ROW "," INSERT_ROW
#define INSERT_ROW16 INSERT_ROW4 "," INSERT_ROW4 "," INSERT_ROW4 "," INSERT_ROW4
#define INSERT_MANY_SQL INSERT_COLUMNS INSERT_ROW16 "," INSERT_ROW16
_Static_assert(CUSTOMER_INSERT_ROWS == 32, "INSERT_MANY_SQL holds CUSTOMER_INSERT_ROWS rows");

/* A new row's values past the given fields: first_seen_at (now unless
 * given; only the INSERT uses it), lifecycle and RFM from the maintained
 * fields and the clock. */
struct new_row {
    const char *lifecycle;
    int r, f, m;
    tend_time now;
};

static void new_row_derive(engine *e, struct customer_value *v, struct new_row *n)
{
    n->now = engine_now(e);
    if (!v[I_FIRST_SEEN].present) {
        v[I_FIRST_SEEN].present = 1;
        v[I_FIRST_SEEN].i = n->now;
    }
    int64_t orders = v[I_ORDERS].present ? v[I_ORDERS].i : 0;
    double spent = v[I_SPENT].present ? v[I_SPENT].d : 0;
    tend_time last = v[I_LAST_ORDER].present && !v[I_LAST_ORDER].null ? v[I_LAST_ORDER].i : 0;
    customer_rfm(&e->cfg, orders, spent, last, n->now, &n->r, &n->f, &n->m);
    n->lifecycle = customer_lifecycle(&e->cfg, orders, last, v[I_FIRST_SEEN].i, n->now);
}

/* Binds one row's INSERT_PARAMS parameters, the first at base + 1. */
static void bind_new_row(store_stmt *s, int base, const struct customer_value *v, const char *attrs,
                         const struct new_row *n)
{
    for (int i = 0; i < I_LIFECYCLE; i++)
        bind_value(s, base + i + 1, &fields[i], &v[i]);
    if (!v[I_ORDERS].present)
        store_bind_int(s, base + I_ORDERS + 1, 0);
    if (!v[I_SPENT].present)
        store_bind_double(s, base + I_SPENT + 1, 0);
    if (!v[I_BLOCKED].present)
        store_bind_int(s, base + I_BLOCKED + 1, 0);
    store_bind_text_kept(s, base + I_LIFECYCLE + 1, n->lifecycle, -1);
    store_bind_int(s, base + I_R + 1, n->r);
    store_bind_int(s, base + I_F + 1, n->f);
    store_bind_int(s, base + I_M + 1, n->m);
    store_bind_text_kept(s, base + I_M + 2, attrs, -1);
    store_bind_int(s, base + I_M + 3, n->now);
}

/* Every one of the INSERT's parameters is bound below, each time: a held
 * statement keeps its last values rather than having them cleared. */
static int insert_row(engine *e, struct customer_writer *w, struct customer_value *v, const char *attrs,
                      const struct new_row *n)
{
    store_stmt *s;
    if (w && w->insert)
        s = store_sql_again(e->st, w->insert, 1);
    else if ((s = store_sql(e->st, INSERT_SQL)) && w)
        w->insert = s;
    if (!s)
        return -1;
    bind_new_row(s, 0, v, attrs, n);
    if (store_run(s) != 0)
        return -1;
    return store_changes(e->st);
}

/* The UPDATE for an existing row: each column keeps its value unless its
 * flag parameter says the caller gave one. One fixed statement (prepared
 * once) serves every combination of present fields. */
static const char *update_sql(void)
{
    static char sql[2048];
    if (sql[0])
        return sql;
    strbuf b;
    strbuf_init(&b);
    strbuf_puts(&b, "UPDATE customers SET ");
    for (int i = 1; i < I_LIFECYCLE; i++)
        strbuf_printf(&b, "%s = CASE WHEN ? THEN ? ELSE %s END, ", fields[i].name, fields[i].name);
    strbuf_puts(&b, "attrs = CASE WHEN ? IS NULL THEN attrs"
                    " ELSE json_patch(COALESCE(attrs, '{}'), ?) END, updated_at = ? WHERE id = ?");
    snprintf(sql, sizeof sql, "%s", b.s);
    strbuf_free(&b);
    return sql;
}

static int update_row(engine *e, struct customer_value *v, const char *attrs_patch)
{
    store_stmt *s = store_sql(e->st, update_sql());
    if (!s)
        return -1;
    int p = 1;
    for (int i = 1; i < I_LIFECYCLE; i++) {
        store_bind_int(s, p++, v[i].present);
        bind_value(s, p++, &fields[i], &v[i]);
    }
    store_bind_text_kept(s, p++, attrs_patch, -1);
    store_bind_text_kept(s, p++, attrs_patch, -1);
    store_bind_int(s, p++, engine_now(e));
    store_bind_text_kept(s, p, v[I_ID].s, v[I_ID].len);
    return store_run(s);
}

/* Stores lifecycle and RFM derived from the maintained fields, when they
 * differ from the stored ones: 1 if they changed, 0 if not, -1 on error. */
static int store_derived(engine *e, const char *id, int64_t orders, double spent, tend_time last,
                         tend_time first, const char *old, int or_, int of, int om)
{
    tend_time now = engine_now(e);
    const char *lc = customer_lifecycle(&e->cfg, orders, last, first, now);
    int r, f, m;
    customer_rfm(&e->cfg, orders, spent, last, now, &r, &f, &m);
    if (old && strcmp(old, lc) == 0 && r == or_ && f == of && m == om)
        return 0;
    store_stmt *s = store_sql(e->st, "UPDATE customers SET lifecycle = ?, r = ?, f = ?, m = ? WHERE id = ?");
    store_bind_text(s, 1, lc, -1);
    store_bind_int(s, 2, r);
    store_bind_int(s, 3, f);
    store_bind_int(s, 4, m);
    store_bind_text(s, 5, id, -1);
    return store_run(s) == 0 ? 1 : -1;
}

/* Recomputes lifecycle and RFM of one customer from its stored fields:
 * 1 if they changed, 0 if not, -1 on error. */
static int refresh_derived(engine *e, const char *id)
{
    store_stmt *s = store_sql(e->st, "SELECT orders_count, total_spent, last_order_at, first_seen_at,"
                                     " lifecycle, r, f, m FROM customers WHERE id = ?");
    store_bind_text(s, 1, id, -1);
    if (store_step(s) != STORE_ROW)
        return -1;
    char old[16];
    snprintf(old, sizeof old, "%s", store_col_text(s, 4) ? store_col_text(s, 4) : "");
    int rc = store_derived(e, id, store_col_int(s, 0), store_col_double(s, 1), store_col_int(s, 2),
                           store_col_int(s, 3), old, (int)store_col_int(s, 5), (int)store_col_int(s, 6),
                           (int)store_col_int(s, 7));
    store_reset(s);
    return rc;
}

static int check_tags(const cJSON *tags, char *err, size_t errlen)
{
    if (cJSON_IsObject(tags) && !tags->child)
        return 0;   /* {} from Lua: an empty table is the empty set */
    if (!cJSON_IsArray(tags))
        return bad(err, errlen, "tags", "must be a list of strings");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        if (!cJSON_IsString(t) || !*t->valuestring)
            return bad(err, errlen, "tags", "must be a list of non-empty strings");
        char msg[160];
        if (validate_text(t->valuestring, strlen(t->valuestring), VALIDATE_SINGLE_LINE, msg, sizeof msg) != 0)
            return bad(err, errlen, "tags", msg);
    }
    return 0;
}

int customer_check(const cJSON *obj, int flags, struct customer_checked *c, char *err, size_t errlen)
{
    struct customer_value *v = c->v;
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "a customer must be a JSON object");
        return -1;
    }
    const cJSON *j, *attrs = NULL;
    cJSON_ArrayForEach(j, obj) {
        if (j->string[0] == 'a' && strcmp(j->string, "attrs") == 0) {
            if (!cJSON_IsObject(j))
                return bad(err, errlen, "attrs", "must be an object");
            attrs = j;
            continue;
        }
        if (j->string[0] == 't' && strcmp(j->string, "tags") == 0) {
            if (check_tags(j, err, errlen) != 0)
                return -1;
            c->tags = j;
            continue;
        }
        int i = field_index(j->string);
        if (i < 0) {
            snprintf(err, errlen, "unknown field '%s' (custom attributes go under \"attrs\")", j->string);
            return -1;
        }
        if (read_value(&fields[i], j, flags & CUSTOMER_TEXT_VALUES, &v[i], err, errlen) != 0)
            return -1;
    }
    if (!v[I_ID].present) {
        snprintf(err, errlen, "field 'id' is required");
        return -1;
    }
    c->id = v[I_ID].s;
    c->first_seen_given = v[I_FIRST_SEEN].present;
    c->attrs_text = attrs ? json_print(attrs) : NULL;
    return 0;
}

void customer_checked_free(struct customer_checked *c)
{
    free(c->attrs_text);
    c->attrs_text = NULL;
}

int customer_write(engine *e, struct customer_checked *c, struct customer_writer *w, int *created,
                   char *err, size_t errlen)
{
    struct customer_value *v = c->v;
    *created = 0;
    struct new_row n;
    new_row_derive(e, v, &n);
    int rc = insert_row(e, w, v, c->attrs_text, &n);
    if (rc == 1) {
        *created = 1;
    } else if (rc == 0) {
        v[I_FIRST_SEEN].present = c->first_seen_given;
        rc = update_row(e, v, c->attrs_text);
        int maintained = v[I_ORDERS].present || v[I_SPENT].present || v[I_LAST_ORDER].present ||
                         v[I_FIRST_SEEN].present;
        if (rc == 0 && maintained && refresh_derived(e, c->id) < 0)
            rc = -1;
    }
    if (rc >= 0 && c->tags)
        rc = *created && w && w->new_tags ? write_new_tags(e, c->id, c->tags, &v[I_LAST_ORDER])
                                          : write_tags(e, c->id, c->tags);
    if (rc < 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    return 0;
}

int customer_write_many(engine *e, struct customer_checked *const *rows, struct customer_writer *w)
{
    store_stmt *s = w->insert_many ? store_sql_again(e->st, w->insert_many, 1)
                                   : (w->insert_many = store_sql(e->st, INSERT_MANY_SQL));
    if (!s)
        return -1;
    struct customer_value first_seen[CUSTOMER_INSERT_ROWS];
    for (int k = 0; k < CUSTOMER_INSERT_ROWS; k++) {
        struct customer_value *v = rows[k]->v;
        first_seen[k] = v[I_FIRST_SEEN];
        struct new_row n;
        new_row_derive(e, v, &n);
        bind_new_row(s, k * INSERT_PARAMS, v, rows[k]->attrs_text, &n);
    }
    if (store_run(s) == 0)
        return CUSTOMER_INSERT_ROWS;
    if (!store_constraint_failed(e->st))
        return -1;
    /* A customer of the rows is in the store already (or twice among
     * them): SQLite undid the statement; the caller writes the rows one by
     * one, each as customer_write finds it. */
    store_reset(s);
    for (int k = 0; k < CUSTOMER_INSERT_ROWS; k++)
        rows[k]->v[I_FIRST_SEEN] = first_seen[k];
    return 0;
}

int customer_write_new_tags(engine *e, const struct customer_checked *c, const struct customer_writer *w,
                            char *err, size_t errlen)
{
    if (c->tags && (w->new_tags ? write_new_tags(e, c->id, c->tags, &c->v[I_LAST_ORDER])
                                : write_tags(e, c->id, c->tags)) != 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    return 0;
}

int customer_upsert(engine *e, const cJSON *obj, int flags, int *created, char *err, size_t errlen)
{
    struct customer_checked c;
    *created = 0;
    if (customer_check(obj, flags, &c, err, errlen) != 0)
        return -1;
    int rc = customer_write(e, &c, NULL, created, err, errlen);
    customer_checked_free(&c);
    return rc;
}

int customer_exists(engine *e, const char *id)
{
    store_stmt *s = store_sql(e->st, "SELECT 1 FROM customers WHERE id = ?");
    store_bind_text(s, 1, id, -1);
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        store_reset(s);
        return 1;
    }
    return rc == STORE_DONE ? 0 : -1;
}

/* The maintained fields of one customer row, as customer_apply_event reads
 * and writes them. */
struct maintained {
    int64_t orders;
    double spent;
    tend_time first_order, last_order, first_seen, last_active;   /* AT_NULL: NULL */
    char lifecycle[16];
    int r, f, m;
};

#define AT_NULL INT64_MIN

/* Copies s (NULL: "") into buf, cut to n - 1 bytes, as snprintf("%s")
 * would: this runs three times an event, where snprintf's format
 * machinery cost ~600 instructions each. */
static void copy_text(char *buf, size_t n, const char *s)
{
    if (n == 0)
        return;
    size_t k = s ? strlen(s) : 0;
    if (k >= n)
        k = n - 1;
    memcpy(buf, s ? s : "", k);
    buf[k] = 0;
}

static tend_time min_at(tend_time have, tend_time at) { return have != AT_NULL && have < at ? have : at; }
static tend_time max_at(tend_time have, tend_time at) { return have != AT_NULL && have > at ? have : at; }
static tend_time at_or_0(tend_time t) { return t == AT_NULL ? 0 : t; }

static tend_time col_at(store_stmt *s, int i)
{
    return store_col_type(s, i) == STORE_NULL ? AT_NULL : store_col_int(s, i);
}

/* 1 and the row (with its stored zone in tz, "" for none), 0 when there is
 * no such customer, -1 on error. */
static int read_maintained(engine *e, const char *id, struct maintained *m, char *tz, size_t tzlen)
{
    store_stmt *s = store_sql(e->st, "SELECT orders_count, total_spent, first_order_at, last_order_at,"
                                     " first_seen_at, last_active_at, lifecycle, r, f, m, timezone"
                                     " FROM customers WHERE id = ?");
    /* id is the caller's and outlives the step and reset below */
    store_bind_text_kept(s, 1, id, -1);
    int rc = store_step(s);
    if (rc != STORE_ROW)
        return rc == STORE_DONE ? 0 : -1;
    m->orders = store_col_int(s, 0);
    m->spent = store_col_double(s, 1);
    m->first_order = col_at(s, 2);
    m->last_order = col_at(s, 3);
    m->first_seen = col_at(s, 4);
    m->last_active = col_at(s, 5);
    copy_text(m->lifecycle, sizeof m->lifecycle, store_col_text(s, 6));
    m->r = (int)store_col_int(s, 7);
    m->f = (int)store_col_int(s, 8);
    m->m = (int)store_col_int(s, 9);
    const char *zone = store_col_text(s, 10);
    copy_text(tz, tzlen, zone && strlen(zone) < tzlen ? zone : "");
    store_reset(s);
    return 1;
}

/* The row of a customer an event creates, with the event already applied
 * (m): one INSERT naming only the columns that have a value. The columns
 * left out are NULL (or their default), so the row gets no entry in the
 * indexes partial on IS NOT NULL (city, region, last order unless the
 * event is an order). OR IGNORE: no constraint can abort it, so SQLite
 * keeps no statement journal for it and its insert trigger (as for the
 * UPDATE below). 1 inserted, 0 a row was there, -1 error. */
static int insert_created(engine *e, const char *id, const struct maintained *m, tend_time now)
{
    store_stmt *s = store_sql(e->st,
        m->last_order == AT_NULL
            ? "INSERT OR IGNORE INTO customers (id, first_seen_at, last_active_at, orders_count, total_spent,"
              " lifecycle, r, f, m, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?8, ?9, ?10, ?11, ?12)"
            : "INSERT OR IGNORE INTO customers (id, first_seen_at, last_active_at, orders_count, total_spent,"
              " first_order_at, last_order_at, lifecycle, r, f, m, updated_at)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (!s)
        return -1;
    /* id and m outlive the store_run below: bound without a copy */
    store_bind_text_kept(s, 1, id, -1);
    store_bind_int(s, 2, m->first_seen);
    store_bind_int(s, 3, m->last_active);
    store_bind_int(s, 4, m->orders);
    store_bind_double(s, 5, m->spent);
    if (m->last_order != AT_NULL) {
        store_bind_int(s, 6, m->first_order);
        store_bind_int(s, 7, m->last_order);
    }
    store_bind_text_kept(s, 8, m->lifecycle, -1);
    store_bind_int(s, 9, m->r);
    store_bind_int(s, 10, m->f);
    store_bind_int(s, 11, m->m);
    store_bind_int(s, 12, now);
    if (store_run(s) != 0)
        return -1;
    return store_changes(e->st) > 0;
}

/* The row of a customer no event has touched yet, as if read: first seen
 * and last active at `at`. */
static struct maintained bare_row(tend_time at)
{
    return (struct maintained){.first_order = AT_NULL, .last_order = AT_NULL, .first_seen = at, .last_active = at};
}

/* m: old with an event at `at` applied (paid: an order of `amount`; else a
 * refund of `amount`, or 0), its lifecycle and RFM derived at now. */
static void apply_fields(engine *e, const struct maintained *old, tend_time at, int paid, double amount,
                         tend_time now, struct maintained *m)
{
    /* min/max by the event's own time: a backfilled old order must not
     * become the "last" order. */
    *m = *old;
    m->first_seen = min_at(old->first_seen, at);
    m->last_active = max_at(old->last_active, at);
    m->orders = old->orders + paid;
    m->spent = old->spent + (paid ? amount : -amount);
    if (m->spent < 0)
        m->spent = 0;
    if (paid) {
        m->first_order = min_at(old->first_order, at);
        m->last_order = max_at(old->last_order, at);
    }
    copy_text(m->lifecycle, sizeof m->lifecycle,
              customer_lifecycle(&e->cfg, m->orders, at_or_0(m->last_order), m->first_seen, now));
    customer_rfm(&e->cfg, m->orders, m->spent, at_or_0(m->last_order), now, &m->r, &m->f, &m->m);
}

/* The event applied to customer id as to one it creates, by the INSERT
 * alone: 1 inserted (tz set to "", no zone of its own), 0 a row is there
 * (and is left as it was), -1 error. */
static int apply_to_new(engine *e, const char *id, tend_time at, int paid, double amount, char *tz,
                        size_t tzlen)
{
    struct maintained bare = bare_row(at), m;
    tend_time now = engine_now(e);
    apply_fields(e, &bare, at, paid, amount, now, &m);
    int rc = insert_created(e, id, &m, now);
    if (rc > 0 && tzlen)
        tz[0] = '\0';
    return rc;
}

int customer_apply_event(engine *e, const char *id, const char *type, tend_time at,
                         const cJSON *event, char *tz, size_t tzlen)
{
    int paid = config_lists(type, e->cfg.paid_types), refund = !paid && config_lists(type, e->cfg.refund_types);
    double amount = 0;
    if (paid || refund) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(event, e->cfg.amount_field);
        if (cJSON_IsNumber(a) && isfinite(a->valuedouble) && a->valuedouble > 0)
            amount = a->valuedouble;
    }
    struct maintained old;
    /* A customer seen for the first time is as if a bare row, first seen
     * and last active at `at`, had been read: the event applies to that,
     * and the row is inserted once with the result. After an event that
     * created its customer, the next one most likely creates its own too
     * (a stream of sign-ups, jobs each with its customer): its INSERT is
     * tried first, and the read (~3.6k instructions) is left for when a
     * row is there, which that INSERT then leaves as it was. */
    if (e->customer_was_new) {
        int rc = apply_to_new(e, id, at, paid, amount, tz, tzlen);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        e->customer_was_new = 0;
    }
    int got = read_maintained(e, id, &old, tz, tzlen);
    if (got < 0)
        return -1;
    e->customer_was_new = got == 0;
    if (got == 0) {
        int rc = apply_to_new(e, id, at, paid, amount, tz, tzlen);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        /* not inserted: a row came between the read and the write (none
         * can inside one transaction; kept for a caller that is not in
         * one): the event applies to that row as to any other */
        return customer_apply_event(e, id, type, at, event, tz, tzlen);
    }
    struct maintained m;
    tend_time now = engine_now(e);
    apply_fields(e, &old, at, paid, amount, now, &m);
    /* Only the indexed columns that change are named: an order moves
     * last_order_at (and the indexes over it), any other event only the
     * unindexed activity fields, and first_seen_at (under a partial index)
     * moves only for a backfill older than the customer.
     * OR IGNORE: every value is bound (none NULL) and the key stays, so no
     * constraint can fail; without a way to abort, SQLite keeps no statement
     * journal for this UPDATE and its customers_order_tags trigger, where
     * it copied each page the statement touched (~7 per order event: the
     * row, three indexes, the tag row) before writing it. A backend without
     * OR IGNORE drops the words. */
    int set_last = m.last_order != old.last_order, set_seen = m.first_seen != old.first_seen;
    static const char *const sql[4] = {
        "UPDATE OR IGNORE customers SET last_active_at = ?1, orders_count = ?2, total_spent = ?3,"
        " first_order_at = ?4, lifecycle = ?7, r = ?8, f = ?9, m = ?10, updated_at = ?11 WHERE id = ?12",
        "UPDATE OR IGNORE customers SET last_active_at = ?1, orders_count = ?2, total_spent = ?3,"
        " first_order_at = ?4, last_order_at = ?5, lifecycle = ?7, r = ?8, f = ?9, m = ?10, updated_at = ?11"
        " WHERE id = ?12",
        "UPDATE OR IGNORE customers SET last_active_at = ?1, orders_count = ?2, total_spent = ?3,"
        " first_order_at = ?4, first_seen_at = ?6, lifecycle = ?7, r = ?8, f = ?9, m = ?10, updated_at = ?11"
        " WHERE id = ?12",
        "UPDATE OR IGNORE customers SET last_active_at = ?1, orders_count = ?2, total_spent = ?3,"
        " first_order_at = ?4, last_order_at = ?5, first_seen_at = ?6, lifecycle = ?7, r = ?8, f = ?9,"
        " m = ?10, updated_at = ?11 WHERE id = ?12",
    };
    store_stmt *s = store_sql(e->st, sql[set_last | set_seen << 1]);
    store_bind_int(s, 1, m.last_active);
    store_bind_int(s, 2, m.orders);
    store_bind_double(s, 3, m.spent);
    if (m.first_order != AT_NULL)
        store_bind_int(s, 4, m.first_order);
    if (m.last_order != AT_NULL)
        store_bind_int(s, 5, m.last_order);
    store_bind_int(s, 6, m.first_seen);
    store_bind_text_kept(s, 7, m.lifecycle, -1);
    store_bind_int(s, 8, m.r);
    store_bind_int(s, 9, m.f);
    store_bind_int(s, 10, m.m);
    store_bind_int(s, 11, now);
    store_bind_text_kept(s, 12, id, -1);
    return store_run(s);
}

/* --- reading ------------------------------------------------------------ */

static cJSON *row_json(store_stmt *s)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < NFIELDS; i++) {
        int t = store_col_type(s, i);
        if (t == STORE_NULL)
            continue;
        const struct field *f = &fields[i];
        if (f->type == F_BOOL)
            cJSON_AddBoolToObject(o, f->name, store_col_int(s, i) != 0);
        else if (t == STORE_INT)
            cJSON_AddNumberToObject(o, f->name, (double)store_col_int(s, i));
        else if (t == STORE_FLOAT)
            cJSON_AddNumberToObject(o, f->name, store_col_double(s, i));
        else
            cJSON_AddStringToObject(o, f->name, store_col_text(s, i));
    }
    const char *attrs = store_col_text(s, COL_ATTRS);
    cJSON *a = attrs ? cJSON_Parse(attrs) : NULL;
    cJSON_AddItemToObject(o, "attrs", a ? a : cJSON_CreateObject());
    return o;
}

static cJSON *tags_json(engine *e, const char *id)
{
    cJSON *arr = cJSON_CreateArray();
    store_stmt *s = store_sql(e->st, "SELECT tag FROM customer_tags WHERE customer = ? ORDER BY tag");
    store_bind_text(s, 1, id, -1);
    while (store_step(s) == STORE_ROW)
        cJSON_AddItemToArray(arr, cJSON_CreateString(store_col_text(s, 0)));
    return arr;
}

cJSON *customer_json(engine *e, const char *id)
{
    store_stmt *s = store_sql(e->st, "SELECT " SELECT_COLUMNS " FROM customers WHERE id = ?");
    store_bind_text(s, 1, id, -1);
    if (store_step(s) != STORE_ROW)
        return NULL;
    cJSON *o = row_json(s);
    store_reset(s);
    cJSON_AddItemToObject(o, "tags", tags_json(e, id));
    return o;
}

int customer_push(engine *e, lua_State *L, const char *id)
{
    cJSON *o = customer_json(e, id);
    if (!o) {
        lua_pushnil(L);
        return 0;
    }
    cJSON *tags = cJSON_DetachItemFromObjectCaseSensitive(o, "tags");
    json_push(L, o);
    lua_newtable(L);
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, t->valuestring);
    }
    lua_setfield(L, -2, "tags");
    cJSON_Delete(tags);
    cJSON_Delete(o);
    return 1;
}

char *customer_timezone(engine *e, const char *id)
{
    store_stmt *s = store_sql(e->st, "SELECT timezone FROM customers WHERE id = ?");
    store_bind_text(s, 1, id, -1);
    char *tz = NULL;
    if (store_step(s) == STORE_ROW) {
        const char *t = store_col_text(s, 0);
        if (t && clock_tz_valid(t))
            tz = xstrdup(t);
        store_reset(s);
    }
    return tz ? tz : xstrdup(e->cfg.timezone);
}

/* --- changes from journeys --------------------------------------------- */

int customer_set(engine *e, const char *id, const cJSON *changes, char *err, size_t errlen)
{
    /* c:set{city = "X", ["attrs.vip_level"] = 2}: build an upsert object. */
    cJSON *obj = cJSON_CreateObject(), *attrs = NULL;
    cJSON_AddStringToObject(obj, "id", id);
    const cJSON *j;
    cJSON_ArrayForEach(j, changes) {
        if (strncmp(j->string, "attrs.", 6) == 0 && j->string[6]) {
            if (!attrs)
                attrs = cJSON_AddObjectToObject(obj, "attrs");
            /* "attrs.baby.age" is the nested path, as segments read it */
            cJSON *at = attrs;
            const char *p = j->string + 6, *dot;
            while ((dot = strchr(p, '.')) && dot[1]) {
                char key[128];
                snprintf(key, sizeof key, "%.*s", (int)(dot - p), p);
                cJSON *next = cJSON_GetObjectItemCaseSensitive(at, key);
                if (!cJSON_IsObject(next)) {
                    cJSON_DeleteItemFromObjectCaseSensitive(at, key);
                    next = cJSON_AddObjectToObject(at, key);
                }
                at = next;
                p = dot + 1;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(at, p);
            cJSON_AddItemToObject(at, p, cJSON_Duplicate(j, 1));
        } else if (strcmp(j->string, "attrs") == 0 && cJSON_IsObject(j)) {
            /* both forms at once merge into one attrs object */
            if (!attrs)
                attrs = cJSON_AddObjectToObject(obj, "attrs");
            const cJSON *a;
            cJSON_ArrayForEach(a, j) {
                cJSON_DeleteItemFromObjectCaseSensitive(attrs, a->string);
                cJSON_AddItemToObject(attrs, a->string, cJSON_Duplicate(a, 1));
            }
        } else if (strcmp(j->string, "id") == 0) {
            cJSON_Delete(obj);
            return bad(err, errlen, "id", "cannot be changed");
        } else {
            cJSON_AddItemToObject(obj, j->string, cJSON_Duplicate(j, 1));
        }
    }
    int created;
    int rc = customer_upsert(e, obj, 0, &created, err, errlen);
    cJSON_Delete(obj);
    return rc;
}

/* Kept tags [from, from + n), n a power of two <= CUSTOMER_KEPT_TAGS, in
 * one statement; the same rows, in the same order, as n customer_tag
 * calls (a later row of the same key is ignored as it would have been).
 * Each row's last_order_at comes from one join on customers (the VALUES
 * the outer loop, as a LEFT JOIN's left side stays: rows in their order,
 * NULL for an unknown customer) rather than a scalar subquery a row,
 * which opened, sought and closed a cursor on customers for every tag. */
static int write_kept_tags(engine *e, struct customer_kept_tags *k, int from, int n)
{
    int slot = 0;
    while ((1 << slot) < n)
        slot++;
    if (!k->sql[slot]) {
        strbuf b;
        strbuf_init(&b);
        strbuf_puts(&b, "INSERT OR IGNORE INTO customer_tags (customer, tag, last_order_at)"
                        " SELECT v.column1, v.column2, c.last_order_at FROM (VALUES");
        for (int i = 0; i < n; i++)
            strbuf_printf(&b, "%s(?%d, ?%d)", i ? ", " : " ", 2 * i + 1, 2 * i + 2);
        strbuf_puts(&b, ") v LEFT JOIN customers c ON c.id = v.column1");
        k->sql[slot] = strbuf_take(&b);
    }
    store_stmt *s = store_sql(e->st, k->sql[slot]);
    if (!s)
        return -1;
    for (int i = 0; i < n; i++) {
        store_bind_text_kept(s, 2 * i + 1, k->text.s + k->v[from + i].customer, k->v[from + i].customer_len);
        store_bind_text_kept(s, 2 * i + 2, k->text.s + k->v[from + i].tag, k->v[from + i].tag_len);
    }
    return store_run(s);
}

static void drop_kept_tags(struct customer_kept_tags *k)
{
    strbuf_reset(&k->text);
    k->n = 0;
}

/* Writes every kept tag (store_set_pending's writer, and a full page). */
static int write_all_kept_tags(struct customer_kept_tags *k)
{
    store_set_pending(k->e->st, NULL, NULL);
    int rc = 0;
    for (int from = 0, n; rc == 0 && from < k->n; from += n) {
        n = util_rows_chunk(k->n - from, CUSTOMER_KEPT_TAGS);
        rc = write_kept_tags(k->e, k, from, n);
    }
    drop_kept_tags(k);
    if (rc != 0)
        k->failed = 1;
    return rc;
}

static void write_pending_tags(void *ud)
{
    write_all_kept_tags(ud);
}

void customer_tags_keep(engine *e, struct customer_kept_tags *k)
{
    k->e = e;
    e->kept_tags = k;
}

int customer_tags_end(engine *e)
{
    struct customer_kept_tags *k = e->kept_tags;
    if (!k)
        return 0;
    if (!k->failed)
        write_all_kept_tags(k);
    drop_kept_tags(k);
    strbuf_free(&k->text);
    free(k->v);
    store_set_pending(e->st, NULL, NULL);
    for (size_t i = 0; i < sizeof k->sql / sizeof k->sql[0]; i++)
        free(k->sql[i]);
    e->kept_tags = NULL;
    return k->failed ? -1 : 0;
}

void customer_tags_hold(engine *e, int on)
{
    if (e->kept_tags)
        e->kept_tags->held = on;
}

int customer_tags_write(engine *e)
{
    struct customer_kept_tags *k = e->kept_tags;
    if (!k)
        return 0;
    if (!k->failed && k->n)
        write_all_kept_tags(k);
    return k->failed ? -1 : 0;
}

int customer_tag(engine *e, const char *id, const char *tag, int on)
{
    struct customer_kept_tags *k = e->kept_tags;
    if (on && k) {
        if (k->failed)
            return -1;
        if (k->n == k->cap) {
            k->cap = k->cap ? k->cap * 2 : CUSTOMER_KEPT_TAGS;
            k->v = xrealloc(k->v, (size_t)k->cap * sizeof *k->v);
        }
        /* NUL-terminated each: the texts are bound with their lengths */
        size_t id_len = strlen(id), tag_len = strlen(tag);
        k->v[k->n].customer = k->text.len;
        k->v[k->n].customer_len = (int)id_len;
        strbuf_add(&k->text, id, id_len + 1);
        k->v[k->n].tag = k->text.len;
        k->v[k->n++].tag_len = (int)tag_len;
        strbuf_add(&k->text, tag, tag_len + 1);
        if (k->held)
            return 0;
        if (k->n == 1)
            store_set_pending(e->st, write_pending_tags, k);
        return k->n == CUSTOMER_KEPT_TAGS ? write_all_kept_tags(k) : 0;
    }
    /* With its customer's last_order_at, so the insert trigger's WHEN skips
     * its UPDATE (schema.c, branch wake2). OR IGNORE rather than ON CONFLICT
     * DO NOTHING: the same for the key, and no constraint is left that can
     * abort, so SQLite keeps no statement journal for the trigger. */
    store_stmt *s = store_sql(e->st, on ? "INSERT OR IGNORE INTO customer_tags (customer, tag, last_order_at)"
                                          " VALUES (?1, ?2, (SELECT last_order_at FROM customers WHERE id = ?1))"
                                        : "DELETE FROM customer_tags WHERE customer = ? AND tag = ?");
    /* both outlive store_run: bound without a copy */
    store_bind_text_kept(s, 1, id, -1);
    store_bind_text_kept(s, 2, tag, -1);
    return store_run(s);
}

int customer_block(engine *e, const char *id, int blocked)
{
    store_stmt *s = store_sql(e->st, "UPDATE customers SET blocked = ? WHERE id = ?");
    store_bind_int(s, 1, blocked);
    store_bind_text(s, 2, id, -1);
    return store_run(s);
}

/* --- the sweep ---------------------------------------------------------- */

int customer_sweep(engine *e, tend_time since, tend_time now)
{
    const struct config *c = &e->cfg;
    tend_time thresholds[7] = {c->silent_after, c->churned_after, c->dead_after};
    for (int i = 0; i < 4; i++)
        thresholds[3 + i] = (tend_time)(c->rfm_r[i] * TEND_DAY) + 1;
    /* Collect first, write after: the ids come from an index scan on
     * last_order_at, which the writes do not touch, but a statement that
     * reads while others write is a trap best not set. */
    struct pathlist { char **v; size_t n, cap; } ids = {0};
    /* Customers with orders age by last_order_at; those without by
     * first_seen_at (a partial index holds just them). Named: left to
     * itself SQLite took customers_last_order (while it held every
     * customer) for `last_order_at IS NULL` and walked every customer
     * without an order, three times a day. */
    static const char *const sql[2] = {
        "SELECT id FROM customers WHERE last_order_at > ? AND last_order_at <= ?",
        "SELECT id FROM customers INDEXED BY customers_first_seen"
        " WHERE first_seen_at > ? AND first_seen_at <= ? AND last_order_at IS NULL"};
    for (int q = 0; q < 2; q++) {
        for (int t = 0; t < (q ? 3 : 7); t++) {
            store_stmt *s = store_sql(e->st, sql[q]);
            store_bind_int(s, 1, since - thresholds[t]);
            store_bind_int(s, 2, now - thresholds[t]);
            while (store_step(s) == STORE_ROW) {
                if (ids.n == ids.cap)
                    ids.v = xrealloc(ids.v, (ids.cap = ids.cap ? ids.cap * 2 : 64) * sizeof *ids.v);
                ids.v[ids.n++] = xstrdup(store_col_text(s, 0));
            }
        }
    }
    int changed = 0, rc = 0;
    for (size_t i = 0; i < ids.n; i++) {
        int r = rc == 0 ? refresh_derived(e, ids.v[i]) : 0;
        if (r < 0)
            rc = -1;
        changed += r > 0;
        free(ids.v[i]);
    }
    free(ids.v);
    return rc < 0 ? -1 : changed;
}
