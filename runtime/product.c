/* product — the product catalog (see product.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "product.h"
#include "util.h"

/* The columns besides sku, in table order; `mask` bits follow this order. */
enum { F_NAME, F_CATEGORY, F_PRICE, F_USAGE, F_RELATED, F_COUNT };
static const char *const field_names[F_COUNT] = {"name", "category", "price", "usage_days", "related"};

struct row {
    const char *sku;
    char sku_buf[32];
    unsigned present;           /* fields given (null included) */
    const char *text[F_COUNT];  /* name, category; NULL: cleared */
    double num[F_COUNT];        /* price, usage_days */
    int is_null[F_COUNT];
    char *related;              /* JSON array text, owned */
};

static int bad(char *err, size_t n, const char *fmt, const char *field, const char *got)
{
    snprintf(err, n, fmt, field, got);
    return -1;
}

/* A number from JSON, or from text when the flags allow it. */
static int read_number(const cJSON *v, int flags, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return isfinite(*out) ? 0 : -1;
    }
    if ((flags & PRODUCT_TEXT_VALUES) && cJSON_IsString(v)) {
        char *end;
        const char *s = v->valuestring;
        while (*s == ' ')
            s++;
        *out = strtod(s, &end);
        while (*end == ' ')
            end++;
        return end != s && !*end && isfinite(*out) ? 0 : -1;
    }
    return -1;
}

static int is_sep(char c) { return c == '|' || c == ';'; }

/* related: a JSON array of skus, or (text values) "a|b;c". */
static int read_related(const cJSON *v, int flags, struct row *r, char *err, size_t n)
{
    cJSON *list = cJSON_CreateArray();
    int count = 0;
    if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > PRODUCT_SKU_MAX) {
                cJSON_Delete(list);
                snprintf(err, n, "field 'related' must be a list of skus (strings of 1 to %d characters)",
                         PRODUCT_SKU_MAX);
                return -1;
            }
            cJSON_AddItemToArray(list, cJSON_CreateString(it->valuestring));
            count++;
        }
    } else if ((flags & PRODUCT_TEXT_VALUES) && cJSON_IsString(v)) {
        for (const char *p = v->valuestring; *p;) {
            while (*p == ' ' || is_sep(*p))
                p++;
            const char *q = p;
            while (*q && !is_sep(*q))
                q++;
            size_t len = (size_t)(q - p);
            while (len && p[len - 1] == ' ')
                len--;
            if (len > PRODUCT_SKU_MAX) {
                cJSON_Delete(list);
                snprintf(err, n, "field 'related': an sku longer than %d characters", PRODUCT_SKU_MAX);
                return -1;
            }
            if (len) {
                char *sku = xstrndup(p, len);
                cJSON_AddItemToArray(list, cJSON_CreateString(sku));
                free(sku);
                count++;
            }
            p = q;
        }
    } else {
        cJSON_Delete(list);
        snprintf(err, n, "field 'related' must be a list of skus%s",
                 flags & PRODUCT_TEXT_VALUES ? " (separated by | or ;)" : "");
        return -1;
    }
    if (count > PRODUCT_RELATED_MAX) {
        cJSON_Delete(list);
        snprintf(err, n, "field 'related' lists %d skus; at most %d are allowed", count, PRODUCT_RELATED_MAX);
        return -1;
    }
    r->related = json_print(list);
    cJSON_Delete(list);
    return 0;
}

static int read_row(const cJSON *obj, int flags, struct row *r, char *err, size_t n)
{
    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(obj)) {
        snprintf(err, n, "a product must be a JSON object");
        return -1;
    }
    const cJSON *sku = cJSON_GetObjectItemCaseSensitive(obj, "sku");
    if (cJSON_IsString(sku)) {
        r->sku = sku->valuestring;
    } else if (cJSON_IsNumber(sku) && sku->valuedouble == floor(sku->valuedouble) &&
               fabs(sku->valuedouble) < 1e15) {
        snprintf(r->sku_buf, sizeof r->sku_buf, "%.0f", sku->valuedouble);
        r->sku = r->sku_buf;
    }
    if (!r->sku || !r->sku[0] || strlen(r->sku) > PRODUCT_SKU_MAX) {
        snprintf(err, n, sku ? "field 'sku' must be a string of 1 to %d characters"
                             : "field 'sku' is required", PRODUCT_SKU_MAX);
        return -1;
    }
    for (const cJSON *f = obj->child; f; f = f->next) {
        if (strcmp(f->string, "sku") == 0)
            continue;
        int k = 0;
        while (k < F_COUNT && strcmp(field_names[k], f->string) != 0)
            k++;
        if (k == F_COUNT) {
            snprintf(err, n, "unknown field '%.64s' (known: sku name category price usage_days related)",
                     f->string);
            return -1;
        }
        r->present |= 1u << k;
        if (cJSON_IsNull(f)) {
            r->is_null[k] = 1;
            continue;
        }
        char got[80];
        if (cJSON_IsString(f))
            snprintf(got, sizeof got, "\"%.60s\"", f->valuestring);
        else if (cJSON_IsNumber(f))
            snprintf(got, sizeof got, "%g", f->valuedouble);
        else
            snprintf(got, sizeof got, "%s", cJSON_IsBool(f) ? "a boolean" : "a list or object");
        switch (k) {
        case F_NAME:
        case F_CATEGORY:
            if (cJSON_IsString(f)) {
                r->text[k] = f->valuestring;
            } else if ((flags & PRODUCT_TEXT_VALUES) == 0) {
                return bad(err, n, "field '%s' must be a string, got %s", field_names[k], got);
            }
            break;
        case F_PRICE:
            if (read_number(f, flags, &r->num[k]) != 0 || r->num[k] < 0)
                return bad(err, n, "field '%s' must be a non-negative number, got %s", field_names[k], got);
            break;
        case F_USAGE:
            if (read_number(f, flags, &r->num[k]) != 0 || !(r->num[k] > 0) || r->num[k] > 36500)
                return bad(err, n, "field '%s' must be a positive number of days (how long one unit "
                                   "lasts), got %s", field_names[k], got);
            break;
        case F_RELATED:
            if (read_related(f, flags, r, err, n) != 0)
                return -1;
            break;
        }
    }
    return 0;
}

