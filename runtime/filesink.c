/* filesink — JSON-lines files written exactly once (see filesink.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filesink.h"
#include "util.h"

struct filesink {
    char *path;             /* as opened (dir/path) */
    FILE *f;
    int dirty;              /* lines appended since the last sync */
    off_t synced;           /* length at the last sync (or at opening) */
    struct filesink *next;
};

static char *meta_key(const char *path)
{
    return xasprintf("file:%s", path);
}

/* Cuts the file back to what the last committed pass recorded. */
static void recover(engine *e, struct filesink *s)
{
    char *key = meta_key(s->path);
    char *v = store_meta_get(e->st, key);
    free(key);
    if (!v)
        return;
    unsigned long long dev = 0, ino = 0, len = 0;
    struct stat st;
    if (sscanf(v, "%llu:%llu:%llu", &dev, &ino, &len) == 3 && stat(s->path, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino &&
        (unsigned long long)st.st_size > len) {
        if (truncate(s->path, (off_t)len) == 0)
            engine_logf(e, "info", "%s: removed %llu bytes written by a delivery pass that did not commit",
                        s->path, (unsigned long long)st.st_size - len);
    }
    free(v);
}

static struct filesink *open_sink(engine *e, const char *path, char *err, size_t errlen)
{
    char *full = util_path_join(e->dir, path);
    for (struct filesink *s = e->files; s; s = s->next) {
        if (strcmp(s->path, full) == 0) {
            free(full);
            return s;
        }
    }
    struct filesink *s = xcalloc(1, sizeof *s);
    s->path = full;
    recover(e, s);
    s->f = fopen(full, "a");
    if (!s->f) {
        snprintf(err, errlen, "%s: %s", full, strerror(errno));
        free(s->path);
        free(s);
        return NULL;
    }
    struct stat st;
    s->synced = fstat(fileno(s->f), &st) == 0 ? st.st_size : 0;
    s->next = e->files;
    e->files = s;
    return s;
}

int filesink_append(engine *e, const char *path, const char *line, char *err, size_t errlen)
{
    struct filesink *s = open_sink(e, path, err, errlen);
    if (!s)
        return -1;
    if (fputs(line, s->f) < 0 || fputc('\n', s->f) < 0) {
        snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
        return -1;
    }
    s->dirty = 1;
    return 0;
}

int filesink_sync(engine *e, char *err, size_t errlen)
{
    for (struct filesink *s = e->files; s; s = s->next) {
        if (!s->dirty)
            continue;
        struct stat st;
        if (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0 || fstat(fileno(s->f), &st) != 0) {
            snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
            return -1;
        }
        char *key = meta_key(s->path);
        char value[96];
        snprintf(value, sizeof value, "%llu:%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino, (unsigned long long)st.st_size);
        int rc = store_meta_set(e->st, key, value);
        free(key);
        if (rc != 0) {
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            return -1;
        }
        s->dirty = 0;
        s->synced = st.st_size;
    }
    return 0;
}

void filesink_discard(engine *e)
{
    for (struct filesink *s = e->files; s; s = s->next) {
        if (!s->dirty)
            continue;
        fflush(s->f);
        if (ftruncate(fileno(s->f), s->synced) != 0)
            engine_logf(e, "error", "%s: could not remove lines of a failed pass: %s", s->path,
                        strerror(errno));
        s->dirty = 0;
    }
}

void filesink_close(engine *e)
{
    while (e->files) {
        struct filesink *s = e->files;
        e->files = s->next;
        fclose(s->f);
        free(s->path);
        free(s);
    }
}
