/*
** core/err.c: status codes, error messages, allocation wrappers and whole-file
** reads. Every library allocation goes through mech_malloc and friends so that
** one place can be instrumented.
*/
#include "core/core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const status_text[MECH_ERR_COUNT_] = {
    [MECH_OK] = "ok",
    [MECH_ERR_NOMEM] = "out of memory",
    [MECH_ERR_IO] = "input/output error",
    [MECH_ERR_FORMAT] = "malformed file",
    [MECH_ERR_SHAPE] = "shape mismatch",
    [MECH_ERR_PARSE] = "parse error",
    [MECH_ERR_TYPE] = "type error",
    [MECH_ERR_DB] = "database error",
    [MECH_ERR_RANGE] = "value out of range",
    [MECH_ERR_CANCELLED] = "cancelled",
    [MECH_ERR_ARG] = "invalid argument",
};

const char *mech_strerror(mech_status code) {
    if ((int)code < 0 || code >= MECH_ERR_COUNT_) return "unknown error";
    return status_text[code];
}

mech_status mech_err_set(mech_err *err, mech_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

// The allocation-failure countdown (mech_alloc_fail_after). It has to be
// process-wide: the allocations it targets are deep inside the library,
// where no context is passed; it is atomic because pool threads allocate
// too. Off (0), it costs one relaxed load per allocation.
static atomic_long fail_countdown;

long mech_alloc_fail_after(long n) {
    return atomic_exchange(&fail_countdown, n > 0 ? n : 0);
}

static int injected_failure(void) {
    if (!atomic_load_explicit(&fail_countdown, memory_order_relaxed)) return 0;
    long left = atomic_load(&fail_countdown);
    while (left > 0 && !atomic_compare_exchange_weak(&fail_countdown, &left, left - 1)) {}
    return left == 1;
}

void *mech_malloc(size_t n) { return injected_failure() ? NULL : malloc(n ? n : 1); }
void *mech_calloc(size_t n, size_t size) { return injected_failure() ? NULL : calloc(n ? n : 1, size ? size : 1); }
void *mech_realloc(void *p, size_t n) { return injected_failure() ? NULL : realloc(p, n ? n : 1); }
void mech_free(void *p) { free(p); }

char *mech_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mech_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void *mech_malloc_aligned(size_t n) {
    void *p = NULL;
    // Round up so that SIMD tails may read a whole vector past the last element.
    n = (n + 63) & ~(size_t)63;
    if (injected_failure()) return NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
    return p;
}

void mech_free_aligned(void *p) { free(p); }

mech_status mech_read_file(const char *path, char **out, size_t *len, mech_err *err) {
    *out = NULL;
    if (len) *len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return mech_err_set(err, MECH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    // A FIFO or device would block or never end: only regular files are read.
    if (!S_ISREG(sb.st_mode))
        return mech_err_set(err, MECH_ERR_IO, "%s: %s, expected a regular file", path,
                            S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
    FILE *f = fopen(path, "rb");
    if (!f) return mech_err_set(err, MECH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mech_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) mech_buf_append(&b, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_IO, "%s: read error: %s", path, strerror(errno ? errno : EIO));
    }
    if (b.oom) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory reading file", path);
    }
    if (!b.data) mech_buf_append(&b, "", 0);
    if (b.oom) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    *out = b.data;
    if (len) *len = b.len;
    return MECH_OK;
}