int product_upsert(store *st, const cJSON *obj, int flags, tend_time now, int *created,
                   char *err, size_t errlen)
{
    struct row r;
    *created = 0;
    if (read_row(obj, flags, &r, err, errlen) != 0) {
        free(r.related);
        return -1;
    }
    store_stmt *ex = store_sql(st, "SELECT 1 FROM products WHERE sku = ?");
    store_bind_text(ex, 1, r.sku, -1);
    int rc = store_step(ex);
    store_reset(ex);
    if (rc == STORE_ERROR) {
        free(r.related);
        snprintf(err, errlen, "store: %s", store_errmsg(st));
        return -1;
    }
    *created = rc == STORE_DONE;
    /* ?8 is the mask of fields given: an absent field keeps its value. */
    store_stmt *s = store_sql(st,
        "INSERT INTO products (sku, name, category, price, usage_days, related, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (sku) DO UPDATE SET"
        " name = CASE WHEN ?8 & 1 THEN excluded.name ELSE products.name END,"
        " category = CASE WHEN ?8 & 2 THEN excluded.category ELSE products.category END,"
        " price = CASE WHEN ?8 & 4 THEN excluded.price ELSE products.price END,"
        " usage_days = CASE WHEN ?8 & 8 THEN excluded.usage_days ELSE products.usage_days END,"
        " related = CASE WHEN ?8 & 16 THEN excluded.related ELSE products.related END,"
        " updated_at = excluded.updated_at");
    store_bind_text(s, 1, r.sku, -1);
    for (int k = F_NAME; k <= F_CATEGORY; k++)
        store_bind_text(s, 2 + k, r.is_null[k] ? NULL : r.text[k], -1);
    for (int k = F_PRICE; k <= F_USAGE; k++) {
        if ((r.present & (1u << k)) && !r.is_null[k])
            store_bind_double(s, 2 + k, r.num[k]);
        else
            store_bind_null(s, 2 + k);
    }
    store_bind_text(s, 6, r.related, -1);
    store_bind_int(s, 7, now);
    store_bind_int(s, 8, r.present);
    rc = store_run(s);
    free(r.related);
    if (rc != 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(st));
        return -1;
    }
    return 0;
}

cJSON *product_json(store *st, const char *sku)
{
    store_stmt *s = store_sql(st, "SELECT sku, name, category, price, usage_days, related, updated_at"
                                  " FROM products WHERE sku = ?");
    store_bind_text(s, 1, sku, -1);
    if (store_step(s) != STORE_ROW)
        return NULL;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "sku", store_col_text(s, 0));
    for (int k = F_NAME; k <= F_CATEGORY; k++)
        if (store_col_text(s, 1 + k))
            cJSON_AddStringToObject(p, field_names[k], store_col_text(s, 1 + k));
    for (int k = F_PRICE; k <= F_USAGE; k++)
        if (store_col_type(s, 1 + k) != STORE_NULL)
            cJSON_AddNumberToObject(p, field_names[k], store_col_double(s, 1 + k));
    const char *rel = store_col_text(s, 5);
    cJSON *related = rel ? cJSON_Parse(rel) : NULL;
    cJSON_AddItemToObject(p, "related", cJSON_IsArray(related) ? related : cJSON_CreateArray());
    if (related && !cJSON_IsArray(related))
        cJSON_Delete(related);
    if (store_col_type(s, 6) != STORE_NULL)
        cJSON_AddNumberToObject(p, "updated_at", (double)store_col_int(s, 6));
    store_reset(s);
    return p;
}

int product_usage_days(store *st, const char *sku, double *out)
{
    store_stmt *s = store_sql(st, "SELECT usage_days FROM products WHERE sku = ?");
    store_bind_text(s, 1, sku, -1);
    int rc = store_step(s);
    if (rc == STORE_ERROR)
        return -1;
    if (rc == STORE_DONE)
        return 0;
    int known = store_col_type(s, 0) != STORE_NULL;
    if (known)
        *out = store_col_double(s, 0);
    store_reset(s);
    return known;
}
