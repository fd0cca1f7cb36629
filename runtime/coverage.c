/* coverage — line counts of journey scripts, as lcov (see coverage.h). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bytecode.h"
#include "coverage.h"
#include "util.h"

struct cov_file {
    char *path;         /* as loaded: the chunk name without '@' */
    char *real;         /* realpath, to merge two names of one file */
    long *hits;         /* hits[line] */
    int nlines;
};

struct coverage {
    struct cov_file *files;
    int n, cap;
    int last;           /* the file hit last: most hits are in a row */
};

coverage *coverage_new(void)
{
    return xcalloc(1, sizeof(coverage));
}

void coverage_free(coverage *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->files[i].path);
        free(c->files[i].real);
        free(c->files[i].hits);
    }
    free(c->files);
    free(c);
}

static int find(coverage *c, const char *path)
{
    if (c->last < c->n && strcmp(c->files[c->last].path, path) == 0)
        return c->last;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->files[i].path, path) == 0)
            return c->last = i;
    return -1;
}

void coverage_add_file(coverage *c, const char *path)
{
    if (find(c, path) >= 0)
        return;
    if (c->n == c->cap)
        c->files = xrealloc(c->files, (size_t)(c->cap = c->cap ? c->cap * 2 : 8) * sizeof *c->files);
    char buf[PATH_MAX];
    struct cov_file *f = &c->files[c->n++];
    f->path = xstrdup(path);
    f->real = xstrdup(realpath(path, buf) ? buf : path);
    f->hits = NULL;
    f->nlines = 0;
}

void coverage_hit(void *ud, const char *source, int line)
{
    coverage *c = ud;
    if (!source || source[0] != '@' || line <= 0)
        return;
    int i = find(c, source + 1);
    if (i < 0)
        return;
    struct cov_file *f = &c->files[i];
    if (line >= f->nlines) {
        int n = line + 64;
        f->hits = xrealloc(f->hits, (size_t)n * sizeof *f->hits);
        memset(f->hits + f->nlines, 0, (size_t)(n - f->nlines) * sizeof *f->hits);
        f->nlines = n;
    }
    f->hits[line]++;
}

struct code_lines {
    char *is_code;
    int n;
};

static void on_line(void *ud, int line)
{
    struct code_lines *cl = ud;
    if (line > 0 && line < cl->n)
        cl->is_code[line] = 1;
}

static int by_real(const void *a, const void *b)
{
    const struct cov_file *x = a, *y = b;
    int r = strcmp(x->real, y->real);
    return r ? r : strcmp(x->path, y->path);
}

static void write_file(FILE *out, const struct cov_file *group, int count)
{
    size_t len = 0;
    char *src = util_read_file(group[0].path, &len);
    if (!src)
        return;   /* a script that never loaded (a wrong path in a test) */
    int nlines = 2;
    for (size_t i = 0; i < len; i++)
        nlines += src[i] == '\n';
    for (int g = 0; g < count; g++)
        if (group[g].nlines > nlines)
            nlines = group[g].nlines;
    struct code_lines cl = {xcalloc((size_t)nlines, 1), nlines};
    struct bytecode_visitor v = {NULL, on_line, &cl};
    char err[300];
    bytecode_walk(src, len, group[0].path, &v, err, sizeof err);
    fprintf(out, "TN:\nSF:%s\n", group[0].path);
    int found = 0, hit = 0;
    for (int line = 1; line < nlines; line++) {
        long n = 0;
        for (int g = 0; g < count; g++)
            if (line < group[g].nlines)
                n += group[g].hits[line];
        if (!cl.is_code[line] && n == 0)
            continue;
        fprintf(out, "DA:%d,%ld\n", line, n);
        found++;
        hit += n > 0;
    }
    fprintf(out, "LH:%d\nLF:%d\nend_of_record\n", hit, found);
    free(cl.is_code);
    free(src);
}

int coverage_write(coverage *c, FILE *out, char *err, size_t errlen)
{
    qsort(c->files, (size_t)c->n, sizeof *c->files, by_real);
    c->last = 0;
    for (int i = 0; i < c->n;) {
        int j = i + 1;
        while (j < c->n && strcmp(c->files[j].real, c->files[i].real) == 0)
            j++;
        write_file(out, c->files + i, j - i);
        i = j;
    }
    if (fflush(out) != 0 || ferror(out)) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    return 0;
}
